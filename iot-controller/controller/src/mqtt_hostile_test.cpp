// The controller against hostile devices over a real Mosquitto (mutual TLS, fleet ACL): retained poison messages
// (type confusion, deep nesting, oversized state) are refused and counted, also by a restarted controller that gets
// them again from the retained snapshot; a device's forged report for another device's job moves nothing.
#include <catch2/catch.hpp>

#include "controller/engine.hpp"
#include "controller/metrics.hpp"
#include "controller/mqtt_bridge.hpp"
#include "controller/store.hpp"
#include "core/env.hpp"
#include "fleet/topics.hpp"
#include "test_util.hpp"
#include "testsupport/mosquitto_server.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::controller;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

bool Until(boost::asio::io_context& io, const std::function<bool()>& cond, std::chrono::seconds limit = 20s) {
  return testutil::RunIoUntil(io, cond, limit);
}

// The controller's MQTT settings on broker `b` with the "controller" certificate.
MqttConfig ControllerMqtt(testsupport::MosquittoServer& b, const std::string& client_id,
                          std::chrono::milliseconds snapshot_window) {
  auto cert = b.Cert("controller");
  REQUIRE(cert);
  MqttConfig c;
  c.host = b.host();
  c.port = b.tls_port();
  c.ca_file = b.ca_file();
  c.cert_file = cert->cert;
  c.key_file = cert->key;
  c.client_id = client_id;
  c.keepalive = 5s;
  c.snapshot_window = snapshot_window;
  return c;
}

// A device connection (its own certificate, so the ACL applies) on the test's io_context.
struct FakeDevice {
  FakeDevice(boost::asio::io_context& io, testsupport::MosquittoServer& b, const std::string& id) : io_(io) {
    auto cert = b.Cert(id);
    REQUIRE(cert);
    mqtt::ClientOptions o;
    o.host = b.host();
    o.port = b.tls_port();
    o.client_id = id;
    o.tls = mqtt::TlsOptions{.ca_file = b.ca_file(), .cert_file = cert->cert, .key_file = cert->key};
    o.keepalive = 5s;
    client = std::make_unique<mqtt::Client>(io, o);
    client->on_publish([this](int, int) { ++acked; });
    client->on_message([this](const mqtt::Message& m) { received.push_back(m); });
    REQUIRE(client->Start());
    REQUIRE(Until(io, [this] { return client->connected(); }));
  }
  ~FakeDevice() { client->Stop(); }
  // QoS 1, waits for the broker's PUBACK (an ACL-denied publish is acknowledged too, and never delivered).
  void Publish(const std::string& topic, const std::string& payload, bool retain = false) {
    const int before = acked;
    REQUIRE(client->Publish(topic, payload, 1, retain));
    REQUIRE(Until(io_, [&] { return acked > before; }));
  }
  boost::asio::io_context& io_;
  std::unique_ptr<mqtt::Client> client;
  int acked = 0;
  std::vector<mqtt::Message> received;
};

std::string State(const std::string& boot, uint64_t seq, const std::string& extra = "") {
  return R"({"boot_id":")" + boot + R"(","seq":)" + std::to_string(seq) + extra + "}";
}

// One controller process's worth: store (on disk, so a second one is a restart), engine and bridge.
struct Controller {
  Controller(boost::asio::io_context& io, testsupport::MosquittoServer& b, const std::string& db)
      : Controller(io, ControllerMqtt(b, "controller", 3s), db) {}
  Controller(boost::asio::io_context& io, const MqttConfig& c, const std::string& db) {
    auto s = Store::Open(db);
    REQUIRE(s);
    store = std::move(*s);
    bridge = std::make_unique<MqttBridge>(io, c, metrics);
    engine = std::make_unique<Engine>(*store, *bridge, *core::SystemClock());
    bridge->Attach(engine.get());
    REQUIRE(bridge->Start());
  }
  ~Controller() { bridge->Stop(); }
  uint64_t Rejected(fleet::Reason r) const {
    return metrics.reports_rejected[r] + engine->counters().reports_rejected[r];
  }
  size_t Devices() {
    auto all = store->ListDevices();
    REQUIRE(all);
    return all->size();
  }
  Metrics metrics;
  std::unique_ptr<Store> store;
  std::unique_ptr<MqttBridge> bridge;
  std::unique_ptr<Engine> engine;
};

Result<std::unique_ptr<testsupport::MosquittoServer>> Broker() {
  testsupport::MosquittoServerOptions o;  // fields by name: the options grow
  o.controller_id = "controller";
  o.plain_listener = false;
  o.max_queued_messages = 10000;
  return testsupport::MosquittoServer::Start(o);
}

}  // namespace

TEST_CASE("retained poison reports are refused and counted, by the controller and by its restarted successor") {
  auto broker = Broker();
  REQUIRE(broker);
  auto& b = **broker;
  boost::asio::io_context io;
  {
    FakeDevice p1(io, b, "dev-p1"), p2(io, b, "dev-p2"), big(io, b, "dev-big"), ok(io, b, "dev-ok");
    p1.Publish(fleet::PresenceTopic("dev-p1"), R"({"online":"yes"})", true);             // type confusion
    p2.Publish(fleet::StateTopic("dev-p2"), std::string(60000, '['), true);              // deep nesting
    big.Publish(fleet::StateTopic("dev-big"), State("b", 1, R"(,"pad":")" + std::string(200 * 1024, 'x') + "\""),
                true);                                                                   // oversized
    ok.Publish(fleet::PresenceTopic("dev-ok"), R"({"online":true,"boot_id":"b"})", true);
    ok.Publish(fleet::StateTopic("dev-ok"), State("b", 1, R"(,"labels":{"site":"lab"})"), true);
  }
  testsupport::TempDir dir;
  for (int run = 1; run <= 2; ++run) {
    INFO("controller run " << run);
    Controller c(io, b, dir.Sub("ctrl.db"));
    // The poison comes with the retained snapshot on every start; the controller stays up and counts it.
    REQUIRE(Until(io, [&] {
      return c.Rejected(fleet::Reason::kBadType) >= 1 && c.Rejected(fleet::Reason::kTooDeep) >= 1 &&
             c.Rejected(fleet::Reason::kTooLarge) >= 1;
    }));
    REQUIRE(Until(io, [&] {
      auto d = c.store->GetDevice("dev-ok");
      return d && *d && (*d)->reported_labels.count("site");
    }));
    // Only the honest device is known; none of the poison made it into the Store.
    CHECK(c.Devices() == 1);
    auto text = RenderMetrics(*c.store, c.metrics, c.engine->counters());
    REQUIRE(text);
    CHECK(text->find("tug_devices_total 1\n") != std::string::npos);
    CHECK(text->find("tug_reports_rejected_total{reason=\"bad_type\"} ") != std::string::npos);
    CHECK(text->find("tug_reports_rejected_total{reason=\"too_deep\"} ") != std::string::npos);
  }
}

TEST_CASE("a device's forged job report for another device's job is ignored") {
  auto broker = Broker();
  REQUIRE(broker);
  auto& b = **broker;
  boost::asio::io_context io;
  testsupport::TempDir dir;
  Controller c(io, b, dir.Sub("ctrl.db"));
  FakeDevice victim(io, b, "dev-a"), forger(io, b, "dev-b");
  REQUIRE(victim.client->Subscribe(fleet::DesiredTopic("dev-a"), 1));
  for (auto* d : {&victim, &forger}) {
    const std::string id = d == &victim ? "dev-a" : "dev-b";
    d->Publish(fleet::PresenceTopic(id), R"({"online":true,"boot_id":"b"})", true);
    d->Publish(fleet::StateTopic(id), State("b", 1), true);
  }
  REQUIRE(Until(io, [&] { return c.Devices() == 2; }));

  controller::testutil::Signer signer;
  auto verified = crypto::VerifyRelease(signer.Sign(7), signer.root,
                                        crypto::ReleasePolicy{.now = core::SystemClock()->Now(), .ratchet = 0,
                                                              .expected_repository = ""});
  REQUIRE(verified);
  REQUIRE(c.store->PutRelease(Release{.version = 7, .name = "sensor 7", .repository = verified->release.repository,
                                      .digest = verified->release.digest, .expires_at = "2030-01-01T00:00:00Z",
                                      .envelope = verified->envelope_json, .created_at = 0}));
  auto spec = ParseRolloutSpec(json{{"release", 7}, {"selector", {{"devices", {"dev-a"}}}}});
  REQUIRE(spec);
  auto rid = c.engine->CreateRollout(*spec);
  REQUIRE(rid);
  REQUIRE(Until(io, [&] { return !victim.received.empty(); }));
  auto desired = fleet::ParseDesired(victim.received.back().payload);
  REQUIRE(desired);
  const std::string job = desired->job;

  // dev-b claims dev-a's job: on its own topic (the controller finds no such job for dev-b) and on dev-a's (the
  // ACL acknowledges and drops it).
  const std::string succeeded = R"({"state":"SUCCEEDED","seq":7,"boot_id":"b"})";
  forger.Publish(fleet::JobStatusTopic("dev-b", job), succeeded);
  forger.Publish(fleet::JobStatusTopic("dev-a", job), succeeded);
  forger.Publish(fleet::StateTopic("dev-b"),
                 State("b", 2, R"(,"job":{"id":")" + job + R"(","phase":"SUCCEEDED","seq":7,"error":null})"), true);
  REQUIRE(Until(io, [&] { return c.engine->counters().reports_foreign_job >= 2; }));
  io.restart();
  io.run_for(300ms);
  auto r = c.engine->RolloutReport(*rid);
  REQUIRE(r);
  CHECK((*r)["counts"]["succeeded"] == 0);
  CHECK((*r)["counts"]["in_progress"] == 1);

  // The device the job was sent to reports it: that counts.
  victim.Publish(fleet::JobStatusTopic("dev-a", job), succeeded);
  REQUIRE(Until(io, [&] { return (*c.engine->RolloutReport(*rid))["state"] == "succeeded"; }));
}

TEST_CASE("a controller restarted with a random client id gets every report, none swallowed by its predecessor's "
          "session") {
  auto broker = Broker();
  REQUIRE(broker);
  auto& b = **broker;
  boost::asio::io_context io;
  MqttConfig c = ControllerMqtt(b, "", 200ms);  // "": a random client id
  testsupport::TempDir dir;
  {
    Controller first(io, c, dir.Sub("a.db"));
    REQUIRE(Until(io, [&] { return first.bridge->connected(); }));
    io.restart();
    io.run_for(300ms);  // subscribed to $share/ctrl
  }
  Controller second(io, c, dir.Sub("b.db"));
  REQUIRE(Until(io, [&] { return second.bridge->connected(); }));
  io.restart();
  io.run_for(500ms);  // past the snapshot window: only the shared subscriptions remain
  FakeDevice dev(io, b, "dev-1");
  const Metrics& m = second.metrics;
  const uint64_t before = m.mqtt_messages_received;
  for (int i = 1; i <= 20; ++i)
    dev.Publish(fleet::JobStatusTopic("dev-1", "job-" + std::to_string(i)), R"({"state":"ACCEPTED","seq":1})");
  // With a persistent session left by the first controller, the shared group would hand it about half of these.
  REQUIRE(Until(io, [&] { return m.mqtt_messages_received - before >= 20; }, 10s));
}

TEST_CASE("the report queue is bounded: a burst beyond it is dropped and counted, the rest applied") {
  auto broker = Broker();
  REQUIRE(broker);
  auto& b = **broker;
  boost::asio::io_context io;
  MqttConfig c = ControllerMqtt(b, "controller", 200ms);
  c.batch_window = 3s;  // nothing is applied while the burst arrives
  c.queue_max = 5;
  testsupport::TempDir dir;
  Controller ctl(io, c, dir.Sub("ctrl.db"));
  const Metrics& m = ctl.metrics;
  const Engine& e = *ctl.engine;
  REQUIRE(Until(io, [&] { return ctl.bridge->connected(); }));
  io.restart();
  io.run_for(500ms);
  FakeDevice dev(io, b, "dev-1");
  for (int i = 1; i <= 20; ++i)
    dev.Publish(fleet::JobStatusTopic("dev-1", "job-" + std::to_string(i)), R"({"state":"ACCEPTED","seq":1})");
  REQUIRE(Until(io, [&] { return m.mqtt_messages_received >= 20; }));
  CHECK(m.reports_dropped_queue_full == 15);
  // The five queued ones reach the engine (unknown jobs: ignored, counted as such).
  REQUIRE(Until(io, [&] { return e.counters().reports_foreign_job == 5; }, 10s));
  auto text = RenderMetrics(*ctl.store, m, e.counters());
  REQUIRE(text);
  CHECK(text->find("tug_mqtt_reports_dropped_total{reason=\"queue_full\"} 15\n") != std::string::npos);
}

TEST_CASE("a revoked device: the controller drops its reports at once (also after a restart), the broker refuses it "
          "once restarted") {
  auto broker = Broker();
  REQUIRE(broker);
  auto& b = **broker;
  boost::asio::io_context io;
  testsupport::TempDir dir;
  {
    Controller c(io, b, dir.Sub("ctrl.db"));
    FakeDevice stolen(io, b, "dev-stolen"), honest(io, b, "dev-honest");
    stolen.Publish(fleet::StateTopic("dev-stolen"), State("b", 1, R"(,"labels":{"ring":"prod"})"));
    honest.Publish(fleet::StateTopic("dev-honest"), State("b", 1));
    REQUIRE(Until(io, [&] { return c.Devices() == 2; }));

    REQUIRE(c.engine->RevokeDevice("dev-stolen", "ops", "reported stolen"));
    // Still connected (the broker reads its CRL at start): whatever it says now is dropped and counted.
    stolen.Publish(fleet::StateTopic("dev-stolen"), State("b", 2, R"(,"labels":{"ring":"canary"})"));
    honest.Publish(fleet::StateTopic("dev-honest"), State("b", 2, R"(,"labels":{"site":"lab"})"));
    REQUIRE(Until(io, [&] {
      auto d = c.store->GetDevice("dev-honest");
      return d && *d && (*d)->reported_labels.count("site");
    }));
    REQUIRE(Until(io, [&] { return c.engine->counters().reports_revoked >= 1; }));
    auto d = c.store->GetDevice("dev-stolen");
    REQUIRE(d);
    REQUIRE(*d);
    CHECK((*d)->reported_labels.at("ring") == "prod");  // not the claim made after the revocation
    CHECK((*d)->state_seq == 1);
    CHECK_FALSE((*d)->online);
  }
  // The certificate is revoked at the broker too; a restart applies the CRL.
  REQUIRE(b.Revoke("dev-stolen"));
  REQUIRE(b.Restart());
  Controller again(io, b, dir.Sub("ctrl.db"));
  FakeDevice honest(io, b, "dev-honest");
  honest.Publish(fleet::StateTopic("dev-honest"), State("b", 3));
  REQUIRE(Until(io, [&] {  // the revocation is in the database: the restarted controller still drops its reports
    return again.engine->IsRevoked("dev-stolen");
  }));
  // The stolen certificate no longer connects.
  auto cert_dir = b.config_file().substr(0, b.config_file().rfind('/'));
  mqtt::ClientOptions o;
  o.host = b.host();
  o.port = b.tls_port();
  o.client_id = "dev-stolen";
  const std::string revoked_dir = cert_dir + "/clients/revoked";
  std::string crt, key;
  auto names = core::DefaultEnv()->ListDir(revoked_dir);
  REQUIRE(names);
  for (const auto& name : *names) {
    if (name.rfind("dev-stolen-", 0) != 0) continue;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".crt") crt = revoked_dir + "/" + name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".key") key = revoked_dir + "/" + name;
  }
  REQUIRE_FALSE(crt.empty());
  o.tls = mqtt::TlsOptions{.ca_file = b.ca_file(), .cert_file = crt, .key_file = key};
  o.reconnect_min = 100ms;
  o.reconnect_max = 500ms;
  mqtt::Client thief(io, o);
  int failures = 0;
  thief.on_connect_failed([&](const Error&) { ++failures; });
  REQUIRE(thief.Start());
  REQUIRE(Until(io, [&] { return failures >= 2; }));
  CHECK_FALSE(thief.connected());
  thief.Stop();
}
