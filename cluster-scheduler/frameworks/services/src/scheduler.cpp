#include "services/scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "services/placement.hpp"

namespace tug::cluster::services {

using json = nlohmann::json;

namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-22T10:00:00.123Z": versions and timestamps (fixed width, so they sort as strings).
std::string FormatMillis(int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

std::string RandomHex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kHex[rng() & 15];
  return s;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

bool IsStarting(TaskState s) { return s == TaskState::kStaging || s == TaskState::kStarting; }

std::optional<DeploymentKind> ParseKind(const std::string& s) {
  for (auto k : {DeploymentKind::kCreate, DeploymentKind::kScale, DeploymentKind::kUpgrade, DeploymentKind::kRestart,
                 DeploymentKind::kUpdate, DeploymentKind::kDelete})
    if (s == ToString(k)) return k;
  return std::nullopt;
}

// Marathon's action names for a deployment's step.
const char* ActionName(DeploymentKind k) {
  switch (k) {
    case DeploymentKind::kCreate:
      return "StartApplication";
    case DeploymentKind::kScale:
      return "ScaleApplication";
    case DeploymentKind::kUpgrade:
      return "UpgradeApplication";
    case DeploymentKind::kRestart:
      return "RestartApplication";
    case DeploymentKind::kUpdate:
      return "UpdateApplication";
    case DeploymentKind::kDelete:
      return "StopApplication";
  }
  return "?";
}

HealthCheck ToTaskHealthCheck(const AppHealthCheck& h) {
  HealthCheck out;
  switch (h.protocol) {
    case AppHealthCheck::Protocol::kHttp:
      out.type = HealthCheck::Type::kHttp;
      break;
    case AppHealthCheck::Protocol::kTcp:
      out.type = HealthCheck::Type::kTcp;
      break;
    case AppHealthCheck::Protocol::kCommand:
      out.type = HealthCheck::Type::kCommand;
      break;
  }
  out.port_index = h.port_index;
  out.path = h.path;
  out.command = h.command;
  out.grace_period_s = h.grace_period_s;
  out.interval_s = h.interval_s;
  out.timeout_s = h.timeout_s;
  out.max_consecutive_failures = h.max_consecutive_failures;
  return out;
}

}  // namespace

const char* ToString(DeploymentKind k) {
  switch (k) {
    case DeploymentKind::kCreate:
      return "create";
    case DeploymentKind::kScale:
      return "scale";
    case DeploymentKind::kUpgrade:
      return "upgrade";
    case DeploymentKind::kRestart:
      return "restart";
    case DeploymentKind::kUpdate:
      return "update";
    case DeploymentKind::kDelete:
      return "delete";
  }
  return "?";
}

// ---- records ----

struct TaskRecord {
  std::string id;
  std::string app_id;
  std::string version;
  std::string agent_id;
  std::string hostname;
  std::string address;  // what the gateway connects to
  Attributes attributes;  // the agent's, for constraints
  std::vector<uint32_t> ports;
  TaskState state = TaskState::kStaging;
  std::optional<bool> healthy_flag;  // the node's last health verdict
  std::string message;
  std::string reason;
  int64_t staged_at_ms = 0;   // wall
  int64_t started_at_ms = 0;  // wall, first RUNNING
  double staged_at = 0;       // steady
  double healthy_since = 0;   // steady; 0 = not healthy
  bool serving_when_unreachable = false;  // it was healthy when its node became unreachable
  bool kill_wanted = false;   // we decided it goes: its end is expected
  bool draining = false;      // it was in the gateway when we decided: the KILL waits for the gateway
  uint64_t drain_seq = 0;     // the gateway apply that no longer lists it
  double kill_at = 0;         // steady: the KILL may go out (after its gateway drain)
  double kill_sent_at = 0;    // steady; 0 = not sent on this connection
};

struct DeploymentRecord {
  std::string id;
  DeploymentKind kind = DeploymentKind::kCreate;
  std::string version;
  int64_t started_ms = 0;
  json last_progress;
};

struct AppRecord {
  AppDefinition def;
  std::string version;          // of the config: what its tasks carry
  std::string last_scaling_at;  // last change of instances
  bool deleting = false;
  double backoff_delay = 0;  // seconds; 0 = none
  double backoff_until = 0;  // steady
  double last_failure = 0;   // steady
  std::optional<DeploymentRecord> deployment;
  // Derived on every pass.
  uint32_t demand = 0;       // instances to launch on the next offers
  double waiting_since = 0;  // steady: demand > 0 since

};

struct AgentSnapshot {
  std::string hostname;
  Attributes attributes;
  Resources available;  // the last offer, minus what we launched from it
  double seen = 0;      // steady
};

struct Counters {
  uint64_t offers_received = 0, offers_declined = 0, offers_accepted = 0, tasks_launched = 0, kills_sent = 0,
           task_failures = 0, tasks_lost = 0, launch_failures = 0, save_errors = 0, gateway_applies = 0,
           revives = 0, suppresses = 0, deployments_succeeded = 0, deployments_superseded = 0;
};

enum class OfferInterest { kUnknown, kRevived, kSuppressed };

constexpr double kNoOffersGraceSeconds = 10;

// ---- the scheduler ----

struct Scheduler::Impl {
  Impl(SchedulerOptions o, Driver& d, StateStore& s, Clock c)
      : opts(std::move(o)), driver(d), store(s), now_fn(c ? std::move(c) : Clock(SteadySeconds)) {}

  SchedulerOptions opts;
  Driver& driver;
  StateStore& store;
  Clock now_fn;
  EventSink sink;

  std::string framework_id;
  std::string master;
  bool connected = false;
  OfferInterest interest = OfferInterest::kUnknown;
  bool revive_wanted = false;
  std::map<std::string, AppRecord> apps;
  std::map<std::string, TaskRecord> tasks;
  std::map<std::string, AgentSnapshot> agents;
  int64_t last_version_ms = 0;
  bool must_save = false;   // saved before the next effect
  bool soft_dirty = false;  // saved on the next tick
  std::optional<std::vector<GatewayService>> last_gateway;
  uint64_t gateway_sent_seq = 0;     // last apply handed to the driver
  uint64_t gateway_applied_seq = 0;  // highest apply that succeeded
  Counters counters;

  double Now() const { return now_fn(); }

  // ---- events ----

  void Emit(const std::string& type, json body) {
    if (!sink) return;
    body["eventType"] = type;
    body["timestamp"] = FormatMillis(WallMillis());
    sink(type, body);
  }

  // ---- versions ----

  std::string NextVersion() {
    last_version_ms = std::max(WallMillis(), last_version_ms + 1);
    return FormatMillis(last_version_ms);
  }

  // ---- task predicates ----

  static bool HasHealthCheck(const AppRecord& a) { return !a.def.health_checks.empty(); }

  bool Healthy(const TaskRecord& t) const {
    if (t.state != TaskState::kRunning) return false;
    auto a = apps.find(t.app_id);
    if (a == apps.end() || !HasHealthCheck(a->second)) return true;
    return t.healthy_flag.value_or(false);
  }
  // Healthy and staying: counts toward capacity and sits in the gateway.
  bool Serving(const TaskRecord& t) const { return !t.kill_wanted && Healthy(t); }
  // In the gateway: serving, or unreachable after serving (its node stopped reporting, but the instance may well
  // still answer; HAProxy's own checks take it out if not) until the master declares it lost.
  bool InGateway(const TaskRecord& t) const {
    return !t.kill_wanted && (Healthy(t) || (t.state == TaskState::kUnreachable && t.serving_when_unreachable));
  }

  std::vector<TaskRecord*> TasksOf(const std::string& app_id) {
    std::vector<TaskRecord*> out;
    for (auto& [id, t] : tasks)
      if (t.app_id == app_id) out.push_back(&t);
    return out;
  }
  std::vector<const TaskRecord*> TasksOf(const std::string& app_id) const {
    std::vector<const TaskRecord*> out;
    for (const auto& [id, t] : tasks)
      if (t.app_id == app_id) out.push_back(&t);
    return out;
  }

  // ---- upgrade arithmetic (Marathon's TaskReplaceActor) ----

  struct Capacity {
    uint32_t n = 0;
    uint32_t min_healthy = 0;  // ceil(m * n)
    uint32_t max_total = 0;    // n + floor(o * n), +1 when that leaves no room to make progress
  };
  Capacity CapacityOf(const AppRecord& a, bool has_old) const {
    Capacity c;
    c.n = a.def.instances;
    c.min_healthy = static_cast<uint32_t>(std::ceil(a.def.upgrade.minimum_health_capacity * c.n - 1e-9));
    c.max_total = c.n + static_cast<uint32_t>(std::floor(a.def.upgrade.maximum_over_capacity * c.n + 1e-9));
    // minimumHealthCapacity 1 with no over-capacity could never start a new instance: allow one more, as Marathon.
    if (has_old && c.max_total <= c.min_healthy) c.max_total = c.min_healthy + 1;
    return c;
  }

  struct Census {
    std::vector<TaskRecord*> old_active, new_active;  // not being killed
    uint32_t nonterminal = 0;                          // everything still alive, killed or not
    uint32_t healthy = 0;                              // Serving
    uint32_t new_healthy = 0;
    uint32_t killing = 0;
    uint32_t starting = 0;
  };
  Census CensusOf(const AppRecord& a) {
    Census c;
    for (auto* t : TasksOf(a.def.id)) {
      if (IsTerminal(t->state)) continue;
      c.nonterminal++;
      if (t->kill_wanted) {
        c.killing++;
        continue;
      }
      if (IsStarting(t->state)) c.starting++;
      const bool serving = Serving(*t);
      c.healthy += serving;
      if (t->version == a.version) {
        c.new_active.push_back(t);
        c.new_healthy += serving;
      } else {
        c.old_active.push_back(t);
      }
    }
    return c;
  }

  // ---- kills ----

  void WantKill(TaskRecord& t, const std::string& why) {
    if (t.kill_wanted) return;
    const double now = Now();
    auto a = apps.find(t.app_id);
    const bool in_gateway = opts.gateway && a != apps.end() && a->second.def.gateway && InGateway(t);
    t.kill_wanted = true;
    // A task in the gateway leaves it first (SyncGateway, this pass) and is killed once that apply has drained it
    // (plus drain_s), so no request reaches an instance that is going away.
    t.draining = in_gateway;
    t.drain_seq = 0;
    t.kill_at = in_gateway ? now + opts.drain_s : now;
    t.kill_sent_at = 0;
    must_save = true;
    spdlog::info("services: killing task {} of {}{}: {}", t.id, t.app_id, in_gateway ? " after draining" : "", why);
  }

  void SendDueKills() {
    if (!connected) return;
    const double now = Now();
    for (auto& [id, t] : tasks) {
      if (!t.kill_wanted || IsTerminal(t.state) || now < t.kill_at) continue;
      if (t.draining && gateway_applied_seq < t.drain_seq && now < t.kill_at + opts.gateway_wait_max_s) continue;
      if (t.kill_sent_at != 0 && now - t.kill_sent_at < opts.kill_retry_s) continue;
      driver.Kill(t.id, t.agent_id);
      t.kill_sent_at = now;
      counters.kills_sent++;
    }
  }

  // ---- converge: kill what must go, compute what to launch ----

  void Converge(AppRecord& a) {
    const double now = Now();
    if (a.deleting) {
      for (auto* t : TasksOf(a.def.id))
        if (!IsTerminal(t->state)) WantKill(*t, "app deleted");
      a.demand = 0;
      return;
    }
    Census c = CensusOf(a);
    const Capacity cap = CapacityOf(a, !c.old_active.empty());
    uint32_t healthy = c.healthy;
    // Old instances that do not serve cost no capacity: they go at once.
    for (auto* t : c.old_active)
      if (!Serving(*t)) WantKill(*t, "replaced by version " + a.version + " (not healthy)");
    // Healthy old ones go while at least min_healthy healthy instances remain, oldest first.
    std::vector<TaskRecord*> old_serving;
    for (auto* t : c.old_active)
      if (!t->kill_wanted) old_serving.push_back(t);
    std::sort(old_serving.begin(), old_serving.end(),
              [](const TaskRecord* x, const TaskRecord* y) { return x->staged_at_ms < y->staged_at_ms; });
    for (auto* t : old_serving) {
      if (healthy < cap.min_healthy + 1) break;
      WantKill(*t, "replaced by version " + a.version);
      healthy--;
    }
    // More new instances than wanted (scale down): the ones not serving first, then the youngest.
    if (c.new_active.size() > cap.n) {
      auto order = c.new_active;
      std::sort(order.begin(), order.end(), [&](const TaskRecord* x, const TaskRecord* y) {
        const bool sx = Serving(*x), sy = Serving(*y);
        if (sx != sy) return !sx;
        return x->staged_at_ms > y->staged_at_ms;
      });
      for (size_t i = 0; i < c.new_active.size() - cap.n; ++i) WantKill(*order[i], "scaling down to " + std::to_string(cap.n));
    }
    // Launches: up to n new instances, never more than max_total alive (killed ones count until they are gone).
    c = CensusOf(a);
    const uint32_t want = cap.n > c.new_active.size() ? cap.n - static_cast<uint32_t>(c.new_active.size()) : 0;
    const uint32_t room = cap.max_total > c.nonterminal ? cap.max_total - c.nonterminal : 0;
    a.demand = std::min(want, room);
    if (now < a.backoff_until) a.demand = 0;
    if (a.demand == 0) a.waiting_since = 0;
    else if (a.waiting_since == 0) a.waiting_since = now;
  }

  // ---- offers ----

  void OnOffers(const json& event) {
    const json list = event.value("offers", json::object()).value("offers", json::array());
    const double now = Now();
    std::vector<Offer> offers;
    for (size_t i = 0; i < list.size(); ++i) {
      auto o = OfferFromJson(list[i], "offers[" + std::to_string(i) + "]");
      if (!o) {
        spdlog::warn("services: ignoring a malformed offer: {}", o.error().Message());
        continue;
      }
      offers.push_back(*o);
    }
    counters.offers_received += offers.size();
    for (auto& [id, a] : apps) Converge(a);
    // Offers of one agent are accepted together (the master wants all offers of an ACCEPT from one agent).
    std::vector<std::string> agent_order;
    std::map<std::string, std::vector<const Offer*>> by_agent;
    for (const auto& o : offers) {
      if (!by_agent.count(o.agent_id)) agent_order.push_back(o.agent_id);
      by_agent[o.agent_id].push_back(&o);
    }
    // Apps in a deployment first, then by id.
    std::vector<AppRecord*> order;
    for (auto& [id, a] : apps)
      if (!a.deleting) order.push_back(&a);
    std::stable_sort(order.begin(), order.end(), [](const AppRecord* x, const AppRecord* y) {
      return x->deployment.has_value() && !y->deployment.has_value();
    });
    struct Slot {
      std::vector<std::string> offer_ids;
      Resources avail;
      const Offer* first = nullptr;
      Attributes attrs;
      std::vector<TaskInfo> infos;
    };
    std::map<std::string, Slot> slots;
    for (const auto& agent_id : agent_order) {
      Slot& slot = slots[agent_id];
      for (const auto* o : by_agent[agent_id]) {
        slot.offer_ids.push_back(o->id);
        slot.avail += o->resources;
      }
      slot.first = by_agent[agent_id].front();
      slot.attrs = slot.first->attributes;
      if (!slot.attrs.count("hostname")) slot.attrs["hostname"] = slot.first->hostname;
    }
    // One instance at a time, each on the fitting agent that has the fewest of the app's instances: an app's
    // instances spread over the nodes on offer instead of filling the first one (a lost node then takes fewer).
    std::vector<std::pair<AppRecord*, std::string>> launched;
    for (auto* a : order) {
      std::map<std::string, size_t> on_agent;
      std::vector<const Attributes*> placed;
      for (const auto* t : TasksOf(a->def.id)) {
        if (IsTerminal(t->state)) continue;
        on_agent[t->agent_id]++;
        placed.push_back(&t->attributes);
      }
      while (a->demand > 0) {
        std::string best;
        for (const auto& agent_id : agent_order) {
          Slot& slot = slots[agent_id];
          if (ResourceShortfall(a->def, slot.avail)) continue;
          if (!ConstraintsAllow(a->def.constraints, slot.attrs, placed)) continue;
          if (best.empty() || on_agent[agent_id] < on_agent[best]) best = agent_id;
        }
        if (best.empty()) break;
        Slot& slot = slots[best];
        const Resources take = TakeForInstance(a->def, slot.avail);
        slot.avail -= take;
        TaskRecord t = NewTask(*a, *slot.first, slot.attrs, take);
        slot.infos.push_back(TaskInfoFor(*a, t, take));
        launched.emplace_back(a, t.id);
        const std::string tid = t.id;
        tasks[tid] = std::move(t);
        placed.push_back(&tasks[tid].attributes);
        on_agent[best]++;
        a->demand--;
      }
    }
    for (const auto& agent_id : agent_order) {
      const Slot& slot = slots[agent_id];
      agents[agent_id] = AgentSnapshot{slot.first->hostname, slot.attrs, slot.avail, now};
    }
    // The new tasks are on disk before the master hears of them: after a crash they are reconciled, not lost.
    bool saved = true;
    if (!launched.empty()) {
      must_save = true;
      saved = Save();
      if (!saved) {
        for (auto& [a, tid] : launched) {
          tasks.erase(tid);
          a->demand++;
        }
        launched.clear();
      }
    }
    for (const auto& agent_id : agent_order) {
      const Slot& slot = slots[agent_id];
      if (slot.infos.empty() || !saved) {
        driver.Decline(slot.offer_ids, opts.decline_refuse_s);
        counters.offers_declined += slot.offer_ids.size();
        continue;
      }
      driver.Accept(slot.offer_ids, slot.infos, opts.decline_refuse_s);
      counters.offers_accepted += slot.offer_ids.size();
      counters.tasks_launched += slot.infos.size();
    }
    for (auto& [a, tid] : launched) {
      const TaskRecord& t = tasks[tid];
      spdlog::info("services: launching {} ({} version {}) on {} ports {}", t.id, t.app_id, t.version, t.hostname,
                   json(t.ports).dump());
      Emit("status_update_event", StatusEventBody(t));
    }
  }

  TaskRecord NewTask(const AppRecord& a, const Offer& o, const Attributes& attrs, const Resources& take) {
    TaskRecord t;
    t.id = DottedAppId(a.def.id) + "." + RandomHex(12);
    t.app_id = a.def.id;
    t.version = a.version;
    t.agent_id = o.agent_id;
    t.hostname = o.hostname;
    auto ip = attrs.find("ip");
    t.address = ip != attrs.end() && !ip->second.empty() ? ip->second : o.hostname;
    t.attributes = attrs;
    t.ports = take.FirstPorts(take.port_count());
    t.state = TaskState::kStaging;
    t.staged_at_ms = WallMillis();
    t.staged_at = Now();
    return t;
  }

  TaskInfo TaskInfoFor(const AppRecord& a, const TaskRecord& t, const Resources& take) const {
    TaskInfo ti;
    ti.task_id = t.id;
    ti.name = DottedAppId(a.def.id);
    ti.agent_id = t.agent_id;
    ti.resources = take;
    ti.command.value = a.def.cmd;
    ti.command.shell = true;
    ti.command.environment = a.def.env;
    ti.command.environment["TUG_APP_ID"] = a.def.id;
    ti.command.environment["TUG_APP_VERSION"] = a.version;
    ti.container.image = a.def.image;
    if (!a.def.health_checks.empty()) ti.health_check = ToTaskHealthCheck(a.def.health_checks.front());
    ti.labels = a.def.labels;
    ti.labels["app"] = a.def.id;
    ti.labels["version"] = a.version;
    return ti;
  }

  // ---- status updates ----

  json StatusEventBody(const TaskRecord& t) const {
    json j{{"appId", t.app_id},   {"taskId", t.id},       {"taskStatus", TaskStateName(t.state)},
           {"host", t.hostname},  {"agentId", t.agent_id}, {"ports", t.ports},
           {"version", t.version}, {"healthy", Healthy(t)}};
    if (!t.message.empty()) j["message"] = t.message;
    if (!t.reason.empty()) j["reason"] = t.reason;
    return j;
  }

  void OnUpdate(const json& event) {
    auto st = TaskStatusFromJson(event.value("update", json::object()).value("status", json()), "update.status");
    if (!st) {
      spdlog::warn("services: ignoring a malformed update: {}", st.error().Message());
      return;
    }
    ApplyStatus(*st);
    Pass();
    // Acknowledged once processed (and its consequences saved, when they must be): the master re-sends until then.
    if (!st->uuid.empty()) driver.Acknowledge(*st);
  }

  void ApplyStatus(const TaskStatus& s) {
    auto it = tasks.find(s.task_id);
    if (it == tasks.end()) {
      // Not ours (any more): an app deleted while we were away, or a task launched by a previous incarnation whose
      // record never reached the disk (we save before launching, so: none). It must not run unsupervised.
      if (!IsTerminal(s.state)) {
        spdlog::warn("services: task {} ({}) is unknown; killing it", s.task_id, TaskStateName(s.state));
        if (connected) driver.Kill(s.task_id, s.agent_id);
      }
      return;
    }
    TaskRecord& t = it->second;
    const TaskState prev_state = t.state;
    const bool was_healthy = Healthy(t);
    if (s.state == TaskState::kUnreachable && prev_state != TaskState::kUnreachable) t.serving_when_unreachable = was_healthy;
    if (s.state != TaskState::kUnreachable) t.serving_when_unreachable = false;
    t.state = s.state;
    t.message = s.message;
    t.reason = s.reason;
    if (!s.agent_id.empty()) t.agent_id = s.agent_id;
    if (s.healthy) {
      t.healthy_flag = s.healthy;
    } else if (s.state != prev_state) {
      t.healthy_flag.reset();  // a new state without a verdict: unknown until the node checks again
    }
    if (s.state == TaskState::kRunning && t.started_at_ms == 0) t.started_at_ms = WallMillis();
    const bool healthy = Healthy(t);
    if (healthy && !was_healthy) t.healthy_since = Now();
    if (!healthy) t.healthy_since = 0;
    soft_dirty = true;
    if (s.state != prev_state) Emit("status_update_event", StatusEventBody(t));
    if (healthy != was_healthy && !IsTerminal(s.state))
      Emit("health_status_changed_event",
           json{{"appId", t.app_id}, {"taskId", t.id}, {"version", t.version}, {"alive", healthy}});
    if (IsTerminal(s.state)) OnTerminal(t);
  }

  void OnTerminal(TaskRecord& t) {
    auto a = apps.find(t.app_id);
    const bool expected = t.kill_wanted || a == apps.end() || a->second.deleting;
    if (!expected) {
      const bool app_fault = t.state == TaskState::kFailed || t.state == TaskState::kFinished ||
                             t.state == TaskState::kError || t.state == TaskState::kKilled;
      if (t.state == TaskState::kLost || t.state == TaskState::kDropped) counters.tasks_lost++;
      if (app_fault) {
        counters.task_failures++;
        AppRecord& app = a->second;
        // The app's instances keep dying: wait longer before each new one (reset once one stays healthy).
        app.backoff_delay = app.backoff_delay == 0 ? opts.backoff_initial_s
                                                   : std::min(app.backoff_delay * 2, opts.backoff_max_s);
        app.backoff_until = Now() + app.backoff_delay;
        app.last_failure = Now();
        soft_dirty = true;
        spdlog::warn("services: task {} of {} ended {} ({}); next instance in {} s", t.id, t.app_id,
                     TaskStateName(t.state), t.message, app.backoff_delay);
      } else {
        spdlog::warn("services: task {} of {} is {} ({}); replacing it", t.id, t.app_id, TaskStateName(t.state),
                     t.message);
      }
    }
    revive_wanted = true;
    must_save = true;
    tasks.erase(t.id);
  }

  // ---- deployments ----

  // Starts a deployment on `a`; the one it replaces (if any) is returned so its failure can be announced once the
  // change is saved.
  std::optional<DeploymentRecord> StartDeployment(AppRecord& a, DeploymentKind kind) {
    std::optional<DeploymentRecord> old = std::move(a.deployment);
    DeploymentRecord d;
    d.id = "d-" + RandomHex(16);
    d.kind = kind;
    d.version = a.version;
    d.started_ms = WallMillis();
    a.deployment = std::move(d);
    return old;
  }

  void AnnounceDeployment(const AppRecord& a, const std::optional<DeploymentRecord>& superseded) {
    if (superseded) {
      counters.deployments_superseded++;
      Emit("deployment_failed", json{{"id", superseded->id},
                                     {"appId", a.def.id},
                                     {"kind", ToString(superseded->kind)},
                                     {"reason", "superseded by deployment " + a.deployment->id}});
    }
    Emit("deployment_info", json{{"id", a.deployment->id},
                                 {"appId", a.def.id},
                                 {"kind", ToString(a.deployment->kind)},
                                 {"version", a.version},
                                 {"instances", a.def.instances}});
  }

  bool Converged(const AppRecord& a) const {
    uint32_t alive = 0;
    for (const auto* t : TasksOf(a.def.id)) {
      if (IsTerminal(t->state)) continue;
      alive++;
      if (a.deleting) continue;
      if (t->kill_wanted || t->version != a.version || !Healthy(*t)) return false;
    }
    return a.deleting ? alive == 0 : alive == a.def.instances;
  }

  json Progress(AppRecord& a) {
    Census c = CensusOf(a);
    const Capacity cap = CapacityOf(a, !c.old_active.empty());
    return json{{"instances", a.def.instances},
                {"alive", c.nonterminal},
                {"new", c.new_active.size()},
                {"newHealthy", c.new_healthy},
                {"old", c.old_active.size()},
                {"healthy", c.healthy},
                {"killing", c.killing},
                {"starting", c.starting},
                {"minHealthy", cap.min_healthy},
                {"maxTotal", cap.max_total}};
  }

  void UpdateDeployments() {
    std::vector<std::string> gone;
    for (auto& [id, a] : apps) {
      if (!a.deployment) {
        if (a.deleting && Converged(a)) gone.push_back(id);
        continue;
      }
      json progress = Progress(a);
      if (progress != a.deployment->last_progress) {
        a.deployment->last_progress = progress;
        Emit("deployment_step", json{{"id", a.deployment->id},
                                     {"appId", id},
                                     {"kind", ToString(a.deployment->kind)},
                                     {"progress", progress},
                                     {"status", StatusText(a)}});
      }
      if (Converged(a)) {
        spdlog::info("services: deployment {} ({} of {}) finished", a.deployment->id, ToString(a.deployment->kind), id);
        counters.deployments_succeeded++;
        Emit("deployment_success", json{{"id", a.deployment->id}, {"appId", id}, {"kind", ToString(a.deployment->kind)},
                                        {"version", a.version}});
        a.deployment.reset();
        soft_dirty = true;
        if (a.deleting) gone.push_back(id);
      }
    }
    for (const auto& id : gone) {
      apps.erase(id);
      must_save = true;
    }
  }

  // Why an app cannot get its instances placed, from the agents seen in recent offers. nullopt: something fits
  // (an offer is just not here yet).
  std::optional<std::string> Diagnose(const AppRecord& a) const {
    const double now = Now();
    std::vector<const AgentSnapshot*> recent;
    for (const auto& [id, s] : agents)
      if (now - s.seen <= opts.offer_memory_s) recent.push_back(&s);
    if (recent.empty()) {
      if (now - a.waiting_since < kNoOffersGraceSeconds) return std::nullopt;  // offers take a moment to come
      return "no offers received in the last " + Seconds(opts.offer_memory_s) +
             " s (are nodes registered, and is role '" + opts.role + "' offered anything?)";
    }
    std::vector<const Attributes*> placed;
    for (const auto* t : TasksOf(a.def.id))
      if (!IsTerminal(t->state)) placed.push_back(&t->attributes);
    std::map<std::string, size_t> by_constraint;
    struct ResFail {
      size_t agents = 0;
      double need = 0;
      double largest = -1;
      std::string host;
    };
    std::map<std::string, ResFail> by_resource;
    for (const auto* s : recent) {
      std::string failed;
      if (!ConstraintsAllow(a.def.constraints, s->attributes, placed, &failed)) {
        by_constraint[failed]++;
        continue;
      }
      if (auto sf = ResourceShortfall(a.def, s->available)) {
        auto& r = by_resource[sf->what];
        r.agents++;
        r.need = sf->need;
        if (sf->have > r.largest) {
          r.largest = sf->have;
          r.host = s->hostname;
        }
        continue;
      }
      return std::nullopt;
    }
    const std::string agents_n = std::to_string(recent.size()) + (recent.size() == 1 ? " agent" : " agents");
    const std::string inst_n = std::to_string(a.def.instances) + (a.def.instances == 1 ? " instance" : " instances");
    auto res_text = [](const std::string& what, const ResFail& r) {
      return FormatAmount(what, r.need) + " (largest " + FormatAmount("", r.largest).substr(1) + " on " + r.host + ")";
    };
    if (by_resource.empty() && by_constraint.size() == 1)
      return "no offer satisfies constraint " + by_constraint.begin()->first + " (" + agents_n + ", " + inst_n + ")";
    if (by_constraint.empty() && by_resource.size() == 1)
      return "no offer has " + res_text(by_resource.begin()->first, by_resource.begin()->second);
    std::vector<std::string> parts;
    for (const auto& [c, n] : by_constraint)
      parts.push_back("constraint " + c + " fails on " + std::to_string(n) + " of " + agents_n);
    for (const auto& [what, r] : by_resource)
      parts.push_back(std::to_string(r.agents) + " of " + agents_n + " lack " + res_text(what, r));
    return "no offer fits (" + inst_n + "): " + Join(parts, "; ");
  }

  std::optional<std::string> Blocked(AppRecord& a) {
    if (a.deleting) return std::nullopt;
    const double now = Now();
    Census c = CensusOf(a);
    const uint32_t want = a.def.instances > c.new_active.size() ? a.def.instances - c.new_active.size() : 0;
    if (want == 0) return std::nullopt;
    if (now < a.backoff_until)
      return "delaying launches after instance failures: next launch in " + Seconds(a.backoff_until - now) +
             " s (backoff " + Seconds(a.backoff_delay) + " s)";
    if (a.demand == 0) return std::nullopt;  // waiting for room (killed instances to go), not blocked
    return Diagnose(a);
  }

  std::string StatusText(AppRecord& a) {
    Census c = CensusOf(a);
    if (a.deleting) return "stopping " + std::to_string(c.nonterminal) + " instance(s)";
    const Capacity cap = CapacityOf(a, !c.old_active.empty());
    std::vector<std::string> parts;
    const uint32_t want = cap.n > c.new_active.size() ? cap.n - static_cast<uint32_t>(c.new_active.size()) : 0;
    if (want > 0) {
      if (a.demand == 0 && Now() >= a.backoff_until)
        parts.push_back("waiting for instances to stop before starting " + std::to_string(want) +
                        " more (at most " + std::to_string(cap.max_total) + " alive)");
      else
        parts.push_back("starting " + std::to_string(want) + " of " + std::to_string(cap.n) + " instance(s)");
    }
    const size_t unhealthy_new = c.new_active.size() - c.new_healthy;
    if (unhealthy_new > 0) parts.push_back("waiting for " + std::to_string(unhealthy_new) + " instance(s) to become healthy");
    if (!c.old_active.empty())
      parts.push_back(std::to_string(c.old_active.size()) + " old instance(s) to replace (" +
                      std::to_string(c.healthy) + " healthy, keeping at least " + std::to_string(cap.min_healthy) + ")");
    if (c.killing > 0) parts.push_back("waiting for " + std::to_string(c.killing) + " killed instance(s) to stop");
    if (parts.empty()) return "finishing";
    return Join(parts, "; ");
  }

  // ---- gateway ----

  void SyncGateway() {
    if (!opts.gateway) return;
    std::vector<GatewayService> desired;
    for (const auto& [id, a] : apps) {
      if (a.deleting || !a.def.gateway) continue;
      GatewayService s;
      s.name = DottedAppId(id);
      s.frontend_port = a.def.gateway->port;
      s.mode = a.def.gateway->mode;
      for (const auto* t : TasksOf(id))
        if (InGateway(*t) && !t->ports.empty()) s.backends.push_back(GatewayBackend{t->address, t->ports[0], t->id});
      const auto& hcs = a.def.health_checks;
      if (!hcs.empty() && hcs[0].protocol == AppHealthCheck::Protocol::kHttp && hcs[0].port_index == 0)
        s.health_path = hcs[0].path;
      desired.push_back(std::move(s));
    }
    if (!last_gateway || *last_gateway != desired) {
      driver.ApplyGateway(++gateway_sent_seq, desired);
      counters.gateway_applies++;
      last_gateway = std::move(desired);
    }
    // The configuration last sent lists no task we decided to kill: once it is applied, they are drained.
    for (auto& [id, t] : tasks)
      if (t.draining && t.drain_seq == 0) t.drain_seq = gateway_sent_seq;
  }

  void OnGatewayApplied(uint64_t seq, const std::string& error) {
    if (!error.empty()) {
      spdlog::warn("services: gateway apply {} failed: {}; applying again", seq, error);
      if (seq == gateway_sent_seq) last_gateway.reset();
    } else {
      gateway_applied_seq = std::max(gateway_applied_seq, seq);
    }
    Pass();
  }

  // ---- offer interest ----

  void UpdateOfferInterest() {
    if (!connected) return;
    uint32_t demand = 0;
    for (const auto& [id, a] : apps) demand += a.demand;
    if (demand > 0) {
      if (interest != OfferInterest::kRevived || revive_wanted) {
        driver.Revive();
        counters.revives++;
        interest = OfferInterest::kRevived;
      }
    } else if (interest != OfferInterest::kSuppressed) {
      driver.Suppress();
      counters.suppresses++;
      interest = OfferInterest::kSuppressed;
    }
    revive_wanted = false;
  }

  // ---- the pass every entry point ends with ----

  void Pass() {
    // Tasks of an app we no longer have (its stored definition did not load) must not run unsupervised.
    for (auto& [id, t] : tasks)
      if (!t.kill_wanted && !IsTerminal(t.state) && !apps.count(t.app_id)) WantKill(t, "its app " + t.app_id + " is unknown");
    for (auto& [id, a] : apps) Converge(a);
    UpdateDeployments();
    if (must_save) Save();
    SyncGateway();
    SendDueKills();
    UpdateOfferInterest();
  }

  void Tick() {
    const double now = Now();
    // A launch that never reached a node (lost LAUNCH) would hold its slot forever: kill it (the node reports an
    // unknown task as TASK_DROPPED) and start another.
    for (auto& [id, t] : tasks)
      if (t.state == TaskState::kStaging && !t.kill_wanted && now - t.staged_at > opts.launch_timeout_s)
        WantKill(t, "still TASK_STAGING after " + Seconds(opts.launch_timeout_s) + " s");
    for (auto& [id, a] : apps) {
      if (a.backoff_delay == 0) continue;
      for (const auto* t : TasksOf(id)) {
        if (t->healthy_since > 0 && t->staged_at > a.last_failure && now - t->healthy_since >= opts.backoff_reset_after_s) {
          spdlog::info("services: {} has an instance healthy for {} s; launch backoff reset", id, opts.backoff_reset_after_s);
          a.backoff_delay = 0;
          a.backoff_until = 0;
          soft_dirty = true;
          break;
        }
      }
    }
    Pass();
    if (soft_dirty) Save();
  }

  // ---- persistence ----

  json StateJson() const {
    json japps = json::array();
    for (const auto& [id, a] : apps) {
      json j{{"definition", ToJson(a.def)},
             {"version", a.version},
             {"lastScalingAt", a.last_scaling_at},
             {"deleting", a.deleting},
             {"backoffSeconds", a.backoff_delay}};
      if (a.deployment)
        j["deployment"] = {{"id", a.deployment->id},
                           {"kind", ToString(a.deployment->kind)},
                           {"version", a.deployment->version},
                           {"startedMs", a.deployment->started_ms}};
      japps.push_back(j);
    }
    json jtasks = json::array();
    for (const auto& [id, t] : tasks) {
      json j{{"id", t.id},
             {"appId", t.app_id},
             {"version", t.version},
             {"agentId", t.agent_id},
             {"hostname", t.hostname},
             {"address", t.address},
             {"attributes", t.attributes},
             {"ports", t.ports},
             {"state", TaskStateName(t.state)},
             {"stagedMs", t.staged_at_ms},
             {"startedMs", t.started_at_ms},
             {"killWanted", t.kill_wanted},
             {"servingWhenUnreachable", t.serving_when_unreachable}};
      if (t.healthy_flag) j["healthy"] = *t.healthy_flag;
      jtasks.push_back(j);
    }
    return json{{"format", 1},
                {"frameworkId", framework_id},
                {"lastVersionMs", last_version_ms},
                {"apps", japps},
                {"tasks", jtasks}};
  }

  bool Save() {
    if (auto st = store.Save(StateJson()); !st) {
      counters.save_errors++;
      spdlog::error("services: saving state: {}", st.error().Message());
      return false;
    }
    must_save = false;
    soft_dirty = false;
    return true;
  }

  Status Recover() {
    auto doc = store.Load();
    if (!doc) return tl::unexpected(doc.error());
    if (!*doc) return {};
    const json& s = **doc;
    framework_id = s.value("frameworkId", "");
    last_version_ms = s.value("lastVersionMs", int64_t{0});
    const double now = Now();
    for (const auto& ja : s.value("apps", json::array())) {
      auto def = ParseApp(ja.value("definition", json()));
      if (!def) {
        spdlog::error("services: stored app does not parse any more; dropping it (its tasks will be killed): {}",
                      def.error().Message());
        continue;
      }
      AppRecord a;
      a.def = *def;
      a.version = ja.value("version", "");
      a.last_scaling_at = ja.value("lastScalingAt", a.version);
      a.deleting = ja.value("deleting", false);
      a.backoff_delay = ja.value("backoffSeconds", 0.0);
      if (ja.contains("deployment") && ja["deployment"].is_object()) {
        const json& jd = ja["deployment"];
        DeploymentRecord d;
        d.id = jd.value("id", "");
        d.kind = ParseKind(jd.value("kind", "")).value_or(DeploymentKind::kUpdate);
        d.version = jd.value("version", a.version);
        d.started_ms = jd.value("startedMs", int64_t{0});
        a.deployment = d;
      }
      apps[a.def.id] = std::move(a);
    }
    for (const auto& jt : s.value("tasks", json::array())) {
      TaskRecord t;
      t.id = jt.value("id", "");
      t.app_id = jt.value("appId", "");
      if (t.id.empty()) continue;
      t.version = jt.value("version", "");
      t.agent_id = jt.value("agentId", "");
      t.hostname = jt.value("hostname", "");
      t.address = jt.value("address", t.hostname);
      if (jt.contains("attributes") && jt["attributes"].is_object())
        for (const auto& [k, v] : jt["attributes"].items())
          if (v.is_string()) t.attributes[k] = v.get<std::string>();
      if (jt.contains("ports") && jt["ports"].is_array())
        for (const auto& p : jt["ports"])
          if (p.is_number_unsigned()) t.ports.push_back(p.get<uint32_t>());
      t.state = ParseTaskState(jt.value("state", "TASK_STAGING")).value_or(TaskState::kStaging);
      if (jt.contains("healthy") && jt["healthy"].is_boolean()) t.healthy_flag = jt["healthy"].get<bool>();
      t.staged_at_ms = jt.value("stagedMs", int64_t{0});
      t.started_at_ms = jt.value("startedMs", int64_t{0});
      t.staged_at = now;
      t.kill_wanted = jt.value("killWanted", false);
      t.serving_when_unreachable = jt.value("servingWhenUnreachable", false);
      t.kill_at = now;
      tasks[t.id] = std::move(t);
    }
    for (auto& [id, t] : tasks)
      if (Healthy(t)) t.healthy_since = now;
    spdlog::info("services: recovered framework {} with {} apps and {} tasks", framework_id.empty() ? "(none)" : framework_id,
                 apps.size(), tasks.size());
    return {};
  }

  // ---- views ----

  json TaskJson(const TaskRecord& t) const {
    json j{{"id", t.id},
           {"appId", t.app_id},
           {"host", t.hostname},
           {"address", t.address},
           {"agentId", t.agent_id},
           {"ports", t.ports},
           {"state", TaskStateName(t.state)},
           {"healthy", Healthy(t)},
           {"version", t.version},
           {"stagedAt", FormatMillis(t.staged_at_ms)},
           {"startedAt", t.started_at_ms ? json(FormatMillis(t.started_at_ms)) : json(nullptr)},
           {"killing", t.kill_wanted}};
    if (!t.message.empty()) j["message"] = t.message;
    return j;
  }

  json AppJson(const AppRecord& a, bool with_tasks) const {
    json j = ToJson(a.def);
    j["version"] = a.version;
    j["versionInfo"] = {{"lastConfigChangeAt", a.version}, {"lastScalingAt", a.last_scaling_at}};
    size_t staged = 0, running = 0, healthy = 0, unhealthy = 0;
    json jt = json::array();
    for (const auto* t : TasksOf(a.def.id)) {
      if (IsTerminal(t->state)) continue;
      staged += IsStarting(t->state);
      running += t->state == TaskState::kRunning;
      healthy += HasHealthCheck(a) && Healthy(*t);
      unhealthy += HasHealthCheck(a) && t->state == TaskState::kRunning && t->healthy_flag == false;
      if (with_tasks) jt.push_back(TaskJson(*t));
    }
    j["tasksStaged"] = staged;
    j["tasksRunning"] = running;
    j["tasksHealthy"] = healthy;
    j["tasksUnhealthy"] = unhealthy;
    j["deployments"] = a.deployment ? json::array({{{"id", a.deployment->id}}}) : json::array();
    const double now = Now();
    if (a.backoff_delay > 0)
      j["backoff"] = {{"delaySeconds", a.backoff_delay}, {"remainingSeconds", std::max(0.0, a.backoff_until - now)}};
    if (with_tasks) j["tasks"] = jt;
    return j;
  }

  const AppRecord* FindApp(const std::string& raw, Error* err) const {
    auto id = NormalizeAppId(raw);
    if (!id) {
      *err = id.error();
      return nullptr;
    }
    auto it = apps.find(*id);
    if (it == apps.end() || it->second.deleting) {
      *err = Error{make_error_code(Errc::kNotFound), "id: app " + *id + " does not exist"};
      return nullptr;
    }
    return &it->second;
  }

  json DeploymentsJson() {
    json out = json::array();
    for (auto& [id, a] : apps) {
      if (!a.deployment) continue;
      const auto& d = *a.deployment;
      json action{{"action", ActionName(d.kind)}, {"app", id}};
      json j{{"id", d.id},
             {"kind", ToString(d.kind)},
             {"version", d.version},
             {"started", FormatMillis(d.started_ms)},
             {"affectedApps", json::array({id})},
             {"steps", json::array({{{"actions", json::array({action})}}})},
             {"currentStep", 1},
             {"totalSteps", 1},
             {"currentActions", json::array({action})},
             {"progress", Progress(a)},
             {"status", StatusText(a)}};
      if (auto why = Blocked(a)) j["blocked"] = *why;
      out.push_back(j);
    }
    return out;
  }

  // ---- REST operations ----

  Status CheckGatewayPort(const AppDefinition& def) const {
    if (!def.gateway) return {};
    for (const auto& [id, a] : apps)
      if (id != def.id && !a.deleting && a.def.gateway && a.def.gateway->port == def.gateway->port)
        return MakeError(Errc::kAlreadyExists,
                         "gateway.port: port " + std::to_string(def.gateway->port) + " is already the gateway of " + id);
    return {};
  }

  Result<json> Create(AppDefinition def) {
    if (auto it = apps.find(def.id); it != apps.end())
      return MakeError(Errc::kAlreadyExists, it->second.deleting
                                                 ? "id: app " + def.id + " is being deleted; retry once it is gone"
                                                 : "id: app " + def.id + " already exists (PUT /v2/apps" + def.id +
                                                       " changes it)");
    if (auto st = CheckGatewayPort(def); !st) return tl::unexpected(st.error());
    AppRecord a;
    a.def = std::move(def);
    a.version = NextVersion();
    a.last_scaling_at = a.version;
    StartDeployment(a, DeploymentKind::kCreate);
    const std::string id = a.def.id;
    apps[id] = std::move(a);
    must_save = true;
    if (!Save()) {
      apps.erase(id);
      return MakeError(Errc::kIo, "the state could not be saved; the app was not created");
    }
    AppRecord& rec = apps[id];
    spdlog::info("services: app {} created (version {}, {} instances)", id, rec.version, rec.def.instances);
    Emit("app_created", json{{"appId", id}, {"version", rec.version}, {"app", ToJson(rec.def)}});
    AnnounceDeployment(rec, std::nullopt);
    const std::string dep = rec.deployment->id;
    revive_wanted = true;
    Pass();
    json out = apps.count(id) ? AppJson(apps[id], false) : json::object();
    out["deployments"] = json::array({{{"id", dep}}});
    out["deploymentId"] = dep;
    return out;
  }

  Result<json> Update(const std::string& raw_id, const json& body, bool* created) {
    *created = false;
    auto id = NormalizeAppId(raw_id);
    if (!id) return tl::unexpected(id.error());
    if (!body.is_object()) return MakeError(Errc::kInvalidArgument, "body: an app definition must be a JSON object");
    auto it = apps.find(*id);
    if (it == apps.end()) {
      auto def = ParseApp(body, *id);
      if (!def) return tl::unexpected(def.error());
      auto out = Create(*def);
      if (!out) return out;
      *created = true;
      return json{{"deploymentId", (*out)["deploymentId"]}, {"version", (*out)["version"]}};
    }
    if (it->second.deleting)
      return MakeError(Errc::kAlreadyExists, "id: app " + *id + " is being deleted; retry once it is gone");
    json merged = ToJson(it->second.def);
    for (const auto& [k, v] : body.items()) merged[k] = v;
    auto def = ParseApp(merged, *id);
    if (!def) return tl::unexpected(def.error());
    if (auto st = CheckGatewayPort(*def); !st) return tl::unexpected(st.error());
    AppRecord& a = it->second;
    const AppRecord before = a;
    const bool restart = def->NeedsRestartFrom(a.def);
    const bool scaled = def->instances != a.def.instances;
    a.def = *def;
    DeploymentKind kind;
    if (restart) {
      a.version = NextVersion();
      kind = DeploymentKind::kUpgrade;
    } else if (a.deployment && a.deployment->kind != DeploymentKind::kScale && a.deployment->kind != DeploymentKind::kUpdate) {
      kind = a.deployment->kind;  // still finishing a create/upgrade/restart, now with the new numbers
    } else {
      kind = scaled ? DeploymentKind::kScale : DeploymentKind::kUpdate;
    }
    if (scaled) a.last_scaling_at = NextVersion();
    if (restart) a.backoff_delay = a.backoff_until = 0;  // a new version starts with a clean slate
    auto superseded = StartDeployment(a, kind);
    must_save = true;
    if (!Save()) {
      a = before;
      return MakeError(Errc::kIo, "the state could not be saved; the app was not changed");
    }
    spdlog::info("services: app {} updated ({}; version {}, {} instances)", *id, ToString(kind), a.version, a.def.instances);
    Emit("app_updated", json{{"appId", *id}, {"version", a.version}, {"change", ToString(kind)}, {"app", ToJson(a.def)}});
    AnnounceDeployment(a, superseded);
    const json out{{"deploymentId", a.deployment->id}, {"version", a.version}};
    revive_wanted = true;
    Pass();
    return out;
  }

  Result<json> Restart(const std::string& raw_id) {
    Error err;
    if (!FindApp(raw_id, &err)) return tl::unexpected(err);
    AppRecord& a = apps[*NormalizeAppId(raw_id)];
    const AppRecord before = a;
    a.version = NextVersion();
    a.backoff_delay = a.backoff_until = 0;
    auto superseded = StartDeployment(a, DeploymentKind::kRestart);
    must_save = true;
    if (!Save()) {
      a = before;
      return MakeError(Errc::kIo, "the state could not be saved; the app was not restarted");
    }
    spdlog::info("services: app {} restarting as version {}", a.def.id, a.version);
    Emit("app_updated", json{{"appId", a.def.id}, {"version", a.version}, {"change", "restart"}, {"app", ToJson(a.def)}});
    AnnounceDeployment(a, superseded);
    const json out{{"deploymentId", a.deployment->id}, {"version", a.version}};
    revive_wanted = true;
    Pass();
    return out;
  }

  Result<json> Delete(const std::string& raw_id) {
    Error err;
    if (!FindApp(raw_id, &err)) return tl::unexpected(err);
    AppRecord& a = apps[*NormalizeAppId(raw_id)];
    const AppRecord before = a;
    a.deleting = true;
    auto superseded = StartDeployment(a, DeploymentKind::kDelete);
    must_save = true;
    if (!Save()) {
      a = before;
      return MakeError(Errc::kIo, "the state could not be saved; the app was not deleted");
    }
    spdlog::info("services: app {} deleted; stopping its instances", a.def.id);
    Emit("app_deleted", json{{"appId", a.def.id}, {"version", a.version}});
    AnnounceDeployment(a, superseded);
    const json out{{"deploymentId", a.deployment->id}, {"version", a.version}};
    Pass();
    return out;
  }

  // ---- the master's side ----

  void OnConnected(const std::string& fid, const std::string& leader) {
    if (fid != framework_id) {
      if (!framework_id.empty())
        spdlog::warn("services: the master gave us a new framework id {} (was {}): the old framework's tasks are gone "
                     "and will be replaced",
                     fid, framework_id);
      framework_id = fid;
      must_save = true;
      Save();
    }
    connected = true;
    master = leader;
    interest = OfferInterest::kUnknown;  // a re-subscription may or may not keep our suppression
    for (auto& [id, t] : tasks) t.kill_sent_at = 0;
    // What became of our tasks while we were away: the known ones explicitly (unknown ones come back LOST), then
    // everything the master has for us (tasks we do not know are killed).
    std::vector<std::pair<std::string, std::string>> known;
    for (const auto& [id, t] : tasks) known.emplace_back(id, t.agent_id);
    if (!known.empty()) driver.Reconcile(known);
    driver.Reconcile({});
    Emit("framework_connected", json{{"frameworkId", fid}, {"master", leader}});
    Pass();
  }

  void OnDisconnected() {
    connected = false;
    interest = OfferInterest::kUnknown;
    Emit("framework_disconnected", json{{"frameworkId", framework_id}, {"master", master}});
  }

  void OnEvent(const json& ev) {
    const std::string type = ev.value("type", "");
    if (type == "OFFERS") {
      OnOffers(ev);
      Pass();
    } else if (type == "UPDATE") {
      OnUpdate(ev);
    } else if (type == "RESCIND") {
      // We answer offers as they come, so a rescinded one was already accepted or declined.
    } else if (type == "ERROR") {
      spdlog::warn("services: master says: {}", ev.value("message", ""));
    }
  }

  void OnLaunchFailed(const std::vector<std::string>& ids, const std::string& why) {
    counters.launch_failures += ids.size();
    for (const auto& id : ids) {
      auto it = tasks.find(id);
      if (it == tasks.end() || it->second.state != TaskState::kStaging) continue;
      TaskStatus s;
      s.task_id = id;
      s.agent_id = it->second.agent_id;
      s.state = TaskState::kDropped;
      s.message = "launch failed: " + why;
      s.source = "SOURCE_MASTER";
      ApplyStatus(s);
    }
    Pass();
  }

  void OnCallFailed(const std::string& call, const std::string& why) {
    spdlog::warn("services: {} failed: {}", call, why);
    if (call == "REVIVE" || call == "SUPPRESS") interest = OfferInterest::kUnknown;
  }

  std::string Metrics() {
    std::string m;
    auto metric = [&](const char* name, const char* type, const char* help, double v, const std::string& labels = "") {
      m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
      m += std::string(name) + labels + " " + std::to_string(v) + "\n";
    };
    size_t deployments = 0, healthy = 0;
    std::map<std::string, size_t> by_state;
    for (const auto& [id, a] : apps) deployments += a.deployment.has_value();
    for (const auto& [id, t] : tasks) {
      by_state[TaskStateName(t.state)]++;
      healthy += Healthy(t);
    }
    size_t apps_n = 0;
    for (const auto& [id, a] : apps) apps_n += !a.deleting;
    metric("tug_services_connected", "gauge", "1 while subscribed to a master", connected ? 1 : 0);
    metric("tug_services_apps", "gauge", "apps defined", static_cast<double>(apps_n));
    metric("tug_services_deployments", "gauge", "deployments in progress", static_cast<double>(deployments));
    metric("tug_services_tasks", "gauge", "tasks not yet terminal", static_cast<double>(tasks.size()));
    metric("tug_services_tasks_healthy", "gauge", "tasks healthy", static_cast<double>(healthy));
    m += "# HELP tug_services_tasks_by_state tasks by state\n# TYPE tug_services_tasks_by_state gauge\n";
    for (const auto& [s, n] : by_state) m += "tug_services_tasks_by_state{state=\"" + s + "\"} " + std::to_string(n) + "\n";
    metric("tug_services_offers_received_total", "counter", "offers received", static_cast<double>(counters.offers_received));
    metric("tug_services_offers_accepted_total", "counter", "offers accepted", static_cast<double>(counters.offers_accepted));
    metric("tug_services_offers_declined_total", "counter", "offers declined", static_cast<double>(counters.offers_declined));
    metric("tug_services_tasks_launched_total", "counter", "tasks launched", static_cast<double>(counters.tasks_launched));
    metric("tug_services_kills_sent_total", "counter", "KILL calls sent", static_cast<double>(counters.kills_sent));
    metric("tug_services_task_failures_total", "counter", "instances that failed, finished or were killed unexpectedly",
           static_cast<double>(counters.task_failures));
    metric("tug_services_tasks_lost_total", "counter", "instances lost or dropped", static_cast<double>(counters.tasks_lost));
    metric("tug_services_launch_failures_total", "counter", "ACCEPT calls that failed", static_cast<double>(counters.launch_failures));
    metric("tug_services_state_save_errors_total", "counter", "failed state saves", static_cast<double>(counters.save_errors));
    metric("tug_services_gateway_applies_total", "counter", "gateway configurations pushed",
           static_cast<double>(counters.gateway_applies));
    metric("tug_services_revives_total", "counter", "REVIVE calls", static_cast<double>(counters.revives));
    metric("tug_services_suppresses_total", "counter", "SUPPRESS calls", static_cast<double>(counters.suppresses));
    metric("tug_services_deployments_succeeded_total", "counter", "deployments finished",
           static_cast<double>(counters.deployments_succeeded));
    metric("tug_services_deployments_superseded_total", "counter", "deployments replaced by a newer one",
           static_cast<double>(counters.deployments_superseded));
    return m;
  }
};

// ---- public wrappers ----

Scheduler::Scheduler(SchedulerOptions opts, Driver& driver, StateStore& store, Clock now)
    : impl_(std::make_unique<Impl>(std::move(opts), driver, store, std::move(now))) {}
Scheduler::~Scheduler() = default;

void Scheduler::set_event_sink(EventSink sink) { impl_->sink = std::move(sink); }
Status Scheduler::Recover() { return impl_->Recover(); }
std::string Scheduler::framework_id() const { return impl_->framework_id; }
bool Scheduler::connected() const { return impl_->connected; }

Result<json> Scheduler::CreateApp(const json& body) {
  auto def = ParseApp(body);
  if (!def) return tl::unexpected(def.error());
  return impl_->Create(*def);
}
Result<json> Scheduler::UpdateApp(const std::string& id, const json& body, bool* created) {
  return impl_->Update(id, body, created);
}
Result<json> Scheduler::RestartApp(const std::string& id) { return impl_->Restart(id); }
Result<json> Scheduler::DeleteApp(const std::string& id) { return impl_->Delete(id); }

json Scheduler::ListApps() const {
  json out = json::array();
  for (const auto& [id, a] : impl_->apps)
    if (!a.deleting) out.push_back(impl_->AppJson(a, false));
  return json{{"apps", out}};
}

Result<json> Scheduler::GetApp(const std::string& id) const {
  Error err;
  const AppRecord* a = impl_->FindApp(id, &err);
  if (!a) return tl::unexpected(err);
  return json{{"app", impl_->AppJson(*a, true)}};
}

Result<json> Scheduler::GetTasks(const std::string& id) const {
  Error err;
  const AppRecord* a = impl_->FindApp(id, &err);
  if (!a) return tl::unexpected(err);
  json out = json::array();
  for (const auto* t : impl_->TasksOf(a->def.id))
    if (!IsTerminal(t->state)) out.push_back(impl_->TaskJson(*t));
  return json{{"tasks", out}};
}

json Scheduler::Deployments() const { return impl_->DeploymentsJson(); }

json Scheduler::Info() const {
  size_t deployments = 0;
  for (const auto& [id, a] : impl_->apps) deployments += a.deployment.has_value();
  return json{{"frameworkId", impl_->framework_id},
              {"connected", impl_->connected},
              {"master", impl_->master},
              {"role", impl_->opts.role},
              {"apps", impl_->apps.size()},
              {"tasks", impl_->tasks.size()},
              {"deployments", deployments},
              {"gateway", impl_->opts.gateway}};
}

std::string Scheduler::Metrics() const { return impl_->Metrics(); }

void Scheduler::OnConnected(const std::string& fid, const std::string& master) { impl_->OnConnected(fid, master); }
void Scheduler::OnDisconnected() { impl_->OnDisconnected(); }
void Scheduler::OnEvent(const json& event) { impl_->OnEvent(event); }
void Scheduler::OnLaunchFailed(const std::vector<std::string>& ids, const std::string& why) {
  impl_->OnLaunchFailed(ids, why);
}
void Scheduler::OnCallFailed(const std::string& call, const std::string& why) { impl_->OnCallFailed(call, why); }
void Scheduler::OnGatewayApplied(uint64_t seq, const std::string& error) { impl_->OnGatewayApplied(seq, error); }
void Scheduler::Tick() { impl_->Tick(); }

}  // namespace tug::cluster::services
