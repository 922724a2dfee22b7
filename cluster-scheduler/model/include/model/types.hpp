// The cluster scheduler's wire types (docs/cluster-api.md), shaped after the Mesos v1 API: ids are {"value": ".."}
// objects, task states are "TASK_RUNNING" etc., resources use the Mesos list form (model/resources.hpp).
// Every FromJson returns kInvalidArgument naming the field ("task_infos[0].command.value: missing"), so API errors
// can say exactly what is wrong.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/resources.hpp"

namespace tug::cluster {

using Attributes = std::map<std::string, std::string>;  // TEXT attributes: hostname, zone, arch, ...

enum class TaskState {
  kStaging,      // accepted by the master, not yet on the node
  kStarting,     // node is fetching / creating it
  kRunning,
  kKilling,
  kFinished,     // exited 0
  kFailed,       // exited non-zero or could not start
  kKilled,       // killed on request
  kLost,         // node lost and the task with it (master's verdict after the node timeout)
  kError,        // task description invalid
  kUnreachable,  // node unreachable: the task may still run; becomes LOST (or RUNNING again on re-register)
  kDropped,      // launch never reached a node (node gone / offer rescinded)
};
const char* TaskStateName(TaskState s);  // "TASK_RUNNING"
std::optional<TaskState> ParseTaskState(std::string_view s);
bool IsTerminal(TaskState s);  // FINISHED FAILED KILLED LOST ERROR DROPPED

struct HealthCheck {
  enum class Type { kNone, kHttp, kTcp, kCommand };
  Type type = Type::kNone;
  uint32_t port_index = 0;   // HTTP/TCP: which of the task's assigned ports
  std::string path = "/";    // HTTP
  std::string command;       // COMMAND: run with sh -c inside the task's environment
  double grace_period_s = 10;
  double interval_s = 2;
  double timeout_s = 2;
  uint32_t max_consecutive_failures = 3;  // then the task is killed (FAILED, "health check failed")
};

struct CommandInfo {
  std::string value;                           // run by /bin/sh -c when shell (the default)
  bool shell = true;
  std::vector<std::string> arguments;          // argv when !shell (value = executable)
  std::map<std::string, std::string> environment;
  std::string user;                            // empty = node's user
};

struct ContainerInfo {
  std::string image;  // OCI reference ("127.0.0.1:5000/acme/api:1" or "...@sha256:.."); empty = plain process
  bool insecure_registry = true;  // plain http to loopback registries
};

struct TaskInfo {
  std::string task_id;
  std::string name;
  std::string framework_id;
  std::string agent_id;
  Resources resources;
  CommandInfo command;
  ContainerInfo container;
  std::optional<HealthCheck> health_check;
  std::map<std::string, std::string> labels;
  // Filled by the node: the ports from `resources`, in order, also given to the task as $PORT0.. and $PORT.
  std::vector<uint32_t> Ports() const { return resources.FirstPorts(resources.port_count()); }
};

struct TaskStatus {
  std::string task_id;
  std::string framework_id;
  std::string agent_id;
  TaskState state = TaskState::kStaging;
  std::string message;
  std::string reason;              // e.g. REASON_AGENT_REMOVED, REASON_HEALTH_CHECK_FAILED, REASON_COMMAND_EXITED
  std::optional<bool> healthy;     // set once a health check has run
  std::string uuid;                // set on updates that need an ACKNOWLEDGE
  double timestamp = 0;            // seconds since the epoch
  std::string source = "SOURCE_AGENT";  // SOURCE_MASTER | SOURCE_AGENT
};

struct FrameworkInfo {
  std::string id;    // empty on first SUBSCRIBE; the master assigns one
  std::string name;
  std::string role = "*";
  std::string user;
  double failover_timeout_s = 60;  // how long the master keeps the framework's tasks after it disconnects
  std::string hostname;
};

struct AgentInfo {
  std::string id;        // empty on first registration
  std::string hostname;
  std::string endpoint;  // "127.0.0.1:5051": the node's own HTTP API (logs, state)
  Resources resources;   // total
  Attributes attributes;
};

struct Offer {
  std::string id;
  std::string framework_id;
  std::string agent_id;
  std::string hostname;
  Resources resources;
  Attributes attributes;
};

nlohmann::json IdJson(const std::string& v);  // {"value": v}
// Reads {"value": ".."} at j[key]; "" when absent; kInvalidArgument when present but malformed.
Result<std::string> IdFromJson(const nlohmann::json& j, const std::string& key, const std::string& field);

nlohmann::json ToJson(const HealthCheck& h);
nlohmann::json ToJson(const CommandInfo& c);
nlohmann::json ToJson(const TaskInfo& t);
nlohmann::json ToJson(const TaskStatus& s);
nlohmann::json ToJson(const FrameworkInfo& f);
nlohmann::json ToJson(const AgentInfo& a);
nlohmann::json ToJson(const Offer& o);
nlohmann::json AttributesToJson(const Attributes& a);

Result<HealthCheck> HealthCheckFromJson(const nlohmann::json& j, const std::string& field);
Result<CommandInfo> CommandInfoFromJson(const nlohmann::json& j, const std::string& field);
Result<TaskInfo> TaskInfoFromJson(const nlohmann::json& j, const std::string& field);
Result<TaskStatus> TaskStatusFromJson(const nlohmann::json& j, const std::string& field);
Result<FrameworkInfo> FrameworkInfoFromJson(const nlohmann::json& j, const std::string& field);
Result<AgentInfo> AgentInfoFromJson(const nlohmann::json& j, const std::string& field);
Result<Offer> OfferFromJson(const nlohmann::json& j, const std::string& field);
Result<Attributes> AttributesFromJson(const nlohmann::json& j, const std::string& field);

// A random id with a prefix: "t-5f1c0a9e3b2d4c68" (16 hex digits from a CSPRNG).
std::string NewId(const std::string& prefix);
double NowSeconds();

}  // namespace tug::cluster
