// The master in-process on a real HTTP server, driven over HTTP by the C++ SchedulerClient and by scripted agents
// speaking the agent protocol (docs/cluster-api.md), so every message crosses the wire as it does in production.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "framework/scheduler_client.hpp"
#include "http/client.hpp"
#include "http/recordio.hpp"
#include "http/server.hpp"
#include "master/master.hpp"
#include "master_testing/sim_cluster.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace std::chrono_literals;
using json = nlohmann::json;
using testsupport::WaitFor;

namespace {

using testing::EventLog;
using testing::FastMasterOptions;
using testing::InProcessMaster;
using testing::SimAgent;

SimAgent ScriptedAgent(const std::string& url, const std::string& host, const std::string& res) {
  return SimAgent(url, testing::SimAgentOptions{.hostname = host, .resources = res, .attributes = {{"zone", "z1"}},
                                                .auto_run = false});
}

struct Framework {
  EventLog events;
  std::unique_ptr<framework::SchedulerClient> client;
  Framework(std::vector<std::string> masters, const std::string& name, const std::string& role,
            const std::string& id = "") {
    framework::SchedulerClientOptions o;
    o.masters = std::move(masters);
    o.info.name = name;
    o.info.role = role;
    o.info.id = id;
    o.info.failover_timeout_s = 30;
    o.stream_idle_timeout = 3s;
    client = std::make_unique<framework::SchedulerClient>(o, [this](const json& e) { events.Push(e); });
    client->Start();
    REQUIRE(WaitFor([&] { return client->connected(); }, 10s));
  }
};

std::vector<std::string> OfferIdsFor(const json& offers_event, const std::string& agent_id) {
  std::vector<std::string> ids;
  for (const auto& o : offers_event["offers"]["offers"])
    if (o["agent_id"]["value"] == agent_id) ids.push_back(o["id"]["value"]);
  return ids;
}

TaskInfo SleepTask(const std::string& id, double cpus, double mem) {
  TaskInfo t;
  t.task_id = id;
  t.name = id;
  t.resources = Resources::Make(cpus, mem);
  t.command.value = "sleep 1000";
  return t;
}

auto OffersOn(const std::string& agent_id) {
  return [agent_id](const json& e) { return !OfferIdsFor(e, agent_id).empty(); };
}

}  // namespace

TEST_CASE("master: offer, launch, status update and acknowledgement flow between a framework and an agent") {
  master::MemoryStateStore store;
  InProcessMaster mt(store, FastMasterOptions());
  SimAgent agent = ScriptedAgent(mt.url(), "node-1", "cpus:4;mem:4096;ports:[31000-31009]");
  REQUIRE(agent.Register());
  Framework fw({mt.url()}, "test", "web");

  auto offers = fw.events.Find("OFFERS", OffersOn(agent.id()));
  REQUIRE(offers);
  const json& offer = (*offers)["offers"]["offers"][0];
  CHECK(offer["hostname"] == "node-1");
  auto res = ResourcesFromJson(offer["resources"]);
  REQUIRE(res);
  CHECK(res->cpus() == 4);
  CHECK(res->port_count() == 10);

  TaskInfo t = SleepTask("web.1", 1, 128);
  t.resources += Resources::Ports({31000});
  REQUIRE(fw.client->Accept(OfferIdsFor(*offers, agent.id()), {t}));

  auto launch = agent.events.Find("LAUNCH");
  if (!launch) FAIL(mt.State().dump() + "\nframework update: " +
                    fw.events.Find("UPDATE").value_or(json()).dump());
  CHECK((*launch)["launch"]["task_info"]["task_id"]["value"] == "web.1");
  CHECK((*launch)["launch"]["framework_id"]["value"] == fw.client->framework_id());

  auto r = agent.Update("web.1", fw.client->framework_id(), TaskState::kRunning, "uuid-1");
  REQUIRE(r);
  CHECK(r->status == 202);
  auto update = fw.events.Find("UPDATE", [](const json& e) { return e["update"]["status"]["state"] == "TASK_RUNNING"; });
  REQUIRE(update);
  auto st = TaskStatusFromJson((*update)["update"]["status"], "status");
  REQUIRE(st);
  CHECK(st->uuid == "uuid-1");
  REQUIRE(fw.client->Acknowledge(*st));
  auto ack = agent.events.Find("ACKNOWLEDGE");
  REQUIRE(ack);
  CHECK((*ack)["acknowledge"]["uuid"] == "uuid-1");

  // The rest of the agent comes back in a later offer (the unused part of the accepted offer).
  fw.events.Clear();
  auto again = fw.events.Find("OFFERS", OffersOn(agent.id()), 10s);
  REQUIRE(again);
  auto left = ResourcesFromJson((*again)["offers"]["offers"][0]["resources"]);
  REQUIRE(left);
  CHECK(left->cpus() == 3);
  CHECK(left->port_count() == 9);

  auto state = mt.State();
  REQUIRE(state["tasks"].size() == 1);
  CHECK(state["tasks"][0]["state"] == "TASK_RUNNING");

  // Kill: the agent is told, and its KILLED update ends the task.
  REQUIRE(fw.client->Kill("web.1"));
  REQUIRE(agent.events.Find("KILL"));
  agent.Update("web.1", fw.client->framework_id(), TaskState::kKilled, "uuid-2");
  REQUIRE(fw.events.Find("UPDATE", [](const json& e) { return e["update"]["status"]["state"] == "TASK_KILLED"; }));
  CHECK(mt.State()["tasks"].size() == 0);
}

TEST_CASE("master: bad calls are refused with the field named; stale stream ids are refused") {
  master::MemoryStateStore store;
  InProcessMaster mt(store, FastMasterOptions());
  SimAgent agent = ScriptedAgent(mt.url(), "node-1", "cpus:2;mem:1024");
  REQUIRE(agent.Register());
  Framework fw({mt.url()}, "test", "web");
  auto offers = fw.events.Find("OFFERS");
  REQUIRE(offers);

  // A task without a command.
  json bad{{"type", "ACCEPT"},
           {"accept",
            {{"offer_ids", json::array({IdJson(OfferIdsFor(*offers, agent.id())[0])})},
             {"operations", json::array({{{"type", "LAUNCH"},
                                          {"launch", {{"task_infos", json::array({{{"task_id", IdJson("x")}}})}}}}})}}}};
  auto st = fw.client->Call(bad);
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kInvalidArgument));
  CHECK(st.error().Message().find("accept.operations[0].launch.task_infos[0].command") != std::string::npos);

  // A call with another stream id.
  http::Client c;
  auto r = c.Call("POST", mt.url() + "/api/v1/scheduler",
                  json{{"type", "REVIVE"}, {"framework_id", IdJson(fw.client->framework_id())}}.dump(),
                  {{"Mesos-Stream-Id", "s-stale"}});
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(json::parse(r->body)["field"] == "Mesos-Stream-Id");

  // Resubscribing with an unknown framework id is refused.
  auto sub = c.Call("POST", mt.url() + "/api/v1/scheduler",
                    json{{"type", "SUBSCRIBE"},
                         {"subscribe", {{"framework_info", {{"name", "x"}, {"id", IdJson("f-nope")}}}}}}
                        .dump());
  REQUIRE(sub);
  CHECK(sub->status == 403);

  // A task asking for more than the offer holds gets TASK_ERROR naming the shortfall.
  TaskInfo big = SleepTask("big", 8, 64);
  REQUIRE(fw.client->Accept(OfferIdsFor(*offers, agent.id()), {big}));
  auto err = fw.events.Find("UPDATE", [](const json& e) { return e["update"]["status"]["state"] == "TASK_ERROR"; });
  REQUIRE(err);
  CHECK((*err)["update"]["status"]["message"].get<std::string>().find("needs cpus:8") != std::string::npos);
}

TEST_CASE("master: declined offers are filtered for refuse_seconds and go to the other framework meanwhile") {
  master::MemoryStateStore store;
  InProcessMaster mt(store, FastMasterOptions());
  SimAgent agent = ScriptedAgent(mt.url(), "node-1", "cpus:2;mem:1024");
  REQUIRE(agent.Register());
  Framework a({mt.url()}, "a", "r1");
  auto offer = a.events.Find("OFFERS");
  REQUIRE(offer);
  Framework b({mt.url()}, "b", "r2");
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(a.client->Decline(OfferIdsFor(*offer, agent.id()), 2));
  REQUIRE(b.events.Find("OFFERS", {}, 5s));
  a.events.Clear();
  // b holds the offer; it declines with a long filter, so a gets it back only after a's own filter expires.
  auto boffer = b.events.Find("OFFERS");
  REQUIRE(b.client->Decline(OfferIdsFor(*boffer, agent.id()), 60));
  REQUIRE(a.events.Find("OFFERS", {}, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 1900ms);

  // Suppress: no offers at all; revive brings them back.
  auto again = a.events.Find("OFFERS");
  REQUIRE(a.client->Suppress());
  REQUIRE(a.events.Find("RESCIND", {}, 5s));
  a.events.Clear();
  std::this_thread::sleep_for(1500ms);
  CHECK(a.events.Count("OFFERS") == 0);
  REQUIRE(a.client->Revive());
  REQUIRE(a.events.Find("OFFERS", {}, 5s));
}

TEST_CASE("master: a silent agent's tasks become UNREACHABLE, then LOST when it is removed") {
  master::MemoryStateStore store;
  InProcessMaster mt(store, FastMasterOptions());
  SimAgent agent = ScriptedAgent(mt.url(), "node-1", "cpus:2;mem:1024");
  REQUIRE(agent.Register());
  Framework fw({mt.url()}, "test", "web");
  auto offers = fw.events.Find("OFFERS");
  REQUIRE(offers);
  REQUIRE(fw.client->Accept(OfferIdsFor(*offers, agent.id()), {SleepTask("t1", 1, 64)}));
  REQUIRE(agent.events.Find("LAUNCH"));
  agent.Update("t1", fw.client->framework_id(), TaskState::kRunning, "u1");
  REQUIRE(fw.events.Find("UPDATE"));

  const auto t0 = std::chrono::steady_clock::now();
  agent.set_heartbeats(false);  // the node is frozen: stream open, no heartbeats
  auto unreachable =
      fw.events.Find("UPDATE", [](const json& e) { return e["update"]["status"]["state"] == "TASK_UNREACHABLE"; }, 10s);
  REQUIRE(unreachable);
  auto lost = fw.events.Find("UPDATE", [](const json& e) { return e["update"]["status"]["state"] == "TASK_LOST"; }, 10s);
  REQUIRE(lost);
  CHECK((*lost)["update"]["status"]["reason"] == "REASON_AGENT_REMOVED");
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 7s);  // ping timeout 1.5 s + removal 3 s + ticks
  // The removed agent trying to come back is told to shut down.
  agent.set_heartbeats(true);
  REQUIRE(agent.Register());
  REQUIRE(agent.events.Find("SHUTDOWN", {}, 5s));
}

TEST_CASE("master: a follower redirects to the leader; failover keeps tasks and re-adopts agents and frameworks") {
  master::MemoryStateStore store;  // shared by both masters, as etcd would be
  auto first = std::make_unique<InProcessMaster>(store, FastMasterOptions());
  InProcessMaster second(store, FastMasterOptions(), /*lead=*/false);
  second.OnLoop([&] {
    second.master().BecomeFollower(first->url());
    return 0;
  });
  http::Client c;
  auto r = c.Call("GET", second.url() + "/api/v1/state");
  REQUIRE(r);
  CHECK(r->status == 307);
  CHECK(r->Header("Location") == first->url() + "/api/v1/state");

  SimAgent agent = ScriptedAgent(first->url(), "node-1", "cpus:2;mem:1024");
  REQUIRE(agent.Register());
  std::string fid;
  TaskInfo task = SleepTask("svc.1", 1, 64);
  {
    Framework fw({first->url()}, "svc", "web");
    auto offers = fw.events.Find("OFFERS");
    REQUIRE(offers);
    REQUIRE(fw.client->Accept(OfferIdsFor(*offers, agent.id()), {task}));
    auto launch = agent.events.Find("LAUNCH");
    REQUIRE(launch);
    agent.Update("svc.1", fw.client->framework_id(), TaskState::kRunning, "u1");
    REQUIRE(fw.events.Find("UPDATE"));
    fid = fw.client->framework_id();
    std::this_thread::sleep_for(300ms);  // a tick: state written
  }
  // The leader dies; the other takes over from the store.
  first.reset();
  REQUIRE(second.OnLoop([&] { return static_cast<bool>(second.master().BecomeLeader()); }));
  auto state = second.State();
  REQUIRE(state["tasks"].size() == 1);
  CHECK(state["frameworks"].size() == 1);

  // The agent re-registers with its running task (under the new master) and the framework re-subscribes.
  SimAgent again = ScriptedAgent(second.url(), "node-1", "cpus:2;mem:1024");
  // same id as before
  TaskStatus running;
  running.task_id = "svc.1";
  running.framework_id = fid;
  running.state = TaskState::kRunning;
  {
    // Re-register as the same agent: reuse the id via a REGISTER carrying it.
    AgentInfo info;
    info.id = agent.id();
    info.hostname = "node-1";
    info.resources = *ParseResources("cpus:2;mem:1024");
    http::ClientOptions o;
    o.timeout = 2s;
    http::Client sc(o);
    std::vector<json> events;
    http::RecordIoDecoder dec;
    http::BodySink sink = [&](const http::ClientResponse&, std::string_view chunk) -> Status {
      auto recs = dec.Feed(chunk);
      if (!recs) return tl::unexpected(recs.error());
      for (auto& rec : *recs) events.push_back(json::parse(rec));
      for (auto& e : events)
        if (e["type"] == "REGISTERED") return MakeError(Errc::kCancelled, "done");
      return {};
    };
    sc.Call("POST", second.url() + "/api/v1/agent",
            json{{"type", "REGISTER"},
                 {"register", {{"agent_info", ToJson(info)}, {"tasks", json::array({ToJson(running)})}}}}
                .dump(),
            {}, &sink);
    bool killed = false;
    for (auto& e : events) killed = killed || e["type"] == "KILL";
    CHECK_FALSE(killed);
  }
  Framework back({second.url()}, "svc", "web", fid);
  CHECK(back.client->framework_id() == fid);
  REQUIRE(back.client->Reconcile());
  auto rec = back.events.Find("UPDATE", [](const json& e) {
    return e["update"]["status"]["task_id"]["value"] == "svc.1" && e["update"]["status"]["state"] == "TASK_RUNNING";
  });
  REQUIRE(rec);
}
