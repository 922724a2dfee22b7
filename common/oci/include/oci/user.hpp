// Resolving an image config's USER ("name", "uid", "name:group", "uid:gid") against the image's own /etc/passwd and
// /etc/group, never the host's: the device agent needs it for the runtime spec, image-builder for RUN and
// COPY --chown. Blocking (reads two small files).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace tug::oci {

// {uid, gid}. Empty or "root" without a passwd entry is {0, 0}; a numeric uid with an entry gets that entry's
// primary group (as Docker does). kNotFound names the user or group missing from the image.
Result<std::pair<uint32_t, uint32_t>> ResolveImageUser(const std::string& rootfs, const std::string& user);

}  // namespace tug::oci
