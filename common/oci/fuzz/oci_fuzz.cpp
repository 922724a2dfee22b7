// libFuzzer target for the OCI documents a registry serves: image manifest, image index (and platform selection
// from it), image config, platform strings. The first byte picks the parser, the rest is the document.
#include <cstdint>
#include <string_view>

#include "oci/image.hpp"

using namespace tug::oci;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto m = ParseManifest(in);
      if (m)
        for (const auto& l : m->layers) (void)LayerCompression(l.media_type);
      break;
    }
    case 1: {
      auto idx = ParseIndex(in);
      if (idx) {
        auto want = Platform::Parse("linux/arm64/v8");
        if (want) (void)SelectPlatform(*idx, *want);
      }
      break;
    }
    case 2: (void)ParseImageConfig(in); break;
    case 3: (void)Platform::Parse(in); break;
  }
  return 0;
}
