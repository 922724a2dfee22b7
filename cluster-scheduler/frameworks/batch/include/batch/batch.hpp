// The batch framework (DESIGN §7): Spark-style jobs — a driver and N executors, or a plain list of tasks — that
// take offers beside the services under DRF (their own role, "batch" by default). docs/batch.md has the API.
//
// A job: {"id":"pi","driver":{"cmd":"..","cpus":0.5,"mem":128,"ports":1},"executors":{"instances":4,"cmd":"..",
// "cpus":0.5,"mem":128},"env":{},"maxRetries":2,"container":{"image":".."}} or {"id":"etl","tasks":[{"cmd":".."},
// ..]}. The driver starts first; executors start once it runs, with DRIVER_HOST and DRIVER_PORT (its PORT0) in
// their environment. A driver job ends with its driver (exit 0 -> FINISHED, executors killed); a task-list job
// when all tasks finished. A failed task is retried up to maxRetries times, then the job FAILED.
//
// Threading: BatchScheduler lives on one io_context thread: offers and updates arrive from the SchedulerClient's
// thread and are posted there; the REST handler runs there too. Offer answers (Accept/Decline) are blocking HTTP
// calls made on that thread.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "http/server.hpp"
#include "model/types.hpp"

namespace tug::cluster::batch {

struct TaskSpec {
  std::string cmd;
  double cpus = 0.1;
  double mem = 32;
  double disk = 0;
  uint32_t ports = 0;
};

struct JobSpec {
  std::string id;
  std::optional<TaskSpec> driver;
  uint32_t executor_instances = 0;
  TaskSpec executor;
  std::vector<TaskSpec> tasks;  // task-list job (no driver)
  std::map<std::string, std::string> env;
  uint32_t max_retries = 2;
  std::string image;  // optional: run every task in this OCI image
};

// kInvalidArgument naming the field ("executors.instances: must be >= 1").
Result<JobSpec> JobSpecFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const JobSpec& s);

enum class JobState { kQueued, kRunning, kFinished, kFailed, kKilled };
const char* JobStateName(JobState s);

// What the scheduler needs from the master connection (SchedulerClient in production, a recorder in tests).
class MasterCalls {
 public:
  virtual ~MasterCalls() = default;
  virtual Status Accept(const std::vector<std::string>& offer_ids, const std::vector<TaskInfo>& tasks,
                        double refuse_seconds) = 0;
  virtual Status Decline(const std::vector<std::string>& offer_ids, double refuse_seconds) = 0;
  virtual Status Kill(const std::string& task_id, const std::string& agent_id) = 0;
  virtual Status Acknowledge(const TaskStatus& status) = 0;
  virtual Status Reconcile() = 0;
  virtual Status Revive() = 0;
  virtual Status Suppress() = 0;
};

class BatchScheduler {
 public:
  // `state_dir` keeps the jobs and the framework id across restarts ("" = memory only).
  BatchScheduler(boost::asio::io_context& io, MasterCalls& master, std::string state_dir);
  ~BatchScheduler();

  // Loads the state dir. kIo / kProtocol when it cannot be read.
  Status Load();
  std::string framework_id() const;

  // From the framework connection (call on the io thread).
  void OnSubscribed(const std::string& framework_id);
  void OnOffers(const std::vector<Offer>& offers);
  void OnRescind(const std::string& offer_id);
  void OnUpdate(const TaskStatus& status);

  // REST: POST /v1/jobs, GET /v1/jobs, GET /v1/jobs/{id}, DELETE /v1/jobs/{id} (kill),
  // GET /v1/jobs/{id}/logs?task=driver&stream=stdout&tail=100, GET /healthz.
  http::Response Handle(const http::Request& req);
  // How logs are found: agent id -> the node's API "host:port" (from the master's /api/v1/state); "" unknown.
  void SetEndpointLookup(std::function<std::string(const std::string& agent_id)> lookup);

  nlohmann::json JobJson(const std::string& id) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tug::cluster::batch
