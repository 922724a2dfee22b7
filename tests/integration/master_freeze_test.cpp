// A leader master frozen whole (SIGSTOP: a long GC pause, a VM stall, swapping) and resumed after another master
// took over, with real processes: etcd, two cluster-master processes, three cluster-node processes, the batch
// framework. Killing the leader (cluster_test.cpp) is the easy case; a frozen leader runs neither its lease watchdog
// nor anything else, so when it resumes it still believes it leads until it notices. Then every state write it
// tries must be refused by the fencing (the etcd transaction compares the leader key's create_revision and lease,
// DESIGN §7), it must step down without acting as leader (no offers, no status updates, no agent marked
// unreachable) and answer 307 to the new leader, while the cluster goes on undisturbed.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "cluster_harness.hpp"
#include "core/subprocess.hpp"
#include "etcd/client.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::itest;
using namespace std::chrono_literals;
using json = nlohmann::json;
using testsupport::WaitFor;

namespace {

// The masters' default --etcd-prefix.
const std::string kPrefix = "/tugboat/cluster/";

// A frozen master would keep a SIGTERM pending: whatever check fails, it is continued on the way out.
struct ThawOnExit {
  LocalCluster& c;
  size_t i;
  ~ThawOnExit() { c.ThawMaster(i); }
};

// GET /api/v1/state from one given master (never through LeaderIndex: asking a frozen master costs a timeout).
json StateAt(const std::string& master) {
  auto r = HttpCall("GET", master + "/api/v1/state", "", 2s);
  return r.status == 200 ? r.Json() : json::object();
}

int ConnectedAgentsAt(const std::string& master) {
  int n = 0;
  for (const auto& a : StateAt(master).value("agents", json::array())) n += a.value("connected", false) ? 1 : 0;
  return n;
}

bool FrameworkConnectedAt(const std::string& master) {
  for (const auto& f : StateAt(master).value("frameworks", json::array()))
    if (f.value("connected", false)) return true;
  return false;
}

// Task id -> state, as the given master has it.
std::map<std::string, std::string> TasksAt(const std::string& master) {
  std::map<std::string, std::string> out;
  for (const auto& t : StateAt(master).value("tasks", json::array())) out[t.value("id", "")] = t.value("state", "");
  return out;
}

// One gauge from a master's /metrics (-1 when absent or the master does not answer).
double Metric(const std::string& master, const std::string& name) {
  auto r = HttpCall("GET", master + "/metrics", "", 2s);
  if (r.status != 200) return -1;
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, name.size() + 1, name + " ") == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

size_t FileSize(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return in ? static_cast<size_t>(in.tellg()) : 0;
}

std::string ReadFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every key of the masters' state in etcd except the leader key (which belongs to the election).
std::vector<etcd::KeyValue> StateKeys(etcd::Client& etcd) {
  auto kvs = etcd.Range(kPrefix);
  REQUIRE(kvs);
  std::vector<etcd::KeyValue> out;
  for (auto& kv : *kvs)
    if (kv.key != kPrefix + "leader") out.push_back(std::move(kv));
  return out;
}

// Task id -> stored state, from etcd itself.
std::map<std::string, std::string> TasksInEtcd(etcd::Client& etcd) {
  std::map<std::string, std::string> out;
  for (const auto& kv : StateKeys(etcd)) {
    if (kv.key.compare(0, kPrefix.size() + 6, kPrefix + "tasks/") != 0) continue;
    const json j = json::parse(kv.value, nullptr, false);
    out[kv.key.substr(kPrefix.size() + 6)] =
        j.is_object() ? j.value("status", json::object()).value("state", std::string("?")) : std::string("?");
  }
  return out;
}

std::string Dump(const std::map<std::string, std::string>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += k + "=" + v + " ";
  return s;
}

}  // namespace

TEST_CASE("cluster: a leader master frozen (SIGSTOP) past its lease and resumed steps down without writing or "
          "acting; the new leader's state and every task survive") {
  // The harness's removal timeout (4 s) stands: a node notices the frozen master after 3 of the master's 0.5 s
  // heartbeat intervals (learnt from REGISTERED before its silence timer is armed) and then asks the next master,
  // not the frozen one again, so it re-registers with the new leader well before it could be removed.
  LocalCluster cluster(LocalCluster::Options{});
  BatchFramework batch(cluster, "batch");
  etcd::ClientOptions eo;
  eo.endpoints = {cluster.etcd_endpoint()};
  auto etcd_client = etcd::Client::Create(eo);
  REQUIRE(etcd_client);
  etcd::Client& etcd = **etcd_client;
  auto diag = [&] { return cluster.Diagnostics() + "--- batch\n" + cluster.LogTail(batch.log, 3000); };

  // Long-running tasks to watch through the freeze, and one to kill through the new leader while the old one is
  // frozen (so that the frozen leader's view of the cluster is stale when it resumes).
  REQUIRE(HttpCall("POST", batch.url + "/v1/jobs",
                   R"({"id":"sleepers","tasks":[{"cmd":"sleep 300"},{"cmd":"sleep 300"},{"cmd":"sleep 300"}]})")
              .status == 201);
  REQUIRE(HttpCall("POST", batch.url + "/v1/jobs", R"({"id":"victim","tasks":[{"cmd":"sleep 300"}]})").status == 201);
  if (!WaitFor([&] { return AllTaskPids(cluster).size() == 4; }, 30s)) FAIL(diag());
  REQUIRE(batch.WaitState("sleepers", "RUNNING", 10s));
  REQUIRE(batch.WaitState("victim", "RUNNING", 10s));
  const auto pids_before = AllTaskPids(cluster);

  const int old = cluster.LeaderIndex();
  REQUIRE(old >= 0);
  const size_t old_i = static_cast<size_t>(old), new_i = 1 - old_i;
  const std::string old_url = cluster.master(old_i).url, new_url = cluster.master(new_i).url;
  const std::string old_log = cluster.master(old_i).log;

  // Everything runs and the batch framework has suppressed its offers: the leader's counters stand still, so what
  // they read after the resume says whether the resumed master offered or launched anything.
  double offers_before = -1;
  REQUIRE(WaitFor(
      [&] {
        const double a = Metric(old_url, "tug_cluster_offers_sent_total");
        std::this_thread::sleep_for(1500ms);
        offers_before = Metric(old_url, "tug_cluster_offers_sent_total");
        return a >= 0 && a == offers_before;
      },
      20s));
  const double launched_before = Metric(old_url, "tug_cluster_tasks_launched_total");
  REQUIRE(launched_before >= 4);

  // ---- 1. The leader freezes.
  ThawOnExit thaw{cluster, old_i};
  const auto t_freeze = std::chrono::steady_clock::now();
  cluster.FreezeMaster(old_i);

  // ---- 2. The other master leads once the frozen one's lease has expired; nodes and the framework follow it.
  REQUIRE(WaitFor([&] { return HttpCall("GET", new_url + "/api/v1/state", "", 1s).status == 200; }, 20s));
  const double failover_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_freeze).count();
  // Meanwhile the frozen one answers nothing (its kernel accepts the connection; nobody reads it).
  CHECK(HttpCall("GET", old_url + "/api/v1/leader", "", 1s).status == 0);
  if (!WaitFor([&] { return ConnectedAgentsAt(new_url) == 3; }, 30s)) FAIL(StateAt(new_url).dump() + "\n" + diag());
  const double nodes_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_freeze).count();
  REQUIRE(WaitFor(
      [&] {
        const auto t = TasksAt(new_url);
        return t.size() == 4 && std::all_of(t.begin(), t.end(), [](const auto& kv) { return kv.second == "TASK_RUNNING"; });
      },
      20s));
  CHECK(AllTaskPids(cluster) == pids_before);
  // The framework's event stream from the frozen master goes idle; it re-subscribes with the new leader.
  if (!WaitFor([&] { return FrameworkConnectedAt(new_url); }, 40s)) FAIL(StateAt(new_url).dump() + "\n" + diag());

  // A new job launched through the new leader while the old one is frozen.
  REQUIRE(HttpCall("POST", batch.url + "/v1/jobs", R"({"id":"during","tasks":[{"cmd":"sleep 300"}]})").status == 201);
  if (!batch.WaitState("during", "RUNNING", 30s)) FAIL(batch.Job("during").dump() + "\n" + diag());

  // ---- 3. State the frozen master does not know: a task killed and a task launched through the new leader.
  const std::string victim_task = batch.Job("victim")["tasks"][0].value("task_id", "");
  const std::string during_task = batch.Job("during")["tasks"][0].value("task_id", "");
  REQUIRE(!victim_task.empty());
  REQUIRE(!during_task.empty());
  REQUIRE(HttpCall("DELETE", batch.url + "/v1/jobs/victim").status == 200);
  REQUIRE(WaitFor([&] { return AllTaskPids(cluster).count(victim_task) == 0 && TasksAt(new_url).count(victim_task) == 0; },
                  20s));
  REQUIRE(WaitFor([&] { return AllTaskPids(cluster).count(during_task) == 1; }, 10s));
  // A node's sender thread may still be stuck in a HEARTBEAT to the frozen master (cluster-node's 10 s request
  // timeout); meanwhile the new leader hears nothing from it, marks it unreachable after 2 s and the node registers
  // again. Let that settle before taking the reference state: resume no earlier than 12 s into the freeze, with
  // every node connected and every task running.
  std::this_thread::sleep_until(t_freeze + 12s);
  REQUIRE(WaitFor(
      [&] {
        const auto t = TasksAt(new_url);
        return ConnectedAgentsAt(new_url) == 3 && t.size() == 4 &&
               std::all_of(t.begin(), t.end(), [](const auto& kv) { return kv.second == "TASK_RUNNING"; });
      },
      20s));
  const auto pids_mid = AllTaskPids(cluster);
  REQUIRE(pids_mid.size() == 4);
  const auto tasks_mid = TasksAt(new_url);
  REQUIRE(tasks_mid.size() == 4);
  // The new leader wrote all that to etcd (batched per tick): what the resumed master must not overwrite.
  if (!WaitFor([&] { return TasksInEtcd(etcd) == tasks_mid; }, 10s))
    FAIL("etcd: " + Dump(TasksInEtcd(etcd)) + "\nleader: " + Dump(tasks_mid));

  // What etcd holds before the resume. The new leader may legitimately rewrite keys afterwards (a node whose
  // heartbeats were stuck on the frozen master is marked unreachable and re-registers: its agent and tasks are
  // saved again), but with the same content: same keys, same agents and frameworks, the same task states.
  std::map<std::string, std::string> stored_before;
  for (const auto& kv : StateKeys(etcd)) stored_before[kv.key] = kv.value;
  auto mark = etcd.Put("/tugboat-freeze-test/mark", "resume");
  REQUIRE(mark);
  const int64_t resume_revision = *mark;

  // ---- 4. The old leader resumes. It believes it leads until it notices; by then its lease is long gone.
  const size_t resume_log_offset = FileSize(old_log);
  const auto t_resume = std::chrono::steady_clock::now();
  cluster.ThawMaster(old_i);
  // A harmless framework call (an unknown framework's RECONCILE): a follower redirects it to the leader.
  HttpReply redirect;
  if (!WaitFor(
          [&] {
            redirect = HttpCall("POST", old_url + "/api/v1/scheduler",
                                R"({"type":"RECONCILE","framework_id":{"value":"freeze-test"},"reconcile":{"tasks":[]}})",
                                2s);
            return redirect.status == 307;
          },
          15s))
    FAIL("the resumed master answers " + std::to_string(redirect.status) + " " + redirect.body + "\n" +
         cluster.LogTail(old_log));
  const double resume_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_resume).count();
  INFO(redirect.body);
  CHECK(redirect.body.find(new_url) != std::string::npos);
  const json old_says = HttpCall("GET", old_url + "/api/v1/leader", "", 2s).Json();
  CHECK(old_says.value("leading", true) == false);
  CHECK(old_says.value("leader", "") == new_url);
  CHECK(HttpCall("GET", new_url + "/api/v1/leader", "", 2s).Json().value("leading", false) == true);

  // Give a resumed master that still acted as leader the time to do damage: its first tick finds every node silent
  // for longer than --agent-ping-timeout (2 s) and would mark them unreachable, its tasks TASK_UNREACHABLE.
  std::this_thread::sleep_for(3s);

  // etcd holds the new leader's state, not the resumed master's stale view: no task resurrected, dropped or marked
  // unreachable or lost, no agent removed, nothing else changed.
  {
    std::string written;
    std::set<std::string> keys_after, keys_before;
    for (const auto& [k, v] : stored_before) keys_before.insert(k);
    for (const auto& kv : StateKeys(etcd)) {
      keys_after.insert(kv.key);
      if (kv.mod_revision > resume_revision) written += kv.key + " = " + kv.value + "\n";
      if (kv.key.compare(0, kPrefix.size() + 6, kPrefix + "tasks/") != 0 && stored_before.count(kv.key))
        CHECK(kv.value == stored_before[kv.key]);
    }
    INFO("state keys written since the resume:\n" << written);
    CHECK(keys_after == keys_before);
    CHECK(TasksInEtcd(etcd) == tasks_mid);
  }
  // The new leader still knows and runs everything; nothing was killed, lost or restarted.
  CHECK(TasksAt(new_url) == tasks_mid);
  CHECK(ConnectedAgentsAt(new_url) == 3);
  CHECK(AllTaskPids(cluster) == pids_mid);
  for (const char* id : {"sleepers", "during"}) {
    const json job = batch.Job(id);
    INFO(job.dump());
    CHECK(job.value("state", "") == "RUNNING");
    for (const auto& t : job.value("tasks", json::array())) {
      CHECK(t.value("state", "") == "TASK_RUNNING");
      CHECK(t.value("attempts", 0) == 1);
    }
  }
  CHECK(batch.Job("victim").value("state", "") == "KILLED");

  // The resumed master stepped down and did not act as leader: no offer, no launch, nothing in its log that only a
  // leader does (what master.cpp logs when it marks agents unreachable, removes them, takes a registration or a
  // subscription, adopts a task).
  CHECK(Metric(old_url, "tug_cluster_leading") == 0);
  CHECK(Metric(old_url, "tug_cluster_offers_sent_total") == offers_before);
  CHECK(Metric(old_url, "tug_cluster_tasks_launched_total") == launched_before);
  const std::string resumed_log = ReadFrom(old_log, resume_log_offset);
  INFO("the resumed master's log:\n" << resumed_log.substr(0, 6000));
  // main.cpp's on_demoted, or the store refusing a write (master.cpp's Flush): either way it said it stepped down.
  CHECK(resumed_log.find("no longer the leader") != std::string::npos);
  for (const char* leader_only : {") unreachable", "removing agent", "registered", "subscribed", "adopting task"})
    CHECK(resumed_log.find(leader_only) == std::string::npos);
  const bool refused_by_etcd = resumed_log.find("etcd refused the write") != std::string::npos;

  // ---- 5. The cluster keeps working: one more task launches and finishes through the new leader.
  REQUIRE(HttpCall("POST", batch.url + "/v1/jobs", R"({"id":"after","tasks":[{"cmd":"echo ok"}]})").status == 201);
  if (!batch.WaitState("after", "FINISHED", 30s)) FAIL(batch.Job("after").dump() + "\n" + diag());
  CHECK(AllTaskPids(cluster) == pids_mid);

  WARN("freeze -> the other master leads: " << failover_s << " s, its 3 nodes registered: " << nodes_s
                                            << " s; resume -> the old leader answers 307: " << resume_s
                                            << " s; a write of the resumed master refused by etcd: "
                                            << (refused_by_etcd ? "yes" : "no (it stepped down before writing)"));
}
