#include "testsupport/etcd_server.hpp"

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <vector>

#include "testsupport/net.hpp"

namespace tug::testsupport {
namespace {

std::string EtcdBinary() {
  std::string bin = core::FindInPath("etcd");
  if (bin.empty() && ::access("/usr/bin/etcd", X_OK) == 0) bin = "/usr/bin/etcd";
  return bin;
}

// Every thread of `pid` is in state T (stopped), per /proc/PID/task/*/stat.
bool AllThreadsStopped(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec);
  if (ec) return true;  // gone: nothing left to answer
  for (const auto& entry : it) {
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // "tid (comm) S ...": the state follows the last ')' (comm may contain anything).
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) continue;
    char state = stat[close + 2];
    if (state != 'T' && state != 't') return false;
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<EtcdServer>> EtcdServer::Start(const EtcdServerOptions& opts) {
  if (EtcdBinary().empty()) return MakeError(Errc::kNotFound, "etcd is not installed (scripts/setup.sh installs it)");
  std::unique_ptr<EtcdServer> s(new EtcdServer(opts));
  // The ports can be taken between FreeLoopbackPort() and etcd's bind; a few attempts cover that. Each attempt
  // starts from an empty data dir: a half-initialised member from a failed attempt would refuse the new peer URL.
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->client_port_ = FreeLoopbackPort();
    s->peer_port_ = FreeLoopbackPort();
    if (s->client_port_ == s->peer_port_) continue;
    std::error_code ec;
    std::filesystem::remove_all(s->data_dir(), ec);
    last = s->Launch();
    if (last) return s;
  }
  return tl::unexpected(last.error());
}

Status EtcdServer::Launch() {
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  const std::string client = endpoint();
  std::vector<std::string> argv = {
      EtcdBinary(),
      "--name", opts_.name,
      "--data-dir", data_dir(),
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", opts_.name + "=" + peer,
      "--initial-cluster-state", "new",
      // Unique per server so two test etcds can never join each other by accident.
      "--initial-cluster-token", "tug-test-" + std::to_string(::getpid()) + "-" + std::to_string(peer_port_),
      "--heartbeat-interval", std::to_string(opts_.heartbeat_ms),
      "--election-timeout", std::to_string(opts_.election_timeout_ms),
      "--logger", "zap",
      "--log-outputs", "stderr",
  };
  TUG_ASSIGN_OR_RETURN(process_, core::Spawn(argv, log_path()));
  paused_ = false;
  bool exited = false;
  const uint16_t port = client_port_;
  bool up = WaitFor(
      [&] {
        if (!process_.Running()) {
          exited = true;
          return true;
        }
        // 200 only once the member has a Raft leader and serves a linearizable read.
        return HttpGetStatus(port, "/health", std::chrono::milliseconds(500)) == 200;
      },
      opts_.start_timeout);
  if (up && !exited) return {};
  process_.Stop(std::chrono::seconds(2));
  return MakeError(Errc::kUnavailable,
                   std::string(exited ? "etcd exited" : "etcd did not become healthy in time") + "; log tail:\n" +
                       LogTail());
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  // A stopped process only sees SIGTERM once continued.
  if (paused_) Resume();
  process_.Stop(std::chrono::seconds(5));
}

void EtcdServer::Kill() {
  process_.Kill(SIGKILL);
  process_.Wait(std::chrono::seconds(5));
  process_ = core::Process();
  paused_ = false;
}

void EtcdServer::Pause() {
  process_.Kill(SIGSTOP);
  paused_ = true;
  // kill() returns before the group stop has reached every thread; until then etcd may still answer a request.
  const pid_t pid = process_.pid();
  WaitFor([pid] { return AllThreadsStopped(pid); }, std::chrono::seconds(2));
}

void EtcdServer::Resume() {
  process_.Kill(SIGCONT);
  paused_ = false;
}

Status EtcdServer::Restart() {
  Stop();
  // Go listeners set SO_REUSEADDR, so the same ports bind again at once despite TIME_WAIT connections.
  return Launch();
}

std::string EtcdServer::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

}  // namespace tug::testsupport
