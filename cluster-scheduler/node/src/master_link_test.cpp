// The agent protocol against small in-test masters built on http::Server: REGISTER and its event stream, LAUNCH,
// updates with uuids and their re-sending, ACKNOWLEDGE, heartbeats both ways, heartbeat loss, stale stream ids,
// 307 redirects and 503 "no leader", SHUTDOWN (also as the first event answering a removed agent), a frozen master
// (bounded calls, the next master asked), the silence timer armed for the learnt interval, a node restart keeping its
// agent id; and the node's own HTTP API.
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <mutex>
#include <set>

#include "http/client.hpp"
#include "http/recordio.hpp"
#include "http/server.hpp"
#include "node/master_link.hpp"
#include "node/node.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::node;
using namespace tug::cluster::node::testing;
using json = nlohmann::json;

namespace {

// A master that leads (streams events, records updates and heartbeats), redirects to another, or has no leader.
class FakeMaster {
 public:
  enum class Mode { kLeader, kRedirect, kNoLeader };

  explicit FakeMaster(Mode mode = Mode::kLeader, std::string redirect_to = "")
      : mode_(mode), redirect_to_(std::move(redirect_to)) {
    auto s = http::Server::Start(io_, "127.0.0.1", 0, [this](const http::Request& r) { return Handle(r); });
    REQUIRE(s);
    server_ = std::move(*s);
    io_thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
    ticker_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(heartbeat_s * 1000)));
        if (send_heartbeats) Send({{"type", "HEARTBEAT"}});
      }
    });
  }
  ~FakeMaster() {
    Thaw();
    stop_ = true;
    ticker_.join();
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      server_->Stop();
      done.set_value();
    });
    done.get_future().wait();
    io_.stop();
    io_thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  void Send(const json& ev) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_ && !stream_->closed()) stream_->Write(http::RecordIoEncode(ev.dump()));
  }
  void Launch(const TaskInfo& t) {
    Send({{"type", "LAUNCH"}, {"launch", {{"framework_id", IdJson("fw-1")}, {"task_info", ToJson(t)}}}});
  }
  void Ack(const TaskStatus& s) {
    Send({{"type", "ACKNOWLEDGE"}, {"acknowledge", {{"task_id", IdJson(s.task_id)}, {"uuid", s.uuid}}}});
  }
  // Forget the current stream id, as a master that failed over would: the node's next request gets 409.
  void ForgetStream() {
    std::lock_guard<std::mutex> lock(mu_);
    stream_id_ = "forgotten";
  }

  // As cluster-master's RemoveAgent: the agent's stream ends and its next REGISTER is answered with SHUTDOWN.
  void RemoveAgent(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    removed_.insert(id);
    if (stream_) stream_->Close();
  }
  // As SIGSTOP: the server's thread stops (the kernel still accepts connections; nothing is read or answered,
  // no event is written) until Thaw().
  void Freeze() {
    std::lock_guard<std::mutex> lock(freeze_mu_);
    if (frozen_) return;
    frozen_ = true;
    auto gate = std::make_shared<std::promise<void>>();
    thaw_ = gate;
    boost::asio::post(io_, [gate] { gate->get_future().wait(); });
  }
  void Thaw() {
    std::lock_guard<std::mutex> lock(freeze_mu_);
    if (!frozen_) return;
    frozen_ = false;
    thaw_->set_value();
  }

  std::vector<json> registers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return registers_;
  }
  std::vector<TaskStatus> updates() const {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_;
  }
  std::vector<TaskStatus> UpdatesOf(const std::string& id) const {
    std::vector<TaskStatus> out;
    for (auto& u : updates())
      if (u.task_id == id) out.push_back(u);
    return out;
  }
  int heartbeats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeats_;
  }
  int refused() const {
    std::lock_guard<std::mutex> lock(mu_);
    return refused_;
  }

  std::atomic<bool> send_heartbeats{true};
  double heartbeat_s = 0.3;

 private:
  http::Response Handle(const http::Request& r) {
    if (r.Path() != "/api/v1/agent" || r.method != "POST") return http::JsonError(404, "no route");
    if (mode_ == Mode::kNoLeader) return http::JsonError(503, "no leader");
    if (mode_ == Mode::kRedirect) {
      http::Response res;
      res.status = 307;
      res.headers = {{"Location", redirect_to_ + "/api/v1/agent"}};
      return res;
    }
    json body = json::parse(r.body);
    const std::string type = body.value("type", "");
    std::lock_guard<std::mutex> lock(mu_);
    if (type == "REGISTER") {
      registers_.push_back(body);
      std::string id = body["register"]["agent_info"].contains("id")
                           ? body["register"]["agent_info"]["id"]["value"].get<std::string>()
                           : "agent-" + std::to_string(++agents_);
      stream_id_ = "stream-" + std::to_string(registers_.size());
      if (stream_) stream_->Close();
      stream_ = http::Server::MakeStream(io_);
      if (removed_.count(id)) {
        stream_->Write(http::RecordIoEncode(
            json{{"type", "SHUTDOWN"}, {"shutdown", {{"message", "agent " + id + " was removed; register anew"}}}}
                .dump()));
        stream_->Close();
        http::Response res;
        res.content_type = "application/recordio";
        res.stream = stream_;
        return res;
      }
      stream_->Write(http::RecordIoEncode(
          json{{"type", "REGISTERED"},
               {"registered", {{"agent_id", IdJson(id)}, {"heartbeat_interval_seconds", heartbeat_s}}}}
              .dump()));
      http::Response res;
      res.content_type = "application/recordio";
      res.headers = {{"Mesos-Stream-Id", stream_id_}};
      res.stream = stream_;
      return res;
    }
    if (r.Header("Mesos-Stream-Id") != stream_id_) {
      ++refused_;
      return http::JsonError(409, "stale stream id");
    }
    if (type == "UPDATE") {
      // No Catch assertions here: this runs on the server's thread.
      auto st = TaskStatusFromJson(body["update"]["status"], "update.status");
      if (!st) return http::JsonError(400, st.error().Message());
      if (body["agent_id"]["value"] != st->agent_id) return http::JsonError(400, "agent ids differ");
      updates_.push_back(*st);
      http::Response res;
      res.status = 202;
      return res;
    }
    if (type == "HEARTBEAT") {
      ++heartbeats_;
      http::Response res;
      res.status = 202;
      return res;
    }
    return http::JsonError(400, "unknown type " + type);
  }

  Mode mode_;
  std::string redirect_to_;
  boost::asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread io_thread_;
  std::thread ticker_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::shared_ptr<http::Stream> stream_;
  std::string stream_id_;
  std::vector<json> registers_;
  std::vector<TaskStatus> updates_;
  int heartbeats_ = 0;
  int refused_ = 0;
  int agents_ = 0;
  std::set<std::string> removed_;
  std::mutex freeze_mu_;
  bool frozen_ = false;
  std::shared_ptr<std::promise<void>> thaw_;
};

LinkOptions Link(const std::vector<std::string>& masters, const std::string& dir) {
  LinkOptions o;
  o.masters = masters;
  o.agent.hostname = "node-a";
  o.agent.endpoint = "127.0.0.1:5051";
  o.agent.resources = Resources::Make(2, 1024, 0, {{31000, 31009}});
  o.agent.attributes = {{"zone", "a"}};
  o.state_file = dir + "/meta/agent.json";
  o.backoff_min = std::chrono::milliseconds(100);
  o.backoff_max = std::chrono::milliseconds(500);
  o.resend_interval = std::chrono::milliseconds(1000);
  o.request_timeout = std::chrono::milliseconds(2000);
  o.default_heartbeat_s = 0.3;  // what the fake masters use: loss is detected after 3 x 0.3 s
  return o;
}

bool HasState(const std::vector<TaskStatus>& updates, TaskState s) {
  for (const auto& u : updates)
    if (u.state == s) return true;
  return false;
}

}  // namespace

TEST_CASE("node registers, runs a LAUNCHed task, reports its updates until acknowledged, and answers KILLs") {
  FakeMaster master;
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  MasterLink link(Link({master.url()}, dir.path()), *runner);
  link.Start();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
  CHECK(link.agent_id() == "agent-1");
  CHECK(link.leader() == master.url());
  CHECK(Slurp(dir.path() + "/meta/agent.json").find("\"agent-1\"") != std::string::npos);
  auto reg = master.registers().at(0)["register"];
  CHECK_FALSE(reg["agent_info"].contains("id"));
  CHECK(reg["agent_info"]["hostname"] == "node-a");
  CHECK(reg["tasks"].empty());

  auto task = ShellTask("t1", "echo hi; sleep 0.3");
  task.framework_id.clear();  // the LAUNCH event's framework_id fills it
  master.Launch(task);
  master.Launch(task);  // a duplicate LAUNCH is ignored
  REQUIRE(testsupport::WaitFor([&] { return HasState(master.UpdatesOf("t1"), TaskState::kFinished); }, 15s));
  auto updates = master.UpdatesOf("t1");
  REQUIRE(updates.size() >= 3);
  CHECK(StateNames({updates.begin(), updates.begin() + 3}) ==
        std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"});
  for (const auto& u : updates) {
    CHECK_FALSE(u.uuid.empty());
    CHECK(u.agent_id == "agent-1");
    CHECK(u.framework_id == "fw-1");
  }

  // Unacknowledged updates come again after the resend interval, in order.
  REQUIRE(testsupport::WaitFor([&] { return master.UpdatesOf("t1").size() >= 6; }, 5s));
  auto again = master.UpdatesOf("t1");
  CHECK(again[3].uuid == updates[0].uuid);
  CHECK(again[5].uuid == updates[2].uuid);

  for (int i = 0; i < 3; ++i) master.Ack(updates[static_cast<size_t>(i)]);
  REQUIRE(testsupport::WaitFor([&] { return runner->Unacknowledged().empty(); }, 5s));
  CHECK(runner->Get("t1")->forgotten);
  CHECK_FALSE(core::DefaultEnv()->Exists(dir.path() + "/meta/tasks/t1.json"));
  CHECK(master.heartbeats() > 0);

  master.Send({{"type", "KILL"}, {"kill", {{"framework_id", IdJson("fw-1")}, {"task_id", IdJson("nope")}}}});
  REQUIRE(testsupport::WaitFor([&] { return !master.UpdatesOf("nope").empty(); }, 5s));
  auto dropped = master.UpdatesOf("nope").at(0);
  CHECK(dropped.state == TaskState::kDropped);
  CHECK(dropped.message == "unknown task");
  CHECK(dropped.framework_id == "fw-1");
  master.Ack(dropped);
  REQUIRE(testsupport::WaitFor([&] { return runner->Unacknowledged().empty(); }, 5s));
}

TEST_CASE("after heartbeat loss the node registers again with the same agent id and lists its running task") {
  FakeMaster master;
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto link = std::make_unique<MasterLink>(Link({master.url()}, dir.path()), *runner);
  link->Start();
  REQUIRE(testsupport::WaitFor([&] { return link->connected(); }, 10s));
  master.Launch(ShellTask("long", "exec sleep 1000"));
  REQUIRE(testsupport::WaitFor([&] { return HasState(master.UpdatesOf("long"), TaskState::kRunning); }, 15s));
  for (const auto& u : master.UpdatesOf("long")) master.Ack(u);
  REQUIRE(testsupport::WaitFor([&] { return runner->Unacknowledged().empty(); }, 5s));
  const pid_t pid = runner->Get("long")->pid;

  // The master goes silent: no event for 3 heartbeat intervals.
  master.send_heartbeats = false;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(testsupport::WaitFor([&] { return master.registers().size() >= 2; }, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  master.send_heartbeats = true;
  auto reg = master.registers().at(1)["register"];
  CHECK(reg["agent_info"]["id"]["value"] == "agent-1");
  REQUIRE(reg["tasks"].size() == 1);
  CHECK(reg["tasks"][0]["task_id"]["value"] == "long");
  CHECK(reg["tasks"][0]["state"] == "TASK_RUNNING");
  CHECK(reg["tasks"][0]["agent_id"]["value"] == "agent-1");
  REQUIRE(reg["task_infos"].size() == 1);
  auto info = TaskInfoFromJson(reg["task_infos"][0], "task_infos[0]");
  REQUIRE(info);
  CHECK(info->task_id == "long");
  CHECK(info->framework_id == "fw-1");
  CHECK(info->command.value == "exec sleep 1000");
  CHECK(reg["unacknowledged"].empty());
  CHECK(runner->Get("long")->pid == pid);
  CHECK(Alive(pid));

  // A stale stream id (the master forgot our stream): HEARTBEAT is refused with 409 and the node registers again.
  REQUIRE(testsupport::WaitFor([&] { return link->connected(); }, 5s));
  const size_t before = master.registers().size();
  master.ForgetStream();
  REQUIRE(testsupport::WaitFor([&] { return master.registers().size() > before; }, 10s));
  CHECK(master.refused() >= 1);

  // The node restarts (runner and link recreated on the same work dir): same agent id, the task still listed.
  link.reset();
  runner.reset();
  runner = OpenRunner(dir.path());
  link = std::make_unique<MasterLink>(Link({master.url()}, dir.path()), *runner);
  const size_t before_restart = master.registers().size();
  link->Start();
  REQUIRE(testsupport::WaitFor([&] { return master.registers().size() > before_restart && link->connected(); }, 10s));
  auto after = master.registers().back()["register"];
  CHECK(after["agent_info"]["id"]["value"] == "agent-1");
  REQUIRE(after["tasks"].size() == 1);
  CHECK(runner->Get("long")->pid == pid);

  master.Send({{"type", "KILL"}, {"kill", {{"framework_id", IdJson("fw-1")}, {"task_id", IdJson("long")}}}});
  REQUIRE(testsupport::WaitFor([&] { return HasState(master.UpdatesOf("long"), TaskState::kKilled); }, 10s));
  CHECK_FALSE(Alive(pid));
}

TEST_CASE("the node finds the leader through a 503 'no leader' master and a follower's 307 redirect") {
  FakeMaster leader;
  FakeMaster follower(FakeMaster::Mode::kRedirect, leader.url());
  FakeMaster electing(FakeMaster::Mode::kNoLeader);
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  MasterLink link(Link({electing.url(), follower.url()}, dir.path()), *runner);
  link.Start();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
  CHECK(link.leader() == leader.url());
  CHECK(leader.registers().size() == 1);
  leader.Launch(ShellTask("r1", "true"));
  REQUIRE(testsupport::WaitFor([&] { return HasState(leader.UpdatesOf("r1"), TaskState::kFinished); }, 15s));
  CHECK(leader.heartbeats() >= 0);
}

TEST_CASE("SHUTDOWN from the master kills every task and the node registers anew as a new agent") {
  FakeMaster master;
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  MasterLink link(Link({master.url()}, dir.path()), *runner);
  link.Start();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
  master.Launch(ShellTask("doomed", "exec sleep 1000"));
  REQUIRE(testsupport::WaitFor([&] { return StateOf(*runner, "doomed") == TaskState::kRunning; }, 15s));
  const pid_t pid = runner->Get("doomed")->pid;

  master.Send({{"type", "SHUTDOWN"}, {"shutdown", {{"message", "agent removed after timeout"}}}});
  REQUIRE(testsupport::WaitFor([&] { return master.registers().size() >= 2 && link.connected(); }, 10s));
  auto reg = master.registers().at(1)["register"];
  CHECK_FALSE(reg["agent_info"].contains("id"));
  CHECK(link.agent_id() == "agent-2");
  REQUIRE(testsupport::WaitFor([&] { return !Alive(pid); }, 10s));
  REQUIRE(testsupport::WaitFor([&] { return runner->Unacknowledged().empty() && !runner->Get("doomed")->unacknowledged; },
                               10s));
  CHECK(runner->LatestStatuses().empty());
}

TEST_CASE("a removed node's re-registration is answered SHUTDOWN: tasks killed silently, back as a new agent") {
  FakeMaster master;
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  MasterLink link(Link({master.url()}, dir.path()), *runner);
  link.Start();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
  master.Launch(ShellTask("old1", "exec sleep 1000"));
  master.Launch(ShellTask("old2", "exec sleep 1000"));
  REQUIRE(testsupport::WaitFor([&] { return HasState(master.UpdatesOf("old1"), TaskState::kRunning) &&
                                            HasState(master.UpdatesOf("old2"), TaskState::kRunning); },
                               15s));
  const pid_t pid1 = runner->Get("old1")->pid, pid2 = runner->Get("old2")->pid;
  // Updates stay unacknowledged: without the SHUTDOWN they would be re-sent every resend_interval (1 s).

  master.RemoveAgent("agent-1");
  REQUIRE(testsupport::WaitFor([&] { return link.connected() && link.agent_id() == "agent-2"; }, 10s));
  const size_t updates_at_new = master.UpdatesOf("old1").size() + master.UpdatesOf("old2").size();
  auto regs = master.registers();
  REQUIRE(regs.size() == 3);  // the first, the removed agent's (answered SHUTDOWN), the new agent's
  CHECK(regs[1]["register"]["agent_info"]["id"]["value"] == "agent-1");
  auto fresh = regs[2]["register"];
  CHECK_FALSE(fresh["agent_info"].contains("id"));
  CHECK(fresh["tasks"].empty());
  CHECK(fresh["task_infos"].empty());
  CHECK(fresh["unacknowledged"].empty());
  REQUIRE(testsupport::WaitFor([&] { return !Alive(pid1) && !Alive(pid2); }, 10s));
  CHECK(runner->Unacknowledged().empty());
  CHECK(Slurp(dir.path() + "/meta/agent.json").find("\"agent-2\"") != std::string::npos);
  // Past two resend intervals: nothing more about the old tasks, under either agent id.
  std::this_thread::sleep_for(2500ms);
  CHECK(master.UpdatesOf("old1").size() + master.UpdatesOf("old2").size() == updates_at_new);
  for (const auto& u : master.updates()) CHECK_FALSE((u.agent_id == "agent-2" && u.task_id.rfind("old", 0) == 0));
  CHECK(master.registers().size() == 3);
}

TEST_CASE("a master that accepts connections but answers nothing is given up within bounds; the next one is used") {
  FakeMaster a, b;
  a.heartbeat_s = b.heartbeat_s = 1.0;
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto o = Link({a.url(), b.url()}, dir.path());
  o.default_heartbeat_s = 1.0;
  o.request_timeout = std::chrono::milliseconds(10000);  // the old per-call wait: it must not be what bounds a call
  MasterLink link(o, *runner);
  link.Start();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
  REQUIRE(link.leader() == a.url());
  a.Launch(ShellTask("w", "exec sleep 1000"));
  REQUIRE(testsupport::WaitFor([&] { return HasState(a.UpdatesOf("w"), TaskState::kRunning); }, 15s));
  for (const auto& u : a.UpdatesOf("w")) a.Ack(u);
  REQUIRE(testsupport::WaitFor([&] { return runner->Unacknowledged().empty(); }, 5s));

  // a freezes (its kernel still accepts; a heartbeat posted now waits for an answer that never comes). While
  // frozen the task ends: its update must reach b soon after the node moved there, not after a 10 s heartbeat.
  a.Freeze();
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(runner->Kill("w"));
  // Stream silence is 3 x 1 s; then b (the next in the list), not a second wait on a.
  REQUIRE(testsupport::WaitFor([&] { return link.connected() && link.leader() == b.url(); }, 8s));
  const auto moved = std::chrono::steady_clock::now() - t0;
  CHECK(moved < 4500ms);
  REQUIRE(testsupport::WaitFor([&] { return HasState(b.UpdatesOf("w"), TaskState::kKilled); }, 8s));
  const auto updated = std::chrono::steady_clock::now() - t0;
  CHECK(updated < 5s);
  CHECK(b.registers().at(0)["register"]["agent_info"]["id"]["value"] == "agent-1");
  CHECK(link.agent_id() == "agent-1");
}

TEST_CASE("first connection of a fresh node: the heartbeat interval learnt from REGISTERED arms the silence timer") {
  FakeMaster master;  // 0.3 s heartbeats
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto o = Link({master.url()}, dir.path());
  o.default_heartbeat_s = 2;  // the production default (cluster-master's --heartbeat-interval default)
  MasterLink link(o, *runner);
  link.Start();
  // REGISTERED says 0.3 s: the node registers again at once with a 0.9 s silence timer, as the same agent.
  REQUIRE(testsupport::WaitFor([&] { return master.registers().size() >= 2 && link.connected(); }, 10s));
  CHECK(master.registers().at(1)["register"]["agent_info"]["id"]["value"] == "agent-1");
  CHECK(Slurp(dir.path() + "/meta/agent.json").find("0.3") != std::string::npos);
  std::this_thread::sleep_for(1500ms);  // settled: heartbeats keep this stream, no more registrations
  const size_t settled = master.registers().size();
  CHECK(settled == 2);

  master.Freeze();
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(testsupport::WaitFor([&] { return !link.connected(); }, 10s));
  const auto lost = std::chrono::steady_clock::now() - t0;
  CHECK(lost < 2s);  // 3 x 0.3 s (+ slack), not 3 x 2 s
  master.Thaw();
  REQUIRE(testsupport::WaitFor([&] { return link.connected(); }, 10s));
}

TEST_CASE("the node's HTTP API lists tasks with pids and ports and serves their logs") {
  FakeMaster master;
  testsupport::TempDir dir("tug-node");
  NodeOptions o;
  o.masters = {master.url()};
  o.work_dir = dir.path();
  o.hostname = "node-a";
  o.resources = "cpus:2;mem:1024;ports:[31000-31009]";
  o.attributes = "zone:a;rack:r1";
  o.supervisor_exe = TUG_CLUSTER_NODE_EXE;
  o.link = Link({}, dir.path());
  auto node = Node::Start(o);
  REQUIRE(node);
  REQUIRE(testsupport::WaitFor([&] { return (*node)->link().connected(); }, 10s));
  auto info = master.registers().at(0)["register"]["agent_info"];
  CHECK(info["endpoint"] == "127.0.0.1:" + std::to_string((*node)->port()));
  auto attrs = AttributesFromJson(info["attributes"], "attributes");
  REQUIRE(attrs);
  CHECK(attrs->at("zone") == "a");
  CHECK(attrs->at("rack") == "r1");
  CHECK(attrs->at("hostname") == "node-a");
  CHECK(attrs->at("arch") == oci::HostPlatform().architecture);

  const uint32_t port = 31003;
  master.Launch(ShellTask("api/1", "for i in 1 2 3 4 5; do echo line $i; done; echo err >&2; exec sleep 1000", {port}));
  REQUIRE(testsupport::WaitFor([&] { return StateOf((*node)->runner(), "api/1") == TaskState::kRunning; }, 15s));
  REQUIRE(testsupport::WaitFor(
      [&] { return Slurp((*node)->runner().SandboxOf("api/1") + "/stdout").find("line 5") != std::string::npos; }, 5s));

  http::Client c;
  const std::string base = "http://127.0.0.1:" + std::to_string((*node)->port());
  auto health = c.Call("GET", base + "/healthz");
  REQUIRE(health);
  auto hj = json::parse(health->body);
  CHECK(hj["registered"] == true);
  CHECK(hj["agent_id"] == "agent-1");

  auto list = c.Call("GET", base + "/api/v1/tasks");
  REQUIRE(list);
  auto tasks = json::parse(list->body)["tasks"];
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0]["task_id"] == "api/1");
  CHECK(tasks[0]["state"] == "TASK_RUNNING");
  CHECK(tasks[0]["pid"].get<int>() > 0);
  CHECK(tasks[0]["ports"] == json::array({port}));

  auto logs = c.Call("GET", base + "/api/v1/tasks/api%2F1/logs?stream=stdout&tail=2");
  REQUIRE(logs);
  CHECK(logs->status == 200);
  CHECK(logs->body == "line 4\nline 5\n");
  auto err = c.Call("GET", base + "/api/v1/tasks/api%2F1/logs?stream=stderr");
  REQUIRE(err);
  CHECK(err->body == "err\n");
  auto missing = c.Call("GET", base + "/api/v1/tasks/nobody");
  REQUIRE(missing);
  CHECK(missing->status == 404);

  REQUIRE((*node)->runner().Kill("api/1"));
  REQUIRE(WaitTerminal((*node)->runner(), "api/1", 10s));
}
