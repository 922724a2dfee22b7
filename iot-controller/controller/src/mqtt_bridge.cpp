#include "controller/mqtt_bridge.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <iterator>
#include <random>

namespace tug::controller {

namespace {

constexpr const char* kPrefix = "tug/v1/d/";
const char* const kShared[] = {"$share/ctrl/tug/v1/d/+/presence", "$share/ctrl/tug/v1/d/+/state",
                               "$share/ctrl/tug/v1/d/+/jobs/+/status"};
const char* const kSnapshot[] = {"tug/v1/d/+/presence", "tug/v1/d/+/state"};

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
  if (cfg_.client_id.empty()) cfg_.client_id = "controller-" + RandomSuffix();
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
  // A persistent session: with a fixed --mqtt-client-id the broker queues job reports while we restart.
  o.clean_start = false;
  o.session_expiry = std::chrono::hours(24);
  // A rollout may publish one desired state per device in a single tick; the client's default bound (1,000
  // unacknowledged) made larger rollouts lose publishes (bench/fleet_sim.cpp, 10,000 devices).
  o.max_pending_publishes = 200000;
  client_ = std::make_unique<mqtt::Client>(io_, o);
  client_->on_message([this](const mqtt::Message& m) { OnMessage(m); });
  client_->on_connect([this](bool session_present) {
    metrics_.mqtt_connected = true;
    spdlog::info("mqtt connected as {} (session {})", cfg_.client_id, session_present ? "resumed" : "new");
    for (const char* f : kSnapshot) (void)client_->Subscribe(f, 1);
    snapshot_timer_.expires_after(cfg_.snapshot_window);
    snapshot_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || !client_) return;
      for (const char* f : kSnapshot) (void)client_->Unsubscribe(f);
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
  for (const char* f : kShared) TUG_TRY(client_->Subscribe(f, 1));
  return client_->Start();
}

void MqttBridge::Stop() {
  snapshot_timer_.cancel();
  batch_timer_.cancel();
  timer_armed_ = false;
  while (!queue_.empty() && engine_) Flush();
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
  // tug/v1/d/<id>/<leaf...>; device ids never contain '/', so the id is the fourth segment.
  if (m.topic.rfind(kPrefix, 0) != 0) {
    ++metrics_.mqtt_messages_invalid;
    return;
  }
  const std::string rest = m.topic.substr(std::char_traits<char>::length(kPrefix));
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0) {
    ++metrics_.mqtt_messages_invalid;
    return;
  }
  const std::string id = rest.substr(0, slash);
  const std::string leaf = rest.substr(slash + 1);
  if (m.payload.empty()) return;  // a cleared retained message
  DeviceReport r;
  r.device_id = id;
  if (leaf == "presence") {
    r.kind = DeviceReport::Kind::kPresence;
  } else if (leaf == "state") {
    r.kind = DeviceReport::Kind::kState;
  } else if (leaf.rfind("jobs/", 0) == 0 && leaf.size() > 12 && leaf.compare(leaf.size() - 7, 7, "/status") == 0) {
    r.kind = DeviceReport::Kind::kJobStatus;
    r.job = leaf.substr(5, leaf.size() - 5 - 7);
  } else {
    return;  // progress and anything else: not used for outcomes
  }
  r.payload = m.payload;
  queue_.push_back(std::move(r));
  ScheduleFlush(queue_.size() >= cfg_.batch_max);
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
  if (auto st = engine_->OnReports(batch); !st) {
    ++metrics_.mqtt_messages_invalid;
    spdlog::error("processing {} report(s): {}", batch.size(), st.error().Message());
  }
  // More arrived meanwhile (or the batch was capped): they go next, after other handlers (HTTP, the tick) had a turn.
  if (!queue_.empty()) ScheduleFlush(queue_.size() >= cfg_.batch_max);
}

}  // namespace tug::controller
