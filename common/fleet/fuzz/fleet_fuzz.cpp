// libFuzzer target for every fleet parser (both directions: what the controller reads from devices and what the
// agent reads from the controller). The first byte picks the parser; the rest is the payload. Whatever parses
// must serialize and parse again to the same bytes.
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DTUG_FUZZ=ON
//   ninja -C build-fuzz fleet_fuzz && build-fuzz/common/fleet/fleet_fuzz -max_total_time=60 common/fleet/fuzz/corpus
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fleet/messages.hpp"
#include "fleet/topics.hpp"

using namespace tug::fleet;

namespace {
template <typename Parse>
void RoundTrip(std::string_view in, Parse parse) {
  auto m = parse(in, DefaultLimits());
  if (!m) return;
  const std::string once = Serialize(*m);
  auto again = parse(once, DefaultLimits());
  if (!again || Serialize(*again) != once) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: RoundTrip(in, ParsePresence); break;
    case 1: RoundTrip(in, ParseState); break;
    case 2: RoundTrip(in, ParseJobStatus); break;
    case 3: RoundTrip(in, ParseProgress); break;
    case 4: (void)ParseDesired(in, DefaultLimits()); break;  // release text is embedded verbatim: no byte round trip
    case 5: RoundTrip(in, ParseCmdRequest); break;
    case 6: RoundTrip(in, ParseCmdResponse); break;
    case 7: (void)ParseTopic(in); break;
  }
  return 0;
}
