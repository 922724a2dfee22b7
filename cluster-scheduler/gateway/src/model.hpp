// The gateway's model of what HAProxy runs (services and their slot pools), the config text rendered from it, and
// parsers for the CLI answers the gateway reads. Private; pure (no I/O) so it is unit-tested without haproxy.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "gateway/config.hpp"
#include "gateway/haproxy.hpp"

namespace tug::cluster::gateway::detail {

struct ServicePool {
  Service spec;                              // spec.backends is not used: the slots hold the instances
  std::vector<std::optional<Backend>> slots;  // slot i is server "s<i+1>"; nullopt = free (disabled)
};

struct GatewayState {
  std::string bind_host;
  std::map<std::string, ServicePool> services;  // by name: the rendered config is deterministic
};

// Slots for a pool that must hold `instances`: max(min_slots, next power of two >= 2 x instances).
size_t PoolSize(size_t instances, size_t min_slots);
// A fresh pool for a new service with its backends in the first slots.
ServicePool NewPool(const Service& spec, size_t min_slots);
// Settings whose change needs a reload (everything but the backends).
bool SameSettings(const Service& a, const Service& b);
// The backends the pool holds, in slot order.
std::vector<Backend> Instances(const ServicePool& pool);

std::string FrontendName(const std::string& service);  // "fe_<service>"
std::string BackendName(const std::string& service);   // "be_<service>"
std::string SlotName(size_t index);                    // 0 -> "s1"
// "127.0.0.1:8080" / "[::1]:8080": the address form HAProxy's config accepts for both families.
std::string HostPort(const std::string& host, uint16_t port);

// The whole haproxy.cfg for `state`.
std::string RenderConfig(const GatewayState& state, const std::string& admin_socket, const HaproxyOptions& opts);

// One line of `show stat` (the columns the gateway uses).
struct StatRow {
  std::string proxy;   // pxname
  std::string server;  // svname ("FRONTEND"/"BACKEND" for the aggregate rows)
  std::string status;
  // check_status: "INI" before the first check has run, "L7OK"/"L4OK"/"L6OK" passed, "L4CON", "L7STS", ... failed;
  // "" for rows without checks (and on versions that lack the column).
  std::string check;
  int qcur = 0;
  int scur = 0;
  int weight = 0;
};
// `show stat` CSV; columns found by the header line, so field order changes between versions do not matter.
Result<std::vector<StatRow>> ParseShowStat(std::string_view csv);
// Master CLI `show proc`.
Result<ProcInfo> ParseShowProc(std::string_view text);
// The "Pid: N" line of `show info`.
Result<pid_t> ParseInfoPid(std::string_view text);

}  // namespace tug::cluster::gateway::detail
