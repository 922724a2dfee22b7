#include "agent/runtime.hpp"

#include <spdlog/spdlog.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/env.hpp"
#include "oci/runtime_spec.hpp"
#include "oci/user.hpp"

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

}  // namespace

Status WriteRuntimeSpec(const std::string& bundle_dir, const oci::ImageConfig& image, const std::string& hostname) {
  const auto& c = image.config;
  std::vector<std::string> args = c.entrypoint;
  args.insert(args.end(), c.cmd.begin(), c.cmd.end());
  if (args.empty()) return MakeError(Errc::kInvalidArgument, "image has neither Entrypoint nor Cmd: nothing to run");
  TUG_ASSIGN_OR_RETURN(auto ids, oci::ResolveImageUser(bundle_dir + "/rootfs", c.user));
  std::vector<std::string> env = c.env;
  bool has_path = false;
  for (auto& e : env) has_path |= e.rfind("PATH=", 0) == 0;
  if (!has_path) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

  const std::vector<std::string>& caps = oci::DefaultContainerCapabilities();
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
      {"mounts", oci::DefaultContainerMounts()},
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
