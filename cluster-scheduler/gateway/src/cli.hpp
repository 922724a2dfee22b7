// A one-shot client for HAProxy's CLI sockets (the worker's runtime API and the master CLI). Private.
#pragma once

#include <chrono>
#include <string>

#include "core/error.hpp"

namespace tug::cluster::gateway::detail {

// Connects to the unix socket, sends `command` plus a newline, half-closes (the master CLI answers only then) and
// returns everything written until the peer closes. Blocking, bounded by `timeout`. kUnavailable when the socket
// cannot be reached (missing, refused), kTimeout when the answer does not end in time, errno codes otherwise.
Result<std::string> CliCommand(const std::string& socket_path, const std::string& command,
                               std::chrono::milliseconds timeout);

}  // namespace tug::cluster::gateway::detail
