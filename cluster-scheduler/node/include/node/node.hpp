// cluster-node: the node agent daemon. A Node owns the TaskRunner (tasks, checkpoints), the MasterLink (agent
// protocol) and the node's own HTTP API (http::Server on a private io_context thread):
//   GET /healthz                                   {"status":"ok","registered":..,"agent_id":..,"master":..}
//   GET /api/v1/tasks                              {"tasks":[TaskView JSON: state, pids, ports, limits, ...]}
//   GET /api/v1/tasks/<id>                         one TaskView
//   GET /api/v1/tasks/<id>/logs?stream=stdout|stderr&tail=N   the last N lines (default 100), text/plain;
//                                                  410 once the task's sandbox was garbage-collected
//   GET /api/v1/node                               {"agent_id",..,"gc":{sandboxes kept/collected, bytes freed, ..}}
// Stopping a Node leaves the tasks running (the next Node on the work dir re-attaches), unless
// kill_tasks_on_exit.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "model/resources.hpp"
#include "model/types.hpp"
#include "node/master_link.hpp"
#include "node/task_runner.hpp"

namespace tug::cluster::node {

struct NodeOptions {
  std::vector<std::string> masters;             // base URLs
  std::string work_dir = "/var/lib/tugboat-node";
  std::string resources;                        // "cpus:2;mem:2048;disk:10000;ports:[31000-31999]"; "" = detected
  std::string attributes;                       // "zone:a;rack:r1" (hostname and arch are always added)
  std::string hostname;                         // "" = gethostname()
  std::string listen = "127.0.0.1:0";           // the node's HTTP API
  bool kill_tasks_on_exit = false;
  double kill_grace_s = 3;
  bool use_cgroups = true;
  std::string runc = "runc";
  std::string supervisor_exe;                   // "" = this executable
  GcOptions gc;                                 // sandbox and image garbage collection
  LinkOptions link;                             // masters/agent/state_file are filled from the above
};

class Node {
 public:
  // Opens the runner (re-attaching to checkpointed tasks), starts the API and the master link.
  static Result<std::unique_ptr<Node>> Start(NodeOptions opts);
  // Stops the API and the link; kills the tasks first when kill_tasks_on_exit.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  uint16_t port() const;
  const AgentInfo& agent() const;
  TaskRunner& runner();
  MasterLink& link();

  struct Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// cpus from the host, mem = MemTotal minus a reserve for the system (min(1 GiB, a quarter)), disk = free MiB
// under work_dir, ports 31000-31999. Parts given in `text` replace the detected ones.
Result<Resources> NodeResources(const std::string& text, const std::string& work_dir);
// "zone:a;rack:r1" -> {zone: a, rack: r1}; kInvalidArgument naming the bad part.
Result<Attributes> ParseAttributes(std::string_view text);

// The cluster-node command line (see --help); also the hidden `supervise --sandbox DIR --state-dir DIR` mode.
// Exit codes: 0 stopped cleanly, 1 failed to start, 2 usage error.
int Main(int argc, char** argv);

}  // namespace tug::cluster::node
