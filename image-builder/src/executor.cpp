#include "builder/executor.hpp"

#include "oci/user.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/env.hpp"

namespace tug::builder {
namespace {

std::string QemuName(const std::string& arch) {
  if (arch == "arm64") return "qemu-aarch64";
  if (arch == "arm") return "qemu-arm";
  if (arch == "amd64") return "qemu-x86_64";
  if (arch == "386") return "qemu-i386";
  if (arch == "riscv64") return "qemu-riscv64";
  return "qemu-" + arch;
}

bool IsRegularFile(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Status CheckEmulation(const oci::Platform& p) {
  const oci::Platform host = oci::HostPlatform();
  if (p.architecture == host.architecture) return {};
  const std::string handler = "/proc/sys/fs/binfmt_misc/" + QemuName(p.architecture);
  auto text = core::DefaultEnv()->ReadFile(handler);
  if (text && text->rfind("enabled", 0) == 0) return {};
  return MakeError(Errc::kUnsupported,
                   "RUN for " + p.ToString() + " needs QEMU user emulation, but " + handler +
                       (text ? " is disabled" : " is not registered") + "; fix: sudo cross/register-binfmt.sh");
}

Result<core::RunResult> RunInRootfs(const std::string& rootfs, const std::string& scratch_dir, const RunSpec& spec) {
  TUG_ASSIGN_OR_RETURN(auto ids, oci::ResolveImageUser(rootfs, spec.user));
  const std::vector<std::string> caps{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                                      "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETGID", "CAP_SETUID",
                                      "CAP_SETPCAP", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD"};
  nlohmann::json mounts = {
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "noexec", "nodev", "ro"}}}};
  // Name resolution for package installs; only over files the image has, so no mount point appears in a layer.
  for (const char* f : {"/etc/resolv.conf", "/etc/hosts"}) {
    if (IsRegularFile(rootfs + f) && IsRegularFile(f))
      mounts.push_back({{"destination", f}, {"type", "bind"}, {"source", f}, {"options", {"rbind", "ro"}}});
  }
  nlohmann::json config = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", ids.first}, {"gid", ids.second}}},
        {"args", spec.argv},
        {"env", spec.env},
        {"cwd", spec.cwd.empty() ? "/" : spec.cwd},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
        {"noNewPrivileges", false}}},
      {"root", {{"path", rootfs}, {"readonly", false}}},
      {"hostname", "image-builder"},
      {"mounts", mounts},
      {"linux",
       {{"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}},
        {"maskedPaths", {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"}},
        {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
  auto* env = core::DefaultEnv();
  TUG_TRY(env->CreateDirs(scratch_dir));
  TUG_TRY(core::WriteFileDurable(*env, scratch_dir + "/config.json", config.dump(2)));
  const std::string log = scratch_dir + "/output.log";
  (void)env->RemoveFile(log);

  static std::atomic<int> counter{0};
  const std::string id = "tug-build-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  core::RunOptions opts;
  opts.timeout = spec.timeout;
  opts.stdin_data = "";
  opts.output_file = log;
  auto r = core::Run({"runc", "run", "--bundle", scratch_dir, id}, opts);
  // A container left behind by a timeout would keep the rootfs busy.
  (void)core::Run({"runc", "delete", "--force", id}, {});
  if (!r) return tl::unexpected(Wrap(r.error(), "starting runc"));
  auto out = env->ReadFile(log);
  r->out = out ? *out : "";
  return r;
}

}  // namespace tug::builder
