#include "allocator/allocator.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <set>
#include <unordered_map>
#include <utility>

namespace tug::cluster {

namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr double kMaxRefuseSeconds = 365.0 * 24 * 3600;

// cpus, mem and disk in thousandths: shares are computed from these, so the hot loop never touches a port vector.
struct Scalars {
  int64_t cpus = 0;
  int64_t mem = 0;
  int64_t disk = 0;

  static Scalars Of(const Resources& r) { return {r.cpus_milli(), r.mem_milli(), r.disk_milli()}; }
  Scalars& operator+=(const Scalars& o) {
    cpus += o.cpus;
    mem += o.mem;
    disk += o.disk;
    return *this;
  }
  Scalars& operator-=(const Scalars& o) {
    cpus -= o.cpus;
    mem -= o.mem;
    disk -= o.disk;
    return *this;
  }
  bool operator==(const Scalars&) const = default;
  std::string ToString() const {
    return "cpus:" + std::to_string(cpus / 1000.0) + ";mem:" + std::to_string(mem / 1000.0) +
           ";disk:" + std::to_string(disk / 1000.0);
  }
};

// Position in a sorter. The key is stored in the node, so re-keying one entry is extract + insert of the same node:
// O(log n) and no allocation.
struct SortKey {
  double share = 0;
  uint64_t offers = 0;  // tie-break: fewer offers first, so equal shares take turns
  uint32_t index = 0;   // then the older id
  bool operator<(const SortKey& o) const {
    if (share != o.share) return share < o.share;
    if (offers != o.offers) return offers < o.offers;
    return index < o.index;
  }
  bool operator==(const SortKey&) const = default;
};
using Sorter = std::set<SortKey>;

struct Holding {
  uint32_t framework = kNone;
  Resources resources;
};

struct Agent {
  std::string id;
  bool alive = false;
  Resources total;
  Resources available;
  Attributes attributes;
  // What each framework holds here; a handful of entries per agent, so a vector beats a map.
  std::vector<Holding> holdings;
  uint32_t candidate_pos = kNone;  // index in State::candidates while worth offering
};

struct Framework {
  std::string id;
  bool alive = false;
  bool active = true;
  bool suppressed = false;
  uint32_t role = kNone;
  Scalars allocated;
  uint64_t offers = 0;
  uint32_t holdings = 0;  // agents where it holds something (RemoveFramework skips the agent scan when 0)
  std::unordered_map<uint32_t, int64_t> filters;  // agent -> expiry (steady clock ticks)
  bool sorted = false;  // in its role's members (iff active and not suppressed)
  Sorter::iterator pos;
};

struct Role {
  std::string name;
  double weight = 1;
  Scalars allocated;  // all its frameworks', eligible or not
  uint64_t offers = 0;
  uint32_t frameworks = 0;
  Sorter members;       // its eligible frameworks by dominant share
  bool sorted = false;  // in the role sorter (iff members is not empty)
  Sorter::iterator pos;
};

Status Missing(const char* what, const std::string& id, const std::string& doing) {
  return MakeError(Errc::kNotFound, doing + ": unknown " + what + " '" + id + "'");
}

}  // namespace

struct Allocator::State {
  AllocatorOptions options;
  int64_t min_cpus_m = 0;
  int64_t min_mem_m = 0;

  // Ids are interned to dense indices; removed slots are reused.
  std::vector<Agent> agents;
  std::vector<uint32_t> free_agents;
  std::unordered_map<std::string, uint32_t> agent_index;
  size_t live_agents = 0;

  std::vector<Framework> frameworks;
  std::vector<uint32_t> free_frameworks;
  std::unordered_map<std::string, uint32_t> framework_index;
  size_t live_frameworks = 0;

  std::deque<Role> roles;  // never removed (few; weights outlive frameworks); deque keeps them in place
  std::unordered_map<std::string, uint32_t> role_index;

  Scalars total;
  double inv_cpus = 0, inv_mem = 0, inv_disk = 0;

  Sorter role_sorter;  // roles with eligible frameworks, by weighted dominant share
  // Totals changed since the last sort, so every stored share is stale: re-sort everything at the next Allocate
  // and do not bother re-keying single entries until then.
  bool dirty = false;

  std::vector<uint32_t> candidates;  // agents whose available resources are worth offering
  std::vector<uint32_t> order;       // per-cycle scratch (keeps its capacity)
  uint64_t rng = 0;

  bool Allocatable(const Resources& r) const { return r.cpus_milli() >= min_cpus_m || r.mem_milli() >= min_mem_m; }
  bool Eligible(const Framework& f) const { return f.alive && f.active && !f.suppressed; }

  double Share(const Scalars& a) const {
    return std::max({a.cpus * inv_cpus, a.mem * inv_mem, a.disk * inv_disk});
  }
  SortKey FrameworkKey(uint32_t fi) const {
    const Framework& f = frameworks[fi];
    return {Share(f.allocated), f.offers, fi};
  }
  SortKey RoleKey(uint32_t ri) const {
    const Role& r = roles[ri];
    return {Share(r.allocated) / r.weight, r.offers, ri};
  }

  void SetTotal(const Scalars& t) {
    total = t;
    inv_cpus = t.cpus > 0 ? 1.0 / static_cast<double>(t.cpus) : 0;
    inv_mem = t.mem > 0 ? 1.0 / static_cast<double>(t.mem) : 0;
    inv_disk = t.disk > 0 ? 1.0 / static_cast<double>(t.disk) : 0;
    dirty = true;
  }

  uint64_t Next() {  // splitmix64: same sequence on every platform, unlike std::shuffle's distributions
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  void Shuffle(std::vector<uint32_t>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      const auto j = static_cast<size_t>((static_cast<unsigned __int128>(Next()) * i) >> 64);
      std::swap(v[i - 1], v[j]);
    }
  }

  void UpdateCandidate(uint32_t ai) {
    Agent& a = agents[ai];
    const bool want = a.alive && Allocatable(a.available);
    if (want == (a.candidate_pos != kNone)) return;
    if (want) {
      a.candidate_pos = static_cast<uint32_t>(candidates.size());
      candidates.push_back(ai);
    } else {
      const uint32_t last = candidates.back();
      candidates[a.candidate_pos] = last;
      agents[last].candidate_pos = a.candidate_pos;
      candidates.pop_back();
      a.candidate_pos = kNone;
    }
  }

  void ResortRole(uint32_t ri) {
    Role& r = roles[ri];
    if (dirty || !r.sorted) return;
    auto node = role_sorter.extract(r.pos);
    node.value() = RoleKey(ri);
    r.pos = role_sorter.insert(std::move(node)).position;
  }
  // After f's allocation or offer count changed: moves f within its role, and the role among roles.
  void Resort(uint32_t fi) {
    if (dirty) return;
    Framework& f = frameworks[fi];
    if (f.sorted) {
      Role& r = roles[f.role];
      auto node = r.members.extract(f.pos);
      node.value() = FrameworkKey(fi);
      f.pos = r.members.insert(std::move(node)).position;
    }
    ResortRole(f.role);
  }
  // After alive/active/suppressed changed. Runs even when dirty: the sorters must never hold a removed index.
  void UpdateMembership(uint32_t fi) {
    Framework& f = frameworks[fi];
    const bool want = Eligible(f);
    if (want == f.sorted) return;
    const uint32_t ri = f.role;
    Role& r = roles[ri];
    if (want) {
      f.pos = r.members.insert(FrameworkKey(fi)).first;
      f.sorted = true;
      if (!r.sorted) {
        r.pos = role_sorter.insert(RoleKey(ri)).first;
        r.sorted = true;
      }
    } else {
      r.members.erase(f.pos);
      f.sorted = false;
      if (r.members.empty() && r.sorted) {
        role_sorter.erase(r.pos);
        r.sorted = false;
      }
    }
  }
  void Rebuild() {
    role_sorter.clear();
    for (Role& r : roles) {
      r.members.clear();
      r.sorted = false;
    }
    for (uint32_t fi = 0; fi < frameworks.size(); ++fi) {
      Framework& f = frameworks[fi];
      f.sorted = false;
      if (!Eligible(f)) continue;
      f.pos = roles[f.role].members.insert(FrameworkKey(fi)).first;
      f.sorted = true;
    }
    for (uint32_t ri = 0; ri < roles.size(); ++ri) {
      Role& r = roles[ri];
      if (r.members.empty()) continue;
      r.pos = role_sorter.insert(RoleKey(ri)).first;
      r.sorted = true;
    }
    dirty = false;
  }

  // Filters are dropped lazily, when found expired on the agent they name.
  bool Filtered(Framework& f, uint32_t ai, int64_t now) {
    auto it = f.filters.find(ai);
    if (it == f.filters.end()) return false;
    if (it->second <= now) {
      f.filters.erase(it);
      return false;
    }
    return true;
  }

  Holding* FindHolding(uint32_t ai, uint32_t fi) {
    for (Holding& h : agents[ai].holdings)
      if (h.framework == fi) return &h;
    return nullptr;
  }
  void AddAllocated(uint32_t fi, const Scalars& sc) {
    Framework& f = frameworks[fi];
    f.allocated += sc;
    roles[f.role].allocated += sc;
  }
  void SubAllocated(uint32_t fi, const Scalars& sc) {
    Framework& f = frameworks[fi];
    f.allocated -= sc;
    roles[f.role].allocated -= sc;
  }

  uint32_t InternRole(const std::string& name) {
    auto [it, inserted] = role_index.try_emplace(name, static_cast<uint32_t>(roles.size()));
    if (inserted) roles.emplace_back().name = name;
    return it->second;
  }

  uint32_t FindAgent(const std::string& id) const {
    auto it = agent_index.find(id);
    return it == agent_index.end() ? kNone : it->second;
  }
  uint32_t FindFramework(const std::string& id) const {
    auto it = framework_index.find(id);
    return it == framework_index.end() ? kNone : it->second;
  }
};

Allocator::Allocator(AllocatorOptions options) : s_(std::make_unique<State>()) {
  s_->options = options;
  s_->min_cpus_m = std::llround(options.min_cpus * 1000.0);
  s_->min_mem_m = std::llround(options.min_mem_mib * 1000.0);
  s_->rng = options.seed;
}

Allocator::~Allocator() = default;

Status Allocator::AddAgent(const std::string& agent_id, const Resources& total, const Attributes& attributes) {
  State& s = *s_;
  if (agent_id.empty()) return MakeError(Errc::kInvalidArgument, "adding agent: empty id");
  if (s.agent_index.count(agent_id)) return MakeError(Errc::kAlreadyExists, "adding agent '" + agent_id + "'");
  uint32_t ai;
  if (!s.free_agents.empty()) {
    ai = s.free_agents.back();
    s.free_agents.pop_back();
  } else {
    ai = static_cast<uint32_t>(s.agents.size());
    s.agents.emplace_back();
  }
  Agent& a = s.agents[ai];
  a.id = agent_id;
  a.alive = true;
  a.total = total;
  a.available = total;
  a.attributes = attributes;
  s.agent_index.emplace(agent_id, ai);
  ++s.live_agents;
  Scalars t = s.total;
  t += Scalars::Of(total);
  s.SetTotal(t);
  s.UpdateCandidate(ai);
  return {};
}

Status Allocator::RemoveAgent(const std::string& agent_id) {
  State& s = *s_;
  const uint32_t ai = s.FindAgent(agent_id);
  if (ai == kNone) return Missing("agent", agent_id, "removing agent");
  Agent& a = s.agents[ai];
  for (const Holding& h : a.holdings) {
    s.SubAllocated(h.framework, Scalars::Of(h.resources));
    --s.frameworks[h.framework].holdings;
  }
  for (Framework& f : s.frameworks)
    if (f.alive && !f.filters.empty()) f.filters.erase(ai);
  a.alive = false;
  s.UpdateCandidate(ai);
  Scalars t = s.total;
  t -= Scalars::Of(a.total);
  s.SetTotal(t);
  s.agent_index.erase(agent_id);
  a = Agent{};
  s.free_agents.push_back(ai);
  --s.live_agents;
  return {};
}

Status Allocator::UpdateAgentTotal(const std::string& agent_id, const Resources& total) {
  State& s = *s_;
  const uint32_t ai = s.FindAgent(agent_id);
  if (ai == kNone) return Missing("agent", agent_id, "updating agent total");
  Agent& a = s.agents[ai];
  Resources held;
  for (const Holding& h : a.holdings) held += h.resources;
  if (!total.Contains(held))
    return MakeError(Errc::kInvalidArgument, "updating agent '" + agent_id + "' to " + total.ToString() +
                                                 ": frameworks hold " + held.ToString() + " there");
  Scalars t = s.total;
  t -= Scalars::Of(a.total);
  t += Scalars::Of(total);
  a.total = total;
  a.available = total - held;
  s.SetTotal(t);
  s.UpdateCandidate(ai);
  return {};
}

Status Allocator::AddFramework(const std::string& framework_id, const std::string& role) {
  State& s = *s_;
  if (framework_id.empty()) return MakeError(Errc::kInvalidArgument, "adding framework: empty id");
  if (role.empty()) return MakeError(Errc::kInvalidArgument, "adding framework '" + framework_id + "': empty role");
  if (s.framework_index.count(framework_id))
    return MakeError(Errc::kAlreadyExists, "adding framework '" + framework_id + "'");
  const uint32_t ri = s.InternRole(role);
  uint32_t fi;
  if (!s.free_frameworks.empty()) {
    fi = s.free_frameworks.back();
    s.free_frameworks.pop_back();
  } else {
    fi = static_cast<uint32_t>(s.frameworks.size());
    s.frameworks.emplace_back();
  }
  Framework& f = s.frameworks[fi];
  f = Framework{};
  f.id = framework_id;
  f.alive = true;
  f.role = ri;
  s.framework_index.emplace(framework_id, fi);
  ++s.live_frameworks;
  ++s.roles[ri].frameworks;
  s.UpdateMembership(fi);
  return {};
}

Status Allocator::RemoveFramework(const std::string& framework_id) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "removing framework");
  Framework& f = s.frameworks[fi];
  // Holdings are indexed by agent only; a framework leaving is rare enough for one pass over the agents.
  for (uint32_t ai = 0; ai < s.agents.size() && f.holdings > 0; ++ai) {
    Agent& a = s.agents[ai];
    for (size_t i = 0; i < a.holdings.size(); ++i) {
      if (a.holdings[i].framework != fi) continue;
      a.available += a.holdings[i].resources;
      s.SubAllocated(fi, Scalars::Of(a.holdings[i].resources));
      a.holdings[i] = std::move(a.holdings.back());
      a.holdings.pop_back();
      --f.holdings;
      s.UpdateCandidate(ai);
      break;
    }
  }
  f.alive = false;
  s.UpdateMembership(fi);
  const uint32_t ri = f.role;
  --s.roles[ri].frameworks;
  s.framework_index.erase(framework_id);
  f = Framework{};
  s.free_frameworks.push_back(fi);
  --s.live_frameworks;
  s.ResortRole(ri);
  return {};
}

Status Allocator::ActivateFramework(const std::string& framework_id) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "activating framework");
  s.frameworks[fi].active = true;
  s.UpdateMembership(fi);
  return {};
}

Status Allocator::DeactivateFramework(const std::string& framework_id) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "deactivating framework");
  s.frameworks[fi].active = false;
  s.frameworks[fi].filters.clear();
  s.UpdateMembership(fi);
  return {};
}

Status Allocator::SetWeight(const std::string& role, double weight) {
  State& s = *s_;
  if (role.empty()) return MakeError(Errc::kInvalidArgument, "setting weight: empty role");
  if (!(weight > 0) || !std::isfinite(weight))
    return MakeError(Errc::kInvalidArgument,
                     "setting weight of role '" + role + "': must be > 0 and finite, not " + std::to_string(weight));
  const uint32_t ri = s.InternRole(role);
  s.roles[ri].weight = weight;
  s.ResortRole(ri);
  return {};
}

Status Allocator::Recover(const std::string& framework_id, const std::string& agent_id, const Resources& resources) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "recovering resources");
  const uint32_t ai = s.FindAgent(agent_id);
  if (ai == kNone) return Missing("agent", agent_id, "recovering resources");
  if (resources.empty()) return {};
  Holding* h = s.FindHolding(ai, fi);
  if (!h || !h->resources.Contains(resources))
    return MakeError(Errc::kInvalidArgument, "recovering " + resources.ToString() + " from framework '" +
                                                 framework_id + "' on agent '" + agent_id + "': it holds only " +
                                                 (h ? h->resources.ToString() : std::string("nothing")));
  Agent& a = s.agents[ai];
  h->resources -= resources;
  if (h->resources.empty()) {
    *h = std::move(a.holdings.back());
    a.holdings.pop_back();
    --s.frameworks[fi].holdings;
  }
  a.available += resources;
  s.UpdateCandidate(ai);
  s.SubAllocated(fi, Scalars::Of(resources));
  s.Resort(fi);
  return {};
}

Status Allocator::AddUsed(const std::string& framework_id, const std::string& agent_id, const Resources& resources) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "adding used resources");
  const uint32_t ai = s.FindAgent(agent_id);
  if (ai == kNone) return Missing("agent", agent_id, "adding used resources");
  if (resources.empty()) return {};
  Agent& a = s.agents[ai];
  if (!a.available.Contains(resources))
    return MakeError(Errc::kInvalidArgument, "adding used " + resources.ToString() + " for framework '" + framework_id +
                                                 "' on agent '" + agent_id + "': only " + a.available.ToString() +
                                                 " is available");
  a.available -= resources;
  if (Holding* h = s.FindHolding(ai, fi)) {
    h->resources += resources;
  } else {
    a.holdings.push_back({fi, resources});
    ++s.frameworks[fi].holdings;
  }
  s.UpdateCandidate(ai);
  s.AddAllocated(fi, Scalars::Of(resources));
  s.Resort(fi);
  return {};
}

Status Allocator::Decline(const std::string& framework_id, const std::string& agent_id, double refuse_seconds,
                          TimePoint now) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "declining");
  const uint32_t ai = s.FindAgent(agent_id);
  if (ai == kNone) return Missing("agent", agent_id, "declining");
  if (!std::isfinite(refuse_seconds) || refuse_seconds < 0) refuse_seconds = s.options.default_refuse_seconds;
  refuse_seconds = std::min(refuse_seconds, kMaxRefuseSeconds);
  if (refuse_seconds <= 0) return {};
  const auto expiry = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(refuse_seconds));
  s.frameworks[fi].filters[ai] = expiry.time_since_epoch().count();
  return {};
}

Status Allocator::Suppress(const std::string& framework_id) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "suppressing");
  s.frameworks[fi].suppressed = true;
  s.UpdateMembership(fi);
  return {};
}

Status Allocator::Revive(const std::string& framework_id) {
  State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id);
  if (fi == kNone) return Missing("framework", framework_id, "reviving");
  s.frameworks[fi].suppressed = false;
  s.frameworks[fi].filters.clear();
  s.UpdateMembership(fi);
  return {};
}

std::vector<OfferedResources> Allocator::Allocate(TimePoint now) {
  State& s = *s_;
  if (s.dirty) s.Rebuild();
  std::vector<OfferedResources> out;
  if (s.role_sorter.empty() || s.candidates.empty()) return out;
  s.order.assign(s.candidates.begin(), s.candidates.end());
  s.Shuffle(s.order);
  out.reserve(s.order.size());
  const int64_t now_ticks = now.time_since_epoch().count();

  for (const uint32_t ai : s.order) {
    // The lowest-share eligible framework of the lowest-share role. Sorters hold only eligible frameworks, so
    // the walk stops at the first one unless filters skip some.
    uint32_t chosen = kNone;
    for (const SortKey& rk : s.role_sorter) {
      for (const SortKey& fk : s.roles[rk.index].members) {
        Framework& f = s.frameworks[fk.index];
        if (!f.filters.empty() && s.Filtered(f, ai, now_ticks)) continue;
        chosen = fk.index;
        break;
      }
      if (chosen != kNone) break;
    }
    if (chosen == kNone) continue;

    Agent& a = s.agents[ai];
    Framework& f = s.frameworks[chosen];
    Resources offered = std::move(a.available);
    a.available = Resources{};
    s.UpdateCandidate(ai);
    if (Holding* h = s.FindHolding(ai, chosen)) {
      h->resources += offered;
    } else {
      a.holdings.push_back({chosen, offered});
      ++f.holdings;
    }
    s.AddAllocated(chosen, Scalars::Of(offered));
    ++f.offers;
    ++s.roles[f.role].offers;
    s.Resort(chosen);
    out.push_back({f.id, a.id, std::move(offered)});
  }
  return out;
}

Resources Allocator::Used(const std::string& framework_id, const std::string& agent_id) const {
  const State& s = *s_;
  const uint32_t fi = s.FindFramework(framework_id), ai = s.FindAgent(agent_id);
  if (fi == kNone || ai == kNone) return {};
  for (const Holding& h : s.agents[ai].holdings)
    if (h.framework == fi) return h.resources;
  return {};
}

Resources Allocator::Available(const std::string& agent_id) const {
  const uint32_t ai = s_->FindAgent(agent_id);
  return ai == kNone ? Resources{} : s_->agents[ai].available;
}

Resources Allocator::AgentTotal(const std::string& agent_id) const {
  const uint32_t ai = s_->FindAgent(agent_id);
  return ai == kNone ? Resources{} : s_->agents[ai].total;
}

const Attributes* Allocator::AgentAttributes(const std::string& agent_id) const {
  const uint32_t ai = s_->FindAgent(agent_id);
  return ai == kNone ? nullptr : &s_->agents[ai].attributes;
}

Resources Allocator::ClusterTotal() const {
  const Scalars& t = s_->total;
  return Resources::Make(t.cpus / 1000.0, t.mem / 1000.0, t.disk / 1000.0);
}

double Allocator::DominantShare(const std::string& framework_id) const {
  const uint32_t fi = s_->FindFramework(framework_id);
  return fi == kNone ? 0 : s_->Share(s_->frameworks[fi].allocated);
}

double Allocator::RoleDominantShare(const std::string& role) const {
  auto it = s_->role_index.find(role);
  return it == s_->role_index.end() ? 0 : s_->Share(s_->roles[it->second].allocated);
}

size_t Allocator::agent_count() const { return s_->live_agents; }
size_t Allocator::framework_count() const { return s_->live_frameworks; }

Status Allocator::CheckInvariants() const {
  const State& s = *s_;
  auto fail = [](const std::string& what) -> Status { return MakeError(Errc::kInternal, "allocator: " + what); };

  std::vector<Scalars> fw_alloc(s.frameworks.size());
  std::vector<uint32_t> fw_holdings(s.frameworks.size(), 0);
  Scalars total;
  size_t live_agents = 0, candidates = 0;
  for (uint32_t ai = 0; ai < s.agents.size(); ++ai) {
    const Agent& a = s.agents[ai];
    if (!a.alive) {
      if (a.candidate_pos != kNone || !a.holdings.empty()) return fail("removed agent slot " + std::to_string(ai) + " in use");
      continue;
    }
    ++live_agents;
    if (s.FindAgent(a.id) != ai) return fail("agent '" + a.id + "' not indexed");
    total += Scalars::Of(a.total);
    Resources sum = a.available;
    for (size_t i = 0; i < a.holdings.size(); ++i) {
      const Holding& h = a.holdings[i];
      if (h.framework >= s.frameworks.size() || !s.frameworks[h.framework].alive)
        return fail("agent '" + a.id + "' holds resources of a removed framework");
      if (h.resources.empty()) return fail("agent '" + a.id + "' keeps an empty holding");
      for (size_t j = 0; j < i; ++j)
        if (a.holdings[j].framework == h.framework) return fail("agent '" + a.id + "' has two holdings of one framework");
      sum += h.resources;
      fw_alloc[h.framework] += Scalars::Of(h.resources);
      ++fw_holdings[h.framework];
    }
    if (!(sum == a.total))
      return fail("agent '" + a.id + "': available + allocated = " + sum.ToString() + " but total = " +
                  a.total.ToString());
    const bool want = s.Allocatable(a.available);
    if (want != (a.candidate_pos != kNone)) return fail("agent '" + a.id + "' candidate flag wrong");
    if (want) {
      ++candidates;
      if (a.candidate_pos >= s.candidates.size() || s.candidates[a.candidate_pos] != ai)
        return fail("agent '" + a.id + "' candidate position wrong");
    }
  }
  if (candidates != s.candidates.size()) return fail("candidate list has stale entries");
  if (live_agents != s.live_agents || live_agents != s.agent_index.size()) return fail("agent count wrong");
  if (!(total == s.total)) return fail("cluster total " + s.total.ToString() + ", agents sum to " + total.ToString());

  std::vector<Scalars> role_alloc(s.roles.size());
  std::vector<uint32_t> role_fws(s.roles.size(), 0), role_members(s.roles.size(), 0);
  size_t live_fws = 0;
  for (uint32_t fi = 0; fi < s.frameworks.size(); ++fi) {
    const Framework& f = s.frameworks[fi];
    if (!f.alive) {
      if (f.sorted) return fail("removed framework slot " + std::to_string(fi) + " still sorted");
      continue;
    }
    ++live_fws;
    if (s.FindFramework(f.id) != fi) return fail("framework '" + f.id + "' not indexed");
    if (!(f.allocated == fw_alloc[fi]))
      return fail("framework '" + f.id + "' allocated " + f.allocated.ToString() + ", holdings sum to " +
                  fw_alloc[fi].ToString());
    if (f.holdings != fw_holdings[fi]) return fail("framework '" + f.id + "' holding count wrong");
    role_alloc[f.role] += f.allocated;
    ++role_fws[f.role];
    if (f.sorted != s.Eligible(f)) return fail("framework '" + f.id + "' sorter membership wrong");
    if (f.sorted) {
      ++role_members[f.role];
      const Sorter& m = s.roles[f.role].members;
      if (m.find(*f.pos) != f.pos) return fail("framework '" + f.id + "' position not in its role's sorter");
      if (!s.dirty && !(*f.pos == s.FrameworkKey(fi))) return fail("framework '" + f.id + "' sort key stale");
    }
  }
  if (live_fws != s.live_frameworks || live_fws != s.framework_index.size()) return fail("framework count wrong");

  size_t sorted_roles = 0;
  for (uint32_t ri = 0; ri < s.roles.size(); ++ri) {
    const Role& r = s.roles[ri];
    if (!(r.allocated == role_alloc[ri]))
      return fail("role '" + r.name + "' allocated " + r.allocated.ToString() + ", frameworks sum to " +
                  role_alloc[ri].ToString());
    if (r.frameworks != role_fws[ri]) return fail("role '" + r.name + "' framework count wrong");
    if (r.members.size() != role_members[ri]) return fail("role '" + r.name + "' sorter has stale entries");
    if (r.sorted != !r.members.empty()) return fail("role '" + r.name + "' sorter membership wrong");
    if (r.sorted) {
      ++sorted_roles;
      if (s.role_sorter.find(*r.pos) != r.pos) return fail("role '" + r.name + "' position not in the role sorter");
      if (!s.dirty && !(*r.pos == s.RoleKey(ri))) return fail("role '" + r.name + "' sort key stale");
    }
  }
  if (sorted_roles != s.role_sorter.size()) return fail("role sorter has stale entries");
  return {};
}

}  // namespace tug::cluster
