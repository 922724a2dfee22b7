// The container runtime seam. RuncRuntime drives runc with its state under the agent's state dir, so containers
// outlive the agent: restarting or upgrading the agent never restarts a healthy app.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "oci/image.hpp"

namespace tug::agent {

class Runtime {
 public:
  virtual ~Runtime() = default;
  // Starts the bundle's container detached (removing a stale container of the same id first).
  virtual Status Start(const std::string& id, const std::string& bundle_dir) = 0;
  // SIGTERM, then SIGKILL after `grace`, then delete. Missing container is fine.
  virtual Status Stop(const std::string& id, std::chrono::milliseconds grace) = 0;
  virtual Result<bool> IsRunning(const std::string& id) = 0;
  // Runs a command inside the running container.
  virtual Result<core::RunResult> Exec(const std::string& id, const std::vector<std::string>& argv,
                                       std::chrono::milliseconds timeout) = 0;
};

class RuncRuntime : public Runtime {
 public:
  explicit RuncRuntime(std::string state_root) : root_(std::move(state_root)) {}
  Status Start(const std::string& id, const std::string& bundle_dir) override;
  Status Stop(const std::string& id, std::chrono::milliseconds grace) override;
  Result<bool> IsRunning(const std::string& id) override;
  Result<core::RunResult> Exec(const std::string& id, const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout) override;

 private:
  Result<std::string> StateOf(const std::string& id);  // "running", "stopped", "created", "" when absent
  std::string root_;
};

// Writes bundle_dir/config.json (OCI runtime spec 1.0) for an image config: process args from Entrypoint+Cmd, Env,
// WorkingDir, User (numeric or resolved through rootfs/etc/passwd and /etc/group), host network (devices talk to the
// world through the host's link), pid/ipc/uts/mount namespaces, the default runc mounts and masked paths.
Status WriteRuntimeSpec(const std::string& bundle_dir, const oci::ImageConfig& image, const std::string& hostname);

}  // namespace tug::agent
