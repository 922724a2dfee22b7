#include "services/app.hpp"

#include <cmath>
#include <regex>
#include <set>

namespace tug::cluster::services {

using json = nlohmann::json;

namespace {

tl::unexpected<Error> Bad(const std::string& field, const std::string& what) {
  return MakeError(Errc::kInvalidArgument, field + ": " + what);
}

// Members GET puts on an app that are not part of the definition: accepted and ignored on input.
const std::set<std::string> kReadOnly = {"version", "versionInfo", "lastScalingAt", "tasks", "deployments",
                                         "tasksRunning", "tasksHealthy", "tasksStaged", "tasksUnhealthy",
                                         "deploymentId", "backoff"};
const std::set<std::string> kKnown = {"id",          "cmd",    "container",     "instances", "cpus",
                                      "mem",         "disk",   "ports",         "env",       "healthChecks",
                                      "constraints", "labels", "upgradeStrategy", "gateway"};

bool ValidSegment(const std::string& s) {
  if (s.empty() || s.front() == '-' || s.back() == '-') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

bool ValidEnvName(const std::string& s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// A number member: absent -> def; must be finite.
Result<double> Number(const json& j, const char* key, const std::string& field, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number() || !std::isfinite(j[key].get<double>())) return Bad(field, "must be a number");
  return j[key].get<double>();
}

Result<std::map<std::string, std::string>> StringMap(const json& j, const char* key) {
  std::map<std::string, std::string> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  if (!j[key].is_object()) return Bad(key, "must be an object of strings");
  for (const auto& [k, v] : j[key].items()) {
    if (!v.is_string()) return Bad(std::string(key) + "." + k, "must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<AppHealthCheck> ParseHealthCheck(const json& j, const std::string& f, size_t port_count) {
  if (!j.is_object()) return Bad(f, "must be an object");
  AppHealthCheck h;
  if (!j.contains("protocol") || !j["protocol"].is_string()) return Bad(f + ".protocol", "must be HTTP, TCP or COMMAND");
  const std::string proto = j["protocol"];
  if (proto == "HTTP" || proto == "MESOS_HTTP") {
    h.protocol = AppHealthCheck::Protocol::kHttp;
  } else if (proto == "TCP" || proto == "MESOS_TCP") {
    h.protocol = AppHealthCheck::Protocol::kTcp;
  } else if (proto == "COMMAND") {
    h.protocol = AppHealthCheck::Protocol::kCommand;
  } else {
    return Bad(f + ".protocol", "must be HTTP, TCP or COMMAND (got '" + proto + "')");
  }
  for (const auto& [k, v] : j.items()) {
    static const std::set<std::string> known = {"protocol", "path", "portIndex", "command", "gracePeriodSeconds",
                                                "intervalSeconds", "timeoutSeconds", "maxConsecutiveFailures"};
    if (!known.count(k)) return Bad(f + "." + k, "unknown member");
  }
  if (h.protocol == AppHealthCheck::Protocol::kHttp) {
    if (j.contains("path")) {
      if (!j["path"].is_string() || j["path"].get<std::string>().empty() || j["path"].get<std::string>()[0] != '/')
        return Bad(f + ".path", "must be a path starting with /");
      h.path = j["path"];
    }
  }
  if (h.protocol != AppHealthCheck::Protocol::kCommand) {
    if (j.contains("portIndex")) {
      if (!j["portIndex"].is_number_integer() || j["portIndex"].get<int64_t>() < 0)
        return Bad(f + ".portIndex", "must be an integer >= 0");
      h.port_index = static_cast<uint32_t>(j["portIndex"].get<int64_t>());
    }
    if (h.port_index >= port_count)
      return Bad(f + ".portIndex", "the app has " + std::to_string(port_count) + " port(s) (\"ports\"); index " +
                                       std::to_string(h.port_index) + " is out of range");
  } else {
    // Marathon's form is {"value": ".."}; a plain string is accepted too.
    const json* c = j.contains("command") ? &j["command"] : nullptr;
    if (c && c->is_object() && c->contains("value")) c = &(*c)["value"];
    if (!c || !c->is_string() || c->get<std::string>().empty()) return Bad(f + ".command", "a COMMAND check needs a command");
    h.command = c->get<std::string>();
  }
  struct {
    const char* key;
    double* dst;
    bool positive;
  } nums[] = {{"gracePeriodSeconds", &h.grace_period_s, false},
              {"intervalSeconds", &h.interval_s, true},
              {"timeoutSeconds", &h.timeout_s, true}};
  for (auto& n : nums) {
    auto v = Number(j, n.key, f + "." + n.key, *n.dst);
    if (!v) return tl::unexpected(v.error());
    if (*v < 0 || (n.positive && *v <= 0))
      return Bad(f + "." + n.key, n.positive ? "must be > 0" : "must be >= 0");
    *n.dst = *v;
  }
  if (j.contains("maxConsecutiveFailures")) {
    const auto& m = j["maxConsecutiveFailures"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1) return Bad(f + ".maxConsecutiveFailures", "must be an integer >= 1");
    h.max_consecutive_failures = static_cast<uint32_t>(m.get<int64_t>());
  }
  return h;
}

Result<Constraint> ParseConstraint(const json& j, const std::string& f) {
  if (!j.is_array() || j.size() < 2 || j.size() > 3) return Bad(f, "must be [field, operator] or [field, operator, value]");
  for (size_t i = 0; i < j.size(); ++i)
    if (!j[i].is_string()) return Bad(f + "[" + std::to_string(i) + "]", "must be a string");
  Constraint c;
  c.field = j[0];
  if (c.field.empty()) return Bad(f + "[0]", "the field (hostname or an attribute name) is empty");
  const std::string op = j[1];
  static const std::pair<const char*, ConstraintOp> ops[] = {
      {"UNIQUE", ConstraintOp::kUnique}, {"CLUSTER", ConstraintOp::kCluster}, {"GROUP_BY", ConstraintOp::kGroupBy},
      {"LIKE", ConstraintOp::kLike},     {"UNLIKE", ConstraintOp::kUnlike},   {"MAX_PER", ConstraintOp::kMaxPer},
      {"IS", ConstraintOp::kIs}};
  bool found = false;
  for (const auto& [name, o] : ops)
    if (op == name) {
      c.op = o;
      found = true;
    }
  if (!found) return Bad(f + "[1]", "unknown operator '" + op + "' (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS)");
  if (j.size() == 3) c.value = j[2];
  const std::string vf = f + "[2]";
  switch (c.op) {
    case ConstraintOp::kUnique:
      if (j.size() == 3) return Bad(vf, "UNIQUE takes no value");
      break;
    case ConstraintOp::kCluster:
      break;  // value optional
    case ConstraintOp::kIs:
      if (c.value.empty()) return Bad(vf, "IS needs a value");
      break;
    case ConstraintOp::kLike:
    case ConstraintOp::kUnlike: {
      if (c.value.empty()) return Bad(vf, std::string(ToString(c.op)) + " needs a regular expression");
      try {
        std::regex re(c.value, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return Bad(vf, "not a valid regular expression: " + std::string(e.what()));
      }
      break;
    }
    case ConstraintOp::kMaxPer:
    case ConstraintOp::kGroupBy: {
      if (c.value.empty()) {
        if (c.op == ConstraintOp::kMaxPer) return Bad(vf, "MAX_PER needs a count");
        break;
      }
      size_t pos = 0;
      long n = 0;
      try {
        n = std::stol(c.value, &pos);
      } catch (...) {
        pos = 0;
      }
      if (pos != c.value.size() || n < 1) return Bad(vf, "must be a whole number >= 1");
      break;
    }
  }
  return c;
}

}  // namespace

const char* ToString(AppHealthCheck::Protocol p) {
  switch (p) {
    case AppHealthCheck::Protocol::kHttp:
      return "HTTP";
    case AppHealthCheck::Protocol::kTcp:
      return "TCP";
    case AppHealthCheck::Protocol::kCommand:
      return "COMMAND";
  }
  return "?";
}

const char* ToString(ConstraintOp op) {
  switch (op) {
    case ConstraintOp::kUnique:
      return "UNIQUE";
    case ConstraintOp::kCluster:
      return "CLUSTER";
    case ConstraintOp::kGroupBy:
      return "GROUP_BY";
    case ConstraintOp::kLike:
      return "LIKE";
    case ConstraintOp::kUnlike:
      return "UNLIKE";
    case ConstraintOp::kMaxPer:
      return "MAX_PER";
    case ConstraintOp::kIs:
      return "IS";
  }
  return "?";
}

std::string Constraint::ToString() const {
  std::string s = field + ":" + services::ToString(op);
  if (!value.empty()) s += ":" + value;
  return s;
}

Resources AppDefinition::ScalarResources() const { return Resources::Make(cpus, mem, disk); }

bool AppDefinition::NeedsRestartFrom(const AppDefinition& b) const {
  return cmd != b.cmd || image != b.image || cpus != b.cpus || mem != b.mem || disk != b.disk || ports != b.ports ||
         env != b.env || health_checks != b.health_checks || labels != b.labels;
}

Result<std::string> NormalizeAppId(const std::string& raw) {
  std::string id = raw;
  if (id.empty() || id == "/") return Bad("id", "missing");
  if (id.front() != '/') id = "/" + id;
  if (id.size() > 1 && id.back() == '/') id.pop_back();
  size_t start = 1;
  while (start <= id.size()) {
    size_t slash = id.find('/', start);
    const std::string seg = id.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!ValidSegment(seg))
      return Bad("id", "'" + raw +
                           "' is not a valid app id: '/'-separated segments of lowercase letters, digits and '-' "
                           "(not starting or ending with '-')");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (id.size() > 200) return Bad("id", "longer than 200 characters");
  return id;
}

std::string DottedAppId(const std::string& app_id) {
  std::string out = app_id.substr(app_id.empty() || app_id[0] != '/' ? 0 : 1);
  for (auto& c : out)
    if (c == '/') c = '.';
  return out;
}

std::string ErrorField(const Error& e) {
  const std::string& c = e.context;
  size_t colon = c.find(": ");
  if (colon == std::string::npos || c.substr(0, colon).find(' ') != std::string::npos) return "";
  return c.substr(0, colon);
}

Result<AppDefinition> ParseApp(const json& j, const std::string& path_id) {
  if (!j.is_object()) return Bad("body", "an app definition must be a JSON object");
  for (const auto& [k, v] : j.items())
    if (!kKnown.count(k) && !kReadOnly.count(k)) return Bad(k, "unknown member");
  AppDefinition a;

  // id
  std::string raw_id = path_id;
  if (j.contains("id")) {
    if (!j["id"].is_string()) return Bad("id", "must be a string");
    raw_id = j["id"];
  }
  auto id = NormalizeAppId(raw_id);
  if (!id) return tl::unexpected(id.error());
  a.id = *id;
  if (!path_id.empty()) {
    auto pid = NormalizeAppId(path_id);
    if (pid && *pid != a.id) return Bad("id", "'" + a.id + "' does not match the URL's app id '" + *pid + "'");
  }

  // command and container
  if (j.contains("cmd") && !j["cmd"].is_null()) {
    if (!j["cmd"].is_string()) return Bad("cmd", "must be a string");
    a.cmd = j["cmd"];
  }
  if (j.contains("container") && !j["container"].is_null()) {
    const auto& c = j["container"];
    if (!c.is_object()) return Bad("container", "must be an object {\"image\": \"...\"}");
    for (const auto& [k, v] : c.items())
      if (k != "image" && k != "type") return Bad("container." + k, "unknown member");
    if (!c.contains("image") || !c["image"].is_string() || c["image"].get<std::string>().empty())
      return Bad("container.image", "missing (an OCI image reference such as 127.0.0.1:5000/acme/web:1)");
    a.image = c["image"];
  }
  if (a.cmd.empty() && a.image.empty()) return Bad("cmd", "an app needs a cmd, a container.image, or both");

  // instances and resources
  if (j.contains("instances") && !j["instances"].is_null()) {
    const auto& n = j["instances"];
    if (!n.is_number_integer() || n.get<int64_t>() < 0 || n.get<int64_t>() > 10000)
      return Bad("instances", "must be a whole number from 0 to 10000");
    a.instances = static_cast<uint32_t>(n.get<int64_t>());
  }
  auto cpus = Number(j, "cpus", "cpus", a.cpus);
  if (!cpus) return tl::unexpected(cpus.error());
  if (*cpus <= 0) return Bad("cpus", "must be > 0");
  a.cpus = *cpus;
  auto mem = Number(j, "mem", "mem", a.mem);
  if (!mem) return tl::unexpected(mem.error());
  if (*mem <= 0) return Bad("mem", "must be > 0 (MiB)");
  a.mem = *mem;
  auto disk = Number(j, "disk", "disk", a.disk);
  if (!disk) return tl::unexpected(disk.error());
  if (*disk < 0) return Bad("disk", "must be >= 0 (MiB)");
  a.disk = *disk;

  // ports
  if (j.contains("ports") && !j["ports"].is_null()) {
    if (!j["ports"].is_array()) return Bad("ports", "must be an array of 0s (one per host port to take)");
    for (size_t i = 0; i < j["ports"].size(); ++i) {
      const auto& p = j["ports"][i];
      const std::string f = "ports[" + std::to_string(i) + "]";
      if (!p.is_number_integer()) return Bad(f, "must be 0");
      if (p.get<int64_t>() != 0)
        return Bad(f, "only 0 (any free host port, given to the task as $PORT" + std::to_string(i) +
                          ") is supported; use \"gateway\" for a fixed port");
      a.ports.push_back(0);
    }
    if (a.ports.size() > 64) return Bad("ports", "at most 64 ports");
  }

  // env
  auto env = StringMap(j, "env");
  if (!env) return tl::unexpected(env.error());
  for (const auto& [k, v] : *env)
    if (!ValidEnvName(k)) return Bad("env." + k, "not a valid environment variable name");
  a.env = *env;

  // health checks
  if (j.contains("healthChecks") && !j["healthChecks"].is_null()) {
    if (!j["healthChecks"].is_array()) return Bad("healthChecks", "must be an array");
    for (size_t i = 0; i < j["healthChecks"].size(); ++i) {
      const std::string f = "healthChecks[" + std::to_string(i) + "]";
      if (i >= 1) return Bad(f, "at most one health check per app (the node runs one check per task)");
      auto h = ParseHealthCheck(j["healthChecks"][i], f, a.ports.size());
      if (!h) return tl::unexpected(h.error());
      a.health_checks.push_back(*h);
    }
  }

  // constraints
  if (j.contains("constraints") && !j["constraints"].is_null()) {
    if (!j["constraints"].is_array()) return Bad("constraints", "must be an array of [field, operator, value?]");
    for (size_t i = 0; i < j["constraints"].size(); ++i) {
      auto c = ParseConstraint(j["constraints"][i], "constraints[" + std::to_string(i) + "]");
      if (!c) return tl::unexpected(c.error());
      a.constraints.push_back(*c);
    }
  }

  // upgrade strategy
  if (j.contains("upgradeStrategy") && !j["upgradeStrategy"].is_null()) {
    const auto& u = j["upgradeStrategy"];
    if (!u.is_object()) return Bad("upgradeStrategy", "must be an object");
    for (const auto& [k, v] : u.items())
      if (k != "minimumHealthCapacity" && k != "maximumOverCapacity") return Bad("upgradeStrategy." + k, "unknown member");
    auto m = Number(u, "minimumHealthCapacity", "upgradeStrategy.minimumHealthCapacity", a.upgrade.minimum_health_capacity);
    if (!m) return tl::unexpected(m.error());
    if (*m < 0 || *m > 1) return Bad("upgradeStrategy.minimumHealthCapacity", "must be between 0 and 1");
    auto o = Number(u, "maximumOverCapacity", "upgradeStrategy.maximumOverCapacity", a.upgrade.maximum_over_capacity);
    if (!o) return tl::unexpected(o.error());
    if (*o < 0 || *o > 1) return Bad("upgradeStrategy.maximumOverCapacity", "must be between 0 and 1");
    a.upgrade.minimum_health_capacity = *m;
    a.upgrade.maximum_over_capacity = *o;
  }

  // labels (app and version are ours: every task carries them)
  auto labels = StringMap(j, "labels");
  if (!labels) return tl::unexpected(labels.error());
  for (const char* reserved : {"app", "version"})
    if (labels->count(reserved))
      return Bad(std::string("labels.") + reserved, "reserved: tasks carry the app id and version under this label");
  a.labels = *labels;

  // gateway
  if (j.contains("gateway") && !j["gateway"].is_null()) {
    const auto& g = j["gateway"];
    if (!g.is_object()) return Bad("gateway", "must be an object {\"port\": N, \"mode\": \"http\"|\"tcp\"}");
    for (const auto& [k, v] : g.items())
      if (k != "port" && k != "mode") return Bad("gateway." + k, "unknown member");
    GatewaySpec spec;
    if (!g.contains("port") || !g["port"].is_number_integer() || g["port"].get<int64_t>() < 1 ||
        g["port"].get<int64_t>() > 65535)
      return Bad("gateway.port", "must be a port number from 1 to 65535");
    spec.port = static_cast<uint16_t>(g["port"].get<int64_t>());
    if (g.contains("mode")) {
      if (!g["mode"].is_string() || (g["mode"] != "http" && g["mode"] != "tcp")) return Bad("gateway.mode", "must be http or tcp");
      spec.mode = g["mode"];
    }
    if (a.ports.empty()) return Bad("gateway", "the app needs a port (\"ports\": [0]): the gateway sends traffic to PORT0");
    a.gateway = spec;
  }
  return a;
}

json ToJson(const AppDefinition& a) {
  json hcs = json::array();
  for (const auto& h : a.health_checks) {
    json hj{{"protocol", ToString(h.protocol)},
            {"gracePeriodSeconds", h.grace_period_s},
            {"intervalSeconds", h.interval_s},
            {"timeoutSeconds", h.timeout_s},
            {"maxConsecutiveFailures", h.max_consecutive_failures}};
    if (h.protocol == AppHealthCheck::Protocol::kHttp) hj["path"] = h.path;
    if (h.protocol != AppHealthCheck::Protocol::kCommand) hj["portIndex"] = h.port_index;
    if (h.protocol == AppHealthCheck::Protocol::kCommand) hj["command"] = {{"value", h.command}};
    hcs.push_back(hj);
  }
  json cons = json::array();
  for (const auto& c : a.constraints) {
    json cj = json::array({c.field, ToString(c.op)});
    if (!c.value.empty()) cj.push_back(c.value);
    cons.push_back(cj);
  }
  json j{{"id", a.id},
         {"cmd", a.cmd.empty() ? json(nullptr) : json(a.cmd)},
         {"container", a.image.empty() ? json(nullptr) : json{{"image", a.image}}},
         {"instances", a.instances},
         {"cpus", a.cpus},
         {"mem", a.mem},
         {"disk", a.disk},
         {"ports", a.ports},
         {"env", a.env},
         {"healthChecks", hcs},
         {"constraints", cons},
         {"upgradeStrategy",
          {{"minimumHealthCapacity", a.upgrade.minimum_health_capacity},
           {"maximumOverCapacity", a.upgrade.maximum_over_capacity}}},
         {"labels", a.labels},
         {"gateway", a.gateway ? json{{"port", a.gateway->port}, {"mode", a.gateway->mode}} : json(nullptr)}};
  if (j["env"].is_null()) j["env"] = json::object();
  if (j["labels"].is_null()) j["labels"] = json::object();
  if (j["ports"].is_null()) j["ports"] = json::array();
  return j;
}

}  // namespace tug::cluster::services
