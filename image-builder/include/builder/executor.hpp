// Runs one RUN step inside a stage's rootfs with runc: a generated bundle whose root is the rootfs itself, so what
// the command writes lands in the rootfs and the next snapshot sees it. Host network (no network namespace), fresh
// /proc, a minimal tmpfs /dev, sysfs read-only; /etc/resolv.conf and /etc/hosts are bind-mounted from the host
// only where the image already has them (so the mount points never show up in the layer). Foreign architectures
// run through the kernel's QEMU binfmt handlers (registered with flag F, so they work inside the container).
// Blocking.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "oci/image.hpp"

namespace tug::builder {

struct RunSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"
  std::string cwd = "/";
  std::string user;              // "", "name", "uid", "uid:gid", "name:group"
  oci::Platform platform;
  std::chrono::seconds timeout{std::chrono::hours(1)};
};


// OK when binaries for `p` can run here: the host's own architecture, or an enabled QEMU binfmt handler
// (/proc/sys/fs/binfmt_misc/qemu-aarch64, qemu-arm, qemu-x86_64). Otherwise kUnsupported with the fix:
// "sudo cross/register-binfmt.sh".
Status CheckEmulation(const oci::Platform& p);


// Runs the command; fails only when runc cannot be started. The result holds the exit status, and `out` the
// combined stdout+stderr. `scratch_dir` holds the bundle (config.json) and is left for the caller to remove.
Result<core::RunResult> RunInRootfs(const std::string& rootfs, const std::string& scratch_dir, const RunSpec& spec);

}  // namespace tug::builder
