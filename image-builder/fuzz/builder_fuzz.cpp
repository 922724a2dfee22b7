// libFuzzer target for image-builder's text inputs: the Dockerfile parser (and Go durations from HEALTHCHECK
// flags) and .dockerignore (parse + match). The first byte picks the parser; for .dockerignore the input is
// "patterns\0path" and the path is matched against the patterns.
#include <cstdint>
#include <string_view>

#include "builder/dockerfile.hpp"
#include "builder/ignore.hpp"

using namespace tug::builder;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto df = ParseDockerfile(in);
      if (df) (void)df->StepCount();
      break;
    }
    case 1: (void)ParseGoDuration(in); break;
    case 2: {
      const size_t nul = in.find('\0');
      const std::string_view text = in.substr(0, nul);
      const std::string_view path = nul == std::string_view::npos ? "a/b/c.txt" : in.substr(nul + 1);
      const auto ig = DockerIgnore::FromText(text);
      (void)ig.Excluded(path);
      (void)ig.MayReinclude(path);
      (void)GlobMatch(text.substr(0, text.find('\n')), path);
      break;
    }
  }
  return 0;
}
