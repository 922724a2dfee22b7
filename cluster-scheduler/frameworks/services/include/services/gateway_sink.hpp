// The seam between the services framework and the HAProxy gateway (cluster-scheduler/gateway): the framework
// computes, for every app with a "gateway", the frontend port and the healthy instances' host:PORT0, and hands the
// whole set to a GatewaySink. The production sink drives HaproxyGateway::Apply; tests use a recording one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::cluster::services {

struct GatewayBackend {
  std::string host;  // the agent's "ip" attribute when it has one, else its hostname (the sink resolves names)
  uint32_t port = 0;
  std::string task_id;
  bool operator==(const GatewayBackend&) const = default;
};

struct GatewayService {
  std::string name;         // the app id with dots: "/group/web" -> "group.web"
  uint16_t frontend_port = 0;
  std::string mode = "http";  // "http" | "tcp"
  std::vector<GatewayBackend> backends;  // sorted by task id
  std::string health_path;  // the app's HTTP health check path when it checks PORT0 over HTTP, else ""
  bool operator==(const GatewayService&) const = default;
};

class GatewaySink {
 public:
  virtual ~GatewaySink() = default;
  // Makes the gateway serve exactly `services` (services absent from the list are removed); when it returns OK,
  // backends no longer listed receive no new requests. Blocking (it may wait for drains); called from one thread at
  // a time. An error leaves the gateway as it was or partly updated: the caller retries the whole set.
  virtual Status Apply(const std::vector<GatewayService>& services) = 0;
};

}  // namespace tug::cluster::services
