// The REST API through the real HTTP server on a free loopback port.
#include <catch2/catch.hpp>

#include "core/env.hpp"
#include "http/tokens.hpp"
#include "test_util.hpp"
#include "testsupport/temp_dir.hpp"

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

TEST_CASE("named tokens: a viewer reads, an operator changes, and every change or refused attempt is audited") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root, /*shared token disabled*/ "");
  tug::testsupport::TempDir dir;
  const std::string viewer = http::NewToken(), op = http::NewToken();
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), dir.Sub("api.tokens"),
                                 http::TokenLine("dashboard", http::Scope::kViewer, viewer) +
                                     http::TokenLine("ops", http::Scope::kOperator, op)));
  auto table = http::TokenTable::Load(dir.Sub("api.tokens"));
  REQUIRE(table);
  std::shared_ptr<http::TokenTable> tokens(std::move(*table));
  c.OnIo([&] { c.api().set_tokens(tokens); });

  CHECK(Call(c.port(), "GET", "/api/v1/devices", viewer).status == 200);
  CHECK(Call(c.port(), "GET", "/api/v1/devices", "s3cret").status == 401);  // the shared token is off
  CHECK(Call(c.port(), "POST", "/api/v1/releases", viewer, signer.Sign(3)).status == 403);
  CHECK(Call(c.port(), "POST", "/api/v1/releases", "", signer.Sign(3)).status == 401);
  CHECK(Call(c.port(), "GET", "/api/v1/releases/3", op).status == 404);  // nothing was registered
  CHECK(Call(c.port(), "POST", "/api/v1/releases", op, signer.Sign(3)).status == 201);
  CHECK(Call(c.port(), "POST", "/api/v1/rollouts/r-9/pause", op).status == 404);
  CHECK(Call(c.port(), "GET", "/api/v1/audit", viewer).status == 403);  // who did what: operators

  auto audit = Call(c.port(), "GET", "/api/v1/audit", op);
  REQUIRE(audit.status == 200);
  const auto& e = audit.body["entries"];
  REQUIRE(e.size() == 4);  // newest first; the GETs are not audited
  CHECK(e[0]["principal"] == "ops");
  CHECK(e[0]["target"] == "/api/v1/rollouts/r-9/pause");
  CHECK(e[0]["status"] == 404);
  CHECK(e[1]["principal"] == "ops");
  CHECK(e[1]["method"] == "POST");
  CHECK(e[1]["status"] == 201);
  CHECK(e[2]["principal"] == "");
  CHECK(e[2]["status"] == 401);
  CHECK(e[3]["status"] == 403);
  CHECK(e[3]["detail"].get<std::string>().find("viewer") != std::string::npos);
  CHECK(e[0]["at"].get<int64_t>() >= e[3]["at"].get<int64_t>());
  auto page = Call(c.port(), "GET", "/api/v1/audit?limit=2", op);
  REQUIRE(page.body["entries"].size() == 2);
  auto next = Call(c.port(), "GET", "/api/v1/audit?limit=2&before=" + std::to_string(page.body["next_before"].get<int64_t>()), op);
  REQUIRE(next.body["entries"].size() == 2);
  CHECK(next.body["entries"][1]["status"] == 403);
  CHECK(Call(c.port(), "GET", "/api/v1/audit?limit=x", op).status == 400);
}

TEST_CASE("revoking a device: 200 with who and why, shown on the device, its reports dropped; bad ids refused") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  REQUIRE(c.OnIo([&] { return c.engine().OnState("pi-1", R"({"boot_id":"b","seq":1})"); }));
  auto r = Call(c.port(), "POST", "/api/v1/devices/pi-1/revoke", "s3cret", R"({"reason":"stolen"})");
  REQUIRE(r.status == 200);
  CHECK(r.body["revoked"]["by"] == "token");
  CHECK(r.body["revoked"]["reason"] == "stolen");
  auto d = Call(c.port(), "GET", "/api/v1/devices/pi-1", "s3cret");
  CHECK(d.body["revoked"]["reason"] == "stolen");
  REQUIRE(c.OnIo([&] { return c.engine().OnState("pi-1", R"({"boot_id":"b","seq":2,"labels":{"ring":"canary"}})"); }));
  CHECK(c.OnIo([&] { return c.engine().counters().reports_revoked; }) == 1);
  // Unknown devices can be revoked ahead of their first report; ids that could not be a device cannot.
  CHECK(Call(c.port(), "POST", "/api/v1/devices/pi-never-seen/revoke", "s3cret").status == 200);
  CHECK(Call(c.port(), "POST", "/api/v1/devices/a%2Fb/revoke", "s3cret").status == 400);
  CHECK(Call(c.port(), "GET", "/api/v1/devices/pi-1/revoke", "s3cret").status == 405);
  CHECK(Call(c.port(), "POST", "/api/v1/devices/pi-1/revoke", "s3cret", R"({"reason":7})").status == 400);
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
  CHECK(r.text.find("tug_http_connections_open ") != std::string::npos);
  CHECK(r.text.find("tug_http_refused_total{reason=\"per_peer\"} 0\n") != std::string::npos);
}

TEST_CASE("GET /rollouts/{id} pages its devices, filters them by state and answers counts only with devices=none") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  REQUIRE(Call(c.port(), "POST", "/api/v1/releases", "s3cret", signer.Sign(3)).status == 201);
  const std::vector<std::string> ids{"pi-1", "pi-2", "pi-3", "pi-4", "pi-5", "pi-6", "pi-7"};
  c.OnIo([&] {
    for (const auto& id : ids) {
      (void)c.engine().OnPresence(id, R"({"online":true})");
      (void)c.engine().OnState(id, R"({"boot_id":"b","seq":1,"labels":{"site":"berlin"}})");
    }
    return c.engine().OnPresence("pi-7", R"({"online":false})");  // unreached at its turn
  });
  REQUIRE(Call(c.port(), "POST", "/api/v1/rollouts", "s3cret",
               R"({"release":3,"max_concurrency":4,"max_retries":0,"abort":{"failure_percent":100,"min_devices":100}})")
              .status == 201);
  // pi-1..pi-4 are in progress; give them different outcomes.
  c.OnIo([&] {
    (void)c.engine().OnJobStatus("pi-1", "r-1.pi-1.1", R"({"state":"SUCCEEDED","seq":5,"boot_id":"b"})");
    (void)c.engine().OnJobStatus(
        "pi-2", "r-1.pi-2.1",
        R"({"state":"FAILED","seq":4,"boot_id":"b","error":{"code":"x","retryable":false,"message":"m"}})");
    (void)c.engine().CancelDevice("r-1", "pi-3");
    return c.engine().Tick();  // the freed slots go to pi-5, pi-6; pi-7 is offline at its turn
  });
  const auto full = Call(c.port(), "GET", "/api/v1/rollouts/r-1", "s3cret");
  REQUIRE(full.status == 200);
  REQUIRE(full.body["devices"].size() == ids.size());

  // devices=none: the same report without the device lists, with the same counts.
  auto none = Call(c.port(), "GET", "/api/v1/rollouts/r-1?devices=none", "s3cret");
  REQUIRE(none.status == 200);
  json without = full.body;
  without.erase("devices");
  without.erase("touched");
  CHECK(none.body == without);
  CHECK(none.body["counts"]["succeeded"] == 1);
  CHECK(none.body["counts"]["failed"] == 1);
  CHECK(none.body["counts"]["cancelled"] == 1);
  CHECK(none.text.size() < full.text.size());

  // limit 1 and 3 walk every device exactly once, in id order, with the same touched devices.
  for (int limit : {1, 3}) {
    json devices = json::array(), touched = json::array();
    std::string after;
    int pages = 0;
    for (;; ++pages) {
      REQUIRE(pages < 20);
      std::string target = "/api/v1/rollouts/r-1?limit=" + std::to_string(limit);
      if (!after.empty()) target += "&after=" + after;
      auto page = Call(c.port(), "GET", target, "s3cret");
      REQUIRE(page.status == 200);
      CHECK(page.body["counts"] == full.body["counts"]);
      CHECK(page.body["devices"].size() <= static_cast<size_t>(limit));
      for (auto& d : page.body["devices"]) devices.push_back(d);
      for (auto& t : page.body["touched"]) touched.push_back(t);
      if (!page.body.contains("next_after")) break;
      after = page.body["next_after"].get<std::string>();
      CHECK(after == page.body["devices"].back()["id"]);
    }
    CHECK(pages + 1 == (static_cast<int>(ids.size()) + limit - 1) / limit);
    CHECK(devices == full.body["devices"]);
    CHECK(touched == full.body["touched"]);
  }

  // A state filter lists only those states; with a limit, the cursor goes on inside the filter.
  auto failed = Call(c.port(), "GET", "/api/v1/rollouts/r-1?devices=failed,cancelled,timed_out", "s3cret");
  REQUIRE(failed.status == 200);
  REQUIRE(failed.body["devices"].size() == 2);
  CHECK(failed.body["devices"][0]["id"] == "pi-2");
  CHECK(failed.body["devices"][1]["id"] == "pi-3");
  CHECK(!failed.body.contains("next_after"));
  auto first = Call(c.port(), "GET", "/api/v1/rollouts/r-1?devices=cancelled%2Cfailed&limit=1", "s3cret");
  REQUIRE(first.body["devices"].size() == 1);
  CHECK(first.body["next_after"] == "pi-2");
  auto second = Call(c.port(), "GET", "/api/v1/rollouts/r-1?devices=cancelled,failed&limit=1&after=pi-2", "s3cret");
  REQUIRE(second.body["devices"].size() == 1);
  CHECK(second.body["devices"][0]["id"] == "pi-3");
  CHECK(!second.body.contains("next_after"));
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-1?devices=unreached", "s3cret").body["devices"][0]["id"] == "pi-7");
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-1?after=pi-6", "s3cret").body["devices"].size() == 1);

  // Bad values: 400 naming the field; an unknown rollout stays 404.
  for (const auto& [query, field] : std::vector<std::pair<std::string, std::string>>{
           {"devices=broken", "devices"},
           {"devices=failed,,timed_out", "devices"},
           {"devices=", "devices"},
           {"devices=none,failed", "devices"},
           {"devices=failed&devices=cancelled", "devices"},
           {"limit=0", "limit"},
           {"limit=10001", "limit"},
           {"limit=ten", "limit"},
           {"limit=-1", "limit"},
           {"devices=none&limit=5", "limit"},
           {"after=", "after"},
           {"devices=none&after=pi-1", "after"},
           {"page=2", "page"}}) {
    auto r = Call(c.port(), "GET", "/api/v1/rollouts/r-1?" + query, "s3cret");
    INFO(query);
    CHECK(r.status == 400);
    CHECK(r.body["field"] == field);
    CHECK(r.body["error"].get<std::string>().rfind(field + ": ", 0) == 0);
  }
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-1?limit=10000", "s3cret").status == 200);
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-9?devices=none", "s3cret").status == 404);
  CHECK(Call(c.port(), "GET", "/api/v1/rollouts/r-9?devices=failed&limit=5", "s3cret").status == 404);
}

TEST_CASE("GET /devices pages by device id with limit and after, together with its filters") {
  Signer signer;
  NullPublisher pub;
  TestController c(pub, signer.root);
  // Seven devices: berlin and paris, online and offline, some running release 3. pi-6 reports berlin but its
  // operator label says paris, and the operator's label wins.
  const std::vector<std::string> ids{"pi-1", "pi-2", "pi-3", "pi-4", "pi-5", "pi-6", "pi-7"};
  c.OnIo([&] {
    for (size_t i = 0; i < ids.size(); ++i) {
      const bool berlin = i % 3 != 1;
      const std::string active = i % 2 == 0 ? R"(,"active":{"version":3,"digest":"sha256:a","name":"n"})" : "";
      (void)c.engine().OnPresence(ids[i], i == 2 ? R"({"online":false})" : R"({"online":true})");
      (void)c.engine().OnState(ids[i], std::string(R"({"boot_id":"b","seq":1,"labels":{"site":")") +
                                           (berlin ? "berlin" : "paris") + R"(","tier":"t"})" + active + "}");
    }
    return Status{};
  });
  REQUIRE(Call(c.port(), "PUT", "/api/v1/devices/pi-6/labels", "s3cret", R"({"labels":{"site":"paris"}})").status ==
          200);

  const auto all = Call(c.port(), "GET", "/api/v1/devices", "s3cret");
  REQUIRE(all.status == 200);
  REQUIRE(all.body["devices"].size() == ids.size());
  CHECK(!all.body.contains("next_after"));
  // No query: the body the API always wrote, {"devices":[...]} with each device dumped in id order.
  CHECK(all.text == all.body.dump());

  // Pages of 1 and 3 walk every matching device exactly once, in id order, with the unpaged answer's objects.
  const std::vector<std::pair<std::string, std::vector<std::string>>> filters{
      {"", ids},
      {"label=site=berlin&", {"pi-1", "pi-3", "pi-4", "pi-7"}},
      {"label=site=berlin&online=true&", {"pi-1", "pi-4", "pi-7"}},
      {"label=site=paris&label=tier=t&", {"pi-2", "pi-5", "pi-6"}},
      {"version=3&online=true&", {"pi-1", "pi-5", "pi-7"}}};
  for (const auto& [filter, want] : filters) {
    const auto unpaged =
        Call(c.port(), "GET", "/api/v1/devices" + (filter.empty() ? "" : "?" + filter.substr(0, filter.size() - 1)),
             "s3cret");
    REQUIRE(unpaged.status == 200);
    std::vector<std::string> unpaged_ids;
    for (const auto& d : unpaged.body["devices"]) unpaged_ids.push_back(d["id"]);
    CHECK(unpaged_ids == want);
    for (int limit : {1, 3}) {
      INFO(filter << " limit " << limit);
      json devices = json::array();
      std::string after;
      int pages = 1;
      for (;; ++pages) {
        REQUIRE(pages < 20);
        std::string target = "/api/v1/devices?" + filter + "limit=" + std::to_string(limit);
        if (!after.empty()) target += "&after=" + after;
        const auto page = Call(c.port(), "GET", target, "s3cret");
        REQUIRE(page.status == 200);
        CHECK(page.body["devices"].size() <= static_cast<size_t>(limit));
        for (const auto& d : page.body["devices"]) devices.push_back(d);
        if (!page.body.contains("next_after")) break;
        CHECK(page.body["devices"].size() == static_cast<size_t>(limit));
        after = page.body["next_after"].get<std::string>();
        CHECK(after == page.body["devices"].back()["id"]);
      }
      CHECK(pages == std::max<int>(1, (static_cast<int>(want.size()) + limit - 1) / limit));
      CHECK(devices == unpaged.body["devices"]);
    }
  }
  // after alone: the rest, whether or not the cursor device exists; past the end: an empty list.
  CHECK(Call(c.port(), "GET", "/api/v1/devices?after=pi-5", "s3cret").body["devices"].size() == 2);
  CHECK(Call(c.port(), "GET", "/api/v1/devices?after=pi-45&label=site=paris", "s3cret").body["devices"][0]["id"] ==
        "pi-5");
  const auto past = Call(c.port(), "GET", "/api/v1/devices?after=pi-9&limit=2", "s3cret");
  CHECK(past.text == R"({"devices":[]})");
  CHECK(Call(c.port(), "GET", "/api/v1/devices?limit=10000", "s3cret").body["devices"].size() == ids.size());

  // Bad values: 400 naming the field, the message starting with it.
  for (const auto& [query, field] : std::vector<std::pair<std::string, std::string>>{
           {"limit=0", "limit"},
           {"limit=10001", "limit"},
           {"limit=ten", "limit"},
           {"limit=-1", "limit"},
           {"limit=", "limit"},
           {"limit=1&limit=2", "limit"},
           {"after=", "after"},
           {"after=pi-1&after=pi-2", "after"},
           {"online=maybe", "online"},
           {"version=x", "version"},
           {"label=site", "label"},
           {"page=2", "page"}}) {
    auto r = Call(c.port(), "GET", "/api/v1/devices?" + query, "s3cret");
    INFO(query);
    CHECK(r.status == 400);
    CHECK(r.body["field"] == field);
    CHECK(r.body["error"].get<std::string>().rfind(field + ": ", 0) == 0);
  }
}
