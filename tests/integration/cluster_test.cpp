// The cluster scheduler end to end with real processes: etcd, two cluster-master processes electing a leader,
// three cluster-node processes running real tasks, the batch framework and the Java framework client.
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <mutex>
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

int RunningInState(LocalCluster& c) {
  int n = 0;
  for (const auto& t : c.State().value("tasks", json::array())) n += t.value("state", "") == "TASK_RUNNING";
  return n;
}

}  // namespace

TEST_CASE("cluster: jobs run on real nodes; killing the leader master or a node agent kills no task; a lost node's "
          "tasks are rescheduled") {
  LocalCluster cluster(LocalCluster::Options{});
  BatchFramework batch(cluster, "batch");
  // Logs as they are when a check fails.
  auto diag = [&] { return cluster.Diagnostics() + "--- batch\n" + cluster.LogTail(batch.log, 4000); };
  // Without the operator token, no job.
  CHECK(HttpCallWithHeaders("POST", batch.url + "/v1/jobs", R"({"id":"x","tasks":[{"cmd":"true"}]})", {}).status == 401);
  CHECK(HttpCallWithHeaders("POST", batch.url + "/v1/jobs", R"({"id":"x","tasks":[{"cmd":"true"}]})",
                            {{"Authorization", "Bearer " + cluster.viewer_token()}})
            .status == 403);

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

  // The failures follow one another on the same cluster (one start-up instead of four; each step also proves
  // the cluster came out of the previous one whole).
  // ---- A node agent is killed and restarted: it re-attaches to its running tasks.
  {
    const auto on_node0 = TaskPids(cluster, 0);
    cluster.KillNodeAgent(0);
    std::this_thread::sleep_for(1s);
    cluster.StartNode(0);
    REQUIRE(WaitFor([&] { return cluster.ConnectedNodes() == 3; }, 20s));
    REQUIRE(WaitFor([&] { return TaskPids(cluster, 0) == on_node0; }, 20s));
    CHECK(RunningInState(cluster) == 6);
    CHECK(AllTaskPids(cluster) == pids_before);
  }

  // ---- The leader master dies: another leads within seconds, nodes and frameworks follow, no task is killed.
  {
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

  // ---- A node machine is lost: its tasks become LOST and the framework runs them elsewhere.
  {
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

  // ---- A framework written in Java subscribes and runs a task (on the two nodes left).
  {
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

namespace {

struct Services {
  core::Process proc;
  std::string url, log;
  Services(LocalCluster& c, const std::string& name) {
    const uint16_t port = testsupport::FreeLoopbackPort();
    url = "http://127.0.0.1:" + std::to_string(port);
    log = c.dir().Sub(name + ".log");
    auto p = core::Spawn({BuildPath("cluster-scheduler/frameworks/services/cluster-services"), "--master",
                          c.masters_csv(), "--listen", "127.0.0.1:" + std::to_string(port), "--state-dir",
                          c.dir().Sub(name), "--haproxy", c.dir().Sub(name + "-haproxy"), "--drain-seconds", "1",
                          "--token-file", c.token_file()},
                         log);
    REQUIRE(p);
    proc = std::move(*p);
    REQUIRE(WaitFor([&] { return HttpCall("GET", url + "/healthz").status == 200; }, 20s));
  }
  ~Services() { proc.Stop(10s); }
  json App(const std::string& id) { return HttpCall("GET", url + "/v2/apps/" + id).Json(); }
  json Tasks(const std::string& id) { return HttpCall("GET", url + "/v2/apps/" + id + "/tasks").Json().value("tasks", json::array()); }
  json Deployments() { return HttpCall("GET", url + "/v2/deployments").Json(); }
  int Healthy(const std::string& id) {
    const json a = App(id);
    return a.contains("app") ? a["app"].value("tasksHealthy", 0) : 0;
  }
};

// A request loop through the gateway on its own thread: counts answers and failures (no retries of our own).
class RequestLoop {
 public:
  explicit RequestLoop(uint16_t port) : port_(port) {
    for (int i = 0; i < 2; ++i)
      threads_.emplace_back([this] {
        while (!stop_) {
          auto r = HttpCall("GET", "http://127.0.0.1:" + std::to_string(port_) + "/", "", 5s);
          std::lock_guard lock(mu_);
          if (r.status == 200) {
            ++ok_;
            bodies_.insert(r.body.substr(0, r.body.find(" from ")) + r.body.substr(r.body.find(" version ")));
          } else {
            ++failed_;
            if (failures_.size() < 5) failures_.push_back(std::to_string(r.status) + " " + r.body.substr(0, 100));
          }
        }
      });
  }
  ~RequestLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int ok() {
    std::lock_guard lock(mu_);
    return ok_;
  }
  int failed() {
    std::lock_guard lock(mu_);
    return failed_;
  }
  std::string failures() {
    std::lock_guard lock(mu_);
    std::string s;
    for (auto& f : failures_) s += f + "\n";
    return s;
  }
  std::set<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  uint16_t port_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  int ok_ = 0, failed_ = 0;
  std::vector<std::string> failures_;
  std::set<std::string> bodies_;
};

std::string HelloApp(uint16_t gateway_port, const std::string& version, int instances) {
  const std::string jar = BuildPath("java/tugboat-java.jar");
  return json{{"id", "/hello"},
              {"cmd", "exec java -Xmx64m -cp " + jar + " io.tugboat.examples.HelloService"},
              {"instances", instances},
              {"cpus", 0.2},
              {"mem", 256},
              {"ports", json::array({0})},
              {"env", {{"VERSION", version}}},
              {"healthChecks",
               json::array({{{"protocol", "HTTP"}, {"path", "/health"}, {"portIndex", 0}, {"gracePeriodSeconds", 20},
                             {"intervalSeconds", 1}, {"timeoutSeconds", 2}, {"maxConsecutiveFailures", 3}}})},
              {"constraints", json::array({json::array({"hostname", "UNIQUE"})})},
              {"upgradeStrategy", {{"minimumHealthCapacity", 0.6}, {"maximumOverCapacity", 0.0}}},
              {"gateway", {{"port", gateway_port}, {"mode", "http"}}}}
      .dump();
}

}  // namespace

TEST_CASE("cluster: a Java service behind HAProxy is rolled, scaled and shares the cluster with batch by DRF") {
  LocalCluster cluster(LocalCluster::Options{});
  Services services(cluster, "services");
  auto diag = [&] { return cluster.Diagnostics() + "--- services\n" + cluster.LogTail(services.log, 5000); };
  const uint16_t gw = testsupport::FreeLoopbackPort();

  // Nobody runs code on the cluster without a credential: anonymous, unknown and viewer tokens change nothing.
  const std::string sneaky = R"({"id":"/sneaky","cmd":"touch /tmp/pwned","instances":1})";
  CHECK(HttpCallWithHeaders("POST", services.url + "/v2/apps", sneaky, {}).status == 401);
  CHECK(HttpCallWithHeaders("POST", services.url + "/v2/apps", sneaky, {{"Authorization", "Bearer tug_nope"}}).status ==
        401);
  CHECK(HttpCallWithHeaders("POST", services.url + "/v2/apps", sneaky,
                            {{"Authorization", "Bearer " + cluster.viewer_token()}})
            .status == 403);
  CHECK(HttpCallWithHeaders("GET", services.url + "/v2/apps", "", {}).status == 401);
  CHECK(HttpCallWithHeaders("GET", services.url + "/v2/apps", "",
                            {{"Authorization", "Bearer " + cluster.viewer_token()}})
            .status == 200);
  CHECK(HttpCallWithHeaders("GET", services.url + "/healthz", "", {}).status == 200);  // health checkers
  // A web page posting text/plain to 127.0.0.1 carries a foreign Origin.
  CHECK(HttpCallWithHeaders("POST", services.url + "/v2/apps", sneaky,
                            {{"Authorization", "Bearer " + cluster.token()}, {"Origin", "http://evil.example"}})
            .status == 403);
  CHECK(HttpCall("GET", services.url + "/v2/apps/sneaky").status == 404);

  // Bad input: 400 naming the field; an app no node can hold says why.
  auto bad = HttpCall("POST", services.url + "/v2/apps",
                      R"({"id":"/bad","cmd":"true","ports":[0],"healthChecks":[{"protocol":"HTTP","portIndex":3}]})");
  CHECK(bad.status == 400);
  CHECK(bad.Json().value("field", "") == "healthChecks[0].portIndex");
  auto huge = HttpCall("POST", services.url + "/v2/apps", R"({"id":"/huge","cmd":"sleep 100","mem":100000})");
  REQUIRE(huge.status == 201);
  std::string why;
  REQUIRE(WaitFor(
      [&] {
        why = services.Deployments().dump();
        return why.find("mem") != std::string::npos && why.find("huge") != std::string::npos;
      },
      30s));
  INFO(why);
  REQUIRE(HttpCall("DELETE", services.url + "/v2/apps/huge").status == 200);

  // Three instances of the Java service, one per node, behind HAProxy.
  auto created = HttpCall("POST", services.url + "/v2/apps", HelloApp(gw, "1", 3));
  INFO(created.body);
  REQUIRE(created.status == 201);
  if (!WaitFor([&] { return services.Healthy("hello") == 3 && services.Deployments().empty(); }, 90s))
    FAIL(services.App("hello").dump() + "\n" + diag());
  if (!WaitFor([&] { return HttpCall("GET", "http://127.0.0.1:" + std::to_string(gw) + "/").status == 200; }, 20s))
    FAIL("gateway: " + std::to_string(HttpCall("GET", "http://127.0.0.1:" + std::to_string(gw) + "/").status) + "\n" +
         services.App("hello").dump() + "\n" + diag());
  std::set<std::string> hosts;
  for (const auto& t : services.Tasks("hello")) hosts.insert(t.value("host", ""));
  CHECK(hosts.size() == 3);

  // Rolling upgrade to version 2 with requests flowing through HAProxy all along: none may fail.
  {
    RequestLoop loop(gw);
    std::this_thread::sleep_for(1s);
    auto put = HttpCall("PUT", services.url + "/v2/apps/hello", HelloApp(gw, "2", 3));
    REQUIRE(put.status == 200);
    if (!WaitFor(
            [&] {
              if (!services.Deployments().empty()) return false;
              const json tasks = services.Tasks("hello");
              if (tasks.size() != 3) return false;
              for (const auto& t : tasks)
                if (t.value("healthy", false) != true || t.value("version", "") != put.Json().value("version", "x"))
                  return false;
              return true;
            },
            120s))
      FAIL(services.App("hello").dump() + "\n" + diag());
    std::this_thread::sleep_for(2s);
    loop.Stop();
    INFO(loop.failures());
    WARN("rolling upgrade through HAProxy: " << loop.ok() << " requests answered, " << loop.failed() << " failed");
    CHECK(loop.ok() > 50);
    CHECK(loop.failed() == 0);
    const auto seen = loop.bodies();
    CHECK(seen.count("hello version 1\n") == 1);
    CHECK(seen.count("hello version 2\n") == 1);
  }
  CHECK(HttpCall("GET", "http://127.0.0.1:" + std::to_string(gw) + "/").body.find("version 2") != std::string::npos);

  // Batch and services both want more than the cluster has (12 cpus): DRF lets both progress.
  BatchFramework batch(cluster, "batch");
  json tasks = json::array();
  for (int i = 0; i < 24; ++i) tasks.push_back({{"cmd", "sleep 3"}, {"cpus", 1}, {"mem", 64}});
  REQUIRE(HttpCall("POST", batch.url + "/v1/jobs", json{{"id", "crunch"}, {"tasks", tasks}}.dump()).status == 201);
  std::this_thread::sleep_for(1s);
  auto scale = HttpCall("PUT", services.url + "/v2/apps/hello", R"({"instances":3,"constraints":[]})");
  REQUIRE(scale.status == 200);
  REQUIRE(HttpCall("POST", services.url + "/v2/apps",
                   R"({"id":"/burner","cmd":"sleep 600","instances":6,"cpus":1,"mem":64})")
              .status == 201);
  if (!WaitFor([&] { return services.App("burner")["app"].value("tasksRunning", 0) == 6; }, 60s))
    FAIL(services.App("burner").dump() + "\n" + batch.Job("crunch").dump() + "\n" + diag());
  if (!batch.WaitState("crunch", "FINISHED", 120s)) FAIL(batch.Job("crunch").dump() + "\n" + diag());
  const json state = cluster.State();
  for (const auto& f : state["frameworks"]) CHECK(f.value("connected", false));

  REQUIRE(HttpCall("DELETE", services.url + "/v2/apps/burner").status == 200);
  REQUIRE(HttpCall("DELETE", services.url + "/v2/apps/hello").status == 200);
  REQUIRE(WaitFor([&] { return RunningInState(cluster) == 0; }, 60s));
  batch.proc.Stop();
}
