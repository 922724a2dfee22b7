#include "builder/executor.hpp"

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

// Finds `name` (or a numeric id) in a passwd/group style file: returns fields[2] and fields[3].
bool LookupDb(const std::string& text, const std::string& name, uint32_t* id, uint32_t* gid) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string field;
    while (std::getline(ls, field, ':')) f.push_back(field);
    if (f.size() < 3 || f[0] != name) continue;
    try {
      *id = static_cast<uint32_t>(std::stoul(f[2]));
      if (gid != nullptr && f.size() > 3) *gid = static_cast<uint32_t>(std::stoul(f[3]));
    } catch (...) {
      return false;
    }
    return true;
  }
  return false;
}

bool IsNumber(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

oci::Platform HostPlatform() {
  struct utsname u{};
  ::uname(&u);
  const std::string m = u.machine;
  if (m == "aarch64" || m == "arm64") return {"linux", "arm64", "v8"};
  if (m.rfind("armv7", 0) == 0 || m == "armhf") return {"linux", "arm", "v7"};
  if (m == "x86_64") return {"linux", "amd64", ""};
  return {"linux", m, ""};
}

Status CheckEmulation(const oci::Platform& p) {
  const oci::Platform host = HostPlatform();
  if (p.architecture == host.architecture) return {};
  const std::string handler = "/proc/sys/fs/binfmt_misc/" + QemuName(p.architecture);
  auto text = core::DefaultEnv()->ReadFile(handler);
  if (text && text->rfind("enabled", 0) == 0) return {};
  return MakeError(Errc::kUnsupported,
                   "RUN for " + p.ToString() + " needs QEMU user emulation, but " + handler +
                       (text ? " is disabled" : " is not registered") + "; fix: sudo cross/register-binfmt.sh");
}

Result<std::pair<uint32_t, uint32_t>> ResolveUser(const std::string& rootfs, const std::string& user) {
  if (user.empty()) return std::make_pair(0u, 0u);
  std::string u = user, g;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    u = user.substr(0, colon);
    g = user.substr(colon + 1);
  }
  auto* env = core::DefaultEnv();
  uint32_t uid = 0, gid = 0;
  bool have_gid = false;
  if (IsNumber(u)) {
    uid = static_cast<uint32_t>(std::stoul(u));
    // A numeric uid with an entry still gets its primary group, as in Docker.
    auto passwd = env->ReadFile(rootfs + "/etc/passwd");
    std::istringstream in(passwd ? *passwd : "");
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::stringstream ls(line);
      std::string field;
      while (std::getline(ls, field, ':')) f.push_back(field);
      if (f.size() > 3 && f[2] == u && IsNumber(f[3])) {
        gid = static_cast<uint32_t>(std::stoul(f[3]));
        have_gid = true;
        break;
      }
    }
  } else {
    auto passwd = env->ReadFile(rootfs + "/etc/passwd");
    if (!passwd || !LookupDb(*passwd, u, &uid, &gid))
      return MakeError(Errc::kNotFound, "user " + u + " not found in the image's /etc/passwd");
    have_gid = true;
  }
  if (!g.empty()) {
    if (IsNumber(g)) {
      gid = static_cast<uint32_t>(std::stoul(g));
    } else {
      auto group = env->ReadFile(rootfs + "/etc/group");
      if (!group || !LookupDb(*group, g, &gid, nullptr))
        return MakeError(Errc::kNotFound, "group " + g + " not found in the image's /etc/group");
    }
  } else if (!have_gid) {
    gid = uid == 0 ? 0 : uid;
  }
  return std::make_pair(uid, gid);
}

Result<core::RunResult> RunInRootfs(const std::string& rootfs, const std::string& scratch_dir, const RunSpec& spec) {
  TUG_ASSIGN_OR_RETURN(auto ids, ResolveUser(rootfs, spec.user));
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
