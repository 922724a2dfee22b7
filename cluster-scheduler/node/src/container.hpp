// Container tasks: pull an image for this host's platform into a verified blob cache, unpack it with the secure
// extraction into a per-task rootfs, write an OCI runtime spec, and drive runc. Blocking; callers run these on a
// worker thread. Adapted from device-agent's runtime.cpp (which runs detached A/B slots) for scheduler tasks: the
// process comes from the TaskInfo, the environment is merged, the sandbox is bind-mounted, limits are in the spec.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "oci/image.hpp"

namespace tug::cluster::node {

inline constexpr const char* kSandboxInContainer = "/mnt/sandbox";

// Pulls `image` ("host:port/repo:tag" or "...@sha256:..") for this host's platform and unpacks its layers into
// `rootfs` (created). Layers are cached, verified, under cache_dir/sha256/<hex>. `cancelled` is polled while
// downloading. Errors name what failed ("GET http://..: HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)");
// the caller prefixes "pulling <image>: ". `use_blob` (may be empty) is called with each layer's digest before the
// cache is looked at for it: the caller's reference that keeps image GC away from it (see gc.hpp, ImageCache).
Result<oci::ImageConfig> PullImage(const std::string& image, bool plain_http, const std::string& cache_dir,
                                   const std::string& rootfs, const std::function<bool()>& cancelled,
                                   const std::function<void(const std::string& digest)>& use_blob = {});

struct ContainerProcess {
  std::vector<std::string> args;            // empty: the image's Entrypoint + Cmd
  std::map<std::string, std::string> env;   // merged over the image's Env (these win)
  std::string user;                         // empty: the image's User
  std::string hostname;
  std::string sandbox;                      // host dir bind-mounted at kSandboxInContainer
  double cpus = 0;
  double mem_mib = 0;
  std::string cgroups_path;                 // "/tugboat-node/<id>"
};

// Writes bundle/config.json (OCI runtime spec 1.0.2): the host network namespace (task ports are host ports),
// pid/ipc/uts/mount namespaces, default mounts, memory and cpu limits in linux.resources.
Status WriteContainerSpec(const std::string& bundle, const oci::ImageConfig& image, const ContainerProcess& p);

// A runc container id for a task: [A-Za-z0-9_.-], unique per (node, task id): `node_key` tells apart nodes sharing
// a host, whose containers' cgroups live side by side.
std::string ContainerId(const std::string& task_id, const std::string& node_key);

class Runc {
 public:
  Runc(std::string binary, std::string root) : binary_(std::move(binary)), root_(std::move(root)) {}
  // The foreground `runc run` command the supervisor runs as the task (runc forwards signals to the container).
  std::vector<std::string> RunArgv(const std::string& bundle, const std::string& id) const;
  Status Kill(const std::string& id, const std::string& signal) const;
  Status Delete(const std::string& id) const;
  // Ids of the containers in this runc root.
  Result<std::vector<std::string>> List() const;
  // `runc exec` in the container (the spec's env, user and cwd apply).
  Result<core::RunResult> Exec(const std::string& id, const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout) const;
  const std::string& root() const { return root_; }

 private:
  Result<core::RunResult> Call(std::vector<std::string> args, std::chrono::milliseconds timeout) const;
  std::string binary_;
  std::string root_;
};

}  // namespace tug::cluster::node
