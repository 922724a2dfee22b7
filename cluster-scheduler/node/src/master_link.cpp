#include "node/master_link.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "core/env.hpp"
#include "http/client.hpp"
#include "http/recordio.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kPath = "/api/v1/agent";

std::chrono::milliseconds Jitter(std::chrono::milliseconds d) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> dist(d.count() / 2, std::max<int64_t>(d.count(), 1));
  return std::chrono::milliseconds(dist(rng));
}

// "http://h:p/api/v1/agent" -> "http://h:p" (the Location of a redirect names the leader with the same path).
std::string BaseOf(const http::Url& u) {
  std::string target = u.target.substr(0, u.target.find('?'));
  std::string prefix = target.size() >= std::strlen(kPath) && target.compare(target.size() - std::strlen(kPath),
                                                                             std::string::npos, kPath) == 0
                           ? target.substr(0, target.size() - std::strlen(kPath))
                           : "";
  return u.Origin() + prefix;
}

std::string Shorten(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.size() > 300 ? s.substr(0, 300) + "..." : s;
}

// POSTs `body` to base/api/v1/agent with the stream id, following up to two 307s. Returns the final status.
Result<int> PostToLeader(http::Client& client, const std::string& base, const std::string& stream_id,
                         const json& body) {
  const std::string text = body.dump();
  std::string url = base + kPath;
  for (int hop = 0; hop < 3; ++hop) {
    TUG_ASSIGN_OR_RETURN(auto r, client.Call("POST", url, text,
                                             {{"Content-Type", "application/json"}, {"Mesos-Stream-Id", stream_id}}));
    if (r.status == 307 || r.status == 308) {
      TUG_ASSIGN_OR_RETURN(auto cur, http::Url::Parse(url));
      TUG_ASSIGN_OR_RETURN(auto next, cur.Resolve(r.Header("Location")));
      url = next.ToString();
      continue;
    }
    if (r.status >= 400)
      spdlog::warn("master {} answered {} to {}: {}", base, r.status, body.value("type", ""), Shorten(r.body));
    return r.status;
  }
  return MakeError(Errc::kProtocol, "too many redirects from " + base);
}

}  // namespace

MasterLink::MasterLink(LinkOptions opts, TaskRunner& runner)
    : opts_(std::move(opts)), runner_(runner), interval_s_(opts_.default_heartbeat_s) {
  if (!opts_.state_file.empty()) {
    if (auto text = core::DefaultEnv()->ReadFile(opts_.state_file)) {
      try {
        auto j = json::parse(*text);
        agent_id_ = j.value("agent_id", "");
        interval_s_ = j.value("heartbeat_interval_seconds", interval_s_);
      } catch (const std::exception& e) {
        spdlog::warn("ignoring unreadable {}: {}", opts_.state_file, e.what());
      }
    }
  }
  if (interval_s_ <= 0) interval_s_ = 2;
}

MasterLink::~MasterLink() { Stop(); }

void MasterLink::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return;
    started_ = true;
  }
  runner_.SetUpdateListener([this] {
    std::lock_guard<std::mutex> lock(mu_);
    wake_sender_ = true;
    cv_.notify_all();
  });
  stream_thread_ = std::thread([this] { StreamLoop(); });
  sender_thread_ = std::thread([this] { SenderLoop(); });
}

void MasterLink::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  runner_.SetUpdateListener(nullptr);
  if (sender_thread_.joinable()) sender_thread_.join();
  if (stream_thread_.joinable()) stream_thread_.join();
}

bool MasterLink::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_;
}
std::string MasterLink::agent_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return agent_id_;
}
std::string MasterLink::leader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leader_;
}
std::string MasterLink::stream_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_id_;
}
uint64_t MasterLink::registrations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

void MasterLink::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [&] { return stopping_; });
}

void MasterLink::PersistState() {
  if (opts_.state_file.empty()) return;
  std::string id;
  double interval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = agent_id_;
    interval = interval_s_;
  }
  auto* env = core::DefaultEnv();
  Status st;
  if (id.empty()) {
    st = env->Exists(opts_.state_file) ? env->RemoveFile(opts_.state_file) : Status{};
    if (st) st = env->SyncDir(core::Dirname(opts_.state_file));
  } else {
    st = core::WriteFileDurable(*env, opts_.state_file,
                                json{{"agent_id", id}, {"heartbeat_interval_seconds", interval}}.dump() + "\n");
  }
  if (!st) spdlog::error("cannot persist the agent id: {}", st.error().Message());
}

std::string MasterLink::RegisterBody() const {
  AgentInfo info = opts_.agent;
  {
    std::lock_guard<std::mutex> lock(mu_);
    info.id = agent_id_;
  }
  json tasks = json::array(), infos = json::array(), unacked = json::array();
  for (auto t : runner_.ActiveTaskInfos()) {
    t.agent_id = info.id;
    infos.push_back(ToJson(t));
  }
  for (auto s : runner_.LatestStatuses()) {
    s.agent_id = info.id;
    s.uuid.clear();  // "tasks" reports states; the updates that need acknowledging are in "unacknowledged"
    tasks.push_back(ToJson(s));
  }
  for (auto s : runner_.Unacknowledged()) {
    s.agent_id = info.id;
    unacked.push_back(ToJson(s));
  }
  return json{{"type", "REGISTER"},
              {"register",
               {{"agent_info", ToJson(info)}, {"tasks", tasks}, {"task_infos", infos}, {"unacknowledged", unacked}}}}
      .dump();
}

void MasterLink::Disconnect(uint64_t generation, const std::string& why, bool expected) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_ || generation != generation_) return;
  connected_ = false;
  stream_id_.clear();
  ++generation_;
  if (stopping_) spdlog::info("closed the event stream from {} (node stopping)", leader_);
  else if (expected) spdlog::info("closed the event stream from {}: {}", leader_, why);
  else spdlog::warn("lost the master at {}: {}; registering again (tasks keep running)", leader_, why);
  leader_.clear();
}

void MasterLink::RequestReconnect(uint64_t generation, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_ || generation != generation_) return;
  reconnect_requested_gen_ = generation;
  spdlog::warn("master at {} refused our stream ({}): registering again", leader_, why);
}

Status MasterLink::HandleEvent(const json& ev, const std::string& stream_id, const std::string& base,
                               uint64_t* generation) {
  const std::string type = ev.value("type", "");
  if (type == "REGISTERED") {
    const auto& r = ev.value("registered", json::object());
    auto id = IdFromJson(r, "agent_id", "registered");
    if (!id || id->empty()) return MakeError(Errc::kProtocol, "REGISTERED without agent_id");
    double interval = r.value("heartbeat_interval_seconds", opts_.default_heartbeat_s);
    if (interval <= 0) interval = opts_.default_heartbeat_s;
    bool changed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      changed = agent_id_ != *id || interval_s_ != interval;
      agent_id_ = *id;
      interval_s_ = interval;
    }
    // Durable before anything else happens on this stream: a restarted node must come back as the same agent.
    if (changed) PersistState();
    {
      std::lock_guard<std::mutex> lock(mu_);
      connected_ = true;
      stream_id_ = stream_id;
      leader_ = base;
      ++generation_;
      *generation = generation_;
      ++registrations_;
      sent_.clear();  // re-send every unacknowledged update on the new stream
      wake_sender_ = true;
    }
    cv_.notify_all();
    spdlog::info("registered with master {} as agent {} (stream {}, heartbeat every {}s)", base, *id, stream_id,
                 interval);
    return {};
  }
  if (type == "LAUNCH") {
    const auto& l = ev.value("launch", json::object());
    auto fw = IdFromJson(l, "framework_id", "launch");
    std::string framework = fw ? *fw : "";
    auto info = TaskInfoFromJson(l.value("task_info", json::object()), "launch.task_info");
    if (!info) {
      auto tid = IdFromJson(l.value("task_info", json::object()), "task_id", "launch.task_info");
      spdlog::error("LAUNCH refused: {}", info.error().Message());
      if (tid && !tid->empty())
        runner_.ReportForeign(*tid, framework, TaskState::kError, info.error().Message(), "REASON_TASK_INVALID");
      return {};
    }
    const std::string id = info->task_id;
    if (!runner_.Launch(std::move(*info), framework)) spdlog::info("LAUNCH of known task {} ignored", id);
    return {};
  }
  if (type == "KILL") {
    const auto& k = ev.value("kill", json::object());
    auto fw = IdFromJson(k, "framework_id", "kill");
    auto tid = IdFromJson(k, "task_id", "kill");
    if (!tid || tid->empty()) return MakeError(Errc::kProtocol, "KILL without task_id");
    if (auto st = runner_.Kill(*tid); !st) {
      spdlog::info("KILL of unknown task {}: reporting TASK_DROPPED", *tid);
      runner_.ReportForeign(*tid, fw ? *fw : "", TaskState::kDropped, "unknown task");
    }
    return {};
  }
  if (type == "ACKNOWLEDGE") {
    const auto& a = ev.value("acknowledge", json::object());
    auto tid = IdFromJson(a, "task_id", "acknowledge");
    const std::string uuid = a.value("uuid", "");
    if (tid && !tid->empty() && !runner_.Acknowledge(*tid, uuid))
      spdlog::debug("ACKNOWLEDGE of {} {}: no such pending update", *tid, uuid);
    return {};
  }
  if (type == "HEARTBEAT") return {};
  if (type == "SHUTDOWN") {
    // The master removed this agent (it was unreachable past --agent-removal-timeout): its tasks were declared
    // LOST and frameworks replaced them elsewhere, so ours would only duplicate work and hold ports. As Mesos does:
    // kill them silently (no updates: the master no longer knows the old agent id), forget the id and come back as
    // a new agent with nothing. The master answers a removed agent's REGISTER with SHUTDOWN as the first event.
    std::string message = ev.value("shutdown", json::object()).value("message", "");
    const size_t tasks = runner_.ActiveTaskInfos().size();
    std::string old_id;
    {
      // Off the stream first so the sender posts nothing more under the old id.
      std::lock_guard<std::mutex> lock(mu_);
      old_id = agent_id_;
      agent_id_.clear();
      if (connected_) {
        connected_ = false;
        stream_id_.clear();
        leader_.clear();
        ++generation_;
      }
    }
    runner_.ShutdownAll();
    PersistState();
    spdlog::warn("master {} removed this node (agent id {}): killed {} task(s), registering as a new node ({})", base,
                 old_id.empty() ? "?" : old_id, tasks, message);
    return MakeError(Errc::kCancelled, "SHUTDOWN from " + base + ": " + message);
  }
  spdlog::warn("ignoring unknown event type '{}' from the master", type);
  return {};
}

Status MasterLink::RegisterOnce(const std::string& first_base, bool* registered, bool* rotate) {
  double interval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    interval = interval_s_;
  }
  http::ClientOptions co;
  // Each read waits at most 3 heartbeat intervals: a silent stream is a lost master.
  co.timeout = std::chrono::milliseconds(std::max<int64_t>(1000, static_cast<int64_t>(interval * 3000)));
  http::Client client(co);
  std::string url = first_base + kPath;
  for (int hop = 0; hop < 5; ++hop) {
    auto parsed = http::Url::Parse(url);
    if (!parsed) return tl::unexpected(parsed.error());
    const std::string base = BaseOf(*parsed);
    http::RecordIoDecoder decoder;
    std::string stream_id;
    uint64_t generation = 0;
    auto last_event = SteadyClock::now();
    Status dropped_by_event;
    bool rearm = false;
    http::BodySink sink = [&](const http::ClientResponse& head, std::string_view chunk) -> Status {
      if (stream_id.empty()) stream_id = head.Header("Mesos-Stream-Id");
      TUG_ASSIGN_OR_RETURN(auto records, decoder.Feed(chunk));
      for (const auto& rec : records) {
        json ev;
        try {
          ev = json::parse(rec);
        } catch (const std::exception& e) {
          return MakeError(Errc::kProtocol, std::string("event is not JSON: ") + e.what());
        }
        const std::string type = ev.value("type", "");
        if (generation == 0 && type != "REGISTERED" && type != "SHUTDOWN")
          return MakeError(Errc::kProtocol, "first event is " + ev.value("type", std::string("?")) + ", not REGISTERED");
        last_event = SteadyClock::now();
        if (auto st = HandleEvent(ev, stream_id, base, &generation); !st) {
          dropped_by_event = st;
          return st;
        }
        if (generation) *registered = true;
        if (type == "REGISTERED") {
          // The silence timer is the client's read timeout, armed before the interval was known (persisted from an
          // earlier registration, else default_heartbeat_s). When REGISTERED teaches another interval, register
          // again at once with a timer for it: once per change (it is persisted), and loss of this master is then
          // detected after 3 of ITS intervals, not 3 of our guess (6 s on a fresh node against a 0.5 s master).
          double learned;
          {
            std::lock_guard<std::mutex> lock(mu_);
            learned = interval_s_;
          }
          if (std::abs(learned - interval) > 1e-6) {
            rearm = true;
            return MakeError(Errc::kCancelled, "heartbeat interval learnt: " + std::to_string(learned) + " s");
          }
        }
      }
      double iv;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return MakeError(Errc::kCancelled, "node stopping");
        if (generation && reconnect_requested_gen_ == generation)
          return MakeError(Errc::kProtocol, "the master refused our stream id");
        iv = interval_s_;
      }
      if (SteadyClock::now() - last_event > std::chrono::duration<double>(3 * iv))
        return MakeError(Errc::kTimeout, "no event for 3 heartbeat intervals");
      return {};
    };
    const std::string body = RegisterBody();
    auto res = client.Call("POST", url, body, {{"Content-Type", "application/json"}, {"Accept", "application/recordio"}},
                           &sink);
    if (!res) {
      bool sender_gave_up = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        sender_gave_up = generation && dead_generation_ == generation;
      }
      if (rearm) {
        Disconnect(generation, "registering again to arm the silence timer for the learnt heartbeat interval", true);
        return MakeError(Errc::kCancelled, "re-arming the silence timer");
      }
      if (generation)
        Disconnect(generation, res.error().Is(Errc::kTimeout) ? "no event for 3 heartbeat intervals"
                               : dropped_by_event ? res.error().Message() : dropped_by_event.error().context);
      // A master that went silent (a read timed out: frozen, partitioned) or stopped answering our heartbeats and
      // updates is not asked again: the next master in the list leads by now or knows who does (307).
      *rotate = (!*registered && !res.error().Is(Errc::kProtocol) && !res.error().Is(Errc::kCancelled)) ||
                res.error().Is(Errc::kTimeout) || sender_gave_up;
      if (!dropped_by_event) return dropped_by_event;
      return tl::unexpected(res.error());
    }
    if (res->status == 307 || res->status == 308) {
      auto next = parsed->Resolve(res->Header("Location"));
      if (!next) return MakeError(Errc::kProtocol, "redirect without a usable Location from " + base);
      spdlog::info("master {} redirects to the leader at {}", base, BaseOf(*next));
      url = next->ToString();
      continue;
    }
    if (res->status >= 200 && res->status < 300) {
      if (generation) Disconnect(generation, "the event stream ended");
      return MakeError(Errc::kUnavailable, "event stream from " + base + " ended");
    }
    *rotate = res->status >= 500;
    if (res->status >= 400 && res->status < 500)
      spdlog::error("master {} refused REGISTER with HTTP {}: {}", base, res->status, Shorten(res->body));
    return MakeError(res->status >= 500 ? Errc::kUnavailable : Errc::kProtocol,
                     "REGISTER at " + base + ": HTTP " + std::to_string(res->status) + " " + Shorten(res->body));
  }
  *rotate = true;
  return MakeError(Errc::kProtocol, "too many redirects starting at " + first_base);
}

void MasterLink::StreamLoop() {
  if (opts_.masters.empty()) {
    spdlog::warn("no master configured: running tasks without a master");
    return;
  }
  size_t index = 0;
  auto backoff = opts_.backoff_min;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    const std::string base = opts_.masters[index % opts_.masters.size()];
    bool registered = false, rotate = false;
    Status st = RegisterOnce(base, &registered, &rotate);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    // SHUTDOWN (register anew as a new agent) or a learnt heartbeat interval: register again right away.
    if (!st && st.error().Is(Errc::kCancelled)) {
      backoff = opts_.backoff_min;
      continue;
    }
    if (registered) {
      // We had a working stream: come back quickly; to the same master unless it went silent (it may still lead
      // after a dropped connection, but a frozen one would hold us for another read timeout).
      backoff = opts_.backoff_min;
      if (rotate) {
        ++index;
        spdlog::warn("master {} stopped answering; looking for the leader at {}", base,
                     opts_.masters[index % opts_.masters.size()]);
      }
      SleepFor(Jitter(opts_.backoff_min));
      continue;
    }
    if (rotate) {
      ++index;
      // Try the rest of the list promptly; back off once a whole round failed.
      if (index % opts_.masters.size() != 0) {
        spdlog::warn("registering failed ({}); trying {}", st.error().Message(),
                     opts_.masters[index % opts_.masters.size()]);
        SleepFor(100ms);
        continue;
      }
    }
    const auto wait = Jitter(backoff);
    spdlog::warn("registering failed ({}); retrying in {:.1f}s", st.error().Message(), wait.count() / 1000.0);
    SleepFor(wait);
    backoff = std::min(backoff * 2, opts_.backoff_max);
  }
}

void MasterLink::SenderLoop() {
  // Each HEARTBEAT/UPDATE wait (connect, write, read) is bounded by about one heartbeat interval (at least
  // kMinCallTimeout, at most request_timeout): a frozen master accepts connections in its kernel but never answers,
  // and a heartbeat stuck on it for request_timeout would hold every update and heartbeat behind it. The client is
  // rebuilt when the interval (hence the bound) changes.
  constexpr std::chrono::milliseconds kMinCallTimeout{500};
  std::unique_ptr<http::Client> client;
  std::chrono::milliseconds client_timeout{0};
  auto call_timeout = [&](double interval) {
    auto t = std::chrono::milliseconds(static_cast<int64_t>(interval * 1000));
    return std::clamp(t, std::min(kMinCallTimeout, opts_.request_timeout), opts_.request_timeout);
  };
  // A call to the current master failed in transport (timed out, refused): it is not answering. The stream thread
  // drops it at the latest when its read times out, then asks the next master instead of this one again.
  auto gave_up = [&](uint64_t generation, const std::string& base, const std::string& what, const auto& e) {
    spdlog::warn("{} to master {} failed: {}; it is not answering, looking for the leader once its stream drops",
                 what, base, e.Message());
    std::lock_guard<std::mutex> lock(mu_);
    if (generation == generation_) dead_generation_ = generation;
  };
  uint64_t last_generation = 0;
  auto next_heartbeat = SteadyClock::now();
  for (;;) {
    bool connected;
    uint64_t generation;
    std::string base, stream_id, agent_id;
    double interval;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, 200ms, [&] { return stopping_ || wake_sender_; });
      if (stopping_) return;
      wake_sender_ = false;
      connected = connected_;
      generation = generation_;
      base = leader_;
      stream_id = stream_id_;
      agent_id = agent_id_;
      interval = interval_s_;
    }
    if (!connected) continue;
    if (!client || client_timeout != call_timeout(interval)) {
      client_timeout = call_timeout(interval);
      http::ClientOptions co;
      co.timeout = client_timeout;
      client = std::make_unique<http::Client>(co);
    }
    const auto now = SteadyClock::now();
    const auto every = std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(interval));
    if (generation != last_generation) {
      last_generation = generation;
      next_heartbeat = now + every;
    }
    if (now >= next_heartbeat) {
      next_heartbeat = now + every;
      auto r = PostToLeader(*client, base, stream_id, json{{"type", "HEARTBEAT"}, {"agent_id", IdJson(agent_id)}});
      if (r && (*r == 400 || *r == 409)) RequestReconnect(generation, "HEARTBEAT answered " + std::to_string(*r));
      else if (!r) {
        gave_up(generation, base, "HEARTBEAT", r.error());
        continue;  // no updates to a master that does not answer: each would wait out the bound again
      }
    }

    auto pending = runner_.Unacknowledged();
    std::set<std::string> blocked;  // tasks whose earlier update did not go through: keep their order
    for (auto& u : pending) {
      if (blocked.count(u.task_id)) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ || generation != generation_) break;
        auto it = sent_.find(u.uuid);
        if (it != sent_.end() && SteadyClock::now() - it->second < opts_.resend_interval) continue;
      }
      u.agent_id = agent_id;
      json body{{"type", "UPDATE"}, {"agent_id", IdJson(agent_id)}, {"update", {{"status", ToJson(u)}}}};
      auto r = PostToLeader(*client, base, stream_id, body);
      if (!r) {
        gave_up(generation, base, "UPDATE for task " + u.task_id, r.error());
        break;
      }
      if (*r == 400 || *r == 409) {
        RequestReconnect(generation, "UPDATE answered " + std::to_string(*r));
        break;
      }
      if (*r >= 200 && *r < 300) {
        std::lock_guard<std::mutex> lock(mu_);
        sent_[u.uuid] = SteadyClock::now();
      } else {
        blocked.insert(u.task_id);
      }
    }
    std::set<std::string> live;
    for (const auto& u : pending) live.insert(u.uuid);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sent_.begin(); it != sent_.end();) it = live.count(it->first) ? std::next(it) : sent_.erase(it);
  }
}

}  // namespace tug::cluster::node
