#include "core/subprocess.hpp"
#include "src/test_harness.hpp"

namespace tug::mqtt::test {
namespace {

TEST_CASE("A device can neither read nor write another device's topics") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/+/state"});
  Probe a(h, h.Opts("dev-a"));
  a.Up(h, {"tug/v1/d/dev-b/desired", "tug/v1/d/dev-a/desired"});

  REQUIRE(ctl.client->Publish("tug/v1/d/dev-b/desired", "for-b", 1, true));
  REQUIRE(ctl.client->Publish("tug/v1/d/dev-a/desired", "for-a", 1, true));
  // Ordered after the first publish from the same client: once A has its own message, B's would have come too.
  REQUIRE(h.RunUntil([&] { return a.Count("tug/v1/d/dev-a/desired") == 1; }));
  h.RunFor(200ms);
  CHECK(a.Count("tug/v1/d/dev-b/desired") == 0);

  REQUIRE(a.client->Publish("tug/v1/d/dev-b/state", "forged", 1, false));
  REQUIRE(a.client->Publish("tug/v1/d/dev-a/state", "mine", 1, false));
  REQUIRE(h.RunUntil([&] { return ctl.Count("tug/v1/d/dev-a/state") == 1; }));
  h.RunFor(200ms);
  CHECK(ctl.Count("tug/v1/d/dev-b/state") == 0);
  REQUIRE(h.RunUntil([&] { return a.pubacks.size() == 2; }));
  CHECK(a.client->pending_publishes() == 0);
}

TEST_CASE("A client without a certificate is refused by the TLS listener") {
  Harness h;
  auto o = h.Opts("dev-1");
  o.tls->cert_file.clear();
  o.tls->key_file.clear();
  Probe nocert(h, o);
  std::vector<Error> errors;
  nocert.client->on_connect_failed([&](const Error& e) { errors.push_back(e); });
  REQUIRE(nocert.client->Start());
  REQUIRE(h.RunUntil([&] { return errors.size() >= 2; }));
  CHECK(nocert.connects == 0);
  CHECK_FALSE(nocert.client->connected());
  // A certificate from another CA is refused as well.
  testsupport::TempDir other("tug-other-ca");
  broker::BrokerConfigOptions bo;
  bo.out_dir = other.path();
  bo.device_ids = {"dev-1"};
  auto foreign = broker::Generate(bo);
  REQUIRE(foreign);
  auto fo = h.Opts("dev-1", "dev-1-foreign");
  fo.tls->cert_file = foreign->devices[0].cert;
  fo.tls->key_file = foreign->devices[0].key;
  Probe alien(h, fo);
  size_t alien_failures = 0;
  alien.client->on_connect_failed([&](const Error&) { ++alien_failures; });
  REQUIRE(alien.client->Start());
  REQUIRE(h.RunUntil([&] { return alien_failures >= 2; }));
  CHECK(alien.connects == 0);
}

TEST_CASE("Two controllers on the shared subscription split the devices' reports") {
  testsupport::MosquittoServerOptions bo;
  bo.more_controller_ids = {"controller-2"};
  Harness h(bo);
  Probe c1(h, h.Opts("controller"));
  Probe c2(h, h.Opts("controller-2"));
  c1.Up(h, {"$share/ctrl/tug/v1/d/+/state"});
  c2.Up(h, {"$share/ctrl/tug/v1/d/+/state"});
  CHECK(c1.subacks.back() == std::vector<int>{1});
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h);
  constexpr int kN = 20;
  for (int i = 0; i < kN; ++i) REQUIRE(dev.client->Publish("tug/v1/d/dev-1/state", std::to_string(i), 1, false));
  REQUIRE(h.RunUntil([&] { return c1.messages.size() + c2.messages.size() == kN; }));
  h.RunFor(200ms);
  CHECK(c1.messages.size() + c2.messages.size() == kN);  // each exactly once
  CHECK(c1.messages.size() > 0);
  CHECK(c2.messages.size() > 0);
}

TEST_CASE("A device may not join the controllers' shared subscription") {
  Harness h;
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h, {"$share/ctrl/tug/v1/d/+/state"});
  // Mosquitto grants with 0x87 (not authorized) or delivers nothing: either way no report reaches the device.
  Probe other(h, h.Opts("dev-2"));
  other.Up(h);
  REQUIRE(other.client->Publish("tug/v1/d/dev-2/state", "x", 1, false));
  REQUIRE(h.RunUntil([&] { return other.pubacks.size() == 1; }));
  h.RunFor(300ms);
  CHECK(dev.messages.empty());
}

TEST_CASE("A stolen certificate cannot connect under another device's client id") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/+/state"});
  Probe victim(h, h.Opts("dev-1"));
  victim.Up(h);
  // dev-2's certificate asking for client id "dev-1": the broker replaces the id with the certificate's CN
  // (use_username_as_clientid), so the victim's connection and session are not taken over.
  Probe thief(h, h.Opts("dev-2", "dev-1"));
  thief.Up(h);
  h.RunFor(1500ms);
  CHECK(victim.disconnects == 0);
  CHECK(victim.client->connected());
  CHECK(thief.client->connected());
  // And what it publishes for dev-1 goes nowhere; its own topic still works.
  REQUIRE(thief.client->Publish("tug/v1/d/dev-1/state", "forged", 1, false));
  REQUIRE(thief.client->Publish("tug/v1/d/dev-2/state", "mine", 1, false));
  REQUIRE(h.RunUntil([&] { return ctl.Count("tug/v1/d/dev-2/state") == 1; }));
  h.RunFor(200ms);
  CHECK(ctl.Count("tug/v1/d/dev-1/state") == 0);
  CHECK(h.broker->LogTail().find("already connected, closing old connection") == std::string::npos);
}

TEST_CASE("A device may publish only the protocol's topics under its own prefix") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/#"});
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h);
  for (const char* t : {"junk", "desired", "cmd/req", "jobs/j1/other", "state/extra"})
    REQUIRE(dev.client->Publish(std::string("tug/v1/d/dev-1/") + t, "x", 1, true));
  for (const char* t : {"presence", "state", "jobs/j1/status", "jobs/j1/progress", "cmd/res"})
    REQUIRE(dev.client->Publish(std::string("tug/v1/d/dev-1/") + t, "ok", 1, false));
  REQUIRE(h.RunUntil([&] { return ctl.messages.size() >= 5; }));
  h.RunFor(300ms);
  std::vector<std::string> seen;
  for (const auto& m : ctl.messages) seen.push_back(m.topic);
  CHECK(seen == std::vector<std::string>{"tug/v1/d/dev-1/presence", "tug/v1/d/dev-1/state",
                                         "tug/v1/d/dev-1/jobs/j1/status", "tug/v1/d/dev-1/jobs/j1/progress",
                                         "tug/v1/d/dev-1/cmd/res"});
  // Nothing denied was retained either: a later subscriber sees none of it.
  ctl.client->Stop();
  Probe late(h, h.Opts("controller"));
  late.Up(h, {"tug/v1/d/#"});
  h.RunFor(500ms);
  CHECK(late.messages.empty());
}

TEST_CASE("A packet over the broker's size limit disconnects its sender and reaches nobody") {
  testsupport::MosquittoServerOptions bo;
  bo.max_packet_size = 4096;
  Harness h(bo);
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/+/state"});
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h);
  // Our client learns the limit from the v5 CONNACK and refuses to send beyond it.
  CHECK_FALSE(dev.client->Publish("tug/v1/d/dev-1/state", std::string(8192, 'x'), 1, true));
  // A hostile client that ignores it (MQTT 3.1.1 gets no limit) is disconnected by the broker.
  auto cert = h.broker->Cert("dev-2");
  REQUIRE(cert);
  auto big = core::Run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(h.broker->tls_port()), "--cafile",
                        h.broker->ca_file(), "--cert", cert->cert, "--key", cert->key, "-V", "mqttv311", "-q", "1",
                        "-r", "-t", "tug/v1/d/dev-2/state", "-m", std::string(8192, 'z')});
  REQUIRE(big);
  h.RunFor(500ms);
  CHECK(ctl.messages.empty());
  CHECK(h.broker->LogTail(64 * 1024).find("Client dev-2 disconnected due to oversize packet") != std::string::npos);
  // Within the limit it goes through.
  REQUIRE(dev.client->Publish("tug/v1/d/dev-1/state", std::string(1024, 'y'), 1, false));
  REQUIRE(h.RunUntil([&] { return ctl.messages.size() == 1; }));
  CHECK(ctl.messages[0].payload.size() == 1024);
  CHECK(ctl.messages[0].topic == "tug/v1/d/dev-1/state");
}

TEST_CASE("A revoked certificate is refused once the broker restarts; other devices are unaffected") {
  Harness h;
  Probe dev1(h, h.Opts("dev-1"));
  Probe dev2(h, h.Opts("dev-2"));
  dev1.Up(h);
  dev2.Up(h);
  REQUIRE(h.broker->Revoke("dev-1"));
  REQUIRE(h.broker->Restart());
  size_t refused = 0;
  dev1.client->on_connect_failed([&](const Error&) { ++refused; });
  const int connects_before = dev1.connects;
  REQUIRE(h.RunUntil([&] { return dev2.client->connected() && dev2.connects == 2; }, 15s));
  REQUIRE(h.RunUntil([&] { return refused >= 2; }, 15s));
  CHECK(dev1.connects == connects_before);
  CHECK_FALSE(dev1.client->connected());
}

}  // namespace
}  // namespace tug::mqtt::test
