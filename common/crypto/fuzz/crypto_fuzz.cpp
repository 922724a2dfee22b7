// libFuzzer target for what a device reads from a registry or the controller before trusting it: DSSE envelopes,
// release payloads and trust roots (envelope + root payload). The first byte picks the parser, the rest is the
// input. A parsed envelope must serialize and parse back to the same envelope. scripts/fuzz.sh runs it.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "crypto/dsse.hpp"
#include "crypto/release.hpp"
#include "crypto/trust_root.hpp"

using namespace tug::crypto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  switch (data[0] % 4) {
    case 0: {
      auto env = Envelope::Parse(in);
      if (!env) break;
      auto again = Envelope::Parse(env->ToJson());
      if (!again || again->payload_type != env->payload_type || again->payload != env->payload ||
          again->signatures.size() != env->signatures.size())
        std::abort();
      (void)Pae(env->payload_type, env->payload);
      break;
    }
    case 1: {
      auto r = ParseReleasePayload(in);
      if (r) (void)SerializeReleasePayload(*r);
      break;
    }
    case 2: (void)LoadTrustRoot(in, now); break;
    case 3: {
      // A release envelope against an (empty) root: exercises the envelope and policy checks up to the signature.
      TrustRoot root;
      (void)VerifyRelease(in, root, ReleasePolicy{.now = now});
      break;
    }
  }
  return 0;
}
