// The parts of an OCI runtime spec (config.json for runc) that every Tugboat container shares: Docker's default
// capability set less CAP_NET_RAW and CAP_MKNOD, and the standard mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys read-only, /tmp,
// the host's /etc/resolv.conf read-only). The device agent and the cluster node each add their own process, root,
// limits and extra mounts.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tug::oci {

const std::vector<std::string>& DefaultContainerCapabilities();
// A fresh JSON array of mount objects; callers may push_back their own.
nlohmann::json DefaultContainerMounts();

}  // namespace tug::oci
