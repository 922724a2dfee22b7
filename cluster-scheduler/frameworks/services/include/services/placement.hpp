// Placement: does an offer suit one more instance of an app? Resources (cpus, mem, disk, the number of ports) and
// Marathon constraints, evaluated against the offer's attributes (the master adds "hostname") and the attributes
// of the agents the app's other instances run on. Also the words a blocked deployment uses to say why.
//
// Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model/resources.hpp"
#include "model/types.hpp"
#include "services/app.hpp"

namespace tug::cluster::services {

// The value of a constraint field on an agent: "hostname" or an attribute; nullopt when the agent has none.
std::optional<std::string> FieldValue(const Attributes& agent, const std::string& field);

// True when every constraint of the app allows one more instance on an agent with `offer` attributes, given the
// attributes of the agents the app's instances occupy (one entry per instance, duplicates meaningful). On false,
// `failed` (if set) gets the first constraint that refused, as Constraint::ToString ("hostname:UNIQUE").
bool ConstraintsAllow(const std::vector<Constraint>& constraints, const Attributes& offer,
                      const std::vector<const Attributes*>& placed, std::string* failed = nullptr);

// What an instance lacks in `available`: nullopt when it fits. `what` names the resource ("cpus", "mem", "disk",
// "ports"), `need` and `have` its amounts.
struct Shortfall {
  std::string what;
  double need = 0;
  double have = 0;
};
std::optional<Shortfall> ResourceShortfall(const AppDefinition& app, const Resources& available);

// The resources one instance takes from `available` (which must fit: ResourceShortfall == nullopt): the app's
// scalars and its lowest free ports.
Resources TakeForInstance(const AppDefinition& app, const Resources& available);

// "mem 4096" / "cpus 0.5" / "ports 2": a resource amount as deployments print it.
std::string FormatAmount(const std::string& what, double v);

}  // namespace tug::cluster::services
