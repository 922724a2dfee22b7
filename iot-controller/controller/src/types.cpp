#include "controller/types.hpp"

#include "core/clock.hpp"

namespace tug::controller {

using nlohmann::json;

Labels Device::EffectiveLabels() const {
  Labels l = reported_labels;
  for (const auto& [k, v] : operator_labels) l[k] = v;
  return l;
}

namespace {

// Validation errors carry "<field>: <why>" so the API can name the field in its 400 answer.
tl::unexpected<Error> Bad(const std::string& field, const std::string& why) {
  return MakeError(Errc::kInvalidArgument, field + ": " + why);
}

Result<std::chrono::seconds> DurationField(const json& j, const std::string& key, const std::string& field,
                                           std::chrono::seconds def) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (v.is_number_unsigned() || v.is_number_integer()) {
    if (v.get<int64_t>() < 0) return Bad(field, "must not be negative");
    return std::chrono::seconds(v.get<int64_t>());
  }
  if (!v.is_string()) return Bad(field, "must be a duration such as \"10m\"");
  auto d = core::ParseDuration(v.get<std::string>());
  if (!d) return Bad(field, d.error().context);
  return *d;
}

Result<int64_t> IntField(const json& j, const std::string& key, const std::string& field, int64_t def, int64_t min) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (!v.is_number_integer()) return Bad(field, "must be an integer");
  const int64_t n = v.get<int64_t>();
  if (n < min) return Bad(field, "must be >= " + std::to_string(min));
  return n;
}

Result<double> PercentField(const json& j, const std::string& key, const std::string& field, double def) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (!v.is_number()) return Bad(field, "must be a number");
  const double d = v.get<double>();
  if (d < 0 || d > 100) return Bad(field, "must be between 0 and 100");
  return d;
}

}  // namespace

std::string FieldOf(const Error& e) {
  const auto pos = e.context.find(": ");
  if (pos == std::string::npos) return "";
  const std::string f = e.context.substr(0, pos);
  return f.find(' ') == std::string::npos ? f : "";
}

Result<RolloutSpec> ParseRolloutSpec(const json& j) {
  if (!j.is_object()) return Bad("body", "must be a JSON object");
  RolloutSpec s;
  if (!j.contains("release")) return Bad("release", "required");
  if (!j["release"].is_number_unsigned() && !(j["release"].is_number_integer() && j["release"].get<int64_t>() > 0))
    return Bad("release", "must be a release version (positive integer)");
  s.release = j["release"].get<uint64_t>();
  if (s.release == 0) return Bad("release", "must be a release version (positive integer)");
  if (j.contains("selector")) {
    const auto& sel = j["selector"];
    if (!sel.is_object()) return Bad("selector", "must be an object");
    if (sel.contains("labels")) {
      if (!sel["labels"].is_object()) return Bad("selector.labels", "must be an object of strings");
      for (const auto& [k, v] : sel["labels"].items()) {
        if (!v.is_string()) return Bad("selector.labels." + k, "must be a string");
        s.selector_labels[k] = v.get<std::string>();
      }
    }
    if (sel.contains("operator_labels")) {
      if (!sel["operator_labels"].is_object()) return Bad("selector.operator_labels", "must be an object of strings");
      for (const auto& [k, v] : sel["operator_labels"].items()) {
        if (!v.is_string()) return Bad("selector.operator_labels." + k, "must be a string");
        s.selector_operator_labels[k] = v.get<std::string>();
      }
    }
    if (sel.contains("devices")) {
      if (!sel["devices"].is_array()) return Bad("selector.devices", "must be an array of device ids");
      for (const auto& d : sel["devices"]) {
        if (!d.is_string() || d.get<std::string>().empty())
          return Bad("selector.devices", "must be an array of device ids");
        s.selector_devices.push_back(d.get<std::string>());
      }
    }
  }
  if (!j.contains("phases")) {
    s.phases.push_back(PhaseSpec{.count = std::nullopt, .percent = 100.0, .success_threshold = 100, .soak = {}});
  } else {
    if (!j["phases"].is_array() || j["phases"].empty()) return Bad("phases", "must be a non-empty array");
    double last_percent = 0;
    int64_t last_count = 0;
    for (size_t i = 0; i < j["phases"].size(); ++i) {
      const auto& p = j["phases"][i];
      const std::string f = "phases[" + std::to_string(i) + "]";
      if (!p.is_object()) return Bad(f, "must be an object");
      PhaseSpec ph;
      if (p.contains("count") == p.contains("percent")) return Bad(f, "needs exactly one of count or percent");
      if (p.contains("count")) {
        TUG_ASSIGN_OR_RETURN(ph.count, IntField(p, "count", f + ".count", 0, 1));
        if (*ph.count < last_count) return Bad(f + ".count", "targets are cumulative and must not decrease");
        last_count = *ph.count;
      } else {
        TUG_ASSIGN_OR_RETURN(ph.percent, PercentField(p, "percent", f + ".percent", 100));
        if (*ph.percent <= 0) return Bad(f + ".percent", "must be above 0");
        if (*ph.percent < last_percent) return Bad(f + ".percent", "targets are cumulative and must not decrease");
        last_percent = *ph.percent;
      }
      TUG_ASSIGN_OR_RETURN(ph.success_threshold, PercentField(p, "success_threshold", f + ".success_threshold", 100));
      TUG_ASSIGN_OR_RETURN(ph.soak, DurationField(p, "soak", f + ".soak", std::chrono::seconds(0)));
      s.phases.push_back(ph);
    }
  }
  if (j.contains("abort")) {
    const auto& a = j["abort"];
    if (!a.is_object()) return Bad("abort", "must be an object");
    TUG_ASSIGN_OR_RETURN(s.failure_percent, PercentField(a, "failure_percent", "abort.failure_percent", 20));
    TUG_ASSIGN_OR_RETURN(s.min_devices, IntField(a, "min_devices", "abort.min_devices", 1, 1));
  }
  TUG_ASSIGN_OR_RETURN(s.device_timeout, DurationField(j, "device_timeout", "device_timeout", std::chrono::seconds(600)));
  if (s.device_timeout.count() == 0) return Bad("device_timeout", "must be above 0");
  TUG_ASSIGN_OR_RETURN(s.max_concurrency, IntField(j, "max_concurrency", "max_concurrency", 100, 1));
  TUG_ASSIGN_OR_RETURN(s.max_retries, IntField(j, "max_retries", "max_retries", 1, 0));
  if (j.contains("auto_rollback")) {
    if (!j["auto_rollback"].is_boolean()) return Bad("auto_rollback", "must be true or false");
    s.auto_rollback = j["auto_rollback"].get<bool>();
  }
  return s;
}

json RolloutSpecToJson(const RolloutSpec& s) {
  json phases = json::array();
  for (const auto& p : s.phases) {
    json o{{"success_threshold", p.success_threshold}, {"soak", std::to_string(p.soak.count()) + "s"}};
    if (p.count) o["count"] = *p.count;
    if (p.percent) o["percent"] = *p.percent;
    phases.push_back(o);
  }
  nlohmann::json selector{{"labels", s.selector_labels}, {"devices", s.selector_devices}};
  if (!s.selector_operator_labels.empty()) selector["operator_labels"] = s.selector_operator_labels;
  return {{"release", s.release},
          {"selector", std::move(selector)},
          {"phases", phases},
          {"abort", {{"failure_percent", s.failure_percent}, {"min_devices", s.min_devices}}},
          {"device_timeout", std::to_string(s.device_timeout.count()) + "s"},
          {"max_concurrency", s.max_concurrency},
          {"max_retries", s.max_retries},
          {"auto_rollback", s.auto_rollback}};
}

const char* ToString(RolloutState s) {
  switch (s) {
    case RolloutState::kRunning: return "running";
    case RolloutState::kPaused: return "paused";
    case RolloutState::kSucceeded: return "succeeded";
    case RolloutState::kAborted: return "aborted";
    case RolloutState::kCancelled: return "cancelled";
  }
  return "?";
}

const char* ToString(PhaseState s) {
  switch (s) {
    case PhaseState::kPending: return "pending";
    case PhaseState::kActive: return "active";
    case PhaseState::kSoaking: return "soaking";
    case PhaseState::kDone: return "done";
  }
  return "?";
}

const char* ToString(DeviceJobState s) {
  switch (s) {
    case DeviceJobState::kPending: return "pending";
    case DeviceJobState::kInProgress: return "in_progress";
    case DeviceJobState::kSucceeded: return "succeeded";
    case DeviceJobState::kFailed: return "failed";
    case DeviceJobState::kTimedOut: return "timed_out";
    case DeviceJobState::kUnreached: return "unreached";
    case DeviceJobState::kCancelled: return "cancelled";
    case DeviceJobState::kRolledBack: return "rolled_back";
  }
  return "?";
}

Result<RolloutState> ParseRolloutState(const std::string& s) {
  for (auto st : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kSucceeded, RolloutState::kAborted,
                  RolloutState::kCancelled})
    if (s == ToString(st)) return st;
  return MakeError(Errc::kInvalidArgument, "unknown rollout state '" + s + "'");
}

Result<DeviceJobState> ParseDeviceJobState(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(DeviceJobState::kRolledBack); ++i) {
    auto st = static_cast<DeviceJobState>(i);
    if (s == ToString(st)) return st;
  }
  return MakeError(Errc::kInvalidArgument, "unknown device job state '" + s + "'");
}

}  // namespace tug::controller
