#include "model/types.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace tug::cluster {

using json = nlohmann::json;

namespace {

constexpr std::pair<TaskState, const char*> kStateNames[] = {
    {TaskState::kStaging, "TASK_STAGING"},   {TaskState::kStarting, "TASK_STARTING"},
    {TaskState::kRunning, "TASK_RUNNING"},   {TaskState::kKilling, "TASK_KILLING"},
    {TaskState::kFinished, "TASK_FINISHED"}, {TaskState::kFailed, "TASK_FAILED"},
    {TaskState::kKilled, "TASK_KILLED"},     {TaskState::kLost, "TASK_LOST"},
    {TaskState::kError, "TASK_ERROR"},       {TaskState::kUnreachable, "TASK_UNREACHABLE"},
    {TaskState::kDropped, "TASK_DROPPED"},
};

tl::unexpected<Error> Bad(const std::string& field, const std::string& what) {
  return MakeError(Errc::kInvalidArgument, field + ": " + what);
}

// Optional typed getters: absent -> default; wrong type -> error naming the field.
Result<std::string> Str(const json& j, const char* key, const std::string& field, std::string def = "") {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_string()) return Bad(field + "." + key, "must be a string");
  return j[key].get<std::string>();
}
Result<double> Num(const json& j, const char* key, const std::string& field, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number() || !std::isfinite(j[key].get<double>()) || j[key].get<double>() < 0)
    return Bad(field + "." + key, "must be a number >= 0");
  return j[key].get<double>();
}
Result<std::map<std::string, std::string>> StrMap(const json& j, const char* key, const std::string& field) {
  std::map<std::string, std::string> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  if (!j[key].is_object()) return Bad(field + "." + key, "must be an object of strings");
  for (const auto& [k, v] : j[key].items()) {
    if (!v.is_string()) return Bad(field + "." + key + "." + k, "must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

}  // namespace

const char* TaskStateName(TaskState s) {
  for (const auto& [st, name] : kStateNames)
    if (st == s) return name;
  return "TASK_UNKNOWN";
}

std::optional<TaskState> ParseTaskState(std::string_view s) {
  for (const auto& [st, name] : kStateNames)
    if (s == name) return st;
  return std::nullopt;
}

bool IsTerminal(TaskState s) {
  switch (s) {
    case TaskState::kFinished:
    case TaskState::kFailed:
    case TaskState::kKilled:
    case TaskState::kLost:
    case TaskState::kError:
    case TaskState::kDropped:
      return true;
    default:
      return false;
  }
}

json IdJson(const std::string& v) { return json{{"value", v}}; }

Result<std::string> IdFromJson(const json& j, const std::string& key, const std::string& field) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return std::string();
  const auto& v = j[key];
  if (!v.is_object() || !v.contains("value") || !v["value"].is_string())
    return Bad(field + "." + key, "must be {\"value\": \"...\"}");
  return v["value"].get<std::string>();
}

json AttributesToJson(const Attributes& a) {
  json out = json::array();
  for (const auto& [k, v] : a) out.push_back({{"name", k}, {"type", "TEXT"}, {"text", {{"value", v}}}});
  return out;
}

Result<Attributes> AttributesFromJson(const json& j, const std::string& field) {
  Attributes out;
  if (j.is_null()) return out;
  if (!j.is_array()) return Bad(field, "must be an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& e = j[i];
    const std::string f = field + "[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) return Bad(f + ".name", "missing");
    if (!e.contains("text") || !e["text"].is_object() || !e["text"].contains("value") || !e["text"]["value"].is_string())
      return Bad(f + ".text.value", "missing (only TEXT attributes are supported)");
    out[e["name"].get<std::string>()] = e["text"]["value"].get<std::string>();
  }
  return out;
}

json ToJson(const HealthCheck& h) {
  json j{{"grace_period_seconds", h.grace_period_s},
         {"interval_seconds", h.interval_s},
         {"timeout_seconds", h.timeout_s},
         {"consecutive_failures", h.max_consecutive_failures}};
  switch (h.type) {
    case HealthCheck::Type::kHttp:
      j["type"] = "HTTP";
      j["http"] = {{"port_index", h.port_index}, {"path", h.path}};
      break;
    case HealthCheck::Type::kTcp:
      j["type"] = "TCP";
      j["tcp"] = {{"port_index", h.port_index}};
      break;
    case HealthCheck::Type::kCommand:
      j["type"] = "COMMAND";
      j["command"] = {{"value", h.command}};
      break;
    case HealthCheck::Type::kNone:
      j["type"] = "NONE";
      break;
  }
  return j;
}

Result<HealthCheck> HealthCheckFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  HealthCheck h;
  auto type = Str(j, "type", field);
  if (!type) return tl::unexpected(type.error());
  auto port_index = [&](const char* sub) -> Status {
    if (!j.contains(sub) || !j[sub].is_object()) return Bad(field + "." + sub, "missing");
    const auto& s = j[sub];
    if (s.contains("port_index")) {
      if (!s["port_index"].is_number_unsigned()) return Bad(field + "." + sub + ".port_index", "must be >= 0");
      h.port_index = s["port_index"].get<uint32_t>();
    }
    return {};
  };
  if (*type == "HTTP") {
    h.type = HealthCheck::Type::kHttp;
    if (auto st = port_index("http"); !st) return tl::unexpected(st.error());
    auto path = Str(j["http"], "path", field + ".http", "/");
    if (!path) return tl::unexpected(path.error());
    if (path->empty() || (*path)[0] != '/') return Bad(field + ".http.path", "must start with /");
    h.path = *path;
  } else if (*type == "TCP") {
    h.type = HealthCheck::Type::kTcp;
    if (auto st = port_index("tcp"); !st) return tl::unexpected(st.error());
  } else if (*type == "COMMAND") {
    h.type = HealthCheck::Type::kCommand;
    if (!j.contains("command") || !j["command"].is_object()) return Bad(field + ".command", "missing");
    auto v = Str(j["command"], "value", field + ".command");
    if (!v) return tl::unexpected(v.error());
    if (v->empty()) return Bad(field + ".command.value", "missing");
    h.command = *v;
  } else {
    return Bad(field + ".type", "must be HTTP, TCP or COMMAND");
  }
  auto grace = Num(j, "grace_period_seconds", field, h.grace_period_s);
  auto interval = Num(j, "interval_seconds", field, h.interval_s);
  auto timeout = Num(j, "timeout_seconds", field, h.timeout_s);
  auto fails = Num(j, "consecutive_failures", field, h.max_consecutive_failures);
  for (auto* r : {&grace, &interval, &timeout, &fails})
    if (!*r) return tl::unexpected(r->error());
  if (*interval <= 0) return Bad(field + ".interval_seconds", "must be > 0");
  if (*timeout <= 0) return Bad(field + ".timeout_seconds", "must be > 0");
  if (*fails < 1) return Bad(field + ".consecutive_failures", "must be >= 1");
  h.grace_period_s = *grace;
  h.interval_s = *interval;
  h.timeout_s = *timeout;
  h.max_consecutive_failures = static_cast<uint32_t>(*fails);
  return h;
}

json ToJson(const CommandInfo& c) {
  json vars = json::array();
  for (const auto& [k, v] : c.environment) vars.push_back({{"name", k}, {"value", v}});
  json j{{"value", c.value}, {"shell", c.shell}, {"environment", {{"variables", vars}}}};
  if (!c.arguments.empty()) j["arguments"] = c.arguments;
  if (!c.user.empty()) j["user"] = c.user;
  return j;
}

Result<CommandInfo> CommandInfoFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  CommandInfo c;
  auto value = Str(j, "value", field);
  if (!value) return tl::unexpected(value.error());
  c.value = *value;
  if (j.contains("shell")) {
    if (!j["shell"].is_boolean()) return Bad(field + ".shell", "must be true or false");
    c.shell = j["shell"].get<bool>();
  }
  if (j.contains("arguments")) {
    if (!j["arguments"].is_array()) return Bad(field + ".arguments", "must be an array of strings");
    for (const auto& a : j["arguments"]) {
      if (!a.is_string()) return Bad(field + ".arguments", "must be an array of strings");
      c.arguments.push_back(a.get<std::string>());
    }
  }
  if (j.contains("environment")) {
    const auto& e = j["environment"];
    if (!e.is_object() || (e.contains("variables") && !e["variables"].is_array()))
      return Bad(field + ".environment.variables", "must be an array of {name, value}");
    for (const auto& v : e.value("variables", json::array())) {
      if (!v.is_object() || !v.contains("name") || !v["name"].is_string() || !v.contains("value") ||
          !v["value"].is_string())
        return Bad(field + ".environment.variables", "each needs string name and value");
      c.environment[v["name"].get<std::string>()] = v["value"].get<std::string>();
    }
  }
  auto user = Str(j, "user", field);
  if (!user) return tl::unexpected(user.error());
  c.user = *user;
  return c;
}

json ToJson(const TaskInfo& t) {
  json j{{"task_id", IdJson(t.task_id)},
         {"name", t.name},
         {"agent_id", IdJson(t.agent_id)},
         {"resources", ResourcesToJson(t.resources)},
         {"command", ToJson(t.command)}};
  if (!t.framework_id.empty()) j["framework_id"] = IdJson(t.framework_id);
  if (!t.container.image.empty())
    j["container"] = {{"type", "MESOS"},
                      {"mesos", {{"image", {{"type", "DOCKER"}, {"docker", {{"name", t.container.image}}}}}}},
                      {"insecure_registry", t.container.insecure_registry}};
  if (t.health_check) j["health_check"] = ToJson(*t.health_check);
  if (!t.labels.empty()) j["labels"] = t.labels;
  return j;
}

Result<TaskInfo> TaskInfoFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  TaskInfo t;
  auto id = IdFromJson(j, "task_id", field);
  if (!id) return tl::unexpected(id.error());
  if (id->empty()) return Bad(field + ".task_id", "missing");
  t.task_id = *id;
  auto agent = IdFromJson(j, "agent_id", field);
  if (!agent) return tl::unexpected(agent.error());
  t.agent_id = *agent;
  auto fw = IdFromJson(j, "framework_id", field);
  if (!fw) return tl::unexpected(fw.error());
  t.framework_id = *fw;
  auto name = Str(j, "name", field, t.task_id);
  if (!name) return tl::unexpected(name.error());
  t.name = *name;
  auto res = ResourcesFromJson(j.value("resources", json::array()), field + ".resources");
  if (!res) return tl::unexpected(res.error());
  t.resources = *res;
  if (!j.contains("command")) return Bad(field + ".command", "missing");
  auto cmd = CommandInfoFromJson(j["command"], field + ".command");
  if (!cmd) return tl::unexpected(cmd.error());
  t.command = *cmd;
  if (j.contains("container") && !j["container"].is_null()) {
    const auto& c = j["container"];
    const json* name_j = nullptr;
    if (c.is_object() && c.contains("mesos") && c["mesos"].is_object() && c["mesos"].contains("image") &&
        c["mesos"]["image"].is_object() && c["mesos"]["image"].contains("docker") &&
        c["mesos"]["image"]["docker"].is_object() && c["mesos"]["image"]["docker"].contains("name"))
      name_j = &c["mesos"]["image"]["docker"]["name"];
    if (!name_j || !name_j->is_string() || name_j->get<std::string>().empty())
      return Bad(field + ".container.mesos.image.docker.name", "missing");
    t.container.image = name_j->get<std::string>();
    if (c.contains("insecure_registry") && c["insecure_registry"].is_boolean())
      t.container.insecure_registry = c["insecure_registry"].get<bool>();
  }
  if (t.container.image.empty() && t.command.value.empty())
    return Bad(field + ".command.value", "missing (a task without an image needs a command)");
  if (j.contains("health_check") && !j["health_check"].is_null()) {
    auto h = HealthCheckFromJson(j["health_check"], field + ".health_check");
    if (!h) return tl::unexpected(h.error());
    if ((h->type == HealthCheck::Type::kHttp || h->type == HealthCheck::Type::kTcp) &&
        h->port_index >= t.resources.port_count())
      return Bad(field + ".health_check.port_index", "the task has no port with that index");
    t.health_check = *h;
  }
  auto labels = StrMap(j, "labels", field);
  if (!labels) return tl::unexpected(labels.error());
  t.labels = *labels;
  return t;
}

json ToJson(const TaskStatus& s) {
  json j{{"task_id", IdJson(s.task_id)},
         {"state", TaskStateName(s.state)},
         {"timestamp", s.timestamp},
         {"source", s.source}};
  if (!s.agent_id.empty()) j["agent_id"] = IdJson(s.agent_id);
  if (!s.framework_id.empty()) j["framework_id"] = IdJson(s.framework_id);
  if (!s.message.empty()) j["message"] = s.message;
  if (!s.reason.empty()) j["reason"] = s.reason;
  if (s.healthy) j["healthy"] = *s.healthy;
  if (!s.uuid.empty()) j["uuid"] = s.uuid;
  return j;
}

Result<TaskStatus> TaskStatusFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  TaskStatus s;
  auto id = IdFromJson(j, "task_id", field);
  if (!id) return tl::unexpected(id.error());
  if (id->empty()) return Bad(field + ".task_id", "missing");
  s.task_id = *id;
  auto agent = IdFromJson(j, "agent_id", field);
  if (!agent) return tl::unexpected(agent.error());
  s.agent_id = *agent;
  auto fw = IdFromJson(j, "framework_id", field);
  if (!fw) return tl::unexpected(fw.error());
  s.framework_id = *fw;
  auto state = Str(j, "state", field);
  if (!state) return tl::unexpected(state.error());
  auto st = ParseTaskState(*state);
  if (!st) return Bad(field + ".state", "unknown task state '" + *state + "'");
  s.state = *st;
  for (auto [key, dst] : {std::pair{"message", &s.message}, std::pair{"reason", &s.reason},
                          std::pair{"uuid", &s.uuid}, std::pair{"source", &s.source}}) {
    auto v = Str(j, key, field, *dst);
    if (!v) return tl::unexpected(v.error());
    *dst = *v;
  }
  if (j.contains("healthy") && j["healthy"].is_boolean()) s.healthy = j["healthy"].get<bool>();
  auto ts = Num(j, "timestamp", field, 0);
  if (!ts) return tl::unexpected(ts.error());
  s.timestamp = *ts;
  return s;
}

json ToJson(const FrameworkInfo& f) {
  json j{{"name", f.name}, {"roles", json::array({f.role})}, {"user", f.user},
         {"failover_timeout", f.failover_timeout_s}};
  if (!f.id.empty()) j["id"] = IdJson(f.id);
  if (!f.hostname.empty()) j["hostname"] = f.hostname;
  return j;
}

Result<FrameworkInfo> FrameworkInfoFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  FrameworkInfo f;
  auto id = IdFromJson(j, "id", field);
  if (!id) return tl::unexpected(id.error());
  f.id = *id;
  auto name = Str(j, "name", field);
  if (!name) return tl::unexpected(name.error());
  if (name->empty()) return Bad(field + ".name", "missing");
  f.name = *name;
  auto user = Str(j, "user", field);
  if (!user) return tl::unexpected(user.error());
  f.user = *user;
  auto host = Str(j, "hostname", field);
  if (!host) return tl::unexpected(host.error());
  f.hostname = *host;
  if (j.contains("roles")) {
    if (!j["roles"].is_array() || j["roles"].size() != 1 || !j["roles"][0].is_string())
      return Bad(field + ".roles", "must hold exactly one role name");
    f.role = j["roles"][0].get<std::string>();
  } else if (j.contains("role")) {
    auto role = Str(j, "role", field);
    if (!role) return tl::unexpected(role.error());
    f.role = *role;
  }
  if (f.role.empty()) return Bad(field + ".roles", "role must not be empty");
  auto fo = Num(j, "failover_timeout", field, f.failover_timeout_s);
  if (!fo) return tl::unexpected(fo.error());
  f.failover_timeout_s = *fo;
  return f;
}

json ToJson(const AgentInfo& a) {
  json j{{"hostname", a.hostname}, {"endpoint", a.endpoint}, {"resources", ResourcesToJson(a.resources)},
         {"attributes", AttributesToJson(a.attributes)}};
  if (!a.id.empty()) j["id"] = IdJson(a.id);
  return j;
}

Result<AgentInfo> AgentInfoFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  AgentInfo a;
  auto id = IdFromJson(j, "id", field);
  if (!id) return tl::unexpected(id.error());
  a.id = *id;
  auto host = Str(j, "hostname", field);
  if (!host) return tl::unexpected(host.error());
  if (host->empty()) return Bad(field + ".hostname", "missing");
  a.hostname = *host;
  auto ep = Str(j, "endpoint", field);
  if (!ep) return tl::unexpected(ep.error());
  a.endpoint = *ep;
  auto res = ResourcesFromJson(j.value("resources", json::array()), field + ".resources");
  if (!res) return tl::unexpected(res.error());
  a.resources = *res;
  auto attrs = AttributesFromJson(j.value("attributes", json::array()), field + ".attributes");
  if (!attrs) return tl::unexpected(attrs.error());
  a.attributes = *attrs;
  return a;
}

json ToJson(const Offer& o) {
  return json{{"id", IdJson(o.id)},
              {"framework_id", IdJson(o.framework_id)},
              {"agent_id", IdJson(o.agent_id)},
              {"hostname", o.hostname},
              {"resources", ResourcesToJson(o.resources)},
              {"attributes", AttributesToJson(o.attributes)}};
}

Result<Offer> OfferFromJson(const json& j, const std::string& field) {
  if (!j.is_object()) return Bad(field, "must be an object");
  Offer o;
  for (auto [key, dst] : {std::pair{"id", &o.id}, std::pair{"framework_id", &o.framework_id},
                          std::pair{"agent_id", &o.agent_id}}) {
    auto v = IdFromJson(j, key, field);
    if (!v) return tl::unexpected(v.error());
    *dst = *v;
  }
  auto host = Str(j, "hostname", field);
  if (!host) return tl::unexpected(host.error());
  o.hostname = *host;
  auto res = ResourcesFromJson(j.value("resources", json::array()), field + ".resources");
  if (!res) return tl::unexpected(res.error());
  o.resources = *res;
  auto attrs = AttributesFromJson(j.value("attributes", json::array()), field + ".attributes");
  if (!attrs) return tl::unexpected(attrs.error());
  o.attributes = *attrs;
  return o;
}

std::string NewId(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return prefix + "-" + buf;
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace tug::cluster
