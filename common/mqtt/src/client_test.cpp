#include <csignal>

#include "core/subprocess.hpp"
#include "src/test_harness.hpp"

namespace tug::mqtt::test {
namespace {

TEST_CASE("A device connects over TLS with its certificate and a QoS 1 publish reaches the controller") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/+/state"});
  CHECK(ctl.subacks.back() == std::vector<int>{1});
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h);

  auto mid = dev.client->Publish("tug/v1/d/dev-1/state", "{\"seq\":1}", 1, false);
  REQUIRE(mid);
  CHECK(*mid > 0);
  REQUIRE(h.RunUntil([&] { return ctl.Count("tug/v1/d/dev-1/state") == 1 && !dev.pubacks.empty(); }));
  CHECK(ctl.messages[0].payload == "{\"seq\":1}");
  CHECK(ctl.messages[0].qos == 1);
  CHECK_FALSE(ctl.messages[0].retain);
  CHECK(dev.pubacks[0] == std::make_pair(*mid, 0));
  CHECK(dev.client->pending_publishes() == 0);
}

TEST_CASE("A retained desired state is delivered to a device that subscribes later") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h);
  REQUIRE(ctl.client->Publish("tug/v1/d/dev-1/desired", "{\"v\":3}", 1, true));
  REQUIRE(h.RunUntil([&] { return !ctl.pubacks.empty(); }));

  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h, {"tug/v1/d/dev-1/desired"});
  REQUIRE(h.RunUntil([&] { return dev.Count("tug/v1/d/dev-1/desired") == 1; }));
  CHECK(dev.messages[0].payload == "{\"v\":3}");
  CHECK(dev.messages[0].retain);
}

TEST_CASE("The Last Will is published retained when a device's link dies without DISCONNECT") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/+/presence"});
  const std::string presence = "tug/v1/d/dev-1/presence";

  SECTION("our client's socket is shut down") {
    auto o = h.Opts("dev-1");
    o.will = Will{presence, "{\"online\":false}", 1, true};
    Probe dev(h, o);
    dev.Up(h);
    REQUIRE(dev.client->Publish(presence, "{\"online\":true}", 1, true));
    REQUIRE(h.RunUntil([&] { return ctl.Count(presence) == 1; }));
    dev.client->AbortConnection();
    REQUIRE(h.RunUntil([&] { return ctl.Count(presence) == 2; }));
    CHECK(ctl.messages.back().payload == "{\"online\":false}");
    // And the client came back by itself.
    REQUIRE(h.RunUntil([&] { return dev.connects == 2; }));
    CHECK(dev.disconnects == 1);
  }
  SECTION("a mosquitto_sub child holding the device certificate is killed with SIGKILL") {
    auto cert = h.broker->Cert("dev-1");
    REQUIRE(cert);
    auto child = core::Spawn({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(h.broker->tls_port()),
                              "--cafile", h.broker->ca_file(), "--cert", cert->cert, "--key", cert->key, "-V",
                              "mqttv5", "-i", "dev-1", "-t", "tug/v1/d/dev-1/desired", "--will-topic", presence,
                              "--will-payload", "{\"online\":false}", "--will-qos", "1", "--will-retain"},
                             "/dev/null");
    REQUIRE(child);
    // Connected once the broker has logged it (the child prints nothing until a message arrives).
    REQUIRE(h.RunUntil([&] { return h.broker->LogTail().find("as dev-1 (") != std::string::npos; }));
    child->Kill(SIGKILL);
    child->Wait(5s);
    REQUIRE(h.RunUntil([&] { return ctl.Count(presence) == 1; }));
    CHECK(ctl.messages.back().payload == "{\"online\":false}");
  }

  // The Will was retained: a controller arriving later still learns the device is offline.
  Probe late(h, h.Opts("controller", "controller-late"));
  late.Up(h, {"tug/v1/d/+/presence"});
  REQUIRE(h.RunUntil([&] { return late.Count(presence) == 1; }));
  CHECK(late.messages[0].retain);
  CHECK(late.messages[0].payload == "{\"online\":false}");
}

TEST_CASE("Response topic, correlation data, expiry and user properties round trip a request and its response") {
  Harness h;
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h, {"tug/v1/d/dev-1/cmd/res"});
  Probe dev(h, h.Opts("dev-1"));
  dev.Up(h, {"tug/v1/d/dev-1/cmd/req"});
  // The device answers each request on its response topic with the request's correlation data.
  dev.client->on_message([&](const Message& m) {
    dev.messages.push_back(m);
    PublishProperties p;
    p.correlation_data = m.correlation_data;
    auto r = dev.client->Publish(m.response_topic.value_or("missing"), "{\"ok\":true}", 1, false, p);
    CHECK(r);
  });

  const std::string corr("req-7\0\x01\xff", 8);  // binary-safe
  PublishProperties p;
  p.response_topic = "tug/v1/d/dev-1/cmd/res";
  p.correlation_data = corr;
  p.message_expiry = 30s;
  p.content_type = "application/json";
  p.user_properties = {{"cmd", "restart"}};
  REQUIRE(ctl.client->Publish("tug/v1/d/dev-1/cmd/req", "{\"cmd\":\"restart\"}", 1, false, p));

  REQUIRE(h.RunUntil([&] { return ctl.Count("tug/v1/d/dev-1/cmd/res") == 1; }));
  const Message& req = dev.messages.at(0);
  CHECK(req.response_topic == std::optional<std::string>("tug/v1/d/dev-1/cmd/res"));
  CHECK(req.correlation_data == std::optional<std::string>(corr));
  REQUIRE(req.message_expiry);
  CHECK(req.message_expiry->count() > 0);
  CHECK(req.message_expiry->count() <= 30);
  CHECK(req.content_type == std::optional<std::string>("application/json"));
  CHECK(req.user_properties == UserProperties{{"cmd", "restart"}});
  const Message& res = ctl.messages.at(0);
  CHECK(res.payload == "{\"ok\":true}");
  CHECK(res.correlation_data == std::optional<std::string>(corr));
}

TEST_CASE("After a broker restart clients reconnect by themselves, keep their sessions and queued QoS 1 flows") {
  Harness h;
  auto co = h.Opts("controller");
  co.session_expiry = 300s;
  Probe ctl(h, co);
  ctl.Up(h, {"tug/v1/d/+/state"});
  auto dopt = h.Opts("dev-1");
  dopt.session_expiry = 300s;
  Probe dev(h, dopt);
  dev.Up(h, {"tug/v1/d/dev-1/desired"});
  CHECK_FALSE(dev.last_session_present);

  h.broker->Stop();
  REQUIRE(h.RunUntil([&] { return !dev.client->connected() && !ctl.client->connected(); }));
  CHECK(dev.disconnects == 1);
  // Offline: QoS 1 is queued in the client, QoS 0 is refused.
  REQUIRE(dev.client->Publish("tug/v1/d/dev-1/state", "offline-1", 1, true));
  CHECK(dev.client->pending_publishes() == 1);
  auto q0 = dev.client->Publish("tug/v1/d/dev-1/state", "dropped", 0, false);
  REQUIRE_FALSE(q0);
  CHECK(q0.error().Is(Errc::kUnavailable));
  h.RunFor(500ms);  // a few failed attempts against the closed port

  const auto restarted = std::chrono::steady_clock::now();
  REQUIRE(h.broker->Restart());
  // Backoff is capped at 1 s here, so both are back within a few seconds.
  REQUIRE(h.RunUntil([&] { return dev.connects == 2 && ctl.connects == 2; }, 15s));
  CHECK(std::chrono::steady_clock::now() - restarted < 5s);
  CHECK(dev.last_session_present);  // persistence + session expiry kept the session (and its subscription)
  CHECK(ctl.last_session_present);
  REQUIRE(h.RunUntil([&] { return ctl.Count("tug/v1/d/dev-1/state") == 1; }));
  CHECK(ctl.messages.back().payload == "offline-1");
  REQUIRE(h.RunUntil([&] { return dev.client->pending_publishes() == 0; }));

  REQUIRE(ctl.client->Publish("tug/v1/d/dev-1/desired", "{\"v\":2}", 1, true));
  REQUIRE(h.RunUntil([&] { return dev.Count("tug/v1/d/dev-1/desired") == 1; }));
}

TEST_CASE("Subscriptions are sent again after a reconnect that finds no session") {
  Harness h;
  Probe dev(h, h.Opts("dev-1"));  // session_expiry 0: the broker forgets the session at disconnect
  dev.Up(h, {"tug/v1/d/dev-1/desired"});
  dev.client->AbortConnection();
  REQUIRE(h.RunUntil([&] { return dev.connects == 2; }));
  CHECK_FALSE(dev.last_session_present);
  Probe ctl(h, h.Opts("controller"));
  ctl.Up(h);
  // The re-subscription is in flight right after CONNACK; a retained message covers the race.
  REQUIRE(ctl.client->Publish("tug/v1/d/dev-1/desired", "{\"v\":9}", 1, true));
  REQUIRE(h.RunUntil([&] { return dev.Count("tug/v1/d/dev-1/desired") >= 1; }));
}

TEST_CASE("Unacknowledged QoS 1 publishes are bounded and an unreachable broker is retried with backoff") {
  boost::asio::io_context io;
  ClientOptions o;
  o.port = testsupport::FreeLoopbackPort();  // nothing listens there
  o.client_id = "dev-offline";
  o.reconnect_min = 50ms;
  o.reconnect_max = 200ms;
  o.max_pending_publishes = 2;
  Client c(io, o);
  int failures = 0;
  c.on_connect_failed([&](const Error& e) {
    ++failures;
    CHECK(IsRetryable(e));
  });
  REQUIRE(c.Start());
  CHECK(c.Publish("t/1", "a", 1));
  CHECK(c.Publish("t/1", "b", 1));
  auto third = c.Publish("t/1", "c", 1);
  REQUIRE_FALSE(third);
  CHECK(third.error().Is(Errc::kUnavailable));
  CHECK_FALSE(c.Publish("t/1", "d", 0));
  CHECK_FALSE(c.Publish("t/1", "e", 3));
  io.run_for(1500ms);
  CHECK_FALSE(c.connected());
  // 50, 100, 200, 200 ... ms with jitter in [d/2, d]: at least 5 attempts in 1.5 s, at most ~30.
  CHECK(failures >= 5);
  CHECK(failures <= 30);
  CHECK(c.failed_attempts() == static_cast<uint64_t>(failures));
  c.Stop();
  CHECK_FALSE(c.Start());
}

}  // namespace
}  // namespace tug::mqtt::test
