#include "master/master.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <chrono>
#include <deque>
#include <random>
#include <set>

#include "allocator/allocator.hpp"
#include "http/recordio.hpp"
#include "model/types.hpp"

namespace tug::cluster::master {

namespace asio = boost::asio;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

double SteadyNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

http::Response Json(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

http::Response Accepted() {
  http::Response r;
  r.status = 202;
  r.body = "";
  return r;
}

http::Response BadRequest(const Error& e) {
  // Parse errors read "field.path: what"; the field goes in its own member so clients can show it.
  std::string msg = e.Message();
  std::string field;
  if (size_t colon = msg.find(": "); colon != std::string::npos && msg.find(' ') > colon) field = msg.substr(0, colon);
  return http::JsonError(400, msg, field);
}

std::string EventRecord(const json& event) { return http::RecordIoEncode(event.dump()); }

constexpr size_t kCompletedTasksKept = 1000;

}  // namespace

// ---- state ----

struct TaskEntry {
  TaskInfo info;
  TaskStatus status;  // latest
};

struct AgentEntry {
  AgentInfo info;
  bool connected = false;     // an event stream is open
  bool reachable = true;      // false after agent_ping_timeout without a heartbeat
  double last_seen = 0;       // steady seconds
  double unreachable_since = 0;
  std::shared_ptr<http::Stream> stream;
  std::string stream_id;
  std::set<std::string> tasks;
  bool in_allocator = false;
};

struct FrameworkEntry {
  FrameworkInfo info;
  bool connected = false;
  double disconnected_at = 0;
  std::shared_ptr<http::Stream> stream;
  std::string stream_id;
  std::set<std::string> tasks;
  std::set<std::string> offers;
  std::deque<TaskStatus> unacked;  // updates sent (or to be sent) and not yet acknowledged
  bool suppressed = false;
};

struct OfferEntry {
  Offer offer;
  double created = 0;
};

struct Counters {
  uint64_t offers_sent = 0, offers_declined = 0, offers_rescinded = 0, tasks_launched = 0, tasks_dropped = 0,
           allocation_cycles = 0, store_commits = 0, store_errors = 0;
  double last_cycle_s = 0;
};

struct Master::Impl {
  Impl(asio::io_context& io, MasterOptions o, StateStore& s) : io(io), opts(std::move(o)), store(s), timer(io) {}

  asio::io_context& io;
  MasterOptions opts;
  StateStore& store;
  asio::steady_timer timer;

  bool leading = false;
  std::string leader_url;  // when following
  std::unique_ptr<Allocator> alloc;
  std::map<std::string, AgentEntry> agents;
  std::set<std::string> removed_agents;
  std::map<std::string, FrameworkEntry> frameworks;
  std::map<std::string, TaskEntry> tasks;  // non-terminal (and terminal until acknowledged)
  std::deque<TaskEntry> completed;
  std::map<std::string, OfferEntry> offers;
  std::map<std::string, std::optional<std::string>> dirty;  // store key -> value (nullopt = delete)
  bool allocation_needed = true;
  double last_allocation = 0;
  double last_heartbeat = 0;
  double leading_since = 0;
  Counters counters;
  uint64_t generation = 0;  // bumped on every leadership change: stale timers stop

  // ---- persistence ----
  std::string Key(const std::string& kind, const std::string& id) const { return opts.store_prefix + kind + "/" + id; }
  void SaveFramework(const FrameworkEntry& f) { dirty[Key("frameworks", f.info.id)] = ToJson(f.info).dump(); }
  void SaveAgent(const AgentEntry& a) { dirty[Key("agents", a.info.id)] = ToJson(a.info).dump(); }
  void SaveTask(const TaskEntry& t) {
    if (IsTerminal(t.status.state)) {
      dirty[Key("tasks", t.info.task_id)] = std::nullopt;
    } else {
      dirty[Key("tasks", t.info.task_id)] = json{{"info", ToJson(t.info)}, {"status", ToJson(t.status)}}.dump();
    }
  }
  void Flush() {
    if (dirty.empty() || !leading) return;
    std::vector<StoreOp> ops;
    ops.reserve(dirty.size());
    for (auto& [k, v] : dirty) ops.push_back(StoreOp{k, v});
    dirty.clear();
    counters.store_commits++;
    if (auto st = store.Commit(ops); !st) {
      counters.store_errors++;
      spdlog::error("master: writing state ({} keys): {}", ops.size(), st.error().Message());
      if (st.error().Is(Errc::kPolicy)) {
        spdlog::error("master: no longer the leader according to the store; stepping down");
        Follow("");
      } else {
        for (auto& op : ops) dirty.emplace(op.key, op.value);  // retried next tick (newer values win)
      }
    }
  }

  Status Load() {
    auto fws = store.Load(opts.store_prefix + "frameworks/");
    if (!fws) return tl::unexpected(fws.error());
    auto ags = store.Load(opts.store_prefix + "agents/");
    if (!ags) return tl::unexpected(ags.error());
    auto tks = store.Load(opts.store_prefix + "tasks/");
    if (!tks) return tl::unexpected(tks.error());
    auto rem = store.Load(opts.store_prefix + "removed_agents/");
    if (!rem) return tl::unexpected(rem.error());
    const double now = SteadyNow();
    for (const auto& [k, v] : *fws) {
      auto j = json::parse(v, nullptr, false);
      auto fi = FrameworkInfoFromJson(j, "framework");
      if (!fi) {
        spdlog::warn("master: skipping stored framework {}: {}", k, fi.error().Message());
        continue;
      }
      FrameworkEntry f;
      f.info = *fi;
      f.disconnected_at = now;
      frameworks[f.info.id] = std::move(f);
      alloc->AddFramework(fi->id, fi->role);
      alloc->DeactivateFramework(fi->id);
    }
    for (const auto& [k, v] : *ags) {
      auto ai = AgentInfoFromJson(json::parse(v, nullptr, false), "agent");
      if (!ai) {
        spdlog::warn("master: skipping stored agent {}: {}", k, ai.error().Message());
        continue;
      }
      AgentEntry a;
      a.info = *ai;
      a.reachable = false;  // until it re-registers
      a.unreachable_since = now;
      a.last_seen = now;
      agents[a.info.id] = std::move(a);
    }
    for (const auto& [k, v] : *tks) {
      auto j = json::parse(v, nullptr, false);
      if (!j.is_object()) continue;
      auto ti = TaskInfoFromJson(j.value("info", json()), "task");
      auto ts = TaskStatusFromJson(j.value("status", json()), "status");
      if (!ti || !ts) {
        spdlog::warn("master: skipping stored task {}", k);
        continue;
      }
      TaskEntry t{*ti, *ts};
      if (auto f = frameworks.find(ti->framework_id); f != frameworks.end()) f->second.tasks.insert(ti->task_id);
      if (auto a = agents.find(ti->agent_id); a != agents.end()) a->second.tasks.insert(ti->task_id);
      tasks[ti->task_id] = std::move(t);
    }
    for (const auto& [k, v] : *rem) removed_agents.insert(k.substr(k.rfind('/') + 1));
    spdlog::info("master: loaded {} frameworks, {} agents, {} tasks from the store", frameworks.size(), agents.size(),
                 tasks.size());
    return {};
  }

  // ---- leadership ----

  Status Lead() {
    Reset();
    AllocatorOptions ao;
    ao.seed = opts.allocator_seed ? opts.allocator_seed : std::random_device{}();
    ao.default_refuse_seconds = opts.default_refuse_seconds;
    alloc = std::make_unique<Allocator>(ao);
    for (const auto& [role, w] : opts.role_weights) alloc->SetWeight(role, w);
    if (auto st = Load(); !st) {
      Reset();
      return st;
    }
    leading = true;
    leading_since = SteadyNow();
    ++generation;
    ScheduleTick(generation);
    spdlog::info("master: leading at {}", opts.advertise_url);
    return {};
  }

  // Whether this master may still act as leader. `leading` only turns false when the io thread runs the demotion the
  // election posts; a process resumed from a freeze first runs whatever its reactor has ready (requests the kernel
  // buffered meanwhile, an overdue tick), so every entry point asks the election itself.
  bool StillLeading() {
    if (leading && opts.still_leader && !opts.still_leader()) {
      spdlog::warn("master: the leader lease is past its deadline (was this process frozen?); stepping down before acting");
      Follow("");
    }
    return leading;
  }

  void Follow(const std::string& leader) {
    if (leading) spdlog::info("master: following (leader {})", leader.empty() ? "unknown" : leader);
    Reset();
    leader_url = leader;
  }

  void Reset() {
    leading = false;
    ++generation;
    timer.cancel();
    for (auto& [id, a] : agents)
      if (a.stream) a.stream->Close();
    for (auto& [id, f] : frameworks)
      if (f.stream) f.stream->Close();
    agents.clear();
    frameworks.clear();
    tasks.clear();
    completed.clear();
    offers.clear();
    removed_agents.clear();
    dirty.clear();
    alloc.reset();
  }

  // ---- timers ----

  void ScheduleTick(uint64_t gen) {
    timer.expires_after(100ms);
    timer.async_wait([this, gen](boost::system::error_code ec) {
      if (ec || gen != generation || !StillLeading()) return;
      Tick();
      if (gen == generation && leading) ScheduleTick(gen);
    });
  }

  void Tick() {
    const double now = SteadyNow();
    // Agents: unreachable, then removed.
    std::vector<std::string> to_remove;
    for (auto& [id, a] : agents) {
      if (a.reachable && now - a.last_seen > opts.agent_ping_timeout_s) MarkUnreachable(a);
      if (!a.reachable && now - a.unreachable_since > opts.agent_removal_timeout_s) to_remove.push_back(id);
    }
    for (const auto& id : to_remove) RemoveAgent(id, "agent unreachable for " +
                                                         std::to_string(static_cast<int>(opts.agent_removal_timeout_s)) + " s");
    // Frameworks past their failover timeout.
    std::vector<std::string> gone;
    for (auto& [id, f] : frameworks)
      if (!f.connected && now - f.disconnected_at > f.info.failover_timeout_s) gone.push_back(id);
    for (const auto& id : gone) {
      spdlog::info("master: framework {} did not come back within its failover timeout; tearing down", id);
      Teardown(id);
    }
    // Offers past their timeout.
    std::vector<std::string> stale;
    for (auto& [id, o] : offers)
      if (now - o.created > opts.offer_timeout_s) stale.push_back(id);
    for (const auto& id : stale) RescindOffer(id, true);
    // Heartbeats.
    if (now - last_heartbeat >= opts.heartbeat_interval_s) {
      last_heartbeat = now;
      const std::string hb = EventRecord(json{{"type", "HEARTBEAT"}});
      for (auto& [id, f] : frameworks)
        if (f.connected) f.stream->Write(hb);
      for (auto& [id, a] : agents)
        if (a.connected) a.stream->Write(hb);
      ResendUnacked();
    }
    // Allocation: after changes, at most every allocation_interval; at least every second (filters expire).
    if ((allocation_needed && now - last_allocation >= opts.allocation_interval_s) || now - last_allocation >= 1.0)
      RunAllocation(now);
    Flush();
  }

  void RunAllocation(double now) {
    allocation_needed = false;
    last_allocation = now;
    const auto t0 = std::chrono::steady_clock::now();
    auto offered = alloc->Allocate(Allocator::Clock::now());
    counters.allocation_cycles++;
    counters.last_cycle_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::map<std::string, json> per_framework;
    for (auto& o : offered) {
      auto f = frameworks.find(o.framework_id);
      auto a = agents.find(o.agent_id);
      if (f == frameworks.end() || !f->second.connected || a == agents.end() || !a->second.reachable) {
        alloc->Recover(o.framework_id, o.agent_id, o.resources);
        continue;
      }
      Offer offer{.id = NewId("o"), .framework_id = o.framework_id, .agent_id = o.agent_id,
                  .hostname = a->second.info.hostname, .resources = o.resources, .attributes = a->second.info.attributes};
      offer.attributes["hostname"] = a->second.info.hostname;
      f->second.offers.insert(offer.id);
      per_framework[o.framework_id].push_back(ToJson(offer));
      const std::string oid = offer.id;  // (the right side of = is evaluated first: never key on a moved-from id)
      offers[oid] = OfferEntry{std::move(offer), now};
      counters.offers_sent++;
    }
    for (auto& [fid, list] : per_framework)
      SendToFramework(fid, json{{"type", "OFFERS"}, {"offers", {{"offers", list}}}});
  }

  // ---- sending ----

  void SendToFramework(const std::string& fid, const json& event) {
    auto f = frameworks.find(fid);
    if (f == frameworks.end() || !f->second.connected) return;
    f->second.stream->Write(EventRecord(event));
  }
  bool SendToAgent(const std::string& aid, const json& event) {
    auto a = agents.find(aid);
    if (a == agents.end() || !a->second.connected) return false;
    a->second.stream->Write(EventRecord(event));
    return true;
  }

  // A status change: recorded, persisted, sent to the framework (kept until acknowledged).
  void ApplyStatus(TaskStatus st, bool needs_ack = true) {
    if (st.timestamp == 0) st.timestamp = NowSeconds();
    auto t = tasks.find(st.task_id);
    if (t != tasks.end()) {
      auto& e = t->second;
      if (st.framework_id.empty()) st.framework_id = e.info.framework_id;
      if (st.agent_id.empty()) st.agent_id = e.info.agent_id;
      const bool was_terminal = IsTerminal(e.status.state);
      if (!st.healthy && e.status.healthy && st.state == e.status.state) st.healthy = e.status.healthy;
      e.status = st;
      if (!was_terminal && IsTerminal(st.state)) {
        alloc->Recover(e.info.framework_id, e.info.agent_id, e.info.resources);
        allocation_needed = true;
      }
      SaveTask(e);
      if (IsTerminal(st.state)) {
        if (auto f = frameworks.find(e.info.framework_id); f != frameworks.end()) f->second.tasks.erase(st.task_id);
        if (auto a = agents.find(e.info.agent_id); a != agents.end()) a->second.tasks.erase(st.task_id);
        completed.push_back(e);
        if (completed.size() > kCompletedTasksKept) completed.pop_front();
        tasks.erase(t);
      }
    }
    auto f = frameworks.find(st.framework_id);
    if (f == frameworks.end()) return;
    if (needs_ack && st.uuid.empty()) st.uuid = NewId("u");
    if (needs_ack) f->second.unacked.push_back(st);
    SendToFramework(st.framework_id, json{{"type", "UPDATE"}, {"update", {{"status", ToJson(st)}}}});
  }

  void ResendUnacked() {
    for (auto& [fid, f] : frameworks) {
      if (!f.connected) continue;
      for (const auto& st : f.unacked)
        f.stream->Write(EventRecord(json{{"type", "UPDATE"}, {"update", {{"status", ToJson(st)}}}}));
    }
  }

  TaskStatus MasterStatus(const TaskEntry& t, TaskState state, const std::string& reason, const std::string& message) {
    TaskStatus s;
    s.task_id = t.info.task_id;
    s.framework_id = t.info.framework_id;
    s.agent_id = t.info.agent_id;
    s.state = state;
    s.reason = reason;
    s.message = message;
    s.source = "SOURCE_MASTER";
    s.healthy = t.status.healthy;
    return s;
  }

  // ---- offers ----

  void RescindOffer(const std::string& oid, bool tell_framework) {
    auto it = offers.find(oid);
    if (it == offers.end()) return;
    const Offer& o = it->second.offer;
    alloc->Recover(o.framework_id, o.agent_id, o.resources);
    allocation_needed = true;
    if (auto f = frameworks.find(o.framework_id); f != frameworks.end()) {
      f->second.offers.erase(oid);
      if (tell_framework) SendToFramework(o.framework_id, json{{"type", "RESCIND"}, {"rescind", {{"offer_id", IdJson(oid)}}}});
    }
    counters.offers_rescinded++;
    offers.erase(it);
  }

  void RescindAgentOffers(const std::string& aid) {
    std::vector<std::string> ids;
    for (auto& [id, o] : offers)
      if (o.offer.agent_id == aid) ids.push_back(id);
    for (const auto& id : ids) RescindOffer(id, true);
  }

  // ---- agents ----

  void MarkUnreachable(AgentEntry& a) {
    if (!a.reachable) return;
    a.reachable = false;
    a.unreachable_since = SteadyNow();
    spdlog::warn("master: agent {} ({}) unreachable", a.info.id, a.info.hostname);
    if (a.stream) a.stream->Close();
    a.connected = false;
    RescindAgentOffers(a.info.id);
    if (a.in_allocator) {  // back in (with its tasks' usage) when it re-registers
      alloc->RemoveAgent(a.info.id);
      a.in_allocator = false;
    }
    for (const auto& tid : std::vector<std::string>(a.tasks.begin(), a.tasks.end())) {
      auto t = tasks.find(tid);
      if (t == tasks.end()) continue;
      ApplyStatus(MasterStatus(t->second, TaskState::kUnreachable, "REASON_AGENT_UNREACHABLE",
                               "agent " + a.info.hostname + " unreachable"));
    }
  }

  void RemoveAgent(const std::string& aid, const std::string& why) {
    auto it = agents.find(aid);
    if (it == agents.end()) return;
    spdlog::warn("master: removing agent {} ({}): {}", aid, it->second.info.hostname, why);
    RescindAgentOffers(aid);
    for (const auto& tid : std::vector<std::string>(it->second.tasks.begin(), it->second.tasks.end())) {
      auto t = tasks.find(tid);
      if (t == tasks.end()) continue;
      ApplyStatus(MasterStatus(t->second, TaskState::kLost, "REASON_AGENT_REMOVED", "agent removed: " + why));
    }
    if (it->second.stream) it->second.stream->Close();
    if (it->second.in_allocator) alloc->RemoveAgent(aid);
    removed_agents.insert(aid);
    dirty[Key("removed_agents", aid)] = "1";
    dirty[Key("agents", aid)] = std::nullopt;
    agents.erase(aid);
    allocation_needed = true;
  }

  http::Response AgentRegister(const json& call) {
    const json& reg = call.value("register", json::object());
    auto info = AgentInfoFromJson(reg.value("agent_info", json()), "register.agent_info");
    if (!info) return BadRequest(info.error());
    std::vector<TaskStatus> reported;
    for (const char* key : {"tasks", "unacknowledged"}) {
      const json list = reg.value(key, json::array());
      if (!list.is_array()) return http::JsonError(400, std::string("register.") + key + ": must be an array", std::string("register.") + key);
      for (size_t i = 0; i < list.size(); ++i) {
        auto st = TaskStatusFromJson(list[i], std::string("register.") + key + "[" + std::to_string(i) + "]");
        if (!st) return BadRequest(st.error());
        if (std::string(key) == "tasks") reported.push_back(*st);
      }
    }
    const json unacked = reg.value("unacknowledged", json::array());
    auto stream = http::Server::MakeStream(io);
    const std::string stream_id = NewId("s");

    if (!info->id.empty() && removed_agents.count(info->id)) {
      spdlog::info("master: removed agent {} tried to re-register; telling it to shut down", info->id);
      stream->Write(EventRecord(json{{"type", "SHUTDOWN"},
                                     {"shutdown", {{"message", "agent " + info->id + " was removed; register anew"}}}}));
      stream->Close();
      http::Response r;
      r.content_type = "application/recordio";
      r.stream = stream;
      return r;
    }
    const bool known = !info->id.empty() && agents.count(info->id);
    if (info->id.empty() || !known) {
      // New agent, or one this master has no record of (store lost): take it with its id if it had one.
      if (info->id.empty()) info->id = NewId("a");
      AgentEntry a;
      a.info = *info;
      agents[info->id] = std::move(a);
      spdlog::info("master: agent {} ({}) registered with {}", info->id, info->hostname, info->resources.ToString());
    } else {
      spdlog::info("master: agent {} ({}) re-registered with {} tasks", info->id, info->hostname, reported.size());
    }
    AgentEntry& a = agents[info->id];
    if (a.stream && a.stream != stream) a.stream->Close();
    const bool was_reachable = a.reachable;
    a.info.hostname = info->hostname;
    a.info.endpoint = info->endpoint;
    a.info.attributes = info->attributes;
    a.info.resources = info->resources;
    a.connected = true;
    a.reachable = true;
    a.last_seen = SteadyNow();
    a.stream = stream;
    a.stream_id = stream_id;
    SaveAgent(a);

    // Reconcile the tasks: the agent's word wins for tasks it runs; tasks it should run but does not are lost.
    std::set<std::string> seen;
    Resources used;
    std::map<std::string, Resources> used_by_framework;
    for (const auto& st : reported) {
      seen.insert(st.task_id);
      auto t = tasks.find(st.task_id);
      if (t == tasks.end()) {
        if (!frameworks.count(st.framework_id)) {
          spdlog::info("master: agent {} runs task {} of unknown framework {}; killing it", a.info.id, st.task_id,
                       st.framework_id);
          stream->Write(EventRecord(json{{"type", "KILL"}, {"kill", {{"task_id", IdJson(st.task_id)},
                                                                     {"framework_id", IdJson(st.framework_id)}}}}));
          continue;
        }
        // Launched just before a failover and never written: adopt it. Its TaskInfo comes with the status.
        spdlog::info("master: adopting task {} reported by agent {}", st.task_id, a.info.id);
        continue;  // the agent sends a full TaskInfo via "task_infos" (see below)
      }
      if (t->second.status.state != st.state || t->second.status.state == TaskState::kUnreachable) {
        TaskStatus s = st;
        s.agent_id = a.info.id;
        s.uuid.clear();
        ApplyStatus(s);
      }
    }
    // Adopt reported tasks with their infos (agents send task_infos for every task they run).
    for (const auto& ti_json : reg.value("task_infos", json::array())) {
      auto ti = TaskInfoFromJson(ti_json, "register.task_infos[]");
      if (!ti || tasks.count(ti->task_id) || !frameworks.count(ti->framework_id) || !seen.count(ti->task_id)) continue;
      TaskEntry e;
      e.info = *ti;
      e.info.agent_id = a.info.id;
      for (const auto& st : reported)
        if (st.task_id == ti->task_id) e.status = st;
      if (IsTerminal(e.status.state)) continue;
      frameworks[ti->framework_id].tasks.insert(ti->task_id);
      a.tasks.insert(ti->task_id);
      tasks[ti->task_id] = e;
      SaveTask(e);
    }
    for (const auto& tid : std::vector<std::string>(a.tasks.begin(), a.tasks.end())) {
      auto t = tasks.find(tid);
      if (t == tasks.end()) continue;
      if (!seen.count(tid)) {
        // The master sent LAUNCH but the agent never got it or lost it.
        ApplyStatus(MasterStatus(t->second, t->second.status.state == TaskState::kStaging ? TaskState::kDropped : TaskState::kLost,
                                 "REASON_TASK_UNKNOWN", "agent " + a.info.hostname + " does not know the task"));
      } else {
        used_by_framework[t->second.info.framework_id] += t->second.info.resources;
      }
    }
    // Forward updates the agent has not had acknowledged (e.g. ones sent to a master that died).
    for (size_t i = 0; i < unacked.size(); ++i) {
      auto st = TaskStatusFromJson(unacked[i], "unacknowledged");
      if (!st) continue;
      st->agent_id = a.info.id;
      if (auto f = frameworks.find(st->framework_id); f != frameworks.end()) {
        bool dup = false;
        for (const auto& u : f->second.unacked) dup = dup || u.uuid == st->uuid;
        if (!dup) {
          if (auto t = tasks.find(st->task_id); t != tasks.end() && !IsTerminal(t->second.status.state))
            ApplyStatus(*st);
          else {
            f->second.unacked.push_back(*st);
            SendToFramework(st->framework_id, json{{"type", "UPDATE"}, {"update", {{"status", ToJson(*st)}}}});
          }
        }
      } else {
        // Nobody will acknowledge it: let the agent forget it.
        stream->Write(EventRecord(json{{"type", "ACKNOWLEDGE"},
                                       {"acknowledge", {{"task_id", IdJson(st->task_id)}, {"uuid", st->uuid}}}}));
      }
    }
    // Into the allocator with what its tasks use.
    if (a.in_allocator) alloc->RemoveAgent(a.info.id);
    alloc->AddAgent(a.info.id, a.info.resources, a.info.attributes);
    for (const auto& [fid, res] : used_by_framework) alloc->AddUsed(fid, a.info.id, res);
    a.in_allocator = true;
    (void)was_reachable;
    allocation_needed = true;

    stream->Write(EventRecord(json{{"type", "REGISTERED"},
                                   {"registered", {{"agent_id", IdJson(a.info.id)},
                                                   {"heartbeat_interval_seconds", opts.heartbeat_interval_s}}}}));
    const std::string aid = a.info.id;
    stream->OnClose([this, aid, stream_id, gen = generation] {
      if (gen != generation) return;
      auto it = agents.find(aid);
      if (it == agents.end() || it->second.stream_id != stream_id) return;
      spdlog::info("master: agent {} stream closed", aid);
      it->second.connected = false;
      it->second.stream.reset();
    });
    http::Response r;
    r.content_type = "application/recordio";
    r.headers = {{"Mesos-Stream-Id", stream_id}};
    r.stream = stream;
    return r;
  }

  AgentEntry* AgentForCall(const json& call, const http::Request& req, http::Response* err) {
    auto aid = IdFromJson(call, "agent_id", "call");
    if (!aid || aid->empty()) {
      *err = http::JsonError(400, "agent_id missing", "agent_id");
      return nullptr;
    }
    auto it = agents.find(*aid);
    if (it == agents.end()) {
      *err = http::JsonError(404, "unknown agent " + *aid + " (re-register)", "agent_id");
      return nullptr;
    }
    if (req.Header("Mesos-Stream-Id") != it->second.stream_id || it->second.stream_id.empty()) {
      *err = http::JsonError(409, "stale or missing Mesos-Stream-Id for agent " + *aid + " (re-register)",
                             "Mesos-Stream-Id");
      return nullptr;
    }
    return &it->second;
  }

  http::Response AgentCall(const http::Request& req) {
    auto call = json::parse(req.body, nullptr, false);
    if (!call.is_object() || !call.contains("type") || !call["type"].is_string())
      return http::JsonError(400, "body must be a JSON call with a \"type\"", "type");
    const std::string type = call["type"];
    if (type == "REGISTER") return AgentRegister(call);
    http::Response err;
    AgentEntry* a = AgentForCall(call, req, &err);
    if (!a) return err;
    a->last_seen = SteadyNow();
    if (type == "HEARTBEAT") return Accepted();
    if (type == "UPDATE") {
      auto st = TaskStatusFromJson(call.value("update", json::object()).value("status", json()), "update.status");
      if (!st) return BadRequest(st.error());
      st->agent_id = a->info.id;
      auto t = tasks.find(st->task_id);
      if (t == tasks.end()) {
        // A late duplicate for a task already terminal: acknowledge on the framework's behalf.
        bool pending = false;
        if (auto f = frameworks.find(st->framework_id); f != frameworks.end())
          for (const auto& u : f->second.unacked) pending = pending || u.uuid == st->uuid;
        if (!pending)
          a->stream->Write(EventRecord(json{{"type", "ACKNOWLEDGE"},
                                            {"acknowledge", {{"task_id", IdJson(st->task_id)}, {"uuid", st->uuid}}}}));
        return Accepted();
      }
      if (st->uuid.empty()) return http::JsonError(400, "update.status.uuid: missing", "update.status.uuid");
      if (auto f = frameworks.find(t->second.info.framework_id); f != frameworks.end())
        for (const auto& u : f->second.unacked)
          if (u.uuid == st->uuid) return Accepted();  // duplicate
      ApplyStatus(*st);
      return Accepted();
    }
    return http::JsonError(400, "unknown agent call type '" + type + "'", "type");
  }

  // ---- frameworks ----

  http::Response Subscribe(const json& call) {
    auto fi = FrameworkInfoFromJson(call.value("subscribe", json::object()).value("framework_info", json()),
                                    "subscribe.framework_info");
    if (!fi) return BadRequest(fi.error());
    if (!fi->id.empty() && !frameworks.count(fi->id))
      return http::JsonError(403, "framework " + fi->id + " is not known (torn down, or its failover timeout passed)",
                             "subscribe.framework_info.id");
    const bool resubscribe = !fi->id.empty();
    if (!resubscribe) {
      fi->id = NewId("f");
      FrameworkEntry f;
      f.info = *fi;
      frameworks[fi->id] = std::move(f);
      alloc->AddFramework(fi->id, fi->role);
      spdlog::info("master: framework {} '{}' (role {}) subscribed", fi->id, fi->name, fi->role);
    } else {
      spdlog::info("master: framework {} '{}' re-subscribed", fi->id, fi->name);
    }
    FrameworkEntry& f = frameworks[fi->id];
    if (f.stream) {
      f.stream->Write(EventRecord(json{{"type", "ERROR"}, {"message", "framework re-subscribed elsewhere"}}));
      f.stream->Close();
    }
    // A re-subscribing framework loses its outstanding offers (it cannot know them) and gets new ones.
    for (const auto& oid : std::vector<std::string>(f.offers.begin(), f.offers.end())) RescindOffer(oid, false);
    const std::string role = f.info.role;
    f.info.name = fi->name;
    f.info.failover_timeout_s = fi->failover_timeout_s;
    f.info.hostname = fi->hostname;
    f.info.user = fi->user;
    if (resubscribe && role != fi->role)
      spdlog::warn("master: framework {} asked for role {} on re-subscribe; keeping {}", fi->id, fi->role, role);
    auto stream = http::Server::MakeStream(io);
    const std::string stream_id = NewId("s");
    f.stream = stream;
    f.stream_id = stream_id;
    f.connected = true;
    f.suppressed = false;
    alloc->ActivateFramework(fi->id);
    alloc->Revive(fi->id);  // a (re-)subscribed framework starts unsuppressed, without filters
    SaveFramework(f);
    allocation_needed = true;
    stream->Write(EventRecord(json{{"type", "SUBSCRIBED"},
                                   {"subscribed", {{"framework_id", IdJson(fi->id)},
                                                   {"heartbeat_interval_seconds", opts.heartbeat_interval_s}}}}));
    for (const auto& st : f.unacked)
      stream->Write(EventRecord(json{{"type", "UPDATE"}, {"update", {{"status", ToJson(st)}}}}));
    const std::string fid = fi->id;
    stream->OnClose([this, fid, stream_id, gen = generation] {
      if (gen != generation) return;
      auto it = frameworks.find(fid);
      if (it == frameworks.end() || it->second.stream_id != stream_id) return;
      spdlog::info("master: framework {} disconnected; failover timeout {} s", fid, it->second.info.failover_timeout_s);
      it->second.connected = false;
      it->second.stream.reset();
      it->second.disconnected_at = SteadyNow();
      for (const auto& oid : std::vector<std::string>(it->second.offers.begin(), it->second.offers.end()))
        RescindOffer(oid, false);
      alloc->DeactivateFramework(fid);
    });
    http::Response r;
    r.content_type = "application/recordio";
    r.headers = {{"Mesos-Stream-Id", stream_id}};
    r.stream = stream;
    return r;
  }

  void Teardown(const std::string& fid) {
    auto it = frameworks.find(fid);
    if (it == frameworks.end()) return;
    FrameworkEntry& f = it->second;
    for (const auto& oid : std::vector<std::string>(f.offers.begin(), f.offers.end())) RescindOffer(oid, false);
    for (const auto& tid : std::vector<std::string>(f.tasks.begin(), f.tasks.end())) {
      auto t = tasks.find(tid);
      if (t == tasks.end()) continue;
      SendToAgent(t->second.info.agent_id,
                  json{{"type", "KILL"}, {"kill", {{"task_id", IdJson(tid)}, {"framework_id", IdJson(fid)}}}});
      TaskEntry e = t->second;
      alloc->Recover(fid, e.info.agent_id, e.info.resources);
      e.status = MasterStatus(e, TaskState::kKilled, "REASON_FRAMEWORK_REMOVED", "framework torn down");
      SaveTask(e);
      if (auto a = agents.find(e.info.agent_id); a != agents.end()) a->second.tasks.erase(tid);
      tasks.erase(t);
    }
    if (f.stream) f.stream->Close();
    alloc->RemoveFramework(fid);
    dirty[Key("frameworks", fid)] = std::nullopt;
    frameworks.erase(it);
    allocation_needed = true;
  }

  Status LaunchTasks(FrameworkEntry& f, const std::vector<std::string>& offer_ids, const json& operations,
                     double refuse_s, std::string* error_field, std::string* error) {
    // Validate the offers: all this framework's, all on one agent.
    Resources offered;
    std::string agent_id;
    bool offers_valid = !offer_ids.empty();
    for (const auto& oid : offer_ids) {
      auto o = offers.find(oid);
      if (o == offers.end() || o->second.offer.framework_id != f.info.id) {
        spdlog::info("master: framework {} answered offer {} which is no longer valid", f.info.id, oid);
        offers_valid = false;
        continue;
      }
      if (!agent_id.empty() && agent_id != o->second.offer.agent_id) {
        *error_field = "accept.offer_ids";
        *error = "offers from different agents cannot be combined";
        return MakeError(Errc::kInvalidArgument, *error);
      }
      agent_id = o->second.offer.agent_id;
      offered += o->second.offer.resources;
    }
    // Parse every task first: a malformed call is refused whole with the field named.
    std::vector<TaskInfo> launch;
    if (!operations.is_array()) {
      *error_field = "accept.operations";
      *error = "accept.operations: must be an array";
      return MakeError(Errc::kInvalidArgument, *error);
    }
    for (size_t i = 0; i < operations.size(); ++i) {
      const auto& op = operations[i];
      const std::string of = "accept.operations[" + std::to_string(i) + "]";
      if (!op.is_object() || op.value("type", "") != "LAUNCH") {
        *error_field = of + ".type";
        *error = *error_field + ": only LAUNCH is supported";
        return MakeError(Errc::kInvalidArgument, *error);
      }
      const json infos = op.value("launch", json::object()).value("task_infos", json::array());
      for (size_t k = 0; k < infos.size(); ++k) {
        auto ti = TaskInfoFromJson(infos[k], of + ".launch.task_infos[" + std::to_string(k) + "]");
        if (!ti) {
          *error = ti.error().Message();
          *error_field = error->substr(0, error->find(": "));
          return MakeError(Errc::kInvalidArgument, *error);
        }
        launch.push_back(*ti);
      }
    }
    // Offers no longer valid (rescinded, expired, agent lost): every task is dropped.
    if (!offers_valid) {
      for (const auto& oid : offer_ids) {
        auto o = offers.find(oid);
        if (o != offers.end() && o->second.offer.framework_id == f.info.id) RescindOffer(oid, false);
      }
      for (auto& ti : launch) {
        TaskEntry tmp{ti, {}};
        tmp.info.framework_id = f.info.id;
        counters.tasks_dropped++;
        ApplyStatus(MasterStatus(tmp, TaskState::kDropped, "REASON_INVALID_OFFERS", "offer no longer valid"));
      }
      return {};
    }
    for (const auto& oid : offer_ids) {
      offers.erase(oid);
      f.offers.erase(oid);
    }
    Resources left = offered;
    auto agent_it = agents.find(agent_id);
    for (auto& ti : launch) {
      ti.framework_id = f.info.id;
      TaskEntry e{ti, {}};
      std::string problem;
      if (!ti.agent_id.empty() && ti.agent_id != agent_id) problem = "task agent_id does not match the offer's agent";
      else if (tasks.count(ti.task_id) || CompletedRecently(ti.task_id))
        problem = "task id " + ti.task_id + " is already in use (ids must be unique; a finished task's id too)";
      else if (!left.Contains(ti.resources))
        problem = "task needs " + ti.resources.ToString() + " but the offer has " + left.ToString() + " left";
      else if (agent_it == agents.end() || !agent_it->second.connected) problem = "agent gone";
      if (!problem.empty()) {
        e.info.agent_id = agent_id;
        counters.tasks_dropped++;
        ApplyStatus(MasterStatus(e, problem == "agent gone" ? TaskState::kDropped : TaskState::kError,
                                 "REASON_TASK_INVALID", problem));
        continue;
      }
      left -= ti.resources;
      e.info.agent_id = agent_id;
      e.status.task_id = ti.task_id;
      e.status.framework_id = f.info.id;
      e.status.agent_id = agent_id;
      e.status.state = TaskState::kStaging;
      e.status.timestamp = NowSeconds();
      e.status.source = "SOURCE_MASTER";
      tasks[ti.task_id] = e;
      f.tasks.insert(ti.task_id);
      agent_it->second.tasks.insert(ti.task_id);
      SaveTask(e);
      counters.tasks_launched++;
      SendToAgent(agent_id, json{{"type", "LAUNCH"},
                                 {"launch", {{"framework_id", IdJson(f.info.id)}, {"task_info", ToJson(e.info)}}}});
    }
    if (!left.empty()) {
      alloc->Recover(f.info.id, agent_id, left);
      if (refuse_s > 0) alloc->Decline(f.info.id, agent_id, refuse_s, Allocator::Clock::now());
    }
    allocation_needed = true;
    return {};
  }

  FrameworkEntry* FrameworkForCall(const json& call, const http::Request& req, http::Response* err) {
    auto fid = IdFromJson(call, "framework_id", "call");
    if (!fid || fid->empty()) {
      *err = http::JsonError(400, "framework_id missing", "framework_id");
      return nullptr;
    }
    auto it = frameworks.find(*fid);
    if (it == frameworks.end()) {
      *err = http::JsonError(404, "unknown framework " + *fid, "framework_id");
      return nullptr;
    }
    const std::string sid = req.Header("Mesos-Stream-Id");
    if (!it->second.connected || sid.empty() || sid != it->second.stream_id) {
      *err = http::JsonError(400, "stale or missing Mesos-Stream-Id for framework " + *fid + " (subscribe again)",
                             "Mesos-Stream-Id");
      return nullptr;
    }
    return &it->second;
  }

  std::vector<std::string> OfferIds(const json& body) {
    std::vector<std::string> ids;
    for (const auto& o : body.value("offer_ids", json::array()))
      if (o.is_object() && o.contains("value") && o["value"].is_string()) ids.push_back(o["value"]);
    return ids;
  }

  double RefuseSeconds(const json& body) {
    const json filters = body.value("filters", json::object());
    if (filters.is_object() && filters.contains("refuse_seconds") && filters["refuse_seconds"].is_number())
      return std::max(0.0, filters["refuse_seconds"].get<double>());
    return opts.default_refuse_seconds;
  }

  http::Response SchedulerCall(const http::Request& req) {
    auto call = json::parse(req.body, nullptr, false);
    if (!call.is_object() || !call.contains("type") || !call["type"].is_string())
      return http::JsonError(400, "body must be a JSON call with a \"type\"", "type");
    const std::string type = call["type"];
    if (type == "SUBSCRIBE") return Subscribe(call);
    http::Response err;
    FrameworkEntry* f = FrameworkForCall(call, req, &err);
    if (!f) return err;
    const std::string fid = f->info.id;
    if (type == "ACCEPT") {
      const json body = call.value("accept", json::object());
      std::string field, error;
      if (auto st = LaunchTasks(*f, OfferIds(body), body.value("operations", json::array()), RefuseSeconds(body),
                                &field, &error);
          !st)
        return http::JsonError(400, error, field);
      return Accepted();
    }
    if (type == "DECLINE") {
      const json body = call.value("decline", json::object());
      const double refuse = RefuseSeconds(body);
      for (const auto& oid : OfferIds(body)) {
        auto o = offers.find(oid);
        if (o == offers.end() || o->second.offer.framework_id != fid) continue;
        const std::string aid = o->second.offer.agent_id;
        RescindOffer(oid, false);
        counters.offers_rescinded--;  // a decline, not a rescind
        counters.offers_declined++;
        if (refuse > 0) alloc->Decline(fid, aid, refuse, Allocator::Clock::now());
      }
      return Accepted();
    }
    if (type == "KILL") {
      auto tid = IdFromJson(call.value("kill", json::object()), "task_id", "kill");
      if (!tid || tid->empty()) return http::JsonError(400, "kill.task_id: missing", "kill.task_id");
      auto t = tasks.find(*tid);
      if (t == tasks.end() || t->second.info.framework_id != fid) {
        TaskEntry tmp;
        tmp.info.task_id = *tid;
        tmp.info.framework_id = fid;
        ApplyStatus(MasterStatus(tmp, TaskState::kLost, "REASON_RECONCILIATION", "unknown task"), false);
        return Accepted();
      }
      if (!SendToAgent(t->second.info.agent_id, json{{"type", "KILL"}, {"kill", {{"task_id", IdJson(*tid)},
                                                                             {"framework_id", IdJson(fid)}}}})) {
        // Agent unreachable: the kill is delivered when it re-registers (the task is then unknown to us).
        if (t->second.status.state == TaskState::kStaging)
          ApplyStatus(MasterStatus(t->second, TaskState::kKilled, "REASON_TASK_KILLED_DURING_LAUNCH", "killed before launch"));
      }
      return Accepted();
    }
    if (type == "ACKNOWLEDGE") {
      const json ack = call.value("acknowledge", json::object());
      const std::string uuid = ack.value("uuid", "");
      auto tid = IdFromJson(ack, "task_id", "acknowledge");
      if (uuid.empty() || !tid || tid->empty())
        return http::JsonError(400, "acknowledge needs task_id and uuid", "acknowledge");
      auto& q = f->unacked;
      auto it = std::find_if(q.begin(), q.end(), [&](const TaskStatus& s) { return s.uuid == uuid; });
      if (it != q.end()) {
        const std::string aid = it->agent_id;
        const bool from_agent = it->source != "SOURCE_MASTER";
        q.erase(it);
        if (from_agent)
          SendToAgent(aid, json{{"type", "ACKNOWLEDGE"}, {"acknowledge", {{"task_id", IdJson(*tid)}, {"uuid", uuid}}}});
      }
      return Accepted();
    }
    if (type == "RECONCILE") {
      const json list = call.value("reconcile", json::object()).value("tasks", json::array());
      std::vector<std::string> ids;
      for (const auto& t : list) {
        auto tid = IdFromJson(t, "task_id", "reconcile.tasks[]");
        if (tid && !tid->empty()) ids.push_back(*tid);
      }
      if (ids.empty()) ids.assign(f->tasks.begin(), f->tasks.end());  // implicit: everything we know
      for (const auto& tid : ids) {
        auto t = tasks.find(tid);
        TaskStatus s;
        if (t != tasks.end() && t->second.info.framework_id == fid) {
          s = t->second.status;
          s.uuid.clear();
          s.reason = "REASON_RECONCILIATION";
        } else {
          TaskEntry tmp;
          tmp.info.task_id = tid;
          tmp.info.framework_id = fid;
          s = MasterStatus(tmp, TaskState::kLost, "REASON_RECONCILIATION", "unknown task");
        }
        SendToFramework(fid, json{{"type", "UPDATE"}, {"update", {{"status", ToJson(s)}}}});
      }
      return Accepted();
    }
    if (type == "REVIVE") {
      f->suppressed = false;
      alloc->Revive(fid);
      allocation_needed = true;
      return Accepted();
    }
    if (type == "SUPPRESS") {
      f->suppressed = true;
      alloc->Suppress(fid);
      for (const auto& oid : std::vector<std::string>(f->offers.begin(), f->offers.end())) RescindOffer(oid, true);
      return Accepted();
    }
    if (type == "TEARDOWN") {
      spdlog::info("master: framework {} tears itself down", fid);
      Teardown(fid);
      return Accepted();
    }
    return http::JsonError(400, "unknown call type '" + type + "'", "type");
  }

  bool CompletedRecently(const std::string& task_id) const {
    for (const auto& t : completed)
      if (t.info.task_id == task_id) return true;
    return false;
  }

  // ---- read-only views ----

  json State() const {
    json ags = json::array();
    for (const auto& [id, a] : agents) {
      Resources used;
      for (const auto& tid : a.tasks)
        if (auto t = tasks.find(tid); t != tasks.end()) used += t->second.info.resources;
      json j = ToJson(a.info);
      j["id"] = id;
      j["connected"] = a.connected;
      j["reachable"] = a.reachable;
      j["used_resources"] = ResourcesToJson(used);
      j["resources_text"] = a.info.resources.ToString();
      j["used_text"] = used.ToString();
      j["tasks"] = a.tasks.size();
      ags.push_back(j);
    }
    json fws = json::array();
    for (const auto& [id, f] : frameworks) {
      json j = ToJson(f.info);
      j["id"] = id;
      j["role"] = f.info.role;
      j["connected"] = f.connected;
      j["suppressed"] = f.suppressed;
      j["tasks"] = f.tasks.size();
      j["offers"] = f.offers.size();
      j["unacknowledged_updates"] = f.unacked.size();
      fws.push_back(j);
    }
    auto task_json = [&](const TaskEntry& t) {
      json j{{"id", t.info.task_id},
             {"name", t.info.name},
             {"framework_id", t.info.framework_id},
             {"agent_id", t.info.agent_id},
             {"state", TaskStateName(t.status.state)},
             {"resources", t.info.resources.ToString()},
             {"ports", t.info.Ports()},
             {"message", t.status.message}};
      if (t.status.healthy) j["healthy"] = *t.status.healthy;
      if (auto a = agents.find(t.info.agent_id); a != agents.end()) j["hostname"] = a->second.info.hostname;
      return j;
    };
    json tks = json::array();
    for (const auto& [id, t] : tasks) tks.push_back(task_json(t));
    json done = json::array();
    for (const auto& t : completed) done.push_back(task_json(t));
    return json{{"leader", leading ? opts.advertise_url : leader_url},
                {"leading", leading},
                {"agents", ags},
                {"frameworks", fws},
                {"tasks", tks},
                {"completed_tasks", done},
                {"offers", offers.size()}};
  }

  std::string Metrics() const {
    std::string m;
    auto g = [&](const char* name, const char* help, double v) {
      m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
           std::to_string(v) + "\n";
    };
    size_t connected_agents = 0, running = 0;
    for (const auto& [id, a] : agents) connected_agents += a.connected;
    for (const auto& [id, t] : tasks) running += t.status.state == TaskState::kRunning;
    g("tug_cluster_leading", "1 when this master leads", leading ? 1 : 0);
    g("tug_cluster_agents", "agents known", static_cast<double>(agents.size()));
    g("tug_cluster_agents_connected", "agents with an open stream", static_cast<double>(connected_agents));
    g("tug_cluster_frameworks", "frameworks known", static_cast<double>(frameworks.size()));
    g("tug_cluster_tasks", "non-terminal tasks", static_cast<double>(tasks.size()));
    g("tug_cluster_tasks_running", "tasks running", static_cast<double>(running));
    g("tug_cluster_offers_outstanding", "offers not yet answered", static_cast<double>(offers.size()));
    g("tug_cluster_offers_sent_total", "offers sent", static_cast<double>(counters.offers_sent));
    g("tug_cluster_offers_declined_total", "offers declined", static_cast<double>(counters.offers_declined));
    g("tug_cluster_offers_rescinded_total", "offers rescinded", static_cast<double>(counters.offers_rescinded));
    g("tug_cluster_tasks_launched_total", "tasks sent to agents", static_cast<double>(counters.tasks_launched));
    g("tug_cluster_tasks_dropped_total", "tasks refused at launch", static_cast<double>(counters.tasks_dropped));
    g("tug_cluster_allocation_cycles_total", "allocation cycles", static_cast<double>(counters.allocation_cycles));
    g("tug_cluster_allocation_last_cycle_seconds", "duration of the last allocation cycle", counters.last_cycle_s);
    g("tug_cluster_store_errors_total", "failed state writes", static_cast<double>(counters.store_errors));
    return m;
  }

  http::Response NotLeader(const http::Request& req) const {
    if (leader_url.empty()) return http::JsonError(503, "no leading master elected yet; retry");
    http::Response r = http::JsonError(307, "not the leader; the leader is " + leader_url);
    r.headers = {{"Location", leader_url + req.target}};
    return r;
  }

  http::Response Route(const http::Request& req) {
    StillLeading();
    const std::string path = req.Path();
    if (path == "/healthz") {
      http::Response r;
      r.content_type = "text/plain";
      r.body = leading ? "leading\n" : "following\n";
      return r;
    }
    if (path == "/metrics") {
      http::Response r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = Metrics();
      return r;
    }
    if (path == "/api/v1/leader") return Json(200, json{{"leader", leading ? opts.advertise_url : leader_url}, {"leading", leading}});
    if (!leading) return NotLeader(req);
    if (path == "/api/v1/state") {
      if (req.method != "GET") return http::JsonError(405, "use GET");
      return Json(200, State());
    }
    if (path == "/api/v1/scheduler" || path == "/api/v1/agent") {
      if (req.method != "POST") return http::JsonError(405, "use POST with a JSON call");
      // State changes reach the store on the next tick (batched): a launch not yet written when this master dies
      // is adopted from its node's report, an update not yet written is re-sent by the node (unacknowledged).
      return path == "/api/v1/scheduler" ? SchedulerCall(req) : AgentCall(req);
    }
    return http::JsonError(404, "no such route: " + path, "path");
  }
};

Master::Master(asio::io_context& io, MasterOptions opts, StateStore& store)
    : impl_(std::make_unique<Impl>(io, std::move(opts), store)) {}
Master::~Master() { impl_->Reset(); }

Status Master::BecomeLeader() { return impl_->Lead(); }
void Master::BecomeFollower(const std::string& leader_url) { impl_->Follow(leader_url); }
bool Master::leading() const { return impl_->leading; }
http::Response Master::Handle(const http::Request& req) { return impl_->Route(req); }
json Master::StateJson() const { return impl_->State(); }

}  // namespace tug::cluster::master
