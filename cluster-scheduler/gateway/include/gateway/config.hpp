// The gateway's desired state: which services HAProxy fronts, on which port, and which instances (backends) serve
// each one. The services framework builds a GatewayConfig from the healthy instances it knows and hands it to
// HaproxyGateway::Apply (haproxy.hpp); this header is plain data plus validation, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::cluster::gateway {

struct Backend {
  // A numeric IPv4 or IPv6 address: HAProxy's runtime API (`set server ... addr`) takes addresses, not names, so
  // the caller resolves names (node agents report addresses anyway).
  std::string host;
  uint16_t port = 0;

  friend bool operator==(const Backend&, const Backend&) = default;
  // "127.0.0.1:8080", "[::1]:8080".
  std::string ToString() const;
};

struct Service {
  // 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit. Names the HAProxy sections
  // (frontend fe_<name>, backend be_<name>) and so must stay stable for a service's lifetime.
  std::string name;
  // Port the gateway listens on (on GatewayConfig::bind_host) for this service; 1-65535, unique per config.
  uint16_t frontend_port = 0;
  // "http" (HTTP/1.1 proxying, per-request balancing, retries on another instance) or "tcp" (per connection).
  std::string mode = "http";
  // The instances; order does not matter, duplicates are an error. May be empty (the frontend answers 503 in http
  // mode, closes connections in tcp mode).
  std::vector<Backend> backends;
  // When set ("/health"), HAProxy checks each backend with GET <path> and expects 2xx/3xx; otherwise with a TCP
  // connect. Printable ASCII without spaces, starting with '/'.
  std::string health_path;
};

struct GatewayConfig {
  // Numeric address every frontend binds to.
  std::string bind_host = "127.0.0.1";
  std::vector<Service> services;
};

// kInvalidArgument naming the offending field ("services[1].frontend_port: 0 is not a port", "services[2].name:
// duplicate service name \"web\"") or OK. Apply and Start call it first; callers may call it to reject input early.
Status Validate(const GatewayConfig& config);

}  // namespace tug::cluster::gateway
