// The production GatewaySink: a HaproxyGateway (cluster-scheduler/gateway) in a work dir. Built only when the
// gateway library is part of the build; otherwise StartHaproxySink answers kUnsupported.
#pragma once

#include <memory>
#include <string>

#include "core/error.hpp"
#include "services/gateway_sink.hpp"

namespace tug::cluster::services {

// Starts HAProxy in `work_dir` with every frontend bound to `bind_host` (numeric). Backend host names that are not
// numeric addresses are resolved (IPv4 first) on every Apply.
Result<std::unique_ptr<GatewaySink>> StartHaproxySink(const std::string& work_dir, const std::string& bind_host);

}  // namespace tug::cluster::services
