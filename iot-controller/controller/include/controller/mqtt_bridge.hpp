// MqttBridge: connects the Engine to the broker (DESIGN §5). It is the Engine's Publisher (desired, cmd/req) and
// feeds it the device reports.
//
// Subscriptions: shared ($share/ctrl/...) to tug/v1/d/+/presence, tug/v1/d/+/state and tug/v1/d/+/jobs/+/status, so
// several controllers split the load. Shared subscriptions get no retained messages, so after each connect the
// bridge also subscribes plainly to presence and state for `snapshot_window` and then unsubscribes: that replays
// the retained snapshot of the fleet; the engine ignores what it already has (state seq, idempotent reports).
// After each connect it re-publishes desired states not yet applied (Engine::RepublishDesired).
//
// Every message is checked before it is queued: its topic (fleet::ParseTopic: a device id, a known leaf) and its
// size (fleet::MaxPayload with the engine's limits); the queue is bounded (queue_max reports, queue_max_bytes).
// What fails is dropped, counted (Metrics) and logged at most a few lines a second; the payload itself is parsed
// by the engine. Nothing a device sends can throw out of the bridge.
//
// Reports are not applied one by one: they are queued and applied every `batch_window` (or as soon as `batch_max`
// are queued) with Engine::OnReports, in arrival order, one SQLite transaction per batch. Stop() applies what is
// still queued.
//
// Threading: everything on the io_context thread (tug::mqtt::Client's rule). Publish never blocks; QoS 1 messages
// published while disconnected are queued in memory by the client (bounded) and sent on reconnect.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "controller/engine.hpp"
#include "controller/metrics.hpp"
#include "fleet/log_limiter.hpp"
#include "mqtt/client.hpp"

namespace tug::controller {

struct MqttConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8883;
  std::string ca_file, cert_file, key_file;  // TLS unless ca_file is empty (plain: loopback tests only)
  // Stable ids get a persistent session (session_expiry) that a restart resumes; empty: controller-<random> with a
  // clean session that ends with the connection (it could never be resumed, and a dead one must not keep a share
  // of $share/ctrl). iot-controller's config derives a stable default (config.hpp).
  std::string client_id;
  std::chrono::seconds session_expiry{std::chrono::hours(24)};
  std::chrono::seconds keepalive{30};
  std::chrono::milliseconds snapshot_window{std::chrono::seconds(5)};
  std::chrono::milliseconds batch_window{5};  // how long a report may wait for others to share its transaction
  size_t batch_max = 2000;                     // reports per transaction at most
  // Reports waiting for the engine, at most (beyond: dropped and counted, tug_mqtt_reports_dropped_total).
  size_t queue_max = 200000;
  size_t queue_max_bytes = size_t{256} << 20;
};

class MqttBridge : public Publisher {
 public:
  MqttBridge(boost::asio::io_context& io, MqttConfig cfg, Metrics& metrics);
  ~MqttBridge() override;
  // The engine must be attached before Start; it must outlive the bridge's use (Stop before destroying it).
  void Attach(Engine* engine) { engine_ = engine; }
  // kInvalidArgument for bad TLS files; network trouble is retried by the client.
  Status Start();
  void Stop();
  bool connected() const;
  const std::string& client_id() const { return cfg_.client_id; }

  Status Publish(const std::string& topic, const std::string& payload, bool retain) override;

 private:
  void OnMessage(const mqtt::Message& m);
  void Drop(const Error& e, const std::string& topic);
  void ScheduleFlush(bool now);
  void Flush();

  boost::asio::io_context& io_;
  MqttConfig cfg_;
  Metrics& metrics_;
  Engine* engine_ = nullptr;
  std::unique_ptr<mqtt::Client> client_;
  boost::asio::steady_timer snapshot_timer_;
  boost::asio::steady_timer batch_timer_;
  std::deque<DeviceReport> queue_;
  size_t queue_bytes_ = 0;  // payload bytes in queue_
  bool random_id_ = false;
  fleet::LogLimiter drop_log_{5};
  bool timer_armed_ = false;   // batch_timer_ runs a Flush
  bool post_pending_ = false;  // a Flush is posted (the queue reached batch_max)
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted handlers check it: the bridge may be gone
};

}  // namespace tug::controller
