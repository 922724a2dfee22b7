// cluster-services end to end in one process: a real master on loopback, scripted agents speaking the agent
// protocol, and the services framework (REST API, subscription, scheduler, state dir) driven over HTTP, so every
// message crosses the wire as in production.
#include <catch2/catch.hpp>

#include "../test/cluster_fixture.hpp"
#include "core/env.hpp"
#include "http/tokens.hpp"
#include "services/service.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;
using testsupport::WaitFor;

namespace {

struct Rest {
  std::string base;
  std::string token;  // operator; sent as the bearer
  http::Client client;

  http::Headers Headers() const {
    http::Headers h{{"Content-Type", "application/json"}};
    if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
    return h;
  }
  http::ClientResponse Call(const std::string& method, const std::string& path, const json& body = nullptr) {
    auto r = client.Call(method, base + path, body.is_null() ? std::string() : body.dump(), Headers());
    REQUIRE(r);
    return *r;
  }
  http::ClientResponse Raw(const std::string& method, const std::string& path, const std::string& body) {
    auto r = client.Call(method, base + path, body, Headers());
    REQUIRE(r);
    return *r;
  }
  json Get(const std::string& path) {
    auto r = Call("GET", path);
    INFO(path << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
};

services::ServicesOptions Options(const std::string& master, const std::string& state_dir) {
  services::ServicesOptions o;
  o.masters = {master};
  o.listen_port = 0;
  o.state_dir = state_dir;
  o.stream_idle_timeout = 3s;
  o.tick = 100ms;
  o.failover_timeout_s = 60;
  o.scheduler.decline_refuse_s = 1;
  o.event_keepalive = 300ms;  // lets an SseReader stop promptly
  return o;
}

// A master, n agents (node-1..n, zone a/b alternating) and cluster-services with a state dir.
struct Cluster {
  testsupport::TempDir dir{"tug-services"};
  MasterUnderTest master{FastMasterOptions()};
  ClusterObserver observer;
  std::vector<std::unique_ptr<AutoAgent>> agents;
  std::unique_ptr<services::ServicesFramework> fw;
  Rest rest;
  const std::string token = http::NewToken(), viewer_token = http::NewToken();

  services::GatewaySink* sink = nullptr;

  explicit Cluster(int n, std::chrono::milliseconds healthy_after = 0ms, services::GatewaySink* gateway = nullptr)
      : sink(gateway) {
    for (int i = 1; i <= n; ++i) {
      AutoAgent::Options o;
      o.hostname = "node-" + std::to_string(i);
      o.attributes = {{"zone", i % 2 ? "a" : "b"}, {"ip", "127.0.0." + std::to_string(i)}};
      o.healthy_after = healthy_after;
      agents.push_back(std::make_unique<AutoAgent>(master.url(), o, &observer));
      agents.back()->Register();
    }
    StartServices();
  }
  ~Cluster() {
    if (fw) fw->Stop();
  }
  void StartServices() {
    auto opts = Options(master.url(), dir.Sub("state"));
    opts.token_file = dir.Sub("api.tokens");
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), opts.token_file,
                                   http::TokenLine("test", http::Scope::kOperator, token) +
                                       http::TokenLine("dash", http::Scope::kViewer, viewer_token)));
    rest.token = token;
    opts.gateway = sink;
    opts.scheduler.gateway = sink != nullptr;
    opts.scheduler.drain_s = 0.2;
    auto f = services::ServicesFramework::Start(opts);
    REQUIRE(f);
    fw = std::move(*f);
    rest.base = fw->url();
    REQUIRE(WaitFor([&] { return fw->connected(); }, 10s));
  }
  json Create(const json& app) {
    auto r = rest.Call("POST", "/v2/apps", app);
    INFO(r.body);
    REQUIRE(r.status == 201);
    return json::parse(r.body);
  }
  // Every deployment finished.
  bool Deployed(std::chrono::milliseconds timeout = 20s) {
    return WaitFor([&] { return rest.Get("/v2/deployments").empty(); }, timeout);
  }
  json Tasks(const std::string& app) { return rest.Get("/v2/apps" + app + "/tasks")["tasks"]; }
  AutoAgent* AgentNamed(const std::string& host) {
    for (auto& a : agents)
      if (a->hostname() == host) return a.get();
    return nullptr;
  }
};

// A gateway that takes a while to apply (as HAProxy draining does) and remembers what it serves.
class RecordingSink : public services::GatewaySink {
 public:
  Status Apply(const std::vector<services::GatewayService>& services) override {
    std::this_thread::sleep_for(150ms);
    std::lock_guard lock(mu_);
    last_ = services;
    serving_.clear();
    for (const auto& s : services)
      for (const auto& b : s.backends) serving_.insert(b.task_id);
    applies_++;
    return {};
  }
  bool Serving(const std::string& task_id) {
    std::lock_guard lock(mu_);
    return serving_.count(task_id) > 0;
  }
  std::vector<services::GatewayService> last() {
    std::lock_guard lock(mu_);
    return last_;
  }
  size_t applies() {
    std::lock_guard lock(mu_);
    return applies_;
  }

 private:
  std::mutex mu_;
  std::vector<services::GatewayService> last_;
  std::set<std::string> serving_;
  size_t applies_ = 0;
};

json App(const std::string& id, int instances) {
  return json{{"id", id}, {"cmd", "sleep 1000"}, {"instances", instances}, {"cpus", 0.1}, {"mem", 32}, {"ports", {0}}};
}

}  // namespace

TEST_CASE("services: 3 instances with hostname:UNIQUE on 3 agents run one per agent") {
  Cluster c(3);
  json app = App("/web", 3);
  app["constraints"] = json::array({json::array({"hostname", "UNIQUE"})});
  json created = c.Create(app);
  CHECK(created["id"] == "/web");
  REQUIRE(created["deployments"].size() == 1);
  CHECK(created["deploymentId"] == created["deployments"][0]["id"]);
  REQUIRE(c.Deployed());
  json tasks = c.Tasks("/web");
  REQUIRE(tasks.size() == 3);
  std::set<std::string> hosts;
  for (const auto& t : tasks) {
    hosts.insert(t["host"]);
    CHECK(t["state"] == "TASK_RUNNING");
    CHECK(t["healthy"] == true);
    CHECK(t["ports"].size() == 1);
    CHECK(t["id"].get<std::string>().rfind("web.", 0) == 0);
  }
  CHECK(hosts.size() == 3);
  for (auto& a : c.agents) CHECK(a->Running().size() == 1);
  json got = c.rest.Get("/v2/apps/web")["app"];
  CHECK(got["tasksRunning"] == 3);
  CHECK(got["tasks"].size() == 3);
  CHECK(got["deployments"].empty());
  // Nothing more to run: the framework is suppressed at the master.
  REQUIRE(WaitFor(
      [&] {
        const json state = c.master.State();
        return state["frameworks"].size() == 1 && state["frameworks"][0]["suppressed"] == true;
      },
      5s));
}

TEST_CASE("services: 4 instances with hostname:UNIQUE on 3 agents run 3, and the deployment says why not 4") {
  Cluster c(3);
  json app = App("/web", 4);
  app["constraints"] = json::array({json::array({"hostname", "UNIQUE"})});
  c.Create(app);
  REQUIRE(WaitFor([&] { return c.observer.alive() == 3; }, 10s));
  json d;
  REQUIRE(WaitFor(
      [&] {
        d = c.rest.Get("/v2/deployments");
        return d.size() == 1 && d[0].contains("blocked") && d[0]["progress"]["newHealthy"] == 3;
      },
      10s));
  CHECK(d[0]["blocked"] == "no offer satisfies constraint hostname:UNIQUE (3 agents, 4 instances)");
  CHECK(d[0]["affectedApps"] == json::array({"/web"}));
  std::this_thread::sleep_for(1500ms);
  CHECK(c.observer.alive() == 3);
  // Giving up the 4th finishes the deployment.
  auto r = c.rest.Call("PUT", "/v2/apps/web", json{{"instances", 3}});
  CHECK(r.status == 200);
  CHECK(c.Deployed());
}

TEST_CASE("services: a deployment needing more memory than any node has says which node has the most") {
  Cluster c(2);
  json app = App("/big", 1);
  app["mem"] = 8192;
  c.Create(app);
  json d;
  REQUIRE(WaitFor(
      [&] {
        d = c.rest.Get("/v2/deployments");
        return d.size() == 1 && d[0].value("blocked", "").rfind("no offer has", 0) == 0;
      },
      10s));
  const std::string why = d[0]["blocked"];
  CHECK(why.rfind("no offer has mem 8192 (largest 4096 on node-", 0) == 0);
}

TEST_CASE("services: scaling up and down") {
  Cluster c(3);
  c.Create(App("/web", 2));
  REQUIRE(c.Deployed());
  CHECK(c.observer.alive() == 2);
  const std::string version = c.rest.Get("/v2/apps/web")["app"]["version"];

  auto up = c.rest.Call("PUT", "/v2/apps/web", json{{"instances", 5}});
  REQUIRE(up.status == 200);
  CHECK(json::parse(up.body)["version"] == version);  // instances only: no new version, no restart
  REQUIRE(c.Deployed());
  CHECK(c.observer.alive() == 5);
  CHECK(c.Tasks("/web").size() == 5);
  size_t kills = 0;
  for (auto& a : c.agents) kills += a->kills();
  CHECK(kills == 0);

  REQUIRE(c.rest.Call("PUT", "/v2/apps/web", json{{"instances", 1}}).status == 200);
  REQUIRE(c.Deployed());
  CHECK(c.observer.alive() == 1);
  CHECK(c.Tasks("/web").size() == 1);
  CHECK(c.rest.Get("/v2/apps/web")["app"]["version"] == version);

  REQUIRE(c.rest.Call("DELETE", "/v2/apps/web").status == 200);
  CHECK(c.rest.Call("GET", "/v2/apps/web").status == 404);
  REQUIRE(c.Deployed());
  CHECK(c.observer.alive() == 0);
  CHECK(c.rest.Get("/v2/apps")["apps"].empty());
}

TEST_CASE("services: a rolling upgrade with minimumHealthCapacity 1 and maximumOverCapacity 0.34 never drops below N "
          "healthy nor exceeds N+1 alive") {
  Cluster c(3, /*healthy_after=*/300ms);
  json app = App("/web", 3);
  app["upgradeStrategy"] = {{"minimumHealthCapacity", 1.0}, {"maximumOverCapacity", 0.34}};
  app["healthChecks"] = json::array({{{"protocol", "TCP"}, {"portIndex", 0}}});
  c.Create(app);
  REQUIRE(c.Deployed());
  REQUIRE(c.observer.healthy() == 3);
  c.observer.ResetExtremes();
  SseReader sse(c.fw->url(), "", c.token);
  REQUIRE(WaitFor([&] { return sse.attached(); }, 5s));

  auto r = c.rest.Call("PUT", "/v2/apps/web", json{{"cmd", "sleep 2000"}});
  REQUIRE(r.status == 200);
  const std::string v2 = json::parse(r.body)["version"];
  const std::string dep = json::parse(r.body)["deploymentId"];
  REQUIRE(c.Deployed(30s));
  CHECK(c.observer.min_healthy() >= 3);
  CHECK(c.observer.max_alive() <= 4);
  auto alive = c.observer.Alive();
  REQUIRE(alive.size() == 3);
  for (const auto& [id, vh] : alive) CHECK(vh.first == v2);
  size_t kills = 0;
  for (auto& a : c.agents) kills += a->kills();
  CHECK(kills == 3);
  // The stream told the story: steps, then success.
  CHECK(sse.events.Find("deployment_step", [&](const json& e) { return e["id"] == dep; }, 5s));
  CHECK(sse.events.Find("deployment_success", [&](const json& e) { return e["id"] == dep; }, 5s));

  // A restart is the same, with the same definition and a new version.
  c.observer.ResetExtremes();
  auto rs = c.rest.Call("POST", "/v2/apps/web/restart");
  REQUIRE(rs.status == 200);
  const std::string v3 = json::parse(rs.body)["version"];
  CHECK(v3 != v2);
  REQUIRE(c.Deployed(30s));
  CHECK(c.observer.min_healthy() >= 3);
  CHECK(c.observer.max_alive() <= 4);
  for (const auto& [id, vh] : c.observer.Alive()) CHECK(vh.first == v3);
}

TEST_CASE("services: an instance on a lost node is replaced on another node, not while the node is only unreachable") {
  Cluster c(3);
  json app = App("/web", 2);
  app["constraints"] = json::array({json::array({"hostname", "UNIQUE"})});
  c.Create(app);
  REQUIRE(c.Deployed());
  AutoAgent* victim = nullptr;
  AutoAgent* spare = nullptr;
  for (auto& a : c.agents) {
    if (a->Running().empty())
      spare = a.get();
    else if (!victim)
      victim = a.get();
  }
  REQUIRE(victim);
  REQUIRE(spare);
  const std::string lost_task = victim->Running().begin()->first;

  victim->set_heartbeats(false);
  REQUIRE(WaitFor(
      [&] {
        for (const auto& t : c.Tasks("/web"))
          if (t["id"] == lost_task && t["state"] == "TASK_UNREACHABLE") return true;
        return false;
      },
      10s));
  // Unreachable: it may come back, so nothing is launched yet.
  std::this_thread::sleep_for(800ms);
  CHECK(spare->launches() == 0);
  // Removed by the master: TASK_LOST, and a replacement on the spare node (UNIQUE keeps it off the other).
  REQUIRE(WaitFor([&] { return spare->launches() == 1; }, 15s));
  REQUIRE(c.Deployed());
  json tasks = c.Tasks("/web");
  REQUIRE(tasks.size() == 2);
  for (const auto& t : tasks) {
    CHECK(t["id"] != lost_task);
    CHECK(t["host"] != victim->hostname());
  }
  CHECK_FALSE(c.rest.Get("/v2/apps/web")["app"].contains("backoff"));
}

TEST_CASE("services: invalid requests are refused with the field named") {
  Cluster c(1);
  json app = App("/web", 1);
  app["healthChecks"] = json::array({{{"protocol", "HTTP"}, {"path", "/health"}, {"portIndex", 1}}});
  auto r = c.rest.Call("POST", "/v2/apps", app);
  CHECK(r.status == 400);
  json err = json::parse(r.body);
  CHECK(err["field"] == "healthChecks[0].portIndex");
  CHECK(err["error"].get<std::string>().find("out of range") != std::string::npos);

  auto bad_json = c.rest.Raw("POST", "/v2/apps", "{not json");
  CHECK(bad_json.status == 400);
  CHECK(json::parse(bad_json.body)["field"] == "body");

  json bad_id = App("/Web_1", 1);
  r = c.rest.Call("POST", "/v2/apps", bad_id);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["field"] == "id");

  json bad_op = App("/web", 1);
  bad_op["constraints"] = json::array({json::array({"hostname", "SOMETIMES"})});
  r = c.rest.Call("POST", "/v2/apps", bad_op);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["field"] == "constraints[0][1]");

  json bad_cap = App("/web", 1);
  bad_cap["upgradeStrategy"] = {{"minimumHealthCapacity", 2}};
  r = c.rest.Call("POST", "/v2/apps", bad_cap);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["field"] == "upgradeStrategy.minimumHealthCapacity");

  c.Create(App("/web", 0));
  r = c.rest.Call("POST", "/v2/apps", App("/web", 1));
  CHECK(r.status == 409);
  CHECK(c.rest.Call("GET", "/v2/apps/nope").status == 404);
  CHECK(c.rest.Call("POST", "/v2/apps/nope/restart").status == 404);
  r = c.rest.Call("PUT", "/v2/apps/web", json{{"instances", -2}});
  CHECK(r.status == 400);
  CHECK(json::parse(r.body)["field"] == "instances");
  CHECK(c.rest.Call("DELETE", "/v2/deployments").status == 405);
}

TEST_CASE("services: the event stream delivers app, task, health and deployment events") {
  Cluster c(2);
  SseReader sse(c.fw->url(), "", c.token);
  REQUIRE(WaitFor([&] { return sse.attached(); }, 5s));
  json created = c.Create(App("/web", 2));
  CHECK(sse.events.Find("app_created", [](const json& e) { return e["appId"] == "/web"; }));
  CHECK(sse.events.Find("deployment_info", [&](const json& e) { return e["id"] == created["deploymentId"]; }));
  CHECK(sse.events.Find("status_update_event",
                        [](const json& e) { return e["appId"] == "/web" && e["taskStatus"] == "TASK_RUNNING"; }, 10s));
  CHECK(sse.events.Find("health_status_changed_event", [](const json& e) { return e["alive"] == true; }, 10s));
  CHECK(sse.events.Find("deployment_success", [&](const json& e) { return e["id"] == created["deploymentId"]; }, 10s));
  REQUIRE(c.rest.Call("DELETE", "/v2/apps/web").status == 200);
  CHECK(sse.events.Find("app_deleted", [](const json& e) { return e["appId"] == "/web"; }));
  CHECK(sse.events.Find("status_update_event", [](const json& e) { return e["taskStatus"] == "TASK_KILLED"; }, 10s));
  REQUIRE(c.Deployed());

  // A filtered stream sees only what it asked for.
  SseReader only(c.fw->url(), "?event_type=app_created,deployment_success", c.token);
  REQUIRE(WaitFor([&] { return only.attached(); }, 5s));
  c.Create(App("/api", 1));
  REQUIRE(only.events.Find("deployment_success", [](const json& e) { return e["appId"] == "/api"; }, 10s));
  CHECK(only.events.Count("app_created") == 1);
  CHECK(only.events.Count("status_update_event") == 0);
}

TEST_CASE("services: a restarted cluster-services resumes as the same framework while its tasks keep running") {
  Cluster c(3);
  c.Create(App("/web", 3));
  REQUIRE(c.Deployed());
  const std::string fid = c.fw->framework_id();
  REQUIRE(!fid.empty());
  size_t launches = 0;
  for (auto& a : c.agents) launches += a->launches();
  REQUIRE(launches == 3);

  c.fw->Stop();
  c.fw.reset();
  std::this_thread::sleep_for(500ms);
  c.StartServices();
  CHECK(c.fw->framework_id() == fid);
  REQUIRE(c.Deployed());
  json tasks = c.Tasks("/web");
  REQUIRE(tasks.size() == 3);
  for (const auto& t : tasks) CHECK(t["state"] == "TASK_RUNNING");
  std::this_thread::sleep_for(1000ms);
  size_t after = 0, kills = 0;
  for (auto& a : c.agents) {
    after += a->launches();
    kills += a->kills();
  }
  CHECK(after == 3);
  CHECK(kills == 0);
  // And it still works.
  REQUIRE(c.rest.Call("PUT", "/v2/apps/web", json{{"instances", 4}}).status == 200);
  REQUIRE(c.Deployed());
  CHECK(c.observer.alive() == 4);
  auto state = c.master.State();
  REQUIRE(state["frameworks"].size() == 1);
  CHECK(state["frameworks"][0]["id"] == fid);
}

TEST_CASE("services: the gateway lists exactly the healthy instances, and drops each one before it is killed") {
  RecordingSink sink;
  std::atomic<int> killed_while_serving{0};
  std::atomic<int> kills{0};
  Cluster c(3, /*healthy_after=*/200ms, &sink);
  c.observer.on_kill = [&](const std::string& id) {
    kills++;
    if (sink.Serving(id)) killed_while_serving++;
  };
  json app = App("/web", 3);
  app["gateway"] = {{"port", 10080}, {"mode", "http"}};
  app["healthChecks"] = json::array({{{"protocol", "HTTP"}, {"path", "/health"}, {"portIndex", 0}}});
  app["upgradeStrategy"] = {{"minimumHealthCapacity", 1.0}, {"maximumOverCapacity", 0.34}};
  c.Create(app);
  REQUIRE(c.Deployed());
  auto backends = [&] {
    std::map<std::string, std::string> out;  // task id -> host:port
    for (const auto& s : sink.last())
      for (const auto& b : s.backends) out[b.task_id] = b.host + ":" + std::to_string(b.port);
    return out;
  };
  REQUIRE(WaitFor([&] { return backends().size() == 3; }, 5s));
  auto last = sink.last();
  REQUIRE(last.size() == 1);
  CHECK(last[0].name == "web");
  CHECK(last[0].frontend_port == 10080);
  CHECK(last[0].health_path == "/health");
  for (const auto& t : c.Tasks("/web")) {
    const std::string id = t["id"];
    REQUIRE(backends().count(id));
    CHECK(backends()[id] == t["address"].get<std::string>() + ":" + std::to_string(t["ports"][0].get<int>()));
    CHECK(t["address"].get<std::string>().rfind("127.0.0.", 0) == 0);
  }

  // Rolling upgrade: every old instance leaves the gateway (and the apply finishes) before its KILL arrives.
  REQUIRE(c.rest.Call("PUT", "/v2/apps/web", json{{"env", {{"V", "2"}}}}).status == 200);
  REQUIRE(c.Deployed(30s));
  REQUIRE(WaitFor([&] { return backends().size() == 3; }, 5s));
  CHECK(kills == 3);
  CHECK(killed_while_serving == 0);
  std::set<std::string> running;
  for (const auto& t : c.Tasks("/web")) running.insert(t["id"]);
  for (const auto& [id, hp] : backends()) CHECK(running.count(id));

  // Scale down: the same order.
  REQUIRE(c.rest.Call("PUT", "/v2/apps/web", json{{"instances", 1}}).status == 200);
  REQUIRE(c.Deployed());
  CHECK(kills == 5);
  CHECK(killed_while_serving == 0);
  REQUIRE(WaitFor([&] { return backends().size() == 1; }, 5s));

  // Deleted: the service leaves the gateway.
  REQUIRE(c.rest.Call("DELETE", "/v2/apps/web").status == 200);
  REQUIRE(c.Deployed());
  REQUIRE(WaitFor([&] { return sink.last().empty(); }, 5s));
  CHECK(killed_while_serving == 0);
}

TEST_CASE("services: the REST API refuses anonymous and under-scoped calls, and will not start without credentials") {
  Cluster c(1);
  const json app = {{"id", "/x"}, {"cmd", "sleep 100"}, {"instances", 1}, {"cpus", 0.1}, {"mem", 16}};
  http::Client raw;
  auto anonymous = raw.Call("POST", c.fw->url() + "/v2/apps", app.dump(), {{"Content-Type", "application/json"}});
  REQUIRE(anonymous);
  CHECK(anonymous->status == 401);
  CHECK(anonymous->Header("WWW-Authenticate").rfind("Bearer", 0) == 0);
  auto viewer = raw.Call("DELETE", c.fw->url() + "/v2/apps/x", "", {{"Authorization", "Bearer " + c.viewer_token}});
  REQUIRE(viewer);
  CHECK(viewer->status == 403);
  auto events = raw.Call("GET", c.fw->url() + "/v2/events");
  REQUIRE(events);
  CHECK(events->status == 401);
  auto health = raw.Call("GET", c.fw->url() + "/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(c.rest.Get("/v2/apps").value("apps", json::array()).empty());  // nothing was created

  // Secure by default: no token file and no --insecure-no-auth is a refusal to start, naming the way out.
  auto opts = Options(c.master.url(), c.dir.Sub("state2"));
  auto refused = services::ServicesFramework::Start(opts);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().Message().find("--token-file") != std::string::npos);
  opts.insecure_no_auth = true;
  auto open = services::ServicesFramework::Start(opts);
  REQUIRE(open);
  auto anyone = raw.Call("GET", (*open)->url() + "/v2/apps");
  REQUIRE(anyone);
  CHECK(anyone->status == 200);
  (*open)->Stop();
}
