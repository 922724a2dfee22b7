#include "controller/mqtt_bridge.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <iterator>
#include <random>

#include "fleet/topics.hpp"

namespace tug::controller {

namespace {

std::string RandomSuffix() {
  std::random_device rd;
  std::uniform_int_distribution<int> dist(0, 15);
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back("0123456789abcdef"[dist(rd)]);
  return s;
}

}  // namespace

MqttBridge::MqttBridge(boost::asio::io_context& io, MqttConfig cfg, Metrics& metrics)
    : io_(io), cfg_(std::move(cfg)), metrics_(metrics), snapshot_timer_(io), batch_timer_(io) {
  if (cfg_.client_id.empty()) {
    cfg_.client_id = "controller-" + RandomSuffix();
    random_id_ = true;
  }
}

MqttBridge::~MqttBridge() {
  // Not Stop(): the engine may already be gone; reports still queued are dropped (QoS 1 redelivery does not apply
  // to them, as to a report lost in a crash: the retained state and timeouts cover it).
  snapshot_timer_.cancel();
  batch_timer_.cancel();
  if (client_) client_->Stop();
  metrics_.mqtt_connected = false;
}

Status MqttBridge::Start() {
  if (!engine_) return MakeError(Errc::kInternal, "mqtt bridge started without an engine");
  mqtt::ClientOptions o;
  o.host = cfg_.host;
  o.port = cfg_.port;
  o.client_id = cfg_.client_id;
  if (!cfg_.ca_file.empty())
    o.tls = mqtt::TlsOptions{.ca_file = cfg_.ca_file, .cert_file = cfg_.cert_file, .key_file = cfg_.key_file};
  o.keepalive = cfg_.keepalive;
  // A stable client id gets a persistent session: the broker queues reports while we restart and hands them to the
  // same id afterwards. A random id could never resume its session, and a dead one would stay in the $share/ctrl
  // group, taking its share of every report, until it expired: so a random id gets a clean session that ends with
  // the connection (session expiry 0).
  o.clean_start = random_id_;
  o.session_expiry = random_id_ ? std::chrono::seconds(0) : cfg_.session_expiry;
  // A rollout may publish one desired state per device in a single tick; the client's default bound (1,000
  // unacknowledged) made larger rollouts lose publishes (bench/fleet_sim.cpp, 10,000 devices).
  o.max_pending_publishes = 200000;
  client_ = std::make_unique<mqtt::Client>(io_, o);
  client_->on_message([this](const mqtt::Message& m) { OnMessage(m); });
  client_->on_connect([this](bool session_present) {
    metrics_.mqtt_connected = true;
    spdlog::info("mqtt connected as {} (session {})", cfg_.client_id, session_present ? "resumed" : "new");
    for (const auto& f : fleet::ControllerSnapshotFilters()) (void)client_->Subscribe(f, 1);
    snapshot_timer_.expires_after(cfg_.snapshot_window);
    snapshot_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || !client_) return;
      for (const auto& f : fleet::ControllerSnapshotFilters()) (void)client_->Unsubscribe(f);
    });
    if (auto st = engine_->RepublishDesired(); !st) spdlog::error("re-publishing desired: {}", st.error().Message());
  });
  client_->on_disconnect([this](const Error& e) {
    metrics_.mqtt_connected = false;
    spdlog::warn("mqtt connection lost: {}", e.Message());
  });
  client_->on_connect_failed([](const Error& e) { spdlog::warn("mqtt connect failed: {}", e.Message()); });
  client_->on_subscribe([](int, const std::vector<int>& granted) {
    for (int g : granted)
      if (g >= 0x80) spdlog::error("mqtt subscription refused by the broker (reason 0x{:x}): check the ACL", g);
  });
  for (const auto& f : fleet::ControllerSharedFilters()) TUG_TRY(client_->Subscribe(f, 1));
  return client_->Start();
}

void MqttBridge::Stop() {
  snapshot_timer_.cancel();
  batch_timer_.cancel();
  timer_armed_ = false;
  while (!queue_.empty() && engine_) Flush();
  queue_bytes_ = 0;
  if (client_) client_->Stop();
  metrics_.mqtt_connected = false;
}

bool MqttBridge::connected() const { return client_ && client_->connected(); }

Status MqttBridge::Publish(const std::string& topic, const std::string& payload, bool retain) {
  if (!client_) return MakeError(Errc::kUnavailable, "mqtt not started");
  TUG_TRY(client_->Publish(topic, payload, 1, retain));
  return {};
}

void MqttBridge::OnMessage(const mqtt::Message& m) {
  ++metrics_.mqtt_messages_received;
  // Anything a device sends is hostile until the engine's parsers accepted it: only cheap checks here (topic, size,
  // queue room), so a flood costs little before it is dropped. Nothing may escape into the MQTT client's loop.
  try {
    auto t = fleet::ParseTopic(m.topic);
    if (!t) return Drop(t.error(), m.topic);
    if (m.payload.empty()) return;  // a cleared retained message
    DeviceReport r;
    switch (t->leaf) {
      case fleet::Leaf::kPresence: r.kind = DeviceReport::Kind::kPresence; break;
      case fleet::Leaf::kState: r.kind = DeviceReport::Kind::kState; break;
      case fleet::Leaf::kJobStatus: r.kind = DeviceReport::Kind::kJobStatus; break;
      default: return;  // progress and anything else: not used for outcomes
    }
    const size_t cap = fleet::MaxPayload(t->leaf, engine_ ? engine_->limits() : fleet::DefaultLimits());
    if (m.payload.size() > cap)
      return Drop(Error{fleet::make_error_code(fleet::Reason::kTooLarge),
                        std::string(fleet::ToString(t->leaf)) + ": " + std::to_string(m.payload.size()) +
                            " bytes, more than " + std::to_string(cap)},
                  m.topic);
    // Bounded: a burst beyond what the engine can apply is dropped and counted, never an unbounded heap. A dropped
    // state or presence comes back with the retained snapshot on the next connect; a job outcome with the state.
    if (queue_.size() >= cfg_.queue_max || queue_bytes_ + m.payload.size() > cfg_.queue_max_bytes) {
      ++metrics_.reports_dropped_queue_full;
      if (auto skipped = drop_log_.Admit())
        spdlog::warn("report queue full ({} reports, {} bytes): dropping {} ({} similar lines suppressed)",
                     queue_.size(), queue_bytes_, m.topic, *skipped);
      return;
    }
    r.device_id = std::move(t->device_id);
    r.job = std::move(t->job);
    r.payload = m.payload;
    queue_bytes_ += r.payload.size();
    queue_.push_back(std::move(r));
    ScheduleFlush(queue_.size() >= cfg_.batch_max);
  } catch (const std::exception& e) {
    ++metrics_.mqtt_messages_invalid;
    if (auto skipped = drop_log_.Admit())
      spdlog::error("mqtt message on {}: {} ({} similar lines suppressed)", m.topic.substr(0, 200), e.what(), *skipped);
  }
}

void MqttBridge::Drop(const Error& e, const std::string& topic) {
  ++metrics_.mqtt_messages_invalid;
  metrics_.reports_rejected.Add(e);
  if (auto skipped = drop_log_.Admit())
    spdlog::warn("dropping mqtt message on {}: {} ({} similar lines suppressed)", topic.substr(0, 200), e.Message(),
                 *skipped);
}

void MqttBridge::ScheduleFlush(bool now) {
  if (now) {
    if (post_pending_) return;
    post_pending_ = true;
    boost::asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
      if (alive.expired()) return;
      post_pending_ = false;
      Flush();
    });
    return;
  }
  if (timer_armed_) return;
  timer_armed_ = true;
  batch_timer_.expires_after(cfg_.batch_window);
  batch_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled by Stop() or the destructor: `this` may be gone
    timer_armed_ = false;
    Flush();
  });
}

void MqttBridge::Flush() {
  if (queue_.empty() || !engine_) return;
  const size_t n = std::min(queue_.size(), cfg_.batch_max);
  std::vector<DeviceReport> batch(std::make_move_iterator(queue_.begin()),
                                  std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  for (const auto& r : batch) queue_bytes_ -= std::min(queue_bytes_, r.payload.size());
  try {
    if (auto st = engine_->OnReports(batch); !st) {
      ++metrics_.mqtt_messages_invalid;
      spdlog::error("processing {} report(s): {}", batch.size(), st.error().Message());
    }
  } catch (const std::exception& e) {  // OnReports does not throw; if it ever does, lose the batch, not the process
    ++metrics_.mqtt_messages_invalid;
    spdlog::error("processing {} report(s): {}", batch.size(), e.what());
  }
  // More arrived meanwhile (or the batch was capped): they go next, after other handlers (HTTP, the tick) had a turn.
  if (!queue_.empty()) ScheduleFlush(queue_.size() >= cfg_.batch_max);
}

}  // namespace tug::controller
