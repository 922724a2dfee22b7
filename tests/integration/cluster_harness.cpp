#include "cluster_harness.hpp"

#include <mutex>

#include "core/env.hpp"
#include "http/tokens.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "http/client.hpp"
#include "testsupport/net.hpp"

namespace tug::itest {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {
std::mutex bearer_mu;
std::string bearer;  // the current LocalCluster's operator token
}  // namespace

HttpReply HttpCall(const std::string& method, const std::string& url, const std::string& body,
                   std::chrono::milliseconds timeout) {
  http::ClientOptions o;
  o.timeout = timeout;
  http::Client c(o);
  http::Headers h{{"Content-Type", "application/json"}};
  {
    std::lock_guard<std::mutex> lock(bearer_mu);
    if (!bearer.empty()) h.emplace_back("Authorization", "Bearer " + bearer);
  }
  auto r = c.Call(method, url, body, std::move(h));
  if (!r) return {};
  return HttpReply{r->status, r->body};
}

HttpReply HttpCallWithHeaders(const std::string& method, const std::string& url, const std::string& body,
                              const std::vector<std::pair<std::string, std::string>>& headers) {
  http::Client c;
  auto r = c.Call(method, url, body, headers);
  if (!r) return {};
  return HttpReply{r->status, r->body};
}

std::string BuildPath(const std::string& rel) {
  const char* b = std::getenv("TUG_BUILD_DIR");
  return std::string(b ? b : "build") + "/" + rel;
}

namespace {

bool PortFree(uint32_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string ReadTail(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

// Session id of a process (field 6 of /proc/PID/stat), or -1.
pid_t SessionOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string state;
  long ppid = 0, pgrp = 0, session = 0;
  rest >> state >> ppid >> pgrp >> session;
  return static_cast<pid_t>(session);
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end && *end == 0 && v > 0) out.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  return out;
}

std::string Cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto& c : s)
    if (c == 0) c = ' ';
  return s;
}

// Every thread of `pid` is in state T (stopped), per /proc/PID/task/*/stat.
bool AllThreadsStopped(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec);
  if (ec) return true;  // gone: nothing left to run
  for (const auto& entry : it) {
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    // "tid (comm) S ...": the state follows the last ')' (comm may contain anything).
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) continue;
    if (stat[close + 2] != 'T' && stat[close + 2] != 't') return false;
  }
  return true;
}

}  // namespace

uint32_t FreePortRange(uint32_t n) {
  static std::mt19937 rng{std::random_device{}()};
  for (int attempt = 0; attempt < 200; ++attempt) {
    const uint32_t base = std::uniform_int_distribution<uint32_t>(20000, 30000 - n)(rng);
    bool ok = true;
    for (uint32_t p = base; p < base + n && ok; ++p) ok = PortFree(p);
    if (ok) return base;
  }
  throw std::runtime_error("no free port range of " + std::to_string(n));
}

LocalCluster::LocalCluster(Options opts) : opts_(std::move(opts)), dir_("tug-cluster") {
  token_ = http::NewToken();
  viewer_token_ = http::NewToken();
  if (!core::WriteFileDurable(*core::DefaultEnv(), token_file(),
                              http::TokenLine("itest", http::Scope::kOperator, token_) +
                                  http::TokenLine("itest-viewer", http::Scope::kViewer, viewer_token_)))
    throw std::runtime_error("writing " + token_file());
  {
    std::lock_guard<std::mutex> lock(bearer_mu);
    bearer = token_;
  }
  auto etcd = testsupport::EtcdServer::Start();
  if (!etcd) throw std::runtime_error("etcd: " + etcd.error().Message());
  etcd_ = std::move(*etcd);
  masters_.resize(opts_.masters);
  for (int i = 0; i < opts_.masters; ++i) {
    masters_[i].port = testsupport::FreeLoopbackPort();
    masters_[i].url = "http://127.0.0.1:" + std::to_string(masters_[i].port);
    masters_[i].log = dir_.Sub("master-" + std::to_string(i) + ".log");
    StartMaster(i);
  }
  if (Leader().empty()) throw std::runtime_error("no leading master:\n" + Diagnostics());
  const char* zones[] = {"a", "b", "c", "d", "e"};
  nodes_.resize(opts_.nodes);
  for (int i = 0; i < opts_.nodes; ++i) {
    Node& n = nodes_[i];
    n.name = "node-" + std::to_string(i);
    n.zone = zones[i % 5];
    n.work_dir = dir_.Sub(n.name);
    n.log = dir_.Sub(n.name + ".log");
    n.api_port = testsupport::FreeLoopbackPort();
    n.port_begin = FreePortRange(opts_.ports_per_node);
    n.port_end = n.port_begin + opts_.ports_per_node - 1;
    StartNode(i);
  }
  if (!testsupport::WaitFor([&] { return ConnectedNodes() == opts_.nodes; }, 20s))
    throw std::runtime_error("nodes did not all register:\n" + Diagnostics());
}

LocalCluster::~LocalCluster() {
  // Frameworks are the test's; here: nodes with their tasks, then masters, then etcd (destructor).
  for (size_t i = 0; i < nodes_.size(); ++i) KillNodeMachine(i);
  // A frozen master would hold its SIGTERM pending until the SIGKILL: continue it first (harmless otherwise).
  for (auto& m : masters_) m.proc.Kill(SIGCONT);
  for (auto& m : masters_) m.proc.Stop(3s);
}

std::vector<std::string> LocalCluster::master_urls() const {
  std::vector<std::string> out;
  for (const auto& m : masters_) out.push_back(m.url);
  return out;
}

std::string LocalCluster::masters_csv() const {
  std::string s;
  for (const auto& m : masters_) s += (s.empty() ? "" : ",") + m.url;
  return s;
}

void LocalCluster::StartMaster(size_t i) {
  Master& m = masters_[i];
  auto p = core::Spawn({BuildPath("cluster-scheduler/master/cluster-master"), "--listen",
                        "127.0.0.1:" + std::to_string(m.port), "--etcd", etcd_->endpoint(), "--lease-ttl", "2",
                        "--heartbeat-interval", "0.5", "--agent-ping-timeout", "2", "--agent-removal-timeout",
                        std::to_string(opts_.agent_removal_timeout_s),
                        "--role-weight", "services=1", "--role-weight", "batch=1"},
                       m.log);
  if (!p) throw std::runtime_error("starting cluster-master: " + p.error().Message());
  m.proc = std::move(*p);
}

void LocalCluster::StartNode(size_t i) {
  Node& n = nodes_[i];
  const std::string res = opts_.node_resources + ";ports:[" + std::to_string(n.port_begin) + "-" +
                          std::to_string(n.port_end) + "]";
  auto p = core::Spawn({BuildPath("cluster-scheduler/node/cluster-node"), "--master", masters_csv(), "--work-dir",
                        n.work_dir, "--resources", res, "--attributes", "zone:" + n.zone + ";node:" + n.name + ";ip:127.0.0.1",
                        "--hostname", n.name, "--listen", "127.0.0.1:" + std::to_string(n.api_port), "--kill-grace",
                        "2"},
                       n.log);
  if (!p) throw std::runtime_error("starting cluster-node: " + p.error().Message());
  n.proc = std::move(*p);
}

int LocalCluster::LeaderIndex(std::chrono::milliseconds timeout) {
  int found = -1;
  testsupport::WaitFor(
      [&] {
        for (size_t i = 0; i < masters_.size(); ++i) {
          if (!masters_[i].proc.Running()) continue;
          auto r = HttpCall("GET", masters_[i].url + "/api/v1/leader", "", 1s);
          if (r.status == 200 && r.Json().value("leading", false)) {
            found = static_cast<int>(i);
            return true;
          }
        }
        return false;
      },
      timeout);
  return found;
}

std::string LocalCluster::Leader(std::chrono::milliseconds timeout) {
  int i = LeaderIndex(timeout);
  return i < 0 ? "" : masters_[i].url;
}

json LocalCluster::State() {
  const std::string leader = Leader(5s);
  if (leader.empty()) return json::object();
  auto r = HttpCall("GET", leader + "/api/v1/state");
  return r.status == 200 ? r.Json() : json::object();
}

int LocalCluster::ConnectedNodes() {
  int n = 0;
  for (const auto& a : State().value("agents", json::array())) n += a.value("connected", false) ? 1 : 0;
  return n;
}

json LocalCluster::NodeTasks(size_t i) {
  auto r = HttpCall("GET", "http://127.0.0.1:" + std::to_string(nodes_[i].api_port) + "/api/v1/tasks");
  return r.status == 200 ? r.Json() : json();
}

void LocalCluster::FreezeMaster(size_t i) {
  masters_[i].proc.Kill(SIGSTOP);
  // kill() returns before the group stop has reached every thread; until then the master may still act.
  const pid_t pid = masters_[i].proc.pid();
  if (pid > 0) testsupport::WaitFor([pid] { return AllThreadsStopped(pid); }, 2s);
}

void LocalCluster::ThawMaster(size_t i) { masters_[i].proc.Kill(SIGCONT); }

void LocalCluster::KillNodeAgent(size_t i) {
  if (nodes_[i].proc.pid() > 0) {
    nodes_[i].proc.Kill(SIGKILL);
    nodes_[i].proc.Wait(5s);
  }
}

void LocalCluster::KillNodeMachine(size_t i) {
  KillNodeAgent(i);
  // Every task runs in the session of its supervisor, whose command line names the node's work dir.
  const std::string marker = nodes_[i].work_dir + "/";
  for (pid_t pid : AllPids()) {
    const std::string cmd = Cmdline(pid);
    if (cmd.find(" supervise ") == std::string::npos || cmd.find(marker) == std::string::npos) continue;
    const pid_t sid = SessionOf(pid);
    if (sid <= 1) continue;
    for (pid_t p : AllPids())
      if (SessionOf(p) == sid) ::kill(p, SIGKILL);
  }
}

std::string LocalCluster::LogTail(const std::string& path, size_t bytes) const { return ReadTail(path, bytes); }

std::string LocalCluster::Diagnostics() const {
  std::string out;
  for (const auto& m : masters_) out += "--- " + m.log + "\n" + ReadTail(m.log, 1500) + "\n";
  for (const auto& n : nodes_) out += "--- " + n.log + "\n" + ReadTail(n.log, 1500) + "\n";
  return out;
}

BatchFramework::BatchFramework(LocalCluster& c, const std::string& name) {
  const uint16_t port = testsupport::FreeLoopbackPort();
  url = "http://127.0.0.1:" + std::to_string(port);
  log = c.dir().Sub(name + ".log");
  auto p = core::Spawn({BuildPath("cluster-scheduler/frameworks/batch/cluster-batch"), "--master", c.masters_csv(),
                        "--listen", "127.0.0.1:" + std::to_string(port), "--state-dir", c.dir().Sub(name),
                        "--token-file", c.token_file()},
                       log);
  if (!p) throw std::runtime_error("starting cluster-batch: " + p.error().Message());
  proc = std::move(*p);
  if (!testsupport::WaitFor([&] { return HttpCall("GET", url + "/healthz").status == 200; }, 10s))
    throw std::runtime_error("cluster-batch did not answer /healthz within 10 s:\n" + c.LogTail(log, 4000));
}

BatchFramework::~BatchFramework() { proc.Stop(5s); }

nlohmann::json BatchFramework::Job(const std::string& id) {
  return HttpCall("GET", url + "/v1/jobs/" + id).Json();
}

bool BatchFramework::WaitState(const std::string& id, const std::string& state, std::chrono::seconds timeout) {
  return testsupport::WaitFor([&] { return Job(id).value("state", "") == state; }, timeout);
}

std::map<std::string, int> TaskPids(LocalCluster& c, size_t node) {
  std::map<std::string, int> out;
  nlohmann::json tasks = c.NodeTasks(node);
  const nlohmann::json list = tasks.is_array() ? tasks : tasks.value("tasks", nlohmann::json::array());
  for (const auto& t : list)
    if (t.value("state", "") == "TASK_RUNNING") out[t.value("task_id", t.value("id", ""))] = t.value("pid", 0);
  return out;
}

std::map<std::string, int> AllTaskPids(LocalCluster& c) {
  std::map<std::string, int> all;
  for (size_t i = 0; i < c.node_count(); ++i)
    for (auto& [k, v] : TaskPids(c, i)) all[k] = v;
  return all;
}

}  // namespace tug::itest
