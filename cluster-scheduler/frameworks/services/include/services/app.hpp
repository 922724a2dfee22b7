// App definitions of the services framework (docs/services.md): the Marathon-like JSON an operator POSTs to
// /v2/apps, parsed and validated into AppDefinition, and written back in the same shape.
//
// Errors: ParseApp returns kInvalidArgument whose context is "field: what", the field in the app JSON's own names
// ("healthChecks[0].portIndex", "constraints[1][2]", "upgradeStrategy.minimumHealthCapacity"); ErrorField() takes
// the field back out for the {"error", "field"} answer. Pure functions: no I/O, no clock, thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/resources.hpp"
#include "model/types.hpp"

namespace tug::cluster::services {

struct AppHealthCheck {
  enum class Protocol { kHttp, kTcp, kCommand };
  Protocol protocol = Protocol::kHttp;
  std::string path = "/";   // HTTP
  uint32_t port_index = 0;  // HTTP, TCP: index into the app's ports
  std::string command;      // COMMAND: sh -c in the task's environment, exit 0 = healthy
  double grace_period_s = 10;
  double interval_s = 2;
  double timeout_s = 2;
  uint32_t max_consecutive_failures = 3;
  bool operator==(const AppHealthCheck&) const = default;
};
const char* ToString(AppHealthCheck::Protocol p);  // "HTTP"

// Marathon's placement operators. Field "hostname" is the agent's hostname; any other field is an agent attribute.
enum class ConstraintOp {
  kUnique,   // at most one instance per value of the field
  kCluster,  // only on agents whose field equals the value (no value: the value of the app's first instance)
  kGroupBy,  // spread evenly over the field's values (value: how many values to expect, optional)
  kLike,     // field matches the regex value
  kUnlike,   // field does not match the regex value (agents without the field qualify)
  kMaxPer,   // at most value instances per value of the field
  kIs,       // field equals the value
};
const char* ToString(ConstraintOp op);  // "UNIQUE"

struct Constraint {
  std::string field;
  ConstraintOp op = ConstraintOp::kUnique;
  std::string value;  // empty when the operator takes none
  // "hostname:UNIQUE", "zone:CLUSTER:a": how deployments and errors name a constraint.
  std::string ToString() const;
  bool operator==(const Constraint&) const = default;
};

struct UpgradeStrategy {
  double minimum_health_capacity = 1.0;  // keep ceil(m * instances) healthy during an upgrade
  double maximum_over_capacity = 1.0;    // never more than instances + floor(o * instances) in total
  bool operator==(const UpgradeStrategy&) const = default;
};

// The HAProxy frontend for the app (gateway sync): clients connect to `port`; backends are the healthy instances'
// first port.
struct GatewaySpec {
  uint16_t port = 0;
  std::string mode = "http";  // "http" or "tcp"
  bool operator==(const GatewaySpec&) const = default;
};

struct AppDefinition {
  std::string id;     // "/web", "/group/web": '/'-separated segments of [a-z0-9-]
  std::string cmd;    // sh -c; may be empty when `image` is set
  std::string image;  // container.image: OCI reference run with runc; empty = plain process
  uint32_t instances = 1;
  double cpus = 1;
  double mem = 128;  // MiB
  double disk = 0;   // MiB
  // One entry per host port the instance takes from the offer (only 0 = any free port is supported); the instance
  // sees them as $PORT0.. in ascending order, $PORT = $PORT0.
  std::vector<uint32_t> ports;
  std::map<std::string, std::string> env;
  std::vector<AppHealthCheck> health_checks;  // at most one (the node runs one check per task)
  std::vector<Constraint> constraints;
  UpgradeStrategy upgrade;
  std::map<std::string, std::string> labels;
  std::optional<GatewaySpec> gateway;

  bool operator==(const AppDefinition&) const = default;

  // What one instance asks of an offer, ports excluded (they are picked per offer).
  Resources ScalarResources() const;
  // True when changing from `before` to this definition needs new tasks (command, image, resources, ports, env,
  // health checks, labels). Instances, constraints, upgrade strategy and gateway apply without restarting.
  bool NeedsRestartFrom(const AppDefinition& before) const;
};

// Parses and validates an app definition. `path_id` (from the URL of a PUT) is used when the body has no "id" and
// must equal the body's id when it has one. Read-only members that GET answers carry (version, tasks, deployments,
// tasksRunning, ...) are ignored so a GET-edit-PUT round trip works; any other unknown member is refused.
Result<AppDefinition> ParseApp(const nlohmann::json& j, const std::string& path_id = "");
// The definition in the JSON form ParseApp reads (every member present, defaults filled in).
nlohmann::json ToJson(const AppDefinition& app);

// "/web" from "web", "/web/", "/web"; kInvalidArgument (field "id") for anything else than '/'-separated segments
// of lowercase letters, digits and '-' (not starting or ending with '-').
Result<std::string> NormalizeAppId(const std::string& id);
// "/group/web" -> "group.web": the task id prefix and the gateway service name.
std::string DottedAppId(const std::string& app_id);

// The field named by an error from ParseApp ("healthChecks[0].portIndex"), or "".
std::string ErrorField(const Error& e);

}  // namespace tug::cluster::services
