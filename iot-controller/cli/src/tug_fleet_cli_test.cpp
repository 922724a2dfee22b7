// The fleet commands against a FakeHttpServer standing in for the controller: what requests tug sends (method,
// path, query, bearer token, bodies) and how it renders answers, API errors and rollout progress.
#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cli/tug.hpp"
#include "testsupport/fake_http_server.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using nlohmann::json;
using testsupport::FakeHttpServer;
using testsupport::FakeRequest;
using testsupport::FakeResponse;

namespace {

// Phase targets are cumulative, as the controller reports them: Phase(1, 5, ...) after Phase(0, 1, ...) has 4
// devices of its own.

// 2026-11-22T10:00:00Z: every test's "now", so "12s ago" is stable.
core::TimePoint Now() { return *core::ParseRfc3339("2026-11-22T10:00:00Z"); }

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

struct Runner {
  core::FakeClock clock{Now()};
  std::map<std::string, std::string> env;
  bool tty = false;
  int sleeps = 0;

  Outcome operator()(std::vector<std::string> args, const std::string& stdin_text = "") {
    std::ostringstream out, err;
    std::istringstream in(stdin_text);
    cli::Io io{out, err, in, clock};
    io.getenv = [this](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    };
    io.tty = tty;
    // Polls "sleep" by moving the fake clock, so --timeout is exercised without waiting.
    io.sleep = [this](std::chrono::milliseconds d) {
      ++sleeps;
      clock.Advance(std::chrono::duration_cast<std::chrono::seconds>(d));
    };
    const int code = cli::Run(args, io);
    return {code, out.str(), err.str()};
  }
};

FakeResponse Json(int status, const json& body) { return {status, {{"Content-Type", "application/json"}}, body.dump()}; }

std::string Url(const FakeHttpServer& s) { return "http://" + s.host_port(); }

json Device(const std::string& id, bool online, const std::string& last_seen, json active, json labels) {
  return {{"id", id},         {"labels", labels},     {"online", online}, {"last_seen", last_seen},
          {"active", active}, {"previous", nullptr},  {"job", nullptr},   {"arch", "arm64"},
          {"agent_version", "0.1.0"}};
}

json Phase(int index, int target, const std::string& state, int ok, int failed, int unreached, int pending = 0,
           int in_progress = 0) {
  return {{"index", index},
          {"target", target},
          {"state", state},
          {"counts",
           {{"pending", pending}, {"in_progress", in_progress}, {"succeeded", ok}, {"failed", failed},
            {"unreached", unreached}}}};
}

json Rollout(const std::string& state, json phases, json devices = json::array(), json abort_reason = nullptr) {
  return {{"id", "r-1"},
          {"state", state},
          {"release", {{"version", 42}, {"name", "sensor 2.0.1"}}},
          {"created_at", "2026-11-22T09:55:00Z"},
          {"phases", phases},
          {"counts", {{"pending", 0}, {"in_progress", 0}, {"succeeded", 1}, {"failed", 0}, {"unreached", 0}}},
          {"devices", devices},
          {"abort_reason", abort_reason}};
}

}  // namespace

TEST_CASE("devices list sends filters and the bearer token and prints an aligned table") {
  FakeHttpServer server([](const FakeRequest&) {
    return Json(200, {{"devices",
                       {Device("pi-0001", true, "2026-11-22T09:59:48Z", {{"version", 41}, {"digest", "sha256:aa"}},
                               {{"site", "berlin"}, {"tier", "canary"}}),
                        [] {
                          json d = Device("pi-0002-long", false, "2026-11-22T07:00:00Z", nullptr, json::object());
                          d["job"] = {{"id", ""}, {"phase", ""}};
                          return d;
                        }()}}});
  });
  Runner tug;
  auto r = tug({"devices", "list", "--controller", Url(server), "--token", "s3cret", "--label", "site=berlin",
                "--label", "tier=canary", "--online", "--version", "3"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto reqs = server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "GET");
  CHECK(reqs[0].target == "/api/v1/devices?label=site=berlin&label=tier=canary&online=true&version=3");
  CHECK(reqs[0].Header("authorization") == "Bearer s3cret");
  CHECK(r.out ==
        "ID            ONLINE  LAST SEEN  VERSION  JOB  ARCH   LABELS\n"
        "pi-0001       yes     12s ago    41       -    arm64  site=berlin,tier=canary\n"
        "pi-0002-long  no      3h ago     -        -    arm64  -\n");
}

TEST_CASE("devices list passes --limit and --after with its filters and prints the next page's command") {
  FakeHttpServer server([](const FakeRequest& req) {
    json page = {{"devices", {Device("pi/1", true, "2026-11-22T09:59:48Z", nullptr, {{"site", "new york"}})}}};
    // A page of one with more after it, unless asked for the one after pi/1 (the last, empty page).
    if (req.target.find("after=pi") != std::string::npos) page["devices"] = json::array();
    else page["next_after"] = req.target.find("version=3") != std::string::npos ? "pi/1" : "it's 2";
    return Json(200, page);
  });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server)}};
  auto first = tug({"devices", "list", "--label", "site=new york", "--online", "--version", "3", "--limit", "1"});
  INFO(first.err);
  REQUIRE(first.code == 0);
  CHECK(first.out ==
        "ID    ONLINE  LAST SEEN  VERSION  JOB  ARCH   LABELS\n"
        "pi/1  yes     12s ago    -        -    arm64  site=new york\n"
        "\n"
        "more devices: tug devices list --label 'site=new york' --online --version 3 --limit 1 --after pi/1\n");
  auto last = tug({"devices", "list", "--offline", "--limit", "2", "--after", "pi/1"});
  REQUIRE(last.code == 0);
  CHECK(last.out.find("(no devices match)") != std::string::npos);
  CHECK(last.out.find("more devices") == std::string::npos);
  // --json passes the page through, next_after included.
  auto raw = tug({"devices", "list", "--limit", "1", "--json"});
  REQUIRE(raw.code == 0);
  CHECK(json::parse(raw.out)["next_after"] == "it's 2");
  // An id the shell would split or unquote is quoted so the printed command can be pasted.
  auto quoted = tug({"devices", "list", "--limit", "1", "--after", "it's 1"});
  REQUIRE(quoted.code == 0);
  const std::string hint = "\nmore devices: tug devices list --limit 1 --after 'it'\\''s 2'\n";
  REQUIRE(quoted.out.size() > hint.size());
  CHECK(quoted.out.substr(quoted.out.size() - hint.size()) == hint);
  CHECK(tug({"devices", "list", "--limit", "0"}).code == 2);  // usage errors send nothing
  CHECK(tug({"devices", "list", "--limit", "10001"}).code == 2);
  std::vector<std::string> targets;
  for (const auto& req : server.requests()) targets.push_back(req.target);
  CHECK(targets == std::vector<std::string>{
                       "/api/v1/devices?label=site=new%20york&online=true&version=3&limit=1",
                       "/api/v1/devices?online=false&limit=2&after=pi/1",
                       "/api/v1/devices?limit=1",
                       "/api/v1/devices?limit=1&after=it%27s%201"});
  auto help = tug({"devices", "list", "--help"});
  CHECK(help.out.find("--limit") != std::string::npos);
  CHECK(help.out.find("tug devices list --label site=berlin --limit 500 --after pi-0500") != std::string::npos);
}

TEST_CASE("Controller and token come from the environment, or the token from a file") {
  FakeHttpServer server([](const FakeRequest&) { return Json(200, {{"devices", json::array()}}); });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server) + "/"}, {"TUG_TOKEN", "from-env"}};
  auto r = tug({"devices", "list", "--offline"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("(no devices match)") != std::string::npos);

  testsupport::TempDir dir;
  std::ofstream(dir.Sub("token")) << "from-file\n";
  REQUIRE(tug({"--token-file", dir.Sub("token"), "devices", "list"}).code == 0);
  auto reqs = server.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].target == "/api/v1/devices?online=false");
  CHECK(reqs[0].Header("authorization") == "Bearer from-env");
  CHECK(reqs[1].Header("authorization") == "Bearer from-file");

  CHECK(tug({"devices", "list", "--token", "a", "--token-file", dir.Sub("token")}).code == 2);
  CHECK(tug({"devices", "list", "--online", "--offline"}).code == 2);
}

TEST_CASE("API errors exit 1 with the controller's message or the HTTP status") {
  std::atomic<int> status{401};
  std::atomic<bool> with_body{true};
  FakeHttpServer server([&](const FakeRequest&) {
    if (!with_body) return FakeResponse{status, {}, ""};
    return Json(status, {{"error", "invalid bearer token"}});
  });
  Runner tug;
  auto r = tug({"devices", "get", "pi-1", "--controller", Url(server)});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  CHECK(r.err == "tug: invalid bearer token: HTTP 401 Unauthorized\n");

  status = 404;
  with_body = false;
  r = tug({"releases", "get", "9", "--controller", Url(server)});
  CHECK(r.code == 1);
  CHECK(r.err == "tug: HTTP 404 Not Found\n");

  status = 409;
  with_body = true;
  r = tug({"rollout", "resume", "r-1", "--controller", Url(server)});
  CHECK(r.code == 1);
  CHECK(r.err == "tug: invalid bearer token: HTTP 409 Conflict\n");
}

TEST_CASE("A 400 names the field the controller rejected") {
  FakeHttpServer server([](const FakeRequest&) {
    return Json(400, {{"error", "percent must be above the previous phase"}, {"field", "phases[1].percent"}});
  });
  Runner tug;
  auto r = tug({"rollout", "create", "--controller", Url(server), "--release", "42", "--all", "--phase", "50%",
                "--phase", "10%"});
  CHECK(r.code == 1);
  CHECK(r.err ==
        "tug: percent must be above the previous phase (field phases[1].percent): HTTP 400 Bad Request\n");
}

TEST_CASE("An unreachable controller is a plain exit 1") {
  uint16_t port = 0;
  {
    FakeHttpServer gone([](const FakeRequest&) { return FakeResponse{}; });
    port = gone.port();
  }
  Runner tug;
  auto r = tug({"rollout", "list", "--controller", "http://127.0.0.1:" + std::to_string(port)});
  CHECK(r.code == 1);
  CHECK(r.err.find("cannot connect") != std::string::npos);
  CHECK(tug({"rollout", "list", "--controller", "ftp://x"}).code == 1);
}

TEST_CASE("--json passes the controller's JSON through untouched") {
  const std::string body = R"({"releases":[{"version":42,"name":"sensor 2.0.1","digest":"sha256:ab"}]})";
  FakeHttpServer server([&](const FakeRequest&) { return FakeResponse{200, {}, body}; });
  Runner tug;
  auto r = tug({"--json", "releases", "list", "--controller", Url(server)});
  REQUIRE(r.code == 0);
  CHECK(r.out == body + "\n");
  r = tug({"releases", "list", "--json", "--controller", Url(server)});
  CHECK(r.out == body + "\n");
}

TEST_CASE("rollout create turns --phase syntax and flags into the API's JSON body and prints the id") {
  FakeHttpServer server([](const FakeRequest&) { return Json(201, {{"id", "r-7"}}); });
  Runner tug;
  auto r = tug({"rollout", "create", "--controller", Url(server), "--token", "t", "--release", "42", "--label",
                "site=berlin", "--device", "pi-1", "--device", "pi-2", "--phase", "1@30s", "--phase", "50%:90",
                "--phase", "100%:99.5@1h", "--abort-failure-percent", "10", "--abort-min-devices", "3",
                "--device-timeout", "5m", "--max-concurrency", "7", "--max-retries", "0", "--no-auto-rollback"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out == "r-7\n");
  auto reqs = server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/api/v1/rollouts");
  CHECK(reqs[0].Header("content-type") == "application/json");
  const json expected = json::parse(R"({
    "release": 42,
    "selector": {"labels": {"site": "berlin"}, "devices": ["pi-1", "pi-2"]},
    "phases": [{"count": 1, "soak": "30s"}, {"percent": 50, "success_threshold": 90},
               {"percent": 100, "success_threshold": 99.5, "soak": "1h"}],
    "abort": {"failure_percent": 10, "min_devices": 3},
    "device_timeout": "5m", "max_concurrency": 7, "max_retries": 0, "auto_rollback": false})");
  CHECK(json::parse(reqs[0].body) == expected);
  CHECK(reqs[0].body.find("50.0") == std::string::npos);  // whole numbers stay integers
}

TEST_CASE("rollout create --operator-label selects on operator-set labels only") {
  FakeHttpServer server([](const FakeRequest&) { return Json(201, {{"id", "r-2"}}); });
  Runner tug;
  auto r = tug({"rollout", "create", "--controller", Url(server), "--release", "3", "--operator-label", "ring=canary"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json body = json::parse(server.requests().at(0).body);
  CHECK(body["selector"] == json::parse(R"({"labels":{},"devices":[],"operator_labels":{"ring":"canary"}})"));
  CHECK(tug({"rollout", "create", "--controller", Url(server), "--release", "3", "--all", "--operator-label",
             "ring=canary"}).code != 0);
}

TEST_CASE("rollout create defaults to a canary then half then all, with the documented limits") {
  FakeHttpServer server([](const FakeRequest&) { return Json(201, {{"id", "r-1"}}); });
  Runner tug;
  REQUIRE(tug({"rollout", "create", "--controller", Url(server), "--release", "3", "--all"}).code == 0);
  const json body = json::parse(server.requests().at(0).body);
  CHECK(body["selector"] == json::parse(R"({"labels":{},"devices":[]})"));
  CHECK(body["phases"] == json::parse(R"([{"count":1},{"percent":50},{"percent":100}])"));
  CHECK(body["abort"] == json::parse(R"({"failure_percent":20,"min_devices":1})"));
  CHECK(body["device_timeout"] == "10m");
  CHECK(body["max_concurrency"] == 100);
  CHECK(body["max_retries"] == 1);
  CHECK(body["auto_rollback"] == true);
}

TEST_CASE("Malformed rollout flags are usage errors and send nothing") {
  FakeHttpServer server([](const FakeRequest&) { return Json(201, {{"id", "r-1"}}); });
  Runner tug;
  const std::vector<std::string> base = {"rollout", "create", "--controller", Url(server), "--release", "1"};
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--all", "--phase", "0"}, {"--all", "--phase", "abc"}, {"--all", "--phase", "101%"},
        {"--all", "--phase", "50%%"}, {"--all", "--phase", "1:200"}, {"--all", "--phase", "1@5x"},
        {"--all", "--phase", "1:50:60"}, {"--all", "--phase", "1@"}, {"--all", "--phase", "-1"},
        {"--label", "site"}, {"--label", "=x"}, {},
        {"--all", "--device", "pi-1"}, {"--all", "--device-timeout", "0s"}, {"--all", "--max-concurrency", "0"},
        {"--all", "--abort-failure-percent", "150"}}) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = tug(args);
    INFO(r.err);
    CHECK(r.code == 2);
  }
  CHECK(tug({"rollout", "create", "--controller", Url(server), "--all"}).code == 2);  // no --release
  CHECK(tug({"devices", "label", "pi-1", "novalue"}).code == 2);
  CHECK(tug({"rollout", "watch", "r-1", "--interval", "0s"}).code == 2);
  CHECK(server.requests().empty());
}

TEST_CASE("devices get, devices label and releases add send the right requests and summarise answers") {
  testsupport::TempDir dir;
  const std::string envelope = R"({"payloadType":"application/vnd.tugboat.release+json","payload":"e30=","signatures":[]})";
  std::ofstream(dir.Sub("release.json")) << envelope;
  FakeHttpServer server([](const FakeRequest& req) {
    if (req.method == "GET" && req.target == "/api/v1/devices/pi%2F1") {
      json d = Device("pi/1", true, "2026-11-22T09:59:00Z",
                      {{"version", 42}, {"name", "sensor 2.0.1"}, {"digest", "sha256:bb"}}, {{"site", "berlin"}});
      d["previous"] = {{"version", 41}, {"name", "sensor 2.0.0"}, {"digest", "sha256:aa"}};
      d["job"] = {{"id", "r-1.pi/1.1"}, {"phase", "health_check"}};
      d["operator_labels"] = {{"site", "berlin"}, {"old", "x"}};
      return Json(200, d);
    }
    if (req.method == "PUT") return Json(200, Device("pi/1", true, "", nullptr, {{"site", "berlin"}, {"tier", "a"}}));
    if (req.method == "POST" && req.target == "/api/v1/releases")
      return Json(201, {{"version", 42},
                        {"name", "sensor 2.0.1"},
                        {"repository", "127.0.0.1:5000/acme/sensor"},
                        {"digest", "sha256:bb"},
                        {"expires_at", "2026-12-22T10:00:00Z"}});
    return Json(404, {{"error", "no route"}});
  });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server)}};

  auto get = tug({"devices", "get", "pi/1"});
  INFO(get.err);
  REQUIRE(get.code == 0);
  CHECK(get.out ==
        "id:        pi/1\n"
        "online:    yes (last seen 1m ago)\n"
        "labels:    site=berlin\n"
        "arch:      arm64\n"
        "agent:     0.1.0\n"
        "active:    v42  sensor 2.0.1  sha256:bb\n"
        "previous:  v41  sensor 2.0.0  sha256:aa\n"
        "job:       r-1.pi/1.1 (health_check)\n");

  // Merged into the current operator labels; "old-" removes one.
  auto label = tug({"devices", "label", "pi/1", "tier=a", "old-"});
  REQUIRE(label.code == 0);
  CHECK(label.out == "labels of pi/1: site=berlin,tier=a\n");
  REQUIRE(tug({"devices", "label", "pi/1", "--replace", "tier=b"}).code == 0);

  auto add = tug({"releases", "add", dir.Sub("release.json")});
  INFO(add.err);
  REQUIRE(add.code == 0);
  CHECK(add.out == "registered release 42 \"sensor 2.0.1\" 127.0.0.1:5000/acme/sensor@sha256:bb, expires in 30d\n");
  auto piped = tug({"releases", "add", "-"}, envelope);
  REQUIRE(piped.code == 0);

  auto reqs = server.requests();
  REQUIRE(reqs.size() == 6);
  CHECK(reqs[1].method == "GET");
  CHECK(reqs[2].method == "PUT");
  CHECK(reqs[2].target == "/api/v1/devices/pi%2F1/labels");
  CHECK(json::parse(reqs[2].body) == json::parse(R"({"labels":{"site":"berlin","tier":"a"}})"));
  CHECK(reqs[3].method == "PUT");  // --replace does not read first
  CHECK(json::parse(reqs[3].body) == json::parse(R"({"labels":{"tier":"b"}})"));
  CHECK(reqs[4].body == envelope);
  CHECK(reqs[5].body == envelope);
}

TEST_CASE("Rollout actions post to their paths") {
  FakeHttpServer server([](const FakeRequest& req) {
    if (req.target.find("/pause") != std::string::npos) return Json(200, Rollout("paused", json::array()));
    if (req.target.find("/rollback") != std::string::npos) {
      json r = Rollout("aborted", json::array());
      r["rollback_sent"] = 3;
      return Json(200, r);
    }
    if (req.target.find("/devices/pi-8/") != std::string::npos)
      return Json(200, Rollout("running", json::array(),
                               {{{"id", "pi-8"}, {"phase", 0}, {"state", "cancelled"}, {"attempts", 1}}}));
    return FakeResponse{200, {}, ""};
  });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server)}};
  auto pause = tug({"rollout", "pause", "r-1"});
  REQUIRE(pause.code == 0);
  CHECK(pause.out == "rollout r-1: paused\n");
  CHECK(tug({"rollout", "resume", "r-1"}).out == "rollout r-1: running\n");
  CHECK(tug({"rollout", "cancel", "r-1"}).code == 0);
  CHECK(tug({"rollout", "rollback", "r-1"}).out == "rollout r-1: aborted, rollback sent to 3 device(s)\n");
  CHECK(tug({"rollout", "cancel-device", "r-1", "pi-8"}).out == "device pi-8 in rollout r-1: cancelled\n");
  auto cd = tug({"rollout", "cancel-device", "r-1", "pi-9"});
  CHECK(cd.out == "device pi-9 in rollout r-1: cancelled\n");
  std::vector<std::string> targets;
  for (const auto& r : server.requests()) {
    CHECK(r.method == "POST");
    targets.push_back(r.target);
  }
  CHECK(targets == std::vector<std::string>{"/api/v1/rollouts/r-1/pause", "/api/v1/rollouts/r-1/resume",
                                            "/api/v1/rollouts/r-1/cancel", "/api/v1/rollouts/r-1/rollback",
                                            "/api/v1/rollouts/r-1/devices/pi-8/cancel",
                                            "/api/v1/rollouts/r-1/devices/pi-9/cancel"});
}

TEST_CASE("rollout get and list render phases, devices and counts") {
  FakeHttpServer server([](const FakeRequest& req) {
    if (req.target == "/api/v1/rollouts")
      return Json(200, {{"rollouts", {Rollout("running", json::array())}}});
    return Json(200, Rollout("running",
                             {Phase(0, 1, "done", 1, 0, 0), Phase(1, 7, "soaking", 3, 1, 0, 0, 2),
                              Phase(2, 12, "pending", 0, 0, 0, 5)},
                             {{{"id", "pi-1"}, {"phase", 0}, {"state", "succeeded"}, {"attempts", 1},
                               {"job", "r-1.pi-1.1"}, {"error", ""}},
                              {{"id", "pi-2"}, {"phase", 1}, {"state", "failed"}, {"attempts", 2},
                               {"job", "r-1.pi-2.2"}, {"error", "health check failed"}},
                              {{"id", "pi-3"}, {"phase", -1}, {"state", "pending"}, {"attempts", 0},
                               {"job", ""}, {"error", ""}}}));
  });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server)}};
  auto get = tug({"rollout", "get", "r-1"});
  INFO(get.err);
  REQUIRE(get.code == 0);
  CHECK(get.out ==
        "rollout r-1  running  release 42 \"sensor 2.0.1\"  created 5m ago\n"
        "devices: 1 ok  0 failed  0 unreached  0 in progress  0 pending\n"
        "\n"
        "phase 1 100%  [##########]  1/1 ok  0 failed  0 unreached  done\n"
        "phase 2  50%  [#####.....]  3/6 ok  1 failed  0 unreached  soaking\n"
        "phase 3   0%  [..........]  0/5 ok  0 failed  0 unreached  pending\n"
        "\n"
        "DEVICE  PHASE  STATE      ATTEMPTS  JOB         ERROR\n"
        "pi-1    1      succeeded  1         r-1.pi-1.1\n"
        "pi-2    2      failed     2         r-1.pi-2.2  health check failed\n"
        "pi-3    -      pending    0         -\n");
  auto list = tug({"rollout", "list"});
  REQUIRE(list.code == 0);
  CHECK(list.out ==
        "ID   STATE    RELEASE          CREATED  OK  FAILED  UNREACHED  IN PROGRESS  PENDING\n"
        "r-1  running  42 sensor 2.0.1  5m ago   1   0       0          0            0\n");
}

TEST_CASE("rollout watch follows an aborting rollout, appends plain lines off a TTY and exits 1 with the reason") {
  std::atomic<int> polls{0};
  FakeHttpServer server([&](const FakeRequest& req) {
    // The failed devices are fetched once the rollout ended, page by page (one device a page here).
    if (req.target == "/api/v1/rollouts/r-1?devices=failed,timed_out,rolled_back&limit=1000") {
      json page = Rollout("aborted", json::array(),
                          {{{"id", "pi-2"}, {"phase", 1}, {"state", "rolled_back"}, {"attempts", 2},
                            {"job", "r-1.pi-2.2"}, {"error", "health check failed: exit 1"}}});
      page["next_after"] = "pi-2";
      return Json(200, page);
    }
    if (req.target == "/api/v1/rollouts/r-1?devices=failed,timed_out,rolled_back&limit=1000&after=pi-2")
      return Json(200, Rollout("aborted", json::array(),
                               {{{"id", "pi-3"}, {"phase", 1}, {"state", "timed_out"}, {"attempts", 1},
                                 {"job", "r-1.pi-3.1"}, {"error", "no success within 10m"}}}));
    const int n = polls++;
    if (n == 0) return Json(200, Rollout("running", {Phase(0, 1, "active", 0, 0, 0, 0, 1), Phase(1, 5, "pending", 0, 0, 0, 4)}));
    if (n == 1) return Json(200, Rollout("running", {Phase(0, 1, "active", 0, 0, 0, 0, 1), Phase(1, 5, "pending", 0, 0, 0, 4)}));
    if (n == 2) return FakeResponse{503, {}, ""};  // controller restarting: the watch rides it out
    if (n == 3) return Json(200, Rollout("running", {Phase(0, 1, "done", 1, 0, 0), Phase(1, 5, "active", 1, 1, 0, 0, 2)}));
    // Polls ask for counts only: the answer has no device lists.
    json r = Rollout("aborted", {Phase(0, 1, "done", 1, 0, 0), Phase(1, 5, "done", 1, 2, 1)}, json::array(),
                     "2 of 3 finished devices failed (67% > 20%)");
    r.erase("devices");
    return Json(200, r);
  });
  Runner tug;
  auto r = tug({"rollout", "watch", "r-1", "--controller", Url(server), "--interval", "2s"});
  CHECK(r.code == 1);
  CHECK(polls == 5);
  CHECK(tug.sleeps == 4);
  CHECK(r.out.find('\x1b') == std::string::npos);
  CHECK(r.out ==
        "rollout r-1  running  release 42 \"sensor 2.0.1\"\n"
        "phase 1   0%  [..........]  0/1 ok  0 failed  0 unreached  active\n"
        "phase 2   0%  [..........]  0/4 ok  0 failed  0 unreached  pending\n"
        "rollout r-1  running  release 42 \"sensor 2.0.1\"\n"
        "phase 1 100%  [##########]  1/1 ok  0 failed  0 unreached  done\n"
        "phase 2  25%  [##........]  1/4 ok  1 failed  0 unreached  active\n"
        "rollout r-1  aborted  release 42 \"sensor 2.0.1\"\n"
        "phase 1 100%  [##########]  1/1 ok  0 failed  0 unreached  done\n"
        "phase 2  25%  [##........]  1/4 ok  2 failed  1 unreached  done\n"
        "abort reason: 2 of 3 finished devices failed (67% > 20%)\n"
        "FAILED DEVICE  STATE        ATTEMPTS  ERROR\n"
        "pi-2           rolled_back  2         health check failed: exit 1\n"
        "pi-3           timed_out    1         no success within 10m\n");
  CHECK(r.err ==
        "tug: HTTP 503 Service Unavailable (retrying)\n"
        "tug: rollout r-1 aborted: 2 of 3 finished devices failed (67% > 20%)\n");
  std::vector<std::string> targets;
  for (const auto& req : server.requests()) targets.push_back(req.target);
  const std::string poll = "/api/v1/rollouts/r-1?devices=none";
  CHECK(targets == std::vector<std::string>{
                       poll, poll, poll, poll, poll,
                       "/api/v1/rollouts/r-1?devices=failed,timed_out,rolled_back&limit=1000",
                       "/api/v1/rollouts/r-1?devices=failed,timed_out,rolled_back&limit=1000&after=pi-2"});
}

TEST_CASE("rollout watch exits 0 on success and redraws in place on a TTY") {
  std::atomic<int> polls{0};
  FakeHttpServer server([&](const FakeRequest&) {
    const int n = polls++;
    if (n == 0) return Json(200, Rollout("running", {Phase(0, 2, "active", 1, 0, 0, 0, 1)}));
    return Json(200, Rollout("succeeded", {Phase(0, 2, "done", 2, 0, 0)}));
  });
  Runner tug;
  tug.tty = true;
  auto r = tug({"rollout", "watch", "r-1", "--controller", Url(server)});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.out ==
        "rollout r-1  running  release 42 \"sensor 2.0.1\"\n"
        "phase 1  50%  [#####.....]  1/2 ok  0 failed  0 unreached  active\n"
        "\x1b[2F\x1b[J"
        "rollout r-1  succeeded  release 42 \"sensor 2.0.1\"\n"
        "phase 1 100%  [##########]  2/2 ok  0 failed  0 unreached  done\n"
        "rollout r-1 succeeded\n");
}

TEST_CASE("rollout watch gives up with exit 3 at --timeout and fails at once on a 4xx") {
  FakeHttpServer server([](const FakeRequest& req) {
    if (req.target.find("r-404") != std::string::npos) return Json(404, {{"error", "no rollout r-404"}});
    return Json(200, Rollout("running", {Phase(0, 2, "active", 1, 0, 0, 0, 1)}));
  });
  Runner tug;
  auto r = tug({"rollout", "watch", "r-1", "--controller", Url(server), "--interval", "10s", "--timeout", "1m"});
  CHECK(r.code == 3);
  CHECK(tug.sleeps == 6);
  CHECK(server.requests().size() == 6);
  // Off a TTY an unchanged rollout is printed once, not once per poll.
  CHECK(r.out ==
        "rollout r-1  running  release 42 \"sensor 2.0.1\"\n"
        "phase 1  50%  [#####.....]  1/2 ok  0 failed  0 unreached  active\n");
  CHECK(r.err == "tug: gave up watching rollout r-1 after 1m (state running); it continues on the controller\n");

  auto missing = tug({"rollout", "watch", "r-404", "--controller", Url(server)});
  CHECK(missing.code == 1);
  CHECK(missing.err == "tug: no rollout r-404: HTTP 404 Not Found\n");
}

TEST_CASE("rollout watch --json prints each new state as one JSON line") {
  std::atomic<int> polls{0};
  FakeHttpServer server([&](const FakeRequest&) {
    return Json(200, Rollout(polls++ < 2 ? "running" : "cancelled", json::array()));
  });
  Runner tug;
  auto r = tug({"rollout", "watch", "r-1", "--json", "--controller", Url(server)});
  CHECK(r.code == 1);
  std::istringstream lines(r.out);
  std::string line;
  std::vector<std::string> states;
  while (std::getline(lines, line)) states.push_back(json::parse(line)["state"]);
  CHECK(states == std::vector<std::string>{"running", "cancelled"});
  CHECK(r.err == "tug: rollout r-1 cancelled\n");
  // --json prints the whole report, devices included, as before; no failed-device fetch after it.
  for (const auto& req : server.requests()) CHECK(req.target == "/api/v1/rollouts/r-1");
}

TEST_CASE("rollout get passes --devices, --limit and --after as the query and prints the next page's command") {
  FakeHttpServer server([](const FakeRequest& req) {
    if (req.target.find("devices=none") != std::string::npos)
      return Json(200, [] {
        json r = Rollout("running", {Phase(0, 2, "active", 1, 0, 0, 0, 1)});
        r.erase("devices");
        return r;
      }());
    json r = Rollout("running", {Phase(0, 2, "active", 1, 0, 0, 0, 1)},
                     {{{"id", "pi/1"}, {"phase", 0}, {"state", "failed"}, {"attempts", 1}, {"job", "r-1.pi/1.1"},
                       {"error", "boom"}}});
    if (req.target.find("limit=") != std::string::npos) r["next_after"] = "pi/1";
    if (req.target.find("after=pi/1") != std::string::npos) r["devices"] = json::array();
    return Json(200, r);
  });
  Runner tug;
  tug.env = {{"TUG_CONTROLLER", Url(server)}};
  auto none = tug({"rollout", "get", "r-1", "--devices", "none"});
  INFO(none.err);
  REQUIRE(none.code == 0);
  CHECK(none.out ==
        "rollout r-1  running  release 42 \"sensor 2.0.1\"  created 5m ago\n"
        "devices: 1 ok  0 failed  0 unreached  0 in progress  0 pending\n"
        "\n"
        "phase 1  50%  [#####.....]  1/2 ok  0 failed  0 unreached  active\n");
  auto page = tug({"rollout", "get", "r-1", "--devices", "failed,timed_out", "--limit", "1"});
  REQUIRE(page.code == 0);
  CHECK(page.out.find("pi/1    1      failed  1         r-1.pi/1.1  boom\n") != std::string::npos);
  const std::string hint = "\nmore devices: tug rollout get r-1 --devices failed,timed_out --limit 1 --after pi/1\n";
  REQUIRE(page.out.size() > hint.size());
  CHECK(page.out.substr(page.out.size() - hint.size()) == hint);
  auto last = tug({"rollout", "get", "r-1", "--limit", "1", "--after", "pi/1"});
  REQUIRE(last.code == 0);
  CHECK(last.out.find("(no devices match)") != std::string::npos);
  CHECK(last.out.find("more devices") != std::string::npos);  // the fake still says next_after
  CHECK(tug({"rollout", "get", "r-1", "--limit", "0"}).code == 2);  // usage errors send nothing
  CHECK(tug({"rollout", "get", "r-1", "--limit", "10001"}).code == 2);
  CHECK(tug({"rollout", "get", "r-1"}).code == 0);
  std::vector<std::string> targets;
  for (const auto& req : server.requests()) targets.push_back(req.target);
  CHECK(targets == std::vector<std::string>{"/api/v1/rollouts/r-1?devices=none",
                                            "/api/v1/rollouts/r-1?devices=failed,timed_out&limit=1",
                                            "/api/v1/rollouts/r-1?limit=1&after=pi/1", "/api/v1/rollouts/r-1"});
  auto help = tug({"rollout", "get", "--help"});
  CHECK(help.out.find("tug rollout get r-1 --devices none") != std::string::npos);
  CHECK(help.out.find("--devices") != std::string::npos);
  CHECK(help.out.find("--after") != std::string::npos);
}

TEST_CASE("Every fleet command has help with an example") {
  Runner tug;
  for (std::vector<std::string> cmd :
       {std::vector<std::string>{"devices", "list"}, {"devices", "get"}, {"devices", "label"}, {"releases", "add"},
        {"releases", "list"}, {"releases", "get"}, {"rollout", "create"}, {"rollout", "get"}, {"rollout", "list"},
        {"rollout", "pause"}, {"rollout", "resume"}, {"rollout", "cancel"}, {"rollout", "rollback"},
        {"rollout", "cancel-device"}, {"rollout", "watch"}}) {
    cmd.push_back("--help");
    auto h = tug(cmd);
    INFO(cmd[0] + " " + cmd[1]);
    CHECK(h.code == 0);
    CHECK(h.out.find("Example") != std::string::npos);
  }
}

TEST_CASE("A controller that never answers is cut off by the deadline, not waited on forever") {
  FakeHttpServer server([](const FakeRequest&) {
    FakeResponse r;
    r.hang = true;
    return r;
  });
  Runner tug;
  const auto start = std::chrono::steady_clock::now();
  auto r = tug({"rollout", "watch", "r-1", "--controller", Url(server), "--timeout", "1s"});
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK(r.code == 3);
  CHECK(r.err.find("no answer within the timeout") != std::string::npos);
  CHECK(r.err.find("(retrying)") != std::string::npos);
}
