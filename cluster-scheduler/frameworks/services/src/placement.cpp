#include "services/placement.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>

namespace tug::cluster::services {

std::optional<std::string> FieldValue(const Attributes& agent, const std::string& field) {
  auto it = agent.find(field);
  if (it == agent.end()) return std::nullopt;
  return it->second;
}

namespace {

bool FullMatch(const std::string& pattern, const std::string& s) {
  try {
    return std::regex_match(s, std::regex(pattern, std::regex::ECMAScript));
  } catch (const std::regex_error&) {
    return false;  // validated at ParseApp; a pattern that still fails matches nothing
  }
}

bool Allows(const Constraint& c, const Attributes& offer, const std::vector<const Attributes*>& placed) {
  const auto value = FieldValue(offer, c.field);
  // How many of the app's instances sit on agents whose field has each value.
  auto counts = [&] {
    std::map<std::string, size_t> n;
    for (const auto* p : placed)
      if (auto v = FieldValue(*p, c.field)) n[*v]++;
    return n;
  };
  switch (c.op) {
    case ConstraintOp::kUnique: {
      if (!value) return false;
      auto n = counts();
      return n[*value] == 0;
    }
    case ConstraintOp::kCluster: {
      if (!value) return false;
      if (!c.value.empty()) return *value == c.value;
      // No value: wherever the first instance went.
      for (const auto* p : placed)
        if (auto v = FieldValue(*p, c.field)) return *v == *value;
      return true;
    }
    case ConstraintOp::kIs:
      return value && *value == c.value;
    case ConstraintOp::kLike:
      return value && FullMatch(c.value, *value);
    case ConstraintOp::kUnlike:
      return !value || !FullMatch(c.value, *value);
    case ConstraintOp::kMaxPer: {
      if (!value) return false;
      const size_t max = static_cast<size_t>(std::stoul(c.value));
      return counts()[*value] < max;
    }
    case ConstraintOp::kGroupBy: {
      if (!value) return false;
      auto n = counts();
      // Values we know of are those the app already occupies; while fewer than the expected number of groups are
      // occupied, an unoccupied value counts as the emptiest group.
      const size_t expected = c.value.empty() ? 0 : static_cast<size_t>(std::stoul(c.value));
      size_t min = n.empty() ? 0 : SIZE_MAX;
      for (const auto& [v, k] : n) min = std::min(min, k);
      if (n.size() < expected) min = 0;
      auto it = n.find(*value);
      const size_t here = it == n.end() ? 0 : it->second;
      return here <= min;
    }
  }
  return false;
}

}  // namespace

bool ConstraintsAllow(const std::vector<Constraint>& constraints, const Attributes& offer,
                      const std::vector<const Attributes*>& placed, std::string* failed) {
  for (const auto& c : constraints) {
    if (!Allows(c, offer, placed)) {
      if (failed) *failed = c.ToString();
      return false;
    }
  }
  return true;
}

std::optional<Shortfall> ResourceShortfall(const AppDefinition& app, const Resources& available) {
  const Resources need = app.ScalarResources();
  if (available.cpus_milli() < need.cpus_milli()) return Shortfall{"cpus", need.cpus(), available.cpus()};
  if (available.mem_milli() < need.mem_milli()) return Shortfall{"mem", need.mem(), available.mem()};
  if (available.disk_milli() < need.disk_milli()) return Shortfall{"disk", need.disk(), available.disk()};
  if (available.port_count() < app.ports.size())
    return Shortfall{"ports", static_cast<double>(app.ports.size()), static_cast<double>(available.port_count())};
  return std::nullopt;
}

Resources TakeForInstance(const AppDefinition& app, const Resources& available) {
  Resources r = app.ScalarResources();
  if (!app.ports.empty()) r += Resources::Ports(available.FirstPorts(app.ports.size()));
  return r;
}

std::string FormatAmount(const std::string& what, double v) {
  std::ostringstream s;
  s << what << " ";
  if (std::fabs(v - std::round(v)) < 1e-9)
    s << static_cast<long long>(std::llround(v));
  else
    s << v;
  return s.str();
}

}  // namespace tug::cluster::services
