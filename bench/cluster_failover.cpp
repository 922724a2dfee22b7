// Leader failover of the cluster scheduler with real processes: etcd, two cluster-master processes (lease TTL 2 s),
// three cluster-node processes each running two tasks, and a subscribed framework (the C++ SchedulerClient).
// Each round kill -9s the leader and measures, from the kill: a new leader answering, every node re-registered with
// it, the framework re-subscribed, and every task RUNNING in the new leader's state (no task is restarted: checked by
// pid). The killed master is restarted as a follower before the next round.
//
//   bench_cluster_failover [--rounds 5]
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "cluster_harness.hpp"
#include "framework/scheduler_client.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--rounds") rounds = std::atoi(argv[i + 1]);
  spdlog::set_level(spdlog::level::warn);
  itest::LocalCluster cluster(itest::LocalCluster::Options{});

  // A framework that launches 6 sleepers, then just acknowledges.
  std::atomic<int> launched{0};
  cluster::framework::SchedulerClient* client = nullptr;
  cluster::framework::SchedulerClientOptions fo;
  fo.masters = cluster.master_urls();
  fo.info.name = "failover-bench";
  fo.info.role = "bench";
  fo.info.failover_timeout_s = 300;
  fo.stream_idle_timeout = 3s;
  cluster::framework::SchedulerClient c(fo, [&](const json& ev) {
    const std::string type = ev.value("type", "");
    if (type == "OFFERS") {
      for (const auto& o : ev["offers"]["offers"]) {
        const std::string oid = o["id"]["value"];
        if (launched < 6) {
          std::vector<cluster::TaskInfo> ts;
          for (int k = 0; k < 2 && launched < 6; ++k) {
            cluster::TaskInfo t;
            t.task_id = "sleeper." + std::to_string(launched++);
            t.resources = cluster::Resources::Make(0.1, 16);
            t.command.value = "sleep 3600";
            ts.push_back(t);
          }
          (void)client->Accept({oid}, ts, 3600);
        } else {
          (void)client->Decline({oid}, 3600);
        }
      }
    } else if (type == "UPDATE") {
      if (auto s = cluster::TaskStatusFromJson(ev["update"]["status"], "status")) (void)client->Acknowledge(*s);
    }
  });
  client = &c;
  c.Start();
  auto running = [&] {
    int n = 0;
    for (const auto& t : cluster.State().value("tasks", json::array())) n += t.value("state", "") == "TASK_RUNNING";
    return n;
  };
  if (!testsupport::WaitFor([&] { return running() == 6; }, 30s)) {
    std::fprintf(stderr, "tasks did not start\n%s\n", cluster.Diagnostics().c_str());
    return 1;
  }
  auto pids = [&] {
    std::map<std::string, int> out;
    for (size_t i = 0; i < cluster.node_count(); ++i) {
      json ts = cluster.NodeTasks(i);
      for (const auto& t : ts.is_array() ? ts : ts.value("tasks", json::array()))
        out[t.value("task_id", t.value("id", ""))] = t.value("pid", 0);
    }
    return out;
  };
  const auto pids0 = pids();

  std::vector<double> t_leader, t_nodes, t_framework, t_tasks;
  for (int r = 0; r < rounds; ++r) {
    const int old = cluster.LeaderIndex();
    const auto t0 = std::chrono::steady_clock::now();
    cluster.master(old).proc.Kill(SIGKILL);
    cluster.master(old).proc.Wait(5s);
    if (cluster.LeaderIndex(30s) < 0) {
      std::fprintf(stderr, "no new leader\n%s\n", cluster.Diagnostics().c_str());
      return 1;
    }
    t_leader.push_back(Since(t0));
    testsupport::WaitFor([&] { return cluster.ConnectedNodes() == 3; }, 30s);
    t_nodes.push_back(Since(t0));
    testsupport::WaitFor([&] { return c.connected() && c.leader() == cluster.Leader(1s); }, 30s);
    t_framework.push_back(Since(t0));
    testsupport::WaitFor([&] { return running() == 6; }, 30s);
    t_tasks.push_back(Since(t0));
    std::printf("round %d: leader %.2f s, nodes back %.2f s, framework back %.2f s, 6 tasks RUNNING %.2f s\n", r + 1,
                t_leader.back(), t_nodes.back(), t_framework.back(), t_tasks.back());
    cluster.StartMaster(old);
    std::this_thread::sleep_for(1s);
  }
  const bool same = pids() == pids0;
  std::printf("median of %d: new leader %.2f s, nodes re-registered %.2f s, framework re-subscribed %.2f s, "
              "tasks RUNNING %.2f s; tasks restarted: %s (lease TTL 2 s)\n",
              rounds, Median(t_leader), Median(t_nodes), Median(t_framework), Median(t_tasks), same ? "none" : "SOME");
  c.Stop();
  return same ? 0 : 1;
}
