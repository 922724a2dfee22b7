// The Scheduler alone: a recording Driver, a fake clock and a simulated cluster, so upgrades, backoff and failures
// are checked step by step without sleeping.
#include "services/scheduler.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::services;
using json = nlohmann::json;

namespace {

struct Call {
  Call(std::string t, std::vector<std::string> ids = {}, std::vector<TaskInfo> ts = {})
      : type(std::move(t)), offer_ids(std::move(ids)), tasks(std::move(ts)) {}
  std::string type;
  std::vector<std::string> offer_ids;
  std::vector<TaskInfo> tasks;
  std::string task_id;
  uint64_t seq = 0;
  std::vector<GatewayService> services;
  std::vector<std::pair<std::string, std::string>> reconcile;
};

class FakeDriver : public Driver {
 public:
  void Accept(std::vector<std::string> ids, std::vector<TaskInfo> tasks, double) override {
    calls.push_back({"ACCEPT", ids, tasks});
  }
  void Decline(std::vector<std::string> ids, double) override { calls.push_back({"DECLINE", ids}); }
  void Kill(std::string task_id, std::string) override {
    Call c{"KILL"};
    c.task_id = task_id;
    calls.push_back(c);
  }
  void Acknowledge(TaskStatus s) override {
    Call c{"ACK"};
    c.task_id = s.task_id;
    calls.push_back(c);
  }
  void Reconcile(std::vector<std::pair<std::string, std::string>> t) override {
    Call c{"RECONCILE"};
    c.reconcile = t;
    calls.push_back(c);
  }
  void Revive() override { calls.push_back({"REVIVE"}); }
  void Suppress() override { calls.push_back({"SUPPRESS"}); }
  void ApplyGateway(uint64_t seq, std::vector<GatewayService> services) override {
    Call c{"GATEWAY"};
    c.seq = seq;
    c.services = services;
    calls.push_back(c);
  }

  // Calls made since the last Take().
  std::vector<Call> Take() {
    std::vector<Call> out(calls.begin() + static_cast<long>(taken), calls.end());
    taken = calls.size();
    return out;
  }
  size_t Count(const std::string& type) const {
    return std::count_if(calls.begin(), calls.end(), [&](const Call& c) { return c.type == type; });
  }
  std::vector<Call> calls;
  size_t taken = 0;
};

json OffersEvent(const std::vector<Offer>& offers) {
  json list = json::array();
  for (const auto& o : offers) list.push_back(ToJson(o));
  return json{{"type", "OFFERS"}, {"offers", {{"offers", list}}}};
}

json UpdateEvent(const std::string& task, const std::string& agent, TaskState state, std::optional<bool> healthy = {},
                 const std::string& reason = "") {
  TaskStatus s;
  s.task_id = task;
  s.agent_id = agent;
  s.state = state;
  s.healthy = healthy;
  s.reason = reason;
  s.uuid = NewId("u");
  return json{{"type", "UPDATE"}, {"update", {{"status", ToJson(s)}}}};
}

// A cluster of agents the test answers for: launches become RUNNING (healthy), kills become KILLED.
struct Sim {
  double t = 1000;
  FakeDriver driver;
  MemoryStateStore store;
  SchedulerOptions opts;
  std::unique_ptr<Scheduler> s;
  std::vector<std::pair<std::string, std::string>> agents;  // id, hostname
  std::map<std::string, std::string> task_agent;
  std::map<std::string, std::string> task_version;
  std::set<std::string> alive, healthy;
  std::vector<json> events;
  int offer_seq = 0;

  explicit Sim(int n_agents, SchedulerOptions o = {}) : opts(o) {
    for (int i = 1; i <= n_agents; ++i) agents.emplace_back("a" + std::to_string(i), "node-" + std::to_string(i));
    Make();
  }
  void Make() {
    s = std::make_unique<Scheduler>(opts, driver, store, [this] { return t; });
    s->set_event_sink([this](const std::string& type, const json& b) {
      json e = b;
      e["type"] = type;
      events.push_back(e);
    });
    REQUIRE(s->Recover());
  }
  void Connect() { s->OnConnected("f-1", "http://master"); }
  Offer MakeOffer(const std::string& agent, const std::string& host, const std::string& res) {
    Offer o;
    o.id = "o" + std::to_string(++offer_seq);
    o.agent_id = agent;
    o.hostname = host;
    o.resources = *ParseResources(res);
    o.attributes = {{"hostname", host}, {"zone", "z"}};
    return o;
  }
  // Every agent offers `res`; launches are answered RUNNING(healthy) and kills KILLED until quiet.
  void OfferAll(const std::string& res = "cpus:4;mem:4096;ports:[31000-31099]") {
    std::vector<Offer> offers;
    for (const auto& [id, host] : agents) offers.push_back(MakeOffer(id, host, res));
    s->OnEvent(OffersEvent(offers));
  }
  void Answer(bool launches = true, bool kills = true) {
    for (bool again = true; again;) {
      again = false;
      for (const auto& c : driver.Take()) {
        if (c.type == "ACCEPT" && launches) {
          for (const auto& ti : c.tasks) {
            task_agent[ti.task_id] = ti.agent_id;
            task_version[ti.task_id] = ti.labels.at("version");
            alive.insert(ti.task_id);
            healthy.insert(ti.task_id);
            s->OnEvent(UpdateEvent(ti.task_id, ti.agent_id, TaskState::kRunning, true));
            again = true;
          }
        }
        if (c.type == "KILL" && kills && alive.count(c.task_id)) {
          alive.erase(c.task_id);
          healthy.erase(c.task_id);
          s->OnEvent(UpdateEvent(c.task_id, task_agent[c.task_id], TaskState::kKilled));
          again = true;
        }
      }
    }
  }
  json Deployments() { return s->Deployments(); }
};

}  // namespace

TEST_CASE("scheduler: an app is launched on offers, then offers are suppressed; a new app revives them") {
  Sim sim(3);
  sim.Connect();
  CHECK(sim.driver.Count("SUPPRESS") == 1);  // nothing to run yet
  auto created = sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"sleep 1000","instances":3,"cpus":0.1,"mem":64,
      "ports":[0],"constraints":[["hostname","UNIQUE"]]})"));
  REQUIRE(created);
  CHECK((*created)["deployments"].size() == 1);
  CHECK(sim.driver.Count("REVIVE") == 1);
  sim.OfferAll();
  REQUIRE(sim.driver.Count("ACCEPT") == 3);
  std::set<std::string> agents;
  for (const auto& c : sim.driver.calls)
    if (c.type == "ACCEPT") {
      REQUIRE(c.tasks.size() == 1);
      agents.insert(c.tasks[0].agent_id);
      CHECK(c.tasks[0].task_id.rfind("web.", 0) == 0);
      CHECK(c.tasks[0].labels.at("app") == "/web");
      CHECK(c.tasks[0].resources.port_count() == 1);
    }
  CHECK(agents.size() == 3);
  sim.Answer();
  CHECK(sim.Deployments().empty());
  CHECK(sim.driver.Count("SUPPRESS") == 2);
  CHECK(sim.driver.Count("ACK") == 3);
  auto tasks = sim.s->GetTasks("/web");
  REQUIRE(tasks);
  CHECK((*tasks)["tasks"].size() == 3);
  for (const auto& t : (*tasks)["tasks"]) CHECK(t["healthy"] == true);
  // The saved state knows the framework and the tasks.
  auto saved = *sim.store.Load();
  REQUIRE(saved);
  CHECK((*saved)["frameworkId"] == "f-1");
  CHECK((*saved)["tasks"].size() == 3);
}

TEST_CASE("scheduler: a deployment that cannot place an instance says why") {
  SECTION("a constraint no agent satisfies") {
    Sim sim(3);
    sim.Connect();
    REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":4,"cpus":0.1,"mem":64,
        "constraints":[["hostname","UNIQUE"]]})")));
    sim.OfferAll();
    sim.Answer();
    sim.OfferAll();  // the rest of each agent comes back: still nowhere to go
    CHECK(sim.driver.Count("DECLINE") == 3);
    auto d = sim.Deployments();
    REQUIRE(d.size() == 1);
    CHECK(d[0]["blocked"] == "no offer satisfies constraint hostname:UNIQUE (3 agents, 4 instances)");
    CHECK(d[0]["progress"]["newHealthy"] == 3);
  }
  SECTION("resources no agent has") {
    Sim sim(2);
    sim.Connect();
    REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/big","cmd":"x","instances":1,"cpus":0.1,"mem":4096})")));
    sim.s->OnEvent(OffersEvent({sim.MakeOffer("a1", "node-1", "cpus:4;mem:1024"),
                                sim.MakeOffer("a2", "node-2", "cpus:4;mem:2048")}));
    CHECK(sim.driver.Count("ACCEPT") == 0);
    auto d = sim.Deployments();
    REQUIRE(d.size() == 1);
    CHECK(d[0]["blocked"] == "no offer has mem 4096 (largest 2048 on node-2)");
  }
}

TEST_CASE("scheduler: scaling up launches, scaling down kills the youngest, an instance-only PUT keeps the version") {
  Sim sim(3);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":2,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  sim.Answer();
  const std::string v1 = (*sim.s->GetApp("/web"))["app"]["version"];
  bool created = true;
  auto up = sim.s->UpdateApp("/web", json{{"instances", 5}}, &created);
  REQUIRE(up);
  CHECK_FALSE(created);
  CHECK((*up)["version"] == v1);
  sim.OfferAll();
  sim.Answer();
  CHECK(sim.alive.size() == 5);
  CHECK(sim.Deployments().empty());
  sim.t += 1;
  REQUIRE(sim.s->UpdateApp("/web", json{{"instances", 1}}, &created));
  sim.Answer();
  CHECK(sim.alive.size() == 1);
  CHECK(sim.Deployments().empty());
  CHECK((*sim.s->GetApp("/web"))["app"]["version"] == v1);
}

TEST_CASE("scheduler: a rolling upgrade keeps ceil(m*N) healthy and at most N+floor(o*N) alive at every step") {
  auto run = [](double m, double o, uint32_t n) {
    INFO("m=" << m << " o=" << o << " n=" << n);
    Sim sim(4);
    sim.Connect();
    json app{{"id", "/web"}, {"cmd", "v1"}, {"instances", n}, {"cpus", 0.1}, {"mem", 64},
             {"upgradeStrategy", {{"minimumHealthCapacity", m}, {"maximumOverCapacity", o}}}};
    REQUIRE(sim.s->CreateApp(app));
    sim.OfferAll();
    sim.Answer();
    REQUIRE(sim.alive.size() == n);
    bool created = false;
    auto up = sim.s->UpdateApp("/web", json{{"cmd", "v2"}}, &created);
    REQUIRE(up);
    const std::string v2 = (*up)["version"];
    const size_t min_healthy = static_cast<size_t>(std::ceil(m * n - 1e-9));
    size_t max_alive = n + static_cast<size_t>(std::floor(o * n + 1e-9));
    if (max_alive <= min_healthy) max_alive = min_healthy + 1;
    // Step the cluster one event at a time: every launch and kill is answered separately, checking the invariants
    // after each.
    for (int step = 0; step < 200 && !sim.Deployments().empty(); ++step) {
      sim.OfferAll();
      for (const auto& c : sim.driver.Take()) {
        if (c.type == "ACCEPT")
          for (const auto& ti : c.tasks) {
            sim.task_agent[ti.task_id] = ti.agent_id;
            sim.task_version[ti.task_id] = ti.labels.at("version");
            sim.alive.insert(ti.task_id);
            CHECK(sim.alive.size() <= max_alive);
            sim.s->OnEvent(UpdateEvent(ti.task_id, ti.agent_id, TaskState::kRunning));  // up, not yet healthy
            sim.healthy.insert(ti.task_id);
            sim.s->OnEvent(UpdateEvent(ti.task_id, ti.agent_id, TaskState::kRunning, true));
          }
        if (c.type == "KILL" && sim.alive.count(c.task_id)) {
          sim.healthy.erase(c.task_id);
          CHECK(sim.healthy.size() >= min_healthy);
          sim.alive.erase(c.task_id);
          sim.s->OnEvent(UpdateEvent(c.task_id, sim.task_agent[c.task_id], TaskState::kKilled));
        }
      }
    }
    CHECK(sim.Deployments().empty());
    CHECK(sim.alive.size() == n);
    for (const auto& id : sim.alive) CHECK(sim.task_version[id] == v2);
  };
  run(1.0, 0.34, 3);
  run(1.0, 0.0, 3);  // Marathon: one extra instance so the upgrade can progress
  run(0.5, 0.0, 4);
  run(0.0, 1.0, 3);
  run(0.75, 0.25, 8);
}

TEST_CASE("scheduler: a new version that never becomes healthy leaves the old ones serving") {
  Sim sim(3);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"v1","instances":2,"cpus":0.1,"mem":64,"ports":[0],
      "healthChecks":[{"protocol":"TCP","portIndex":0}],
      "upgradeStrategy":{"minimumHealthCapacity":1.0,"maximumOverCapacity":0.5}})")));
  sim.OfferAll();
  sim.Answer();
  bool created = false;
  REQUIRE(sim.s->UpdateApp("/web", json{{"cmd", "v2-broken"}}, &created));
  sim.OfferAll();
  auto calls = sim.driver.Take();
  std::vector<TaskInfo> launched;
  for (const auto& c : calls)
    if (c.type == "ACCEPT") launched.insert(launched.end(), c.tasks.begin(), c.tasks.end());
  REQUIRE(launched.size() == 1);  // 2 + floor(0.5*2) = 3 alive at most
  sim.s->OnEvent(UpdateEvent(launched[0].task_id, launched[0].agent_id, TaskState::kRunning, false));
  for (const auto& c : sim.driver.Take()) CHECK(c.type != "KILL");
  auto d = sim.Deployments();
  REQUIRE(d.size() == 1);
  CHECK(d[0]["progress"]["old"] == 2);
  CHECK(d[0]["status"].get<std::string>().find("waiting for 1 instance(s) to become healthy") != std::string::npos);
}

TEST_CASE("scheduler: failed instances are replaced with a doubling backoff that resets after 60 s healthy") {
  Sim sim(1);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/crash","cmd":"exit 1","instances":1,"cpus":0.1,"mem":64})")));
  auto fail_next = [&] {
    sim.OfferAll();
    auto calls = sim.driver.Take();
    std::string id;
    for (const auto& c : calls)
      if (c.type == "ACCEPT") id = c.tasks.at(0).task_id;
    REQUIRE(!id.empty());
    sim.s->OnEvent(UpdateEvent(id, "a1", TaskState::kFailed));
    return id;
  };
  fail_next();
  // 1 s of backoff: offers are declined and then suppressed.
  sim.OfferAll();
  auto calls = sim.driver.Take();
  CHECK(std::count_if(calls.begin(), calls.end(), [](const Call& c) { return c.type == "ACCEPT"; }) == 0);
  auto d = sim.Deployments();
  REQUIRE(d.size() == 1);
  CHECK(d[0]["blocked"].get<std::string>().find("delaying launches after instance failures") == 0);
  sim.t += 1.01;
  sim.s->Tick();
  CHECK(sim.driver.Take().back().type == "REVIVE");
  fail_next();
  sim.t += 1.01;  // the delay is now 2 s
  sim.s->Tick();
  sim.OfferAll();
  calls = sim.driver.Take();
  CHECK(std::count_if(calls.begin(), calls.end(), [](const Call& c) { return c.type == "ACCEPT"; }) == 0);
  sim.t += 1.0;
  sim.s->Tick();
  sim.OfferAll();
  sim.Answer();  // this one runs and stays healthy
  CHECK(sim.alive.size() == 1);
  CHECK((*sim.s->GetApp("/crash"))["app"]["backoff"]["delaySeconds"] == 2.0);
  sim.t += 61;
  sim.s->Tick();
  CHECK_FALSE((*sim.s->GetApp("/crash"))["app"].contains("backoff"));
  // Reset: the next failure waits the initial 1 s again.
  const std::string running = *sim.alive.begin();
  sim.alive.clear();
  sim.s->OnEvent(UpdateEvent(running, "a1", TaskState::kFailed));
  CHECK((*sim.s->GetApp("/crash"))["app"]["backoff"]["delaySeconds"] == 1.0);
}

TEST_CASE("scheduler: an unreachable instance is waited for; a lost one is replaced at once") {
  Sim sim(2);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":1,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  sim.Answer();
  const std::string id = *sim.alive.begin();
  sim.s->OnEvent(UpdateEvent(id, sim.task_agent[id], TaskState::kUnreachable));
  sim.OfferAll();
  for (const auto& c : sim.driver.Take()) CHECK(c.type != "ACCEPT");
  CHECK((*sim.s->GetTasks("/web"))["tasks"][0]["state"] == "TASK_UNREACHABLE");
  sim.s->OnEvent(UpdateEvent(id, sim.task_agent[id], TaskState::kLost, {}, "REASON_AGENT_REMOVED"));
  sim.alive.erase(id);
  // The lost node is gone: only the other one offers.
  const std::string other = sim.task_agent[id] == "a1" ? "a2" : "a1";
  sim.s->OnEvent(OffersEvent({sim.MakeOffer(other, "node-x", "cpus:4;mem:4096")}));
  auto calls = sim.driver.Take();
  auto accept = std::find_if(calls.begin(), calls.end(), [](const Call& c) { return c.type == "ACCEPT"; });
  REQUIRE(accept != calls.end());
  CHECK(accept->tasks.at(0).agent_id == other);
  CHECK_FALSE((*sim.s->GetApp("/web"))["app"].contains("backoff"));  // a lost node is not the app's fault
}

TEST_CASE("scheduler: with a gateway, an instance leaves the gateway and is drained before it is killed") {
  SchedulerOptions o;
  o.gateway = true;
  o.drain_s = 1;
  Sim sim(2, o);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":1,"cpus":0.1,"mem":64,"ports":[0],
      "gateway":{"port":10080},"upgradeStrategy":{"minimumHealthCapacity":1,"maximumOverCapacity":1}})")));
  sim.OfferAll();
  sim.Answer();
  auto last_gateway = [&] {
    const Call* g = nullptr;
    for (const auto& c : sim.driver.calls)
      if (c.type == "GATEWAY") g = &c;
    REQUIRE(g);
    return *g;
  };
  auto g1 = last_gateway();
  REQUIRE(g1.services.size() == 1);
  CHECK(g1.services[0].frontend_port == 10080);
  REQUIRE(g1.services[0].backends.size() == 1);
  const std::string old_task = g1.services[0].backends[0].task_id;
  sim.s->OnGatewayApplied(g1.seq, "");

  bool created = false;
  REQUIRE(sim.s->UpdateApp("/web", json{{"cmd", "y"}}, &created));
  sim.OfferAll();
  // The new instance: running and healthy, so it joins the gateway and the old one leaves it.
  std::string new_task;
  for (const auto& c : sim.driver.Take())
    if (c.type == "ACCEPT") new_task = c.tasks.at(0).task_id;
  REQUIRE(!new_task.empty());
  sim.s->OnEvent(UpdateEvent(new_task, "a1", TaskState::kRunning, true));
  auto g2 = last_gateway();
  REQUIRE(g2.services[0].backends.size() == 1);
  CHECK(g2.services[0].backends[0].task_id == new_task);
  // Not killed yet: the gateway has not confirmed, and the drain delay has not passed.
  CHECK(sim.driver.Count("KILL") == 0);
  sim.t += 5;
  sim.s->Tick();
  CHECK(sim.driver.Count("KILL") == 0);
  sim.s->OnGatewayApplied(g2.seq, "");
  REQUIRE(sim.driver.Count("KILL") == 1);
  CHECK(sim.driver.calls.back().task_id == old_task);

  // A failed apply is retried with the whole configuration.
  REQUIRE(sim.s->UpdateApp("/web", json{{"instances", 0}}, &created));
  auto g3 = last_gateway();
  CHECK(g3.services[0].backends.empty());
  const size_t before = sim.driver.Count("GATEWAY");
  sim.s->OnGatewayApplied(g3.seq, "haproxy down");
  CHECK(sim.driver.Count("GATEWAY") == before + 1);
}

TEST_CASE("scheduler: a failing state save refuses the change and launches nothing") {
  Sim sim(1);
  sim.Connect();
  sim.store.set_fail_saves(true);
  auto r = sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":1,"cpus":0.1,"mem":64})"));
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kIo));
  CHECK(sim.s->ListApps()["apps"].empty());
  sim.store.set_fail_saves(false);
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":1,"cpus":0.1,"mem":64})")));
  sim.store.set_fail_saves(true);
  sim.OfferAll();
  CHECK(sim.driver.Count("ACCEPT") == 0);
  CHECK(sim.driver.Count("DECLINE") == 1);
  sim.store.set_fail_saves(false);
  sim.OfferAll();
  CHECK(sim.driver.Count("ACCEPT") == 1);
}

TEST_CASE("scheduler: a restarted scheduler resumes from its state and reconciles every task") {
  Sim sim(2);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":2,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  sim.Answer();
  sim.s->Tick();  // lazy save of the task states
  sim.Make();     // a new process on the same state
  CHECK(sim.s->framework_id() == "f-1");
  CHECK((*sim.s->GetTasks("/web"))["tasks"].size() == 2);
  sim.driver.Take();
  sim.Connect();
  auto calls = sim.driver.Take();
  REQUIRE(calls.size() >= 2);
  CHECK(calls[0].type == "RECONCILE");
  CHECK(calls[0].reconcile.size() == 2);
  CHECK(calls[1].type == "RECONCILE");
  CHECK(calls[1].reconcile.empty());
  for (const auto& c : calls) CHECK(c.type != "KILL");
  // Nothing to launch: the recovered tasks count.
  CHECK(sim.driver.Count("SUPPRESS") >= 1);
  CHECK(sim.Deployments().empty());
  // A task the master reports that we do not know is killed.
  sim.s->OnEvent(UpdateEvent("stranger.1", "a1", TaskState::kRunning));
  CHECK(sim.driver.calls.back().type == "ACK");
  CHECK(sim.driver.calls[sim.driver.calls.size() - 2].type == "KILL");
}

TEST_CASE("scheduler: deleting an app kills its instances and forgets it once they are gone") {
  Sim sim(2);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":2,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  sim.Answer();
  REQUIRE(sim.s->DeleteApp("/web"));
  CHECK_FALSE(sim.s->GetApp("/web"));
  CHECK(sim.Deployments().size() == 1);
  auto dup = sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x"})"));
  REQUIRE_FALSE(dup);
  CHECK(dup.error().Is(Errc::kAlreadyExists));
  sim.Answer();
  CHECK(sim.alive.empty());
  CHECK(sim.Deployments().empty());
  CHECK(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":0})")));
  bool types_seen = false;
  for (const auto& e : sim.events) types_seen = types_seen || e["type"] == "app_deleted";
  CHECK(types_seen);
}

TEST_CASE("scheduler: tasks of an app whose stored definition no longer loads are killed") {
  Sim sim(1);
  json doc{{"format", 1},
           {"frameworkId", "f-1"},
           {"apps", json::array({{{"definition", {{"id", "/Bad App"}, {"cmd", "x"}}}, {"version", "v"}}})},
           {"tasks", json::array({{{"id", "bad.1"}, {"appId", "/Bad App"}, {"agentId", "a1"}, {"state", "TASK_RUNNING"}}})}};
  REQUIRE(sim.store.Save(doc));
  sim.Make();
  CHECK(sim.s->ListApps()["apps"].empty());
  sim.Connect();
  CHECK(sim.driver.Count("KILL") == 1);
  sim.s->OnEvent(UpdateEvent("bad.1", "a1", TaskState::kKilled));
  CHECK(sim.s->Info()["tasks"] == 0);
}

TEST_CASE("scheduler: a launch that stays TASK_STAGING past the launch timeout is killed and replaced") {
  SchedulerOptions o;
  o.launch_timeout_s = 30;
  Sim sim(1, o);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":1,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  auto calls = sim.driver.Take();
  std::string first;
  for (const auto& c : calls)
    if (c.type == "ACCEPT") first = c.tasks.at(0).task_id;
  REQUIRE(!first.empty());
  sim.t += 20;
  sim.s->Tick();
  CHECK(sim.driver.Count("KILL") == 0);
  sim.t += 11;
  sim.s->Tick();
  REQUIRE(sim.driver.Count("KILL") == 1);
  for (const auto& c : sim.driver.calls)
    if (c.type == "KILL") CHECK(c.task_id == first);
  CHECK(sim.driver.calls.back().type == "REVIVE");  // its replacement is wanted at once
  sim.s->OnEvent(UpdateEvent(first, "a1", TaskState::kDropped));
  sim.OfferAll();
  sim.Answer();
  CHECK(sim.alive.size() == 1);
  CHECK(sim.Deployments().empty());
}

TEST_CASE("scheduler: without constraints an app's instances spread over the agents on offer") {
  Sim sim(3);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":5,"cpus":0.1,"mem":64})")));
  sim.OfferAll();
  std::map<std::string, int> per_agent;
  for (const auto& c : sim.driver.calls)
    if (c.type == "ACCEPT")
      for (const auto& t : c.tasks) per_agent[t.agent_id]++;
  REQUIRE(per_agent.size() == 3);
  for (const auto& [agent, n] : per_agent) CHECK((n == 1 || n == 2));
  CHECK(sim.driver.Count("ACCEPT") == 3);  // one ACCEPT per agent
}

TEST_CASE("scheduler: an unreachable instance that was serving stays in the gateway until it is lost") {
  SchedulerOptions o;
  o.gateway = true;
  Sim sim(2, o);
  sim.Connect();
  REQUIRE(sim.s->CreateApp(json::parse(R"({"id":"/web","cmd":"x","instances":2,"cpus":0.1,"mem":64,"ports":[0],
      "gateway":{"port":10080}})")));
  sim.OfferAll();
  sim.Answer();
  auto backends = [&] {
    std::set<std::string> out;
    for (auto it = sim.driver.calls.rbegin(); it != sim.driver.calls.rend(); ++it)
      if (it->type == "GATEWAY") {
        for (const auto& b : it->services.at(0).backends) out.insert(b.task_id);
        break;
      }
    return out;
  };
  REQUIRE(backends().size() == 2);
  const std::string id = *sim.alive.begin();
  sim.s->OnEvent(UpdateEvent(id, sim.task_agent[id], TaskState::kUnreachable, true));
  CHECK(backends().size() == 2);
  // Not counted healthy meanwhile (its health is unknown), but not replaced either.
  CHECK((*sim.s->GetApp("/web"))["app"]["tasksRunning"] == 1);
  sim.s->OnEvent(UpdateEvent(id, sim.task_agent[id], TaskState::kLost));
  CHECK(backends().size() == 1);
  CHECK_FALSE(backends().count(id));
}
