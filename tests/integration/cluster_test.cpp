// The cluster scheduler end to end with real processes: etcd, two cluster-master processes electing a leader,
// three cluster-node processes running real tasks, the batch framework and the Java framework client.
#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <thread>

#include "cluster_harness.hpp"
#include "core/subprocess.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::itest;
using namespace std::chrono_literals;
using json = nlohmann::json;
using testsupport::WaitFor;

namespace {

struct Batch {
  core::Process proc;
  std::string url, log;
  Batch(LocalCluster& c, const std::string& name) {
    const uint16_t port = testsupport::FreeLoopbackPort();
    url = "http://127.0.0.1:" + std::to_string(port);
    log = c.dir().Sub(name + ".log");
    auto p = core::Spawn({BuildPath("cluster-scheduler/frameworks/batch/cluster-batch"), "--master", c.masters_csv(),
                          "--listen", "127.0.0.1:" + std::to_string(port), "--state-dir", c.dir().Sub(name)},
                         log);
    REQUIRE(p);
    proc = std::move(*p);
    REQUIRE(WaitFor([&] { return HttpCall("GET", url + "/healthz").status == 200; }, 10s));
  }
  json Job(const std::string& id) { return HttpCall("GET", url + "/v1/jobs/" + id).Json(); }
  bool WaitState(const std::string& id, const std::string& state, std::chrono::seconds t) {
    return WaitFor([&] { return Job(id).value("state", "") == state; }, t);
  }
};

// pid of each RUNNING task on a node, by task id (the node's own API).
std::map<std::string, int> TaskPids(LocalCluster& c, size_t node) {
  std::map<std::string, int> out;
  json tasks = c.NodeTasks(node);
  const json list = tasks.is_array() ? tasks : tasks.value("tasks", json::array());
  for (const auto& t : list)
    if (t.value("state", "") == "TASK_RUNNING") out[t.value("task_id", t.value("id", ""))] = t.value("pid", 0);
  return out;
}

std::map<std::string, int> AllTaskPids(LocalCluster& c) {
  std::map<std::string, int> all;
  for (size_t i = 0; i < c.node_count(); ++i)
    for (auto& [k, v] : TaskPids(c, i)) all[k] = v;
  return all;
}

int RunningInState(LocalCluster& c) {
  int n = 0;
  for (const auto& t : c.State().value("tasks", json::array())) n += t.value("state", "") == "TASK_RUNNING";
  return n;
}

}  // namespace

TEST_CASE("cluster: jobs run on real nodes; killing the leader master or a node agent kills no task; a lost node's "
          "tasks are rescheduled") {
  LocalCluster cluster(LocalCluster::Options{});
  Batch batch(cluster, "batch");
  // Logs as they are when a check fails.
  auto diag = [&] { return cluster.Diagnostics() + "--- batch\n" + cluster.LogTail(batch.log, 4000); };

  // A Spark-style job: the driver starts first, executors learn its address.
  auto r = HttpCall("POST", batch.url + "/v1/jobs",
                    R"({"id":"pi","driver":{"cmd":"sleep 4; echo driver done","cpus":0.5,"mem":64},
                        "executors":{"instances":3,"cmd":"echo executor $EXECUTOR_ID driver=$DRIVER_HOST:$DRIVER_PORT; sleep 60","cpus":0.5,"mem":64}})");
  REQUIRE(r.status == 201);
  // Long-running tasks to watch through the failovers.
  r = HttpCall("POST", batch.url + "/v1/jobs",
               R"({"id":"sleepers","maxRetries":3,"tasks":[{"cmd":"sleep 300"},{"cmd":"sleep 300"},{"cmd":"sleep 300"},
                   {"cmd":"sleep 300"},{"cmd":"sleep 300"},{"cmd":"sleep 300"}]})");
  REQUIRE(r.status == 201);
  if (!batch.WaitState("pi", "FINISHED", 60s)) FAIL(batch.Job("pi").dump() + "\n" + diag());
  auto logs = HttpCall("GET", batch.url + "/v1/jobs/pi/logs?task=executor-0");
  CHECK(logs.status == 200);
  CHECK(logs.body.find("driver=node-") != std::string::npos);
  auto dlogs = HttpCall("GET", batch.url + "/v1/jobs/pi/logs?task=driver");
  CHECK(dlogs.body.find("driver done") != std::string::npos);

  REQUIRE(WaitFor([&] { return AllTaskPids(cluster).size() == 6; }, 30s));
  const auto pids_before = AllTaskPids(cluster);

  SECTION("the leader master dies: another leads within seconds, nodes and frameworks follow, no task is killed") {
    const int old = cluster.LeaderIndex();
    REQUIRE(old >= 0);
    const auto t0 = std::chrono::steady_clock::now();
    cluster.master(old).proc.Kill(SIGKILL);
    cluster.master(old).proc.Wait(5s);
    const int now = cluster.LeaderIndex(20s);
    REQUIRE(now >= 0);
    CHECK(now != old);
    const double failover_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(failover_s < 10);
    REQUIRE(WaitFor([&] { return cluster.ConnectedNodes() == 3; }, 20s));
    REQUIRE(WaitFor([&] { return RunningInState(cluster) == 6; }, 20s));
    CHECK(AllTaskPids(cluster) == pids_before);
    // The batch framework re-subscribed: a new job still runs.
    r = HttpCall("POST", batch.url + "/v1/jobs", R"({"id":"after","tasks":[{"cmd":"echo ok"}]})");
    REQUIRE(r.status == 201);
    if (!batch.WaitState("after", "FINISHED", 30s)) FAIL(batch.Job("after").dump() + "\n" + diag());
    // The old leader comes back as a follower and redirects.
    cluster.StartMaster(old);
    REQUIRE(WaitFor([&] { return HttpCall("GET", cluster.master(old).url + "/api/v1/state").status == 307; }, 15s));
    WARN("leader failover (kill -9 to a new leader answering): " << failover_s << " s");
  }

  SECTION("a node agent is killed and restarted: it re-attaches to its running tasks") {
    const auto on_node0 = TaskPids(cluster, 0);
    cluster.KillNodeAgent(0);
    std::this_thread::sleep_for(1s);
    cluster.StartNode(0);
    REQUIRE(WaitFor([&] { return cluster.ConnectedNodes() == 3; }, 20s));
    REQUIRE(WaitFor([&] { return TaskPids(cluster, 0) == on_node0; }, 20s));
    CHECK(RunningInState(cluster) == 6);
    CHECK(AllTaskPids(cluster) == pids_before);
  }

  SECTION("a node machine is lost: its tasks become LOST and the framework runs them elsewhere") {
    // The node holding the most tasks goes (placement is up to the offers).
    size_t victim = 0;
    for (size_t i = 1; i < cluster.node_count(); ++i)
      if (TaskPids(cluster, i).size() > TaskPids(cluster, victim).size()) victim = i;
    const auto on_victim = TaskPids(cluster, victim);
    REQUIRE_FALSE(on_victim.empty());
    cluster.KillNodeMachine(victim);
    // ping timeout 2 s + removal 4 s, then the batch framework retries on the other two nodes.
    REQUIRE(WaitFor(
        [&] {
          std::map<std::string, int> all;
          for (size_t i = 0; i < cluster.node_count(); ++i)
            if (i != victim)
              for (auto& [k, v] : TaskPids(cluster, i)) all[k] = v;
          return all.size() == 6;
        },
        40s));
    json job = batch.Job("sleepers");
    CHECK(job["state"] == "RUNNING");
    int retried = 0;
    for (const auto& t : job["tasks"]) retried += t["attempts"].get<int>() > 1;
    CHECK(retried == static_cast<int>(on_victim.size()));
  }

  SECTION("a framework written in Java subscribes and runs a task") {
    const std::string jar = BuildPath("java/tugboat-java.jar");
    REQUIRE(std::ifstream(jar).good());
    core::RunOptions ro;
    ro.timeout = 90s;
    auto res = core::Run({"java", "-cp", jar, "io.tugboat.examples.RunOnce", "--master", cluster.masters_csv(),
                          "--cmd", "echo hello from java", "--timeout", "60"},
                         ro);
    REQUIRE(res);
    INFO(res->out << res->err);
    CHECK(res->exit_code == 0);
    CHECK(res->out.find("TASK_FINISHED") != std::string::npos);
  }

  batch.proc.Stop();
}
