// agent_footprint: how big the device agent is on disk and in memory, next to the Go tools a device would otherwise
// carry (runc, skopeo, umoci).
//
// Size: `strip -o TMP device-agent`, in bytes; the peers' Debian binaries are already stripped. Shared libraries are
// not counted for anyone (the agent is dynamically linked unless built with TUG_STATIC; the Go tools are mostly
// static), so the library count is printed beside it.
// Memory: peak RSS (ru_maxrss from wait4) of one-shot commands, each started REPS times with fork/exec, median.
// There is no long-running agent daemon yet (the MQTT loop does not exist), so the agent's number is the one-shot
// `device-agent status` on an initialised state dir, not an idle daemon.
//
// Usage: bench_agent_footprint DEVICE_AGENT_BINARY [REPS=5]
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/trust_root.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::bench {
namespace {

// Peak RSS in KiB of one run of argv (stdout/stderr discarded); dies if it cannot run or exits non-zero.
long PeakRssKiB(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (::wait4(pid, &status, 0, &ru) != pid) Die("wait4 failed");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die(argv[0] + " " + argv[1] + " did not exit 0");
  return ru.ru_maxrss;
}

uint64_t FileBytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) Die("cannot stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

// "N libs, X MiB" for the shared libraries ldd resolves (files' sizes, symlinks followed), or "static".
std::string SharedLibs(const std::string& path) {
  auto r = core::Run({"ldd", path});
  if (!r || !r->ok()) return "static";
  int n = 0;
  uint64_t bytes = 0;
  size_t pos = 0;
  while (pos < r->out.size()) {
    size_t end = r->out.find('\n', pos);
    if (end == std::string::npos) end = r->out.size();
    std::string line = r->out.substr(pos, end - pos);
    pos = end + 1;
    size_t arrow = line.find("=> ");
    size_t start = arrow != std::string::npos ? arrow + 3 : line.find_first_not_of(" \t");
    if (start == std::string::npos || start >= line.size() || line[start] != '/') continue;
    std::string lib = line.substr(start, line.find(' ', start) - start);
    struct stat st {};
    if (::stat(lib.c_str(), &st) != 0) continue;
    ++n;
    bytes += static_cast<uint64_t>(st.st_size);
  }
  return std::to_string(n) + " libs, " + Fmt(1, static_cast<double>(bytes) / 1048576.0) + " MiB";
}

int Main(int argc, char** argv) {
  if (argc < 2) Die("usage: bench_agent_footprint DEVICE_AGENT_BINARY [REPS]");
  const std::string agent = argv[1];
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  testsupport::TempDir tmp("tug-bench-footprint");

  // Sizes.
  const std::string stripped = tmp.Sub("device-agent.stripped");
  auto r = Must(core::Run({"strip", "-o", stripped, agent}), "run strip");
  if (!r.ok()) Die("strip: " + r.Describe());
  struct Bin {
    std::string name, path;
  };
  const std::vector<Bin> peers{{"runc", core::FindInPath("runc")},
                               {"skopeo", core::FindInPath("skopeo")},
                               {"umoci", core::FindInPath("umoci")}};
  const uint64_t agent_bytes = FileBytes(stripped);
  std::printf("Binary size on disk (bytes; shared libraries not included):\n\n");
  Header({"binary", "bytes", "MiB", "shared libraries it loads (not in bytes)", "peer / agent"});
  Row({"device-agent (stripped; unstripped " + std::to_string(FileBytes(agent)) + ")", std::to_string(agent_bytes),
       Fmt(1, agent_bytes / 1048576.0), SharedLibs(agent), "1.00"});
  for (const auto& p : peers) {
    if (p.path.empty()) continue;
    const uint64_t b = FileBytes(p.path);
    Row({p.name + " (" + p.path + ", Debian, stripped)", std::to_string(b), Fmt(1, b / 1048576.0),
         SharedLibs(p.path), Fmt(2, static_cast<double>(b) / agent_bytes)});
  }

  // An initialised state dir so `status` does real work (reads root, journal, slots).
  const std::string state = tmp.Sub("state");
  auto key = crypto::GenerateKeyPair();
  auto root = Must(crypto::MakeTrustRoot({key.public_key}, 1, 1,
                                         core::SystemClock()->Now() + std::chrono::hours(24 * 365), {key}),
                   "make trust root");
  Must(core::WriteFileDurable(*core::DefaultEnv(), tmp.Sub("root.json"), root), "write root.json");
  r = Must(core::Run({agent, "--state-dir", state, "init", "--root", tmp.Sub("root.json")}), "run agent init");
  if (!r.ok()) Die("device-agent init: " + r.Describe());

  struct Cmd {
    std::string label;
    std::vector<std::string> argv;
    bool is_agent;
  };
  std::vector<Cmd> cmds{{"device-agent status", {agent, "--state-dir", state, "status"}, true},
                        {"device-agent status --json", {agent, "--state-dir", state, "status", "--json"}, true},
                        {"device-agent --help", {agent, "--help"}, true}};
  for (const auto& p : peers)
    if (!p.path.empty()) cmds.push_back({p.name + " --version", {p.path, "--version"}, false});

  std::vector<std::vector<double>> rss(cmds.size());
  for (int rep = 0; rep < reps; ++rep)  // interleaved, so a noisy moment hits every command alike
    for (size_t i = 0; i < cmds.size(); ++i) rss[i].push_back(static_cast<double>(PeakRssKiB(cmds[i].argv)));

  const double agent_rss = Median(rss[0]);
  std::printf("\nPeak RSS of one-shot commands (KiB, ru_maxrss via fork/exec + wait4), %d runs each, median:\n\n",
              reps);
  Header({"command", "runs (KiB)", "median (KiB)", "MiB", "this / device-agent status"});
  for (size_t i = 0; i < cmds.size(); ++i) {
    const double m = Median(rss[i]);
    Row({cmds[i].label, Join(rss[i], 0), Fmt(0, m), Fmt(1, m / 1024), Fmt(2, m / agent_rss)});
  }
  return 0;
}

}  // namespace
}  // namespace tug::bench

int main(int argc, char** argv) { return tug::bench::Main(argc, argv); }
