// Allocation cycle time of the cluster scheduler's allocator (cluster-scheduler/allocator) at the two sizes Mesos
// published for its HierarchicalDRF allocator (1,000 agents x 100 frameworks, 10,000 x 1,000), in process, like
// Mesos's HierarchicalAllocator_BENCHMARK_Test: no master, no network, the benchmark plays the frameworks.
//
// Side by side with a naive allocator (below) that makes the same choices the straightforward way: for every agent
// it recomputes every role's and framework's dominant share and re-sorts all frameworks. Both get the same
// workload: agents of 16 cpus / 64 GiB / 100 GiB disk / ports 31000-32000; frameworks spread over 10 roles (one of
// weight 2), each launching one small task (one of four shapes, one port) per offer and giving the rest back; every
// cycle 5% of running tasks end and are recovered. After a warm-up that fills the cluster, every agent has
// leftovers worth offering in every cycle, so each measured cycle offers every agent (a "full" cycle). Only
// Allocate() is timed.
//
// Usage: bench_allocator [--warmup N] [--cycles N] [--naive-cycles N] [--sizes 1000x100,10000x1000]
// Prints a markdown table on stdout (progress on stderr).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "allocator/allocator.hpp"
#include "bench_util.hpp"

namespace {

using tug::cluster::Allocator;
using tug::cluster::AllocatorOptions;
using tug::cluster::OfferedResources;
using tug::cluster::Resources;
using TimePoint = Allocator::TimePoint;

// ---------------------------------------------------------------------------------------------------------------
// The naive baseline: same bookkeeping (dense indices, per-agent holdings, fixed-point shares, same tie-breaks),
// but no incremental ordering: per agent it recomputes all shares and sorts all frameworks. Only what the benchmark
// drives (no filters, suppression or removal).
class NaiveAllocator {
 public:
  explicit NaiveAllocator(uint64_t seed) : rng_(seed) {}

  tug::Status AddAgent(const std::string& id, const Resources& total, const tug::cluster::Attributes& = {}) {
    agent_index_[id] = static_cast<uint32_t>(agents_.size());
    agents_.push_back({id, total, total, {}});
    total_ += Scalars::Of(total);
    return {};
  }
  tug::Status AddFramework(const std::string& id, const std::string& role) {
    auto [it, inserted] = role_index_.try_emplace(role, static_cast<uint32_t>(roles_.size()));
    if (inserted) roles_.push_back({});
    framework_index_[id] = static_cast<uint32_t>(frameworks_.size());
    frameworks_.push_back({id, it->second, {}, 0});
    return {};
  }
  tug::Status SetWeight(const std::string& role, double w) {
    auto [it, inserted] = role_index_.try_emplace(role, static_cast<uint32_t>(roles_.size()));
    if (inserted) roles_.push_back({});
    roles_[it->second].weight = w;
    return {};
  }
  tug::Status Recover(const std::string& fw, const std::string& agent, const Resources& r) {
    const uint32_t fi = framework_index_.at(fw), ai = agent_index_.at(agent);
    Agent& a = agents_[ai];
    for (size_t i = 0; i < a.holdings.size(); ++i) {
      if (a.holdings[i].first != fi) continue;
      if (!a.holdings[i].second.Contains(r)) return tug::MakeError(tug::Errc::kInvalidArgument, "naive: recover");
      a.holdings[i].second -= r;
      if (a.holdings[i].second.empty()) {
        a.holdings[i] = std::move(a.holdings.back());
        a.holdings.pop_back();
      }
      a.available += r;
      frameworks_[fi].allocated -= Scalars::Of(r);
      return {};
    }
    return tug::MakeError(tug::Errc::kInvalidArgument, "naive: recover");
  }

  std::vector<OfferedResources> Allocate(TimePoint) {
    std::vector<OfferedResources> out;
    order_.resize(agents_.size());
    for (uint32_t i = 0; i < order_.size(); ++i) order_[i] = i;
    std::shuffle(order_.begin(), order_.end(), rng_);
    const double inv_c = 1.0 / static_cast<double>(total_.cpus), inv_m = 1.0 / static_cast<double>(total_.mem),
                 inv_d = total_.disk > 0 ? 1.0 / static_cast<double>(total_.disk) : 0;
    auto share = [&](const Scalars& s) {
      return std::max({s.cpus * inv_c, s.mem * inv_m, s.disk * inv_d});
    };
    std::vector<Entry> sorted;
    std::vector<Scalars> role_alloc;
    for (uint32_t ai : order_) {
      Agent& a = agents_[ai];
      if (a.available.cpus_milli() < 10 && a.available.mem_milli() < 32000) continue;
      // Recompute everything for this agent.
      role_alloc.assign(roles_.size(), Scalars{});
      for (const Framework& f : frameworks_) role_alloc[f.role] += f.allocated;
      sorted.clear();
      for (uint32_t fi = 0; fi < frameworks_.size(); ++fi) {
        const Framework& f = frameworks_[fi];
        const Role& r = roles_[f.role];
        sorted.push_back({share(role_alloc[f.role]) / r.weight, r.offers, f.role, share(f.allocated), f.offers, fi});
      }
      std::sort(sorted.begin(), sorted.end());
      if (sorted.empty()) break;
      const uint32_t fi = sorted.front().fw;
      Framework& f = frameworks_[fi];
      Resources offered = std::move(a.available);
      a.available = Resources{};
      bool held = false;
      for (auto& h : a.holdings)
        if (h.first == fi) {
          h.second += offered;
          held = true;
        }
      if (!held) a.holdings.emplace_back(fi, offered);
      f.allocated += Scalars::Of(offered);
      ++f.offers;
      ++roles_[f.role].offers;
      out.push_back({f.id, a.id, std::move(offered)});
    }
    return out;
  }

 private:
  struct Scalars {
    int64_t cpus = 0, mem = 0, disk = 0;
    static Scalars Of(const Resources& r) { return {r.cpus_milli(), r.mem_milli(), r.disk_milli()}; }
    Scalars& operator+=(const Scalars& o) {
      cpus += o.cpus, mem += o.mem, disk += o.disk;
      return *this;
    }
    Scalars& operator-=(const Scalars& o) {
      cpus -= o.cpus, mem -= o.mem, disk -= o.disk;
      return *this;
    }
  };
  struct Agent {
    std::string id;
    Resources total, available;
    std::vector<std::pair<uint32_t, Resources>> holdings;
  };
  struct Framework {
    std::string id;
    uint32_t role;
    Scalars allocated;
    uint64_t offers;
  };
  struct Role {
    double weight = 1;
    uint64_t offers = 0;
  };
  struct Entry {
    double role_share;
    uint64_t role_offers;
    uint32_t role;
    double fw_share;
    uint64_t fw_offers;
    uint32_t fw;
    bool operator<(const Entry& o) const {
      if (role_share != o.role_share) return role_share < o.role_share;
      if (role_offers != o.role_offers) return role_offers < o.role_offers;
      if (role != o.role) return role < o.role;
      if (fw_share != o.fw_share) return fw_share < o.fw_share;
      if (fw_offers != o.fw_offers) return fw_offers < o.fw_offers;
      return fw < o.fw;
    }
  };

  std::mt19937_64 rng_;
  std::vector<Agent> agents_;
  std::vector<Framework> frameworks_;
  std::vector<Role> roles_;
  std::unordered_map<std::string, uint32_t> agent_index_, framework_index_, role_index_;
  Scalars total_;
  std::vector<uint32_t> order_;
};

// ---------------------------------------------------------------------------------------------------------------

struct Size {
  size_t agents;
  size_t frameworks;
};

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

// Ids shaped like the master's (a prefix and 16 hex digits), so copying them costs what it will in the master.
std::string AgentId(size_t i) { return "agent-" + Hex16(0x9e3779b97f4a7c15ULL * (i + 1)); }
std::string FrameworkId(size_t i) { return "framework-" + Hex16(0xc2b2ae3d27d4eb4fULL * (i + 1)); }

// One allocator under the workload, stepped a cycle at a time so that ours and the naive one can alternate (the
// machine is shared: alternating spreads load changes over both).
template <typename Alloc>
class Sim {
 public:
  Sim(Alloc& al, Size size, const char* label) : al_(al), size_(size), label_(label) {
    constexpr size_t kRoles = 10;
    const Resources agent_total = Resources::Make(16, 64 * 1024, 100 * 1024, {{31000, 32000}});
    const Resources shapes[] = {Resources::Make(0.25, 512), Resources::Make(0.5, 2048), Resources::Make(1, 1024),
                                Resources::Make(2, 4096)};
    agent_ids_.resize(size.agents);
    fw_ids_.resize(size.frameworks);
    for (size_t i = 0; i < size.agents; ++i) {
      agent_ids_[i] = AgentId(i);
      tug::bench::Must(al_.AddAgent(agent_ids_[i], agent_total, {}), "adding agent");
      agent_ref_[agent_ids_[i]] = &agent_ids_[i];
    }
    tug::bench::Must(al_.SetWeight("role-0", 2), "weight");
    for (size_t i = 0; i < size.frameworks; ++i) {
      fw_ids_[i] = FrameworkId(i);
      tug::bench::Must(al_.AddFramework(fw_ids_[i], "role-" + std::to_string(i % kRoles)), "adding framework");
      task_of_[fw_ids_[i]] = shapes[i % 4];
      fw_ref_[fw_ids_[i]] = &fw_ids_[i];
    }
  }

  // Ends 5% of the running tasks, times Allocate, then plays the frameworks: one task per offer, rest returned.
  void Cycle(bool measure) {
    now_ += std::chrono::seconds(1);
    for (size_t i = 0; i < running_.size();) {
      if (ends_(rng_)) {
        tug::bench::Must(al_.Recover(*running_[i].fw, *running_[i].agent, running_[i].resources), "task end");
        running_[i] = std::move(running_.back());
        running_.pop_back();
      } else {
        ++i;
      }
    }
    tug::bench::Stopwatch watch;
    std::vector<OfferedResources> batch = al_.Allocate(now_);
    const double took = watch.Elapsed();
    if (cycle_ == 0)
      for (const auto& o : batch) ++first_cycle_offers[o.framework_id];
    if (measure) {
      cycle_s.push_back(took);
      offers_ += static_cast<double>(batch.size());
    }
    for (auto& o : batch) {
      Resources task = task_of_.at(o.framework_id) + Resources::Ports(o.resources.FirstPorts(1));
      if (o.resources.port_count() >= 1 && o.resources.Contains(task)) {
        tug::bench::Must(al_.Recover(o.framework_id, o.agent_id, o.resources - task), "returning the rest");
        running_.push_back({fw_ref_.at(o.framework_id), agent_ref_.at(o.agent_id), std::move(task)});
      } else {
        tug::bench::Must(al_.Recover(o.framework_id, o.agent_id, o.resources), "declining");
      }
    }
    if (cycle_ % 10 == 0)
      std::fprintf(stderr, "  %s %zux%zu cycle %d: %zu offers, %zu tasks running, allocate took %.2f ms\n", label_,
                   size_.agents, size_.frameworks, cycle_, batch.size(), running_.size(), took * 1e3);
    ++cycle_;
  }

  double OffersPerCycle() const { return cycle_s.empty() ? 0 : offers_ / static_cast<double>(cycle_s.size()); }
  // Fraction of the cluster's cpus held by running tasks.
  double CpuUsed() const {
    double cpus = 0;
    for (const auto& t : running_) cpus += t.resources.cpus();
    return cpus / (16.0 * static_cast<double>(size_.agents));
  }

  std::vector<double> cycle_s;                    // measured cycles only
  std::map<std::string, int> first_cycle_offers;  // framework -> offers in the very first cycle

 private:
  struct Task {
    const std::string* fw;
    const std::string* agent;
    Resources resources;
  };
  Alloc& al_;
  Size size_;
  const char* label_;
  std::vector<std::string> agent_ids_, fw_ids_;
  std::unordered_map<std::string, const std::string*> agent_ref_, fw_ref_;
  std::unordered_map<std::string, Resources> task_of_;
  std::vector<Task> running_;
  std::mt19937_64 rng_{42};
  std::bernoulli_distribution ends_{0.05};
  TimePoint now_{};
  int cycle_ = 0;
  double offers_ = 0;
};

double P95(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(v.size())));  // nearest rank
  return v[std::max<size_t>(rank, 1) - 1];
}

std::string Ms(double s) { return tug::bench::Fmt(s < 0.01 ? 2 : 1, s * 1e3); }

}  // namespace

int main(int argc, char** argv) {
  int warmup = 40, cycles = 50, naive_cycles = 10;
  std::vector<Size> sizes = {{1000, 100}, {10000, 1000}};
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) tug::bench::Die(std::string("missing value for ") + argv[i]);
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--warmup")) {
      warmup = std::stoi(next());
    } else if (!std::strcmp(argv[i], "--cycles")) {
      cycles = std::stoi(next());
    } else if (!std::strcmp(argv[i], "--naive-cycles")) {
      naive_cycles = std::stoi(next());
    } else if (!std::strcmp(argv[i], "--sizes")) {
      sizes.clear();
      std::string list = next();
      size_t pos = 0;
      while (pos < list.size()) {
        size_t comma = list.find(',', pos);
        std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        size_t x = item.find('x');
        if (x == std::string::npos) tug::bench::Die("--sizes wants AGENTSxFRAMEWORKS[,...]");
        sizes.push_back({std::stoul(item.substr(0, x)), std::stoul(item.substr(x + 1))});
        pos = comma == std::string::npos ? list.size() : comma + 1;
      }
    } else {
      tug::bench::Die(std::string("usage: bench_allocator [--warmup N] [--cycles N] [--naive-cycles N] "
                                  "[--sizes 1000x100,10000x1000] (unknown ") + argv[i] + ")");
    }
  }
  // Mesos 1.8's published allocation cycle times for these sizes (not run here: Mesos is not installable).
  const std::map<std::pair<size_t, size_t>, double> mesos = {{{1000, 100}, 0.1}, {{10000, 1000}, 1.1}};

  tug::bench::Header({"agents x frameworks", "offers per cycle (ours / naive)", "ours median (ms)", "ours p95 (ms)",
                      "naive median (ms)", "naive p95 (ms)", "naive / ours (median)", "Mesos 1.8 published (ms)",
                      "Mesos / ours (median)", "cluster cpus in use at the end (ours / naive)",
                      "first-cycle offers per framework equal"});
  for (const Size& size : sizes) {
    AllocatorOptions options;
    options.seed = 1;
    Allocator ours(options);
    NaiveAllocator naive(1);
    Sim<Allocator> o(ours, size, "ours");
    Sim<NaiveAllocator> n(naive, size, "naive");  // --naive-cycles 0: ours only
    for (int c = 0; c < warmup + cycles; ++c) {
      o.Cycle(c >= warmup);
      if (naive_cycles > 0 && c < warmup + naive_cycles) n.Cycle(c >= warmup);
    }
    const double om = tug::bench::Median(o.cycle_s), nm = tug::bench::Median(n.cycle_s);
    auto m = mesos.find({size.agents, size.frameworks});
    tug::bench::Row({std::to_string(size.agents) + " x " + std::to_string(size.frameworks),
                     tug::bench::Fmt(0, o.OffersPerCycle()) + " / " + tug::bench::Fmt(0, n.OffersPerCycle()),
                     Ms(om), Ms(P95(o.cycle_s)), Ms(nm), Ms(P95(n.cycle_s)),
                     naive_cycles > 0 ? tug::bench::Fmt(1, nm / om) + "x" : "-",
                     m == mesos.end() ? "-" : Ms(m->second),
                     m == mesos.end() ? "-" : tug::bench::Fmt(1, m->second / om) + "x",
                     tug::bench::Fmt(2, o.CpuUsed()) + " / " + tug::bench::Fmt(2, n.CpuUsed()),
                     naive_cycles == 0 ? "-" : o.first_cycle_offers == n.first_cycle_offers ? "yes" : "NO"});
    std::fflush(stdout);
  }
  std::printf("\nWarm-up %d cycles, then %d measured cycles for ours and %d for the naive baseline (alternating "
              "with ours).\n", warmup, cycles, naive_cycles);
  return 0;
}
