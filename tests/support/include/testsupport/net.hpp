// Small networking and timing helpers for tests that start real servers on loopback.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace tug::testsupport {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). Another process may still
// grab it before the caller binds; tests accept that small race.
uint16_t FreeLoopbackPort();

// Polls `cond` every few milliseconds until it returns true (-> true) or `timeout` passes (-> false).
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Status code of a plain HTTP/1.0 GET to 127.0.0.1:port (0 when nothing answered within `timeout`).
// Enough to probe readiness without pulling Beast into every test.
int HttpGetStatus(uint16_t port, const std::string& target,
                  std::chrono::milliseconds timeout = std::chrono::seconds(2));

}  // namespace tug::testsupport
