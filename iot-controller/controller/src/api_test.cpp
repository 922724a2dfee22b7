// The REST API through the real HTTP server on a free loopback port.
#include <catch2/catch.hpp>

#include "test_util.hpp"

using namespace tug;
using namespace tug::controller;
using namespace tug::controller::testutil;

namespace {

class NullPublisher : public Publisher {
 public:
  Status Publish(const std::string& topic, const std::string&, bool) override {
    topics.push_back(topic);
    return {};
  }
  std::vector<std::string> topics;
};

}  // namespace

TEST_CASE("the API refuses a missing or wrong bearer token and accepts the right one") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  CHECK(Call(c.port(), "GET", "/healthz").status == 200);
  auto r = Call(c.port(), "GET", "/api/v1/devices");
  CHECK(r.status == 401);
  CHECK(r.body["error"].is_string());
  CHECK(Call(c.port(), "GET", "/api/v1/devices", "wrong").status == 401);
  r = Call(c.port(), "GET", "/api/v1/devices", "s3cret");
  CHECK(r.status == 200);
  CHECK(r.body["devices"].is_array());
  CHECK(Call(c.port(), "GET", "/api/v1/nothing", "s3cret").status == 404);
}

TEST_CASE("releases are registered only when signed by the trust root, and a version keeps its digest") {
  Signer signer, stranger;
  NullPublisher pub;
  TestController c(pub, signer.root);
  auto r = Call(c.port(), "POST", "/api/v1/releases", "s3cret", signer.Sign(3));
  REQUIRE(r.status == 201);
  CHECK(r.body["version"] == 3);
  CHECK(r.body["name"] == "sensor 3");
  CHECK(r.body["repository"] == "127.0.0.1:5000/acme/sensor");
  CHECK(r.body["digest"] == "sha256:" + std::string(64, 'a'));
  CHECK(r.body["expires_at"].is_string());
  CHECK(Call(c.port(), "POST", "/api/v1/releases", "s3cret", signer.Sign(3)).status == 200);
  r = Call(c.port(), "POST", "/api/v1/releases", "s3cret", signer.Sign(3, "sha256:" + std::string(64, 'b')));
  CHECK(r.status == 409);
  r = Call(c.port(), "POST", "/api/v1/releases", "s3cret", stranger.Sign(4));
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "signatures");
  r = Call(c.port(), "POST", "/api/v1/releases", "s3cret", "{not json");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "body");
  r = Call(c.port(), "GET", "/api/v1/releases", "s3cret");
  REQUIRE(r.status == 200);
  CHECK(r.body["releases"].size() == 1);
  r = Call(c.port(), "GET", "/api/v1/releases/3", "s3cret");
  CHECK(r.status == 200);
  CHECK(r.body["envelope"].is_object());
  CHECK(Call(c.port(), "GET", "/api/v1/releases/4", "s3cret").status == 404);
  CHECK(Call(c.port(), "GET", "/api/v1/releases/x", "s3cret").body["field"] == "version");
}

TEST_CASE("rollouts: 400 names the bad field, 201 creates, actions answer 409 for illegal changes") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  REQUIRE(Call(c.port(), "POST", "/api/v1/releases", "s3cret", signer.Sign(3)).status == 201);
  c.OnIo([&] {
    (void)c.engine().OnPresence("pi-1", R"({"online":true})");
    return c.engine().OnState("pi-1", R"({"boot_id":"b","seq":1,"labels":{"site":"berlin"}})");
  });
  auto r = Call(c.port(), "POST", "/api/v1/rollouts", "s3cret", R"({"release":"x"})");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "release");
  r = Call(c.port(), "POST", "/api/v1/rollouts", "s3cret",
           R"({"release":3,"phases":[{"count":1},{"percent":150}]})");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "phases[1].percent");
  r = Call(c.port(), "POST", "/api/v1/rollouts", "s3cret", R"({"release":3,"device_timeout":"soon"})");
  CHECK(r.body["field"] == "device_timeout");
  r = Call(c.port(), "POST", "/api/v1/rollouts", "s3cret", R"({"release":9})");
  CHECK(r.status == 400);
  CHECK(r.body["field"] == "release");
  r = Call(c.port(), "POST", "/api/v1/rollouts", "s3cret",
           R"({"release":3,"selector":{"labels":{"site":"berlin"}},"phases":[{"count":1,"success_threshold":100,"soak":"10s"},{"percent":100}],"abort":{"failure_percent":20,"min_devices":1},"device_timeout":"10m","max_concurrency":10,"max_retries":1,"auto_rollback":true})");
  REQUIRE(r.status == 201);
  CHECK(r.body["id"] == "r-1");
  CHECK(pub.topics == std::vector<std::string>{"tug/v1/d/pi-1/desired"});
  r = Call(c.port(), "GET", "/api/v1/rollouts/r-1", "s3cret");
  REQUIRE(r.status == 200);
  CHECK(r.body["state"] == "running");
  CHECK(r.body["release"]["version"] == 3);
  CHECK(r.body["phases"].size() == 2);
  CHECK(r.body["phases"][0]["counts"]["in_progress"] == 1);
  CHECK(r.body["devices"][0]["id"] == "pi-1");
  CHECK(r.body["devices"][0]["job"] == "r-1.pi-1.1");
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts", "s3cret").body["rollouts"].size() == 1);
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-9", "s3cret").status == 404);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/pause", "s3cret").status == 200);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/pause", "s3cret").status == 409);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/resume", "s3cret").status == 200);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/devices/pi-1/cancel", "s3cret").status == 200);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/devices/pi-1/cancel", "s3cret").status == 409);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/devices/pi-7/cancel", "s3cret").status == 404);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/cancel", "s3cret").status == 200);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/cancel", "s3cret").status == 409);
  r = Call(c.port(), "POST", "/api/v1/rollouts/r-1/rollback", "s3cret");
  CHECK(r.status == 200);
  CHECK(r.body["rollback_sent"] == 0);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-1/rollback", "s3cret").status == 409);
}

TEST_CASE("devices are listed with label, online and version filters and relabelled by PUT") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  c.OnIo([&] {
    (void)c.engine().OnPresence("pi/1", R"({"online":true})");
    (void)c.engine().OnState("pi/1", R"({"boot_id":"b","seq":1,"labels":{"site":"berlin"},"active":{"version":3,"digest":"sha256:a","name":"n"}})");
    (void)c.engine().OnPresence("pi-2", R"({"online":false})");
    return c.engine().OnState("pi-2", R"({"boot_id":"b","seq":1,"labels":{"site":"paris"}})");
  });
  auto r = Call(c.port(), "GET", "/api/v1/devices?label=site=berlin", "s3cret");
  REQUIRE(r.body["devices"].size() == 1);
  CHECK(r.body["devices"][0]["id"] == "pi/1");
  CHECK(Call(c.port(), "GET", "/api/v1/devices?online=false", "s3cret").body["devices"][0]["id"] == "pi-2");
  CHECK(Call(c.port(), "GET", "/api/v1/devices?version=3", "s3cret").body["devices"].size() == 1);
  CHECK(Call(c.port(), "GET", "/api/v1/devices?online=maybe", "s3cret").body["field"] == "online");
  r = Call(c.port(), "GET", "/api/v1/devices/pi%2F1", "s3cret");
  REQUIRE(r.status == 200);
  CHECK(r.body["active"]["version"] == 3);
  CHECK(r.body["online"] == true);
  CHECK(Call(c.port(), "GET", "/api/v1/devices/nope", "s3cret").status == 404);
  r = Call(c.port(), "PUT", "/api/v1/devices/pi-2/labels", "s3cret", R"({"labels":{"tier":"canary"}})");
  REQUIRE(r.status == 200);
  CHECK(r.body["labels"]["tier"] == "canary");
  CHECK(r.body["labels"]["site"] == "paris");
  CHECK(Call(c.port(), "PUT", "/api/v1/devices/pi-2/labels", "s3cret", R"({"labels":[1]})").body["field"] ==
        "labels");
  CHECK(Call(c.port(), "GET", "/api/v1/devices?label=tier=canary", "s3cret").body["devices"].size() == 1);
  r = Call(c.port(), "GET", "/metrics");
  CHECK(r.status == 200);
  CHECK(r.text.find("tug_devices_total 2") != std::string::npos);
  CHECK(r.text.find("tug_devices_online 1") != std::string::npos);
}
