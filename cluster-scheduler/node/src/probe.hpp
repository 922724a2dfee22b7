// Health probes: one blocking attempt each, bounded by `timeout`.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tug::cluster::node {

struct ProbeResult {
  bool ok = false;
  std::string detail;  // "HTTP 503", "connect 127.0.0.1:31000: Connection refused", "exit code 1: ..."
};

// GET http://127.0.0.1:port/path; 2xx and 3xx are healthy.
ProbeResult ProbeHttp(uint16_t port, const std::string& path, std::chrono::milliseconds timeout);
// A TCP connect to 127.0.0.1:port.
ProbeResult ProbeTcp(uint16_t port, std::chrono::milliseconds timeout);
// Runs argv (e.g. /bin/sh -c cmd, or runc exec ...) with `env` added to the node's environment; exit 0 is healthy.
ProbeResult ProbeCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         const std::string& cwd, std::chrono::milliseconds timeout);

}  // namespace tug::cluster::node
