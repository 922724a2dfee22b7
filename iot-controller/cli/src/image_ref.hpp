// Parsing the --image argument of `tug release sign`: HOST/REPO[:TAG]@sha256:HEX. Releases pin images by digest,
// so a reference without a digest is an error rather than something to resolve over the network.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::cli {

struct PinnedImage {
  std::string repository;  // "127.0.0.1:5000/acme/sensor" (any tag dropped)
  std::string digest;      // "sha256:<64 hex>"
};

// kInvalidArgument (or kUnsupported for a non-sha256 digest) with a message that shows the expected form.
Result<PinnedImage> ParsePinnedImage(std::string_view ref);

}  // namespace tug::cli
