// LocalCluster: the cluster scheduler's real processes on this machine for end-to-end tests: a real etcd, two or
// more cluster-master processes electing a leader through it, cluster-node processes (own work dirs, own port
// ranges, attributes), and the services and batch frameworks. Every process is started by pid and stopped by pid;
// every port is picked free; every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/subprocess.hpp"
#include "testsupport/etcd_server.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::itest {

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string body;
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
};
// One request with a deadline; never throws. Carries the harness's operator token (LocalCluster::token()) once a
// LocalCluster exists, so the frameworks' REST APIs, which refuse anonymous calls, answer it.
HttpReply HttpCall(const std::string& method, const std::string& url, const std::string& body = "",
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));
// The same with exactly these headers (no token unless given): for the authentication tests.
HttpReply HttpCallWithHeaders(const std::string& method, const std::string& url, const std::string& body,
                              const std::vector<std::pair<std::string, std::string>>& headers);

// A path under the build dir (TUG_BUILD_DIR, set by ctest).
std::string BuildPath(const std::string& rel);

class LocalCluster {
 public:
  struct Master {
    uint16_t port = 0;
    std::string url, log;
    core::Process proc;
  };
  struct Node {
    std::string name, zone, work_dir, log;
    uint16_t api_port = 0;
    uint32_t port_begin = 0, port_end = 0;  // task ports
    core::Process proc;
  };
  struct Options {
    int masters = 2;
    int nodes = 3;
    std::string node_resources = "cpus:4;mem:4096";  // ports are added per node
    uint32_t ports_per_node = 40;
    // The masters' --agent-removal-timeout: how long a new leader waits for a node to re-register before it removes
    // the node and reports its tasks LOST. Short by default so a lost node's tasks are rescheduled quickly.
    int agent_removal_timeout_s = 4;
  };

  // Starts etcd, the masters and the nodes; waits for a leader and for every node to be registered.
  explicit LocalCluster(Options opts);
  ~LocalCluster();

  testsupport::TempDir& dir() { return dir_; }
  // The frameworks' --token-file: "itest" (operator, token()) and "itest-viewer" (viewer, viewer_token()).
  std::string token_file() const { return dir_.Sub("api.tokens"); }
  const std::string& token() const { return token_; }
  const std::string& viewer_token() const { return viewer_token_; }
  std::vector<std::string> master_urls() const;
  std::string masters_csv() const;
  Master& master(size_t i) { return masters_[i]; }
  Node& node(size_t i) { return nodes_[i]; }
  size_t node_count() const { return nodes_.size(); }

  void StartMaster(size_t i);
  void StartNode(size_t i);
  // The leading master's URL ("" when none answers as leader within the timeout).
  std::string Leader(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Index of the leading master, or -1.
  int LeaderIndex(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // GET /api/v1/state from the leader.
  nlohmann::json State();
  // Nodes the leader sees as connected.
  int ConnectedNodes();
  // The node's own view of its tasks (GET /api/v1/tasks).
  nlohmann::json NodeTasks(size_t i);
  // The etcd client URL, for tests that look at what the masters wrote.
  std::string etcd_endpoint() const { return etcd_->endpoint(); }
  // SIGSTOP to a master, as in a long GC pause, a VM stall or swapping: it keeps its sockets (the kernel still
  // accepts connections and buffers requests) but runs nothing, not even its lease watchdog. Returns once every
  // thread of it is stopped (bounded: 2 s). The destructor continues frozen masters before stopping them.
  void FreezeMaster(size_t i);
  // SIGCONT: the master resumes exactly where it stopped.
  void ThawMaster(size_t i);
  // Kills the node process with SIGKILL (its tasks live on, supervised).
  void KillNodeAgent(size_t i);
  // Kills the node process and every process of its tasks: the machine is gone.
  void KillNodeMachine(size_t i);

  std::string LogTail(const std::string& path, size_t bytes = 3000) const;
  // Last lines of every process's log, for failure messages.
  std::string Diagnostics() const;

 private:
  std::string token_, viewer_token_;
  Options opts_;
  testsupport::TempDir dir_;
  std::unique_ptr<testsupport::EtcdServer> etcd_;
  std::vector<Master> masters_;
  std::vector<Node> nodes_;
};

// A free range of `n` consecutive loopback ports (each checked by binding), away from the ephemeral range.
uint32_t FreePortRange(uint32_t n);

// The batch framework (cluster-batch) subscribed to the cluster's masters, on a free loopback port, its state and
// log in the cluster's dir. Throws std::runtime_error when it does not start answering /healthz within 10 s.
struct BatchFramework {
  core::Process proc;
  std::string url, log;
  BatchFramework(LocalCluster& c, const std::string& name);
  ~BatchFramework();
  nlohmann::json Job(const std::string& id);
  bool WaitState(const std::string& id, const std::string& state, std::chrono::seconds timeout);
};

// pid of each TASK_RUNNING task, by task id, from node i's own API (what really runs, whatever a master believes).
std::map<std::string, int> TaskPids(LocalCluster& c, size_t node);
// The same over every node.
std::map<std::string, int> AllTaskPids(LocalCluster& c);

}  // namespace tug::itest
