#include "framework/scheduler_client.hpp"

#include <spdlog/spdlog.h>

#include <random>

#include "http/recordio.hpp"

namespace tug::cluster::framework {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// "http://h:p/api/v1/scheduler" -> "http://h:p".
std::string Origin(const std::string& url) {
  auto u = http::Url::Parse(url);
  return u ? u->Origin() : url;
}

http::ClientOptions StreamOptions(std::chrono::milliseconds idle) {
  http::ClientOptions o;
  o.timeout = idle;
  return o;
}

}  // namespace

SchedulerClient::SchedulerClient(SchedulerClientOptions opts, EventHandler on_event, ConnectionHandler on_connection)
    : opts_(std::move(opts)),
      on_event_(std::move(on_event)),
      on_connection_(std::move(on_connection)),
      calls_([&] {
        http::ClientOptions o;
        o.timeout = opts_.call_timeout;
        return o;
      }()) {
  framework_id_ = opts_.info.id;
}

SchedulerClient::~SchedulerClient() { Stop(); }

void SchedulerClient::Start() {
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void SchedulerClient::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string SchedulerClient::framework_id() const {
  std::lock_guard lock(mu_);
  return framework_id_;
}

std::string SchedulerClient::leader() const {
  std::lock_guard lock(mu_);
  return leader_;
}

void SchedulerClient::Loop() {
  std::mt19937 rng{std::random_device{}()};
  size_t next = 0;
  auto backoff = 200ms;
  std::string redirect;
  while (!stop_) {
    const std::string master = !redirect.empty() ? redirect : opts_.masters[next % opts_.masters.size()];
    redirect.clear();
    Status st = SubscribeOnce(master);
    if (stop_) break;
    if (!st && st.error().Is(Errc::kAlreadyExists)) {  // 307: go straight to the leader
      redirect = st.error().context.substr(st.error().context.rfind(' ') + 1);
      continue;
    }
    if (!st) {
      spdlog::debug("scheduler client: {}: {}", master, st.error().Message());
      ++next;
    } else {
      backoff = 200ms;  // was connected: come back quickly
    }
    // Bounded, jittered backoff; sleeps in small steps so Stop() is prompt.
    auto wait = backoff + std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 200)(rng));
    for (auto slept = 0ms; slept < wait && !stop_; slept += 50ms) std::this_thread::sleep_for(50ms);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 3s);
  }
}

Status SchedulerClient::SubscribeOnce(const std::string& master) {
  json info = ToJson(opts_.info);
  {
    std::lock_guard lock(mu_);
    if (!framework_id_.empty()) info["id"] = IdJson(framework_id_);
  }
  const std::string body = json{{"type", "SUBSCRIBE"}, {"subscribe", {{"framework_info", info}}}}.dump();
  http::Client stream_client(StreamOptions(opts_.stream_idle_timeout));
  http::RecordIoDecoder decoder;
  bool subscribed = false;
  http::BodySink sink = [&](const http::ClientResponse& head, std::string_view chunk) -> Status {
    if (stop_) return MakeError(Errc::kCancelled, "stopping");
    auto records = decoder.Feed(chunk);
    if (!records) return tl::unexpected(records.error());
    for (const auto& rec : *records) {
      auto ev = json::parse(rec, nullptr, false);
      if (!ev.is_object()) return MakeError(Errc::kProtocol, "event is not JSON: " + rec.substr(0, 80));
      const std::string type = ev.value("type", "");
      if (type == "SUBSCRIBED") {
        auto fid = IdFromJson(ev.value("subscribed", json::object()), "framework_id", "subscribed");
        {
          std::lock_guard lock(mu_);
          framework_id_ = fid ? *fid : "";
          stream_id_ = head.Header("Mesos-Stream-Id");
          leader_ = master;
        }
        subscribed = true;
        connected_ = true;
        spdlog::info("scheduler client: subscribed to {} as framework {}", master, framework_id());
        if (on_connection_) on_connection_(true);
      }
      if (type == "HEARTBEAT") continue;
      if (on_event_) on_event_(ev);
    }
    return {};
  };
  auto res = stream_client.Call("POST", master + "/api/v1/scheduler", body,
                                {{"Content-Type", "application/json"}, {"Accept", "application/recordio"}}, &sink);
  const bool was = connected_.exchange(false);
  {
    std::lock_guard lock(mu_);
    stream_id_.clear();
  }
  if (was && on_connection_) on_connection_(false);
  if (!res) return tl::unexpected(res.error());
  if (res->status == 307) {
    const std::string loc = res->Header("Location");
    if (loc.empty()) return MakeError(Errc::kProtocol, "307 without Location from " + master);
    return MakeError(Errc::kAlreadyExists, "redirected to " + Origin(loc));
  }
  if (res->status == 403) {
    // Our framework id is gone (torn down / failed over too late): start afresh as a new framework.
    spdlog::warn("scheduler client: {}; subscribing as a new framework", res->body);
    std::lock_guard lock(mu_);
    framework_id_.clear();
    return MakeError(Errc::kNotFound, res->body);
  }
  if (res->status / 100 != 2) return MakeError(Errc::kUnavailable, "subscribe: HTTP " + std::to_string(res->status) + " " + res->body);
  if (!subscribed) return MakeError(Errc::kProtocol, "stream ended before SUBSCRIBED");
  return {};  // stream ended (master gone or leader changed)
}

Status SchedulerClient::Call(json call) {
  std::string master, sid, fid;
  {
    std::lock_guard lock(mu_);
    master = leader_;
    sid = stream_id_;
    fid = framework_id_;
  }
  if (!connected_ || sid.empty()) return MakeError(Errc::kUnavailable, "not subscribed to a master");
  call["framework_id"] = IdJson(fid);
  auto res = calls_.Call("POST", master + "/api/v1/scheduler", call.dump(),
                         {{"Content-Type", "application/json"}, {"Mesos-Stream-Id", sid}});
  if (!res) return tl::unexpected(res.error());
  if (res->status == 202 || res->status == 200) return {};
  std::string msg = res->body;
  auto j = json::parse(res->body, nullptr, false);
  if (j.is_object() && j.contains("error")) msg = j["error"].get<std::string>();
  const std::string what = call.value("type", "call") + ": HTTP " + std::to_string(res->status) + ": " + msg;
  if (res->status == 400) return MakeError(Errc::kInvalidArgument, what);
  if (res->status >= 500 || res->status == 307) return MakeError(Errc::kUnavailable, what);
  return MakeError(Errc::kPolicy, what);
}

Status SchedulerClient::Accept(const std::vector<std::string>& offer_ids, const std::vector<TaskInfo>& tasks,
                               double refuse_seconds) {
  json ids = json::array();
  for (const auto& id : offer_ids) ids.push_back(IdJson(id));
  json infos = json::array();
  for (const auto& t : tasks) infos.push_back(ToJson(t));
  json ops = json::array();
  if (!infos.empty()) ops.push_back({{"type", "LAUNCH"}, {"launch", {{"task_infos", infos}}}});
  return Call({{"type", "ACCEPT"},
               {"accept", {{"offer_ids", ids}, {"operations", ops}, {"filters", {{"refuse_seconds", refuse_seconds}}}}}});
}

Status SchedulerClient::Decline(const std::vector<std::string>& offer_ids, double refuse_seconds) {
  json ids = json::array();
  for (const auto& id : offer_ids) ids.push_back(IdJson(id));
  return Call({{"type", "DECLINE"}, {"decline", {{"offer_ids", ids}, {"filters", {{"refuse_seconds", refuse_seconds}}}}}});
}

Status SchedulerClient::Kill(const std::string& task_id, const std::string& agent_id) {
  json k{{"task_id", IdJson(task_id)}};
  if (!agent_id.empty()) k["agent_id"] = IdJson(agent_id);
  return Call({{"type", "KILL"}, {"kill", k}});
}

Status SchedulerClient::Acknowledge(const TaskStatus& s) {
  if (s.uuid.empty()) return {};
  return Call({{"type", "ACKNOWLEDGE"},
               {"acknowledge", {{"agent_id", IdJson(s.agent_id)}, {"task_id", IdJson(s.task_id)}, {"uuid", s.uuid}}}});
}

Status SchedulerClient::Reconcile(const std::vector<std::pair<std::string, std::string>>& ids) {
  json tasks = json::array();
  for (const auto& [t, a] : ids) {
    json e{{"task_id", IdJson(t)}};
    if (!a.empty()) e["agent_id"] = IdJson(a);
    tasks.push_back(e);
  }
  return Call({{"type", "RECONCILE"}, {"reconcile", {{"tasks", tasks}}}});
}

Status SchedulerClient::Revive() { return Call({{"type", "REVIVE"}}); }
Status SchedulerClient::Suppress() { return Call({{"type", "SUPPRESS"}}); }
Status SchedulerClient::Teardown() { return Call({{"type", "TEARDOWN"}}); }

}  // namespace tug::cluster::framework
