// Launch throughput of the cluster scheduler: N tasks across M simulated nodes, end to end through the real master
// over HTTP (framework SUBSCRIBE/ACCEPT/ACKNOWLEDGE, node REGISTER/UPDATE), from the framework subscribing to every
// task reported TASK_RUNNING. The nodes are simulated (they answer LAUNCH with TASK_RUNNING at once), so this
// measures the scheduler, not process start-up. Issue 5's goal: 1,000 tasks on 80 nodes in under 10 s (Marathon
// managed ~35-60 tasks/s).
//
//   bench_cluster_launch [--tasks 1000] [--nodes 80] [--task-cpus 0.1] [--task-mem 32] [--runs 3]
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "framework/scheduler_client.hpp"
#include "master_testing/sim_cluster.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

struct Args {
  int tasks = 1000, nodes = 80, runs = 3;
  double task_cpus = 0.1, task_mem = 32;
};

double RunOnce(const Args& a, double* first_offer_s) {
  master::MemoryStateStore store;
  master::MasterOptions mo;
  mo.allocation_interval_s = 0.05;
  testing::InProcessMaster master(store, mo);
  std::vector<std::unique_ptr<testing::SimAgent>> agents;
  for (int i = 0; i < a.nodes; ++i) {
    testing::SimAgentOptions o;
    o.hostname = "sim-" + std::to_string(i);
    o.resources = "cpus:8;mem:16384;ports:[31000-31999]";
    agents.push_back(std::make_unique<testing::SimAgent>(master.url(), o));
    if (!agents.back()->Register()) {
      std::fprintf(stderr, "agent %d did not register\n", i);
      std::exit(1);
    }
  }

  std::mutex mu;
  int launched = 0;
  std::set<std::string> running;
  std::atomic<bool> done{false};
  std::chrono::steady_clock::time_point t0, t_first_offer{}, t_done{};
  framework::SchedulerClient* client = nullptr;
  framework::SchedulerClientOptions fo;
  fo.masters = {master.url()};
  fo.info.name = "launch-bench";
  fo.info.role = "bench";
  auto on_event = [&](const json& ev) {
    const std::string type = ev.value("type", "");
    if (type == "OFFERS") {
      for (const auto& o : ev["offers"]["offers"]) {
        auto offer = OfferFromJson(o, "offer");
        if (!offer) continue;
        std::vector<TaskInfo> batch;
        Resources left = offer->resources;
        {
          std::lock_guard lock(mu);
          if (t_first_offer == std::chrono::steady_clock::time_point{}) t_first_offer = std::chrono::steady_clock::now();
          const Resources need = Resources::Make(a.task_cpus, a.task_mem);
          while (launched < a.tasks && left.Contains(need)) {
            TaskInfo t;
            t.task_id = "bench." + std::to_string(launched++);
            t.name = "bench";
            t.resources = need;
            t.command.value = "sleep 3600";
            left -= need;
            batch.push_back(std::move(t));
          }
        }
        if (batch.empty()) {
          (void)client->Decline({offer->id}, 60);
        } else if (auto st = client->Accept({offer->id}, batch, 60); !st) {
          std::fprintf(stderr, "accept: %s\n", st.error().Message().c_str());
        }
      }
    } else if (type == "UPDATE") {
      auto st = TaskStatusFromJson(ev["update"]["status"], "status");
      if (!st) return;
      (void)client->Acknowledge(*st);
      std::lock_guard lock(mu);
      if (st->state == TaskState::kRunning) running.insert(st->task_id);
      if (static_cast<int>(running.size()) == a.tasks && !done) {
        t_done = std::chrono::steady_clock::now();
        done = true;
      }
    }
  };
  framework::SchedulerClient c(fo, on_event);
  client = &c;
  t0 = std::chrono::steady_clock::now();
  c.Start();
  for (int i = 0; i < 1200 && !done; ++i) std::this_thread::sleep_for(50ms);
  c.Stop();
  if (!done) {
    std::fprintf(stderr, "only %zu of %d tasks running after 60 s\n", running.size(), a.tasks);
    std::exit(1);
  }
  for (auto& ag : agents) ag->RequestStop();  // wind down together (each waits for its next heartbeat)
  *first_offer_s = std::chrono::duration<double>(t_first_offer - t0).count();
  return std::chrono::duration<double>(t_done - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--tasks") a.tasks = std::atoi(v);
    else if (k == "--nodes") a.nodes = std::atoi(v);
    else if (k == "--runs") a.runs = std::atoi(v);
    else if (k == "--task-cpus") a.task_cpus = std::atof(v);
    else if (k == "--task-mem") a.task_mem = std::atof(v);
    else {
      std::fprintf(stderr, "usage: %s [--tasks N] [--nodes M] [--task-cpus C] [--task-mem MiB] [--runs R]\n", argv[0]);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  std::vector<double> totals;
  for (int r = 0; r < a.runs; ++r) {
    double first = 0;
    const double total = RunOnce(a, &first);
    totals.push_back(total);
    std::printf("run %d: %d tasks on %d nodes running in %.2f s (first offer after %.3f s) = %.0f tasks/s\n", r + 1,
                a.tasks, a.nodes, total, first, a.tasks / total);
  }
  std::sort(totals.begin(), totals.end());
  const double median = totals[totals.size() / 2];
  std::printf("median: %.2f s = %.0f tasks/s (goal < 10 s; Marathon ~35-60 tasks/s => %.1f-%.1f s)\n", median,
              a.tasks / median, a.tasks / 60.0, a.tasks / 35.0);
  return 0;
}
