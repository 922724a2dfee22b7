// The controller's MQTT bridge against a real Mosquitto (mutual TLS, DESIGN §5 ACL) and a fake device built from
// tug::mqtt::Client: the device announces itself before the controller starts (retained snapshot path), receives
// the retained desired and answers SUCCEEDED.
#include <catch2/catch.hpp>

#include "controller/engine.hpp"
#include "controller/mqtt_bridge.hpp"
#include "controller/store.hpp"
#include "test_util.hpp"
#include "testsupport/mosquitto_server.hpp"

using namespace tug;
using namespace tug::controller;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using testutil::RunIoUntil;
bool RunUntil(boost::asio::io_context& io, const std::function<bool()>& cond, std::chrono::seconds limit = 20s) {
  return RunIoUntil(io, cond, limit);
}

}  // namespace

TEST_CASE("a fake device over a real broker is registered, receives the retained desired and succeeds") {
  testsupport::MosquittoServerOptions bo;  // fields by name: the options grow
  bo.device_ids = {"dev-1"};
  bo.controller_id = "controller";
  bo.plain_listener = false;
  auto broker = testsupport::MosquittoServer::Start(bo);
  if (!broker && broker.error().Is(Errc::kNotFound)) {
    WARN("mosquitto not installed: " << broker.error().Message());
    return;
  }
  REQUIRE(broker);
  auto& b = **broker;
  auto dev_cert = b.Cert("dev-1");
  auto ctl_cert = b.Cert("controller");
  REQUIRE(dev_cert);
  REQUIRE(ctl_cert);
  boost::asio::io_context io;

  // The device first: its presence and state are retained before the controller exists.
  mqtt::ClientOptions dopts;
  dopts.host = b.host();
  dopts.port = b.tls_port();
  dopts.client_id = "dev-1";
  dopts.tls = mqtt::TlsOptions{.ca_file = b.ca_file(), .cert_file = dev_cert->cert, .key_file = dev_cert->key};
  dopts.keepalive = 5s;
  dopts.will = mqtt::Will{.topic = "tug/v1/d/dev-1/presence", .payload = R"({"online":false})", .qos = 1, .retain = true};
  mqtt::Client dev(io, dopts);
  std::vector<json> desired;
  uint64_t seq = 1;
  dev.on_connect([&](bool) {
    (void)dev.Publish("tug/v1/d/dev-1/presence", R"({"online":true,"boot_id":"boot-1"})", 1, true);
    (void)dev.Publish("tug/v1/d/dev-1/state",
                      json{{"boot_id", "boot-1"}, {"seq", seq}, {"applied_v", 0}, {"labels", {{"site", "lab"}}},
                           {"arch", "linux/arm64/v8"}, {"agent_version", "0.1.0"}}.dump(),
                      1, true);
  });
  dev.on_message([&](const mqtt::Message& m) {
    if (m.payload.empty()) return;
    auto d = json::parse(m.payload);
    desired.push_back(d);
    const std::string job = d["job"];
    const uint64_t v = d["v"];
    const std::string status_topic = "tug/v1/d/dev-1/jobs/" + job + "/status";
    // A real agent walks the states; a duplicate of the last one must not count twice.
    (void)dev.Publish(status_topic, R"({"state":"DOWNLOADING","seq":1,"boot_id":"boot-1"})", 1, false);
    (void)dev.Publish(status_topic, R"({"state":"SUCCEEDED","seq":6,"boot_id":"boot-1"})", 1, false);
    (void)dev.Publish(status_topic, R"({"state":"SUCCEEDED","seq":6,"boot_id":"boot-1"})", 1, false);
    (void)dev.Publish("tug/v1/d/dev-1/state",
                      json{{"boot_id", "boot-1"}, {"seq", ++seq}, {"applied_v", v}, {"labels", {{"site", "lab"}}},
                           {"active", {{"version", 7}, {"digest", "sha256:x"}, {"name", "sensor 7"}}},
                           {"job", {{"id", job}, {"phase", "SUCCEEDED"}, {"seq", 6}}}}.dump(),
                      1, true);
  });
  REQUIRE(dev.Subscribe("tug/v1/d/dev-1/desired", 1));
  REQUIRE(dev.Start());
  REQUIRE(RunUntil(io, [&] { return dev.connected(); }));
  io.restart();
  io.run_for(300ms);  // let the retained publishes land

  auto store = Store::Open(":memory:");
  REQUIRE(store);
  Metrics metrics;
  MqttBridge bridge(io,
                    MqttConfig{.host = b.host(), .port = b.tls_port(), .ca_file = b.ca_file(),
                               .cert_file = ctl_cert->cert, .key_file = ctl_cert->key, .client_id = "",
                               .session_expiry = 24h, .keepalive = 5s, .snapshot_window = 2s},
                    metrics);
  Engine engine(**store, bridge, *core::SystemClock());
  bridge.Attach(&engine);
  REQUIRE(bridge.Start());

  // Registered from the retained snapshot (shared subscriptions alone would not see it).
  REQUIRE(RunUntil(io, [&] {
    auto d = (*store)->GetDevice("dev-1");
    return d && *d && (*d)->online && (*d)->reported_labels.count("site");
  }));

  controller::testutil::Signer signer;
  auto verified = crypto::VerifyRelease(signer.Sign(7), signer.root,
                                        crypto::ReleasePolicy{.now = core::SystemClock()->Now(), .ratchet = 0,
                                                              .expected_repository = ""});
  REQUIRE(verified);
  REQUIRE((*store)->PutRelease(Release{.version = 7, .name = "sensor 7", .repository = verified->release.repository,
                                       .digest = verified->release.digest, .expires_at = "2030-01-01T00:00:00Z",
                                       .envelope = verified->envelope_json, .created_at = 0}));
  auto spec = ParseRolloutSpec(json{{"release", 7}, {"selector", {{"labels", {{"site", "lab"}}}}}});
  REQUIRE(spec);
  auto id = engine.CreateRollout(*spec);
  REQUIRE(id);

  REQUIRE(RunUntil(io, [&] { return (*engine.RolloutReport(*id))["state"] == "succeeded"; }));
  REQUIRE(desired.size() == 1);
  CHECK(desired[0]["v"] == 1);
  CHECK(desired[0]["job"] == *id + ".dev-1.1");
  CHECK(desired[0]["release"]["payloadType"] == "application/vnd.tugboat.release.v1+json");
  auto rep = *engine.RolloutReport(*id);
  CHECK(rep["counts"]["succeeded"] == 1);
  CHECK(rep["devices"][0]["state"] == "succeeded");
  REQUIRE(RunUntil(io, [&] { return (*(*store)->GetDevice("dev-1"))->applied_v == 1; }));
  CHECK(metrics.mqtt_messages_received >= 4);

  // The device dies without DISCONNECT: the Will marks it offline.
  dev.AbortConnection();
  REQUIRE(RunUntil(io, [&] { return !(*(*store)->GetDevice("dev-1"))->online; }));
  dev.Stop();
  bridge.Stop();
  io.restart();
  io.run_for(200ms);
}
