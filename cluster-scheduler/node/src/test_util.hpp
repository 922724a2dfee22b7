// Helpers shared by the node's tests: runner options pointing at the built cluster-node (the supervisor), task
// builders, waiting on states, and a host busybox (from the amd64/arm64 .deb the fixtures use) for tasks that
// serve HTTP.
#pragma once

#include <glob.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/env.hpp"
#include "node/task_runner.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "testsupport/net.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::cluster::node::testing {

using namespace std::chrono_literals;

inline RunnerOptions Opts(const std::string& dir) {
  RunnerOptions o;
  o.work_dir = dir;
  o.hostname = "test-host";
  o.supervisor_exe = TUG_CLUSTER_NODE_EXE;
  o.kill_grace = 1s;
  o.tick = 50ms;
  return o;
}

inline std::unique_ptr<TaskRunner> OpenRunner(const std::string& dir) {
  auto r = TaskRunner::Open(Opts(dir));
  if (!r) FAIL(r.error().Message());
  return std::move(*r);
}

inline TaskInfo ShellTask(const std::string& id, const std::string& cmd, const std::vector<uint32_t>& ports = {}) {
  TaskInfo t;
  t.task_id = id;
  t.name = id;
  t.framework_id = "fw-1";
  t.command.value = cmd;
  t.resources = Resources::Make(0.2, 64) + Resources::Ports(ports);
  return t;
}

inline TaskState StateOf(const TaskRunner& r, const std::string& id) {
  auto v = r.Get(id);
  return v ? v->state : TaskState::kStaging;
}

inline bool WaitState(const TaskRunner& r, const std::string& id, TaskState s,
                      std::chrono::milliseconds timeout = 20s) {
  return testsupport::WaitFor([&] { return StateOf(r, id) == s; }, timeout);
}

inline bool WaitTerminal(const TaskRunner& r, const std::string& id, std::chrono::milliseconds timeout = 20s) {
  return testsupport::WaitFor([&] { return IsTerminal(StateOf(r, id)); }, timeout);
}

// The pending updates of one task, in order.
inline std::vector<TaskStatus> UpdatesOf(const TaskRunner& r, const std::string& id) {
  std::vector<TaskStatus> out;
  for (auto& s : r.Unacknowledged())
    if (s.task_id == id) out.push_back(s);
  return out;
}

inline std::vector<std::string> StateNames(const std::vector<TaskStatus>& updates) {
  std::vector<std::string> out;
  for (const auto& u : updates) out.push_back(TaskStateName(u.state));
  return out;
}

inline std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// A static busybox for this host (from the .deb the image fixtures use), unpacked once per test process.
inline std::string HostBusybox() {
  static std::string path = [] {
    std::string arch = oci::HostPlatform().architecture;
    std::string deb_arch = arch == "arm" ? "armhf" : arch;
    glob_t g{};
    std::string pattern = "/var/cache/tugboat/debs/busybox-static_*_" + deb_arch + ".deb";
    std::string deb;
    if (::glob(pattern.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0) deb = g.gl_pathv[0];
    ::globfree(&g);
    if (deb.empty()) return std::string();
    static testsupport::TempDir dir("tug-node-bb");
    if (!oci::ExtractDebData(deb, dir.path())) return std::string();
    return dir.Sub("bin/busybox");
  }();
  return path;
}

}  // namespace tug::cluster::node::testing
