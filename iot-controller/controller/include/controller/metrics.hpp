// Prometheus text exposition for GET /metrics. Counters live in Metrics (bumped on the io thread); gauges are read
// from the Store at scrape time, so they are right after a restart.
#pragma once

#include <cstdint>
#include <string>

#include "controller/engine.hpp"
#include "controller/store.hpp"
#include "http/server.hpp"
#include "fleet/messages.hpp"

namespace tug::controller {

struct Metrics {
  uint64_t mqtt_messages_received = 0;
  uint64_t mqtt_messages_invalid = 0;  // unknown topic shape, oversized payload or engine error
  fleet::ReasonCounts reports_rejected;  // dropped by the MQTT bridge before the engine (bad_topic, too_large)
  uint64_t reports_dropped_queue_full = 0;
  uint64_t http_requests = 0;
  bool mqtt_connected = false;
  // The HTTP server's refusals (connection caps, limits, timeouts, TLS, Host/Origin); set once it runs.
  const http::ServerStats* http_server = nullptr;
};

// Blocks on Store reads. kIo if the store fails.
Result<std::string> RenderMetrics(Store& store, const Metrics& m, const EngineCounters& c);

}  // namespace tug::controller
