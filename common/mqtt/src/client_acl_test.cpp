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
  Harness h;
  Probe c1(h, h.Opts("controller", "ctrl-1"));
  Probe c2(h, h.Opts("controller", "ctrl-2"));
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

}  // namespace
}  // namespace tug::mqtt::test
