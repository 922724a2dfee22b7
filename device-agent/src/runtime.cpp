#include "agent/runtime.hpp"

#include <spdlog/spdlog.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/env.hpp"

namespace tug::agent {
namespace {

using namespace std::chrono_literals;

Result<core::RunResult> Runc(const std::string& root, std::vector<std::string> args,
                             std::chrono::milliseconds timeout = 30s, std::optional<std::string> output_file = {}) {
  std::vector<std::string> argv{"runc", "--root", root};
  argv.insert(argv.end(), args.begin(), args.end());
  core::RunOptions o;
  o.timeout = timeout;
  o.output_file = std::move(output_file);
  return core::Run(argv, o);
}

}  // namespace

Result<std::string> RuncRuntime::StateOf(const std::string& id) {
  TUG_ASSIGN_OR_RETURN(auto r, Runc(root_, {"state", id}));
  if (!r.ok()) return std::string();  // "container does not exist"
  try {
    return nlohmann::json::parse(r.out).value("status", "");
  } catch (...) {
    return MakeError(Errc::kRuntime, "runc state " + id + " printed unparseable JSON");
  }
}

Status RuncRuntime::Start(const std::string& id, const std::string& bundle_dir) {
  TUG_TRY(core::DefaultEnv()->CreateDirs(root_));
  // A container of this id may be left over (stopped, or from before a crash): remove it first.
  TUG_ASSIGN_OR_RETURN(auto state, StateOf(id));
  if (state == "running") return {};
  if (!state.empty()) TUG_TRY(Runc(root_, {"delete", "--force", id}));
  // The container's stdout/stderr go to a log in its bundle; runc -d returns once the process is started.
  TUG_ASSIGN_OR_RETURN(auto r, Runc(root_,
                                    {"run", "--detach", "--bundle", bundle_dir, "--pid-file",
                                     bundle_dir + "/container.pid", id},
                                    60s, bundle_dir + "/container.log"));
  if (!r.ok()) {
    std::string log;
    if (auto text = core::DefaultEnv()->ReadFile(bundle_dir + "/container.log")) {
      log = *text;
      if (log.size() > 800) log = log.substr(log.size() - 800);
    }
    return MakeError(Errc::kRuntime, "runc run " + id + " failed: " + r.Describe() + (log.empty() ? "" : "; log: " + log));
  }
  return {};
}

Status RuncRuntime::Stop(const std::string& id, std::chrono::milliseconds grace) {
  TUG_ASSIGN_OR_RETURN(auto state, StateOf(id));
  if (state.empty()) return {};
  if (state == "running") {
    (void)Runc(root_, {"kill", id, "TERM"});
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      TUG_ASSIGN_OR_RETURN(auto s, StateOf(id));
      if (s != "running") break;
      std::this_thread::sleep_for(100ms);
    }
  }
  TUG_ASSIGN_OR_RETURN(auto r, Runc(root_, {"delete", "--force", id}));
  if (!r.ok()) {
    TUG_ASSIGN_OR_RETURN(auto s, StateOf(id));
    if (!s.empty()) return MakeError(Errc::kRuntime, "runc delete " + id + ": " + r.Describe());
  }
  return {};
}

Result<bool> RuncRuntime::IsRunning(const std::string& id) {
  TUG_ASSIGN_OR_RETURN(auto s, StateOf(id));
  return s == "running";
}

Result<core::RunResult> RuncRuntime::Exec(const std::string& id, const std::vector<std::string>& argv,
                                          std::chrono::milliseconds timeout) {
  std::vector<std::string> args{"exec", id};
  args.insert(args.end(), argv.begin(), argv.end());
  return Runc(root_, args, timeout);
}

namespace {

// Looks a user or group name up in the image's own /etc/passwd or /etc/group (never the host's).
std::optional<uint32_t> LookupId(const std::string& file, const std::string& name, int id_field) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) f.push_back(part);
    if (f.size() > static_cast<size_t>(id_field) && f[0] == name) {
      try {
        return static_cast<uint32_t>(std::stoul(f[id_field]));
      } catch (...) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

Result<std::pair<uint32_t, uint32_t>> ResolveUser(const std::string& rootfs, const std::string& user) {
  if (user.empty() || user == "root") return std::pair<uint32_t, uint32_t>{0, 0};
  std::string u = user, g;
  if (auto c = user.find(':'); c != std::string::npos) {
    u = user.substr(0, c);
    g = user.substr(c + 1);
  }
  auto numeric = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  uint32_t uid = 0, gid = 0;
  if (numeric(u)) {
    uid = static_cast<uint32_t>(std::stoul(u));
  } else if (auto id = LookupId(rootfs + "/etc/passwd", u, 2)) {
    uid = *id;
    gid = LookupId(rootfs + "/etc/passwd", u, 3).value_or(0);
  } else {
    return MakeError(Errc::kInvalidArgument, "image USER '" + u + "' is not in the image's /etc/passwd");
  }
  if (!g.empty()) {
    if (numeric(g)) gid = static_cast<uint32_t>(std::stoul(g));
    else if (auto id = LookupId(rootfs + "/etc/group", g, 2)) gid = *id;
    else return MakeError(Errc::kInvalidArgument, "image group '" + g + "' is not in the image's /etc/group");
  }
  return std::pair<uint32_t, uint32_t>{uid, gid};
}

}  // namespace

Status WriteRuntimeSpec(const std::string& bundle_dir, const oci::ImageConfig& image, const std::string& hostname) {
  const auto& c = image.config;
  std::vector<std::string> args = c.entrypoint;
  args.insert(args.end(), c.cmd.begin(), c.cmd.end());
  if (args.empty()) return MakeError(Errc::kInvalidArgument, "image has neither Entrypoint nor Cmd: nothing to run");
  TUG_ASSIGN_OR_RETURN(auto ids, ResolveUser(bundle_dir + "/rootfs", c.user));
  std::vector<std::string> env = c.env;
  bool has_path = false;
  for (auto& e : env) has_path |= e.rfind("PATH=", 0) == 0;
  if (!has_path) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

  const std::vector<std::string> caps{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                                      "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETGID", "CAP_SETUID",
                                      "CAP_SETPCAP", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD"};
  nlohmann::json spec = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", ids.first}, {"gid", ids.second}}},
        {"args", args},
        {"env", env},
        {"cwd", c.working_dir.empty() ? "/" : c.working_dir},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
        {"noNewPrivileges", true}}},
      {"root", {{"path", "rootfs"}, {"readonly", false}}},
      {"hostname", hostname},
      {"mounts",
       {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
        {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
         {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
        {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
         {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
        {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"},
         {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"},
         {"options", {"nosuid", "noexec", "nodev", "ro"}}},
        {{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"},
         {"options", {"nosuid", "nodev", "mode=1777"}}},
        {{"destination", "/etc/resolv.conf"}, {"type", "bind"}, {"source", "/etc/resolv.conf"},
         {"options", {"rbind", "ro"}}}}},
      {"linux",
       {{"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}},
        {"maskedPaths", {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                         "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                         "/proc/scsi"}},
        {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}},
  };
  // runc creates missing mount points itself, resolving them inside the rootfs (never through its symlinks).
  auto* env_fs = core::DefaultEnv();
  return core::WriteFileDurable(*env_fs, bundle_dir + "/config.json", spec.dump(2) + "\n");
}

}  // namespace tug::agent
