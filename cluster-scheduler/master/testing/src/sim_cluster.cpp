#include "master_testing/sim_cluster.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "http/recordio.hpp"

namespace tug::cluster::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

void EventLog::Push(json e) {
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
  cv_.notify_all();
}

std::optional<json> EventLog::Find(const std::string& type, const std::function<bool(const json&)>& pred,
                                   std::chrono::milliseconds timeout, size_t from) {
  std::unique_lock lock(mu_);
  std::optional<json> out;
  cv_.wait_for(lock, timeout, [&] {
    for (size_t i = from; i < events_.size(); ++i) {
      const auto& e = events_[i];
      if (e.value("type", "") == type && (!pred || pred(e))) {
        out = e;
        return true;
      }
    }
    return false;
  });
  return out;
}

size_t EventLog::size() {
  std::lock_guard lock(mu_);
  return events_.size();
}

std::vector<json> EventLog::All() {
  std::lock_guard lock(mu_);
  return events_;
}

size_t EventLog::Count(const std::string& type) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& e : events_) n += e.value("type", "") == type;
  return n;
}

void EventLog::Clear() {
  std::lock_guard lock(mu_);
  events_.clear();
}

// ---- InProcessMaster ----

InProcessMaster::InProcessMaster(master::StateStore& store, master::MasterOptions opts, bool lead)
    : m_(io_, std::move(opts), store) {
  auto srv = http::Server::Start(io_, "127.0.0.1", 0, [this](const http::Request& r) { return m_.Handle(r); });
  if (!srv) throw std::runtime_error("starting the master's server: " + srv.error().Message());
  server_ = std::move(*srv);
  if (lead) {
    if (auto st = m_.BecomeLeader(); !st) throw std::runtime_error("leading: " + st.error().Message());
  }
  thread_ = std::thread([this] {
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

InProcessMaster::~InProcessMaster() {
  std::promise<void> done;
  boost::asio::post(io_, [&] {
    m_.BecomeFollower("");
    server_->Stop();
    done.set_value();
  });
  done.get_future().wait_for(5s);
  io_.stop();
  thread_.join();
}

std::string InProcessMaster::url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

master::MasterOptions FastMasterOptions() {
  master::MasterOptions o;
  o.heartbeat_interval_s = 0.5;
  o.agent_ping_timeout_s = 1.5;
  o.agent_removal_timeout_s = 3;
  o.offer_timeout_s = 30;
  o.allocation_interval_s = 0.05;
  o.default_refuse_seconds = 1;
  o.allocator_seed = 42;
  return o;
}

// ---- SimAgent ----

SimAgent::SimAgent(std::string master_url, SimAgentOptions opts)
    : master_(std::move(master_url)), opts_(std::move(opts)), calls_(std::make_unique<http::Client>()) {}

SimAgent::~SimAgent() { Disconnect(); }

void SimAgent::set_master(std::string url) {
  std::lock_guard lock(mu_);
  master_ = std::move(url);
}

std::string SimAgent::id() {
  std::lock_guard lock(mu_);
  return id_;
}

std::vector<std::string> SimAgent::RunningTasks() {
  std::lock_guard lock(mu_);
  return running_;
}

bool SimAgent::Register(const json& tasks, const json& task_infos) {
  Disconnect();
  stop_ = false;
  AgentInfo info;
  std::string master;
  {
    std::lock_guard lock(mu_);
    info.id = id_;
    master = master_;
  }
  info.hostname = opts_.hostname;
  info.endpoint = "127.0.0.1:1";
  auto res = ParseResources(opts_.resources);
  if (!res) throw std::runtime_error("SimAgent resources: " + res.error().Message());
  info.resources = *res;
  info.attributes = opts_.attributes;
  const std::string body =
      json{{"type", "REGISTER"}, {"register", {{"agent_info", ToJson(info)}, {"tasks", tasks}, {"task_infos", task_infos}}}}
          .dump();
  const size_t before = events.Count("REGISTERED") + events.Count("SHUTDOWN");
  reader_ = std::thread([this, body, master] {
    http::ClientOptions o;
    o.timeout = 3s;
    http::Client c(o);
    http::RecordIoDecoder dec;
    http::BodySink sink = [&](const http::ClientResponse& head, std::string_view chunk) -> Status {
      if (stop_) return MakeError(Errc::kCancelled, "stop");
      {
        std::lock_guard lock(mu_);
        if (!head.Header("Mesos-Stream-Id").empty()) stream_id_ = head.Header("Mesos-Stream-Id");
      }
      auto recs = dec.Feed(chunk);
      if (!recs) return tl::unexpected(recs.error());
      for (const auto& r : *recs) OnEvent(json::parse(r));
      return {};
    };
    (void)c.Call("POST", master + "/api/v1/agent", body, {}, &sink);
  });
  for (int i = 0; i < 100; ++i) {
    if (events.Count("REGISTERED") + events.Count("SHUTDOWN") > before) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

void SimAgent::OnEvent(const json& e) {
  const std::string type = e.value("type", "");
  if (type == "REGISTERED") {
    std::lock_guard lock(mu_);
    id_ = e["registered"]["agent_id"]["value"];
  }
  if (type == "HEARTBEAT" && heartbeats_) (void)Post(json{{"type", "HEARTBEAT"}});
  if (opts_.auto_run && type == "LAUNCH") {
    const std::string tid = e["launch"]["task_info"]["task_id"]["value"];
    const std::string fid = e["launch"]["framework_id"]["value"];
    {
      std::lock_guard lock(mu_);
      running_.push_back(tid);
    }
    (void)Update(tid, fid, TaskState::kRunning, NewId("u"), true);
  }
  if (opts_.auto_run && type == "KILL") {
    const std::string tid = e["kill"]["task_id"]["value"];
    const std::string fid = e["kill"]["framework_id"]["value"];
    {
      std::lock_guard lock(mu_);
      running_.erase(std::remove(running_.begin(), running_.end(), tid), running_.end());
    }
    (void)Update(tid, fid, TaskState::kKilled, NewId("u"));
  }
  events.Push(e);
}

void SimAgent::Disconnect() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
}

Result<http::ClientResponse> SimAgent::Post(json call) {
  std::string sid, master;
  {
    std::lock_guard lock(mu_);
    call["agent_id"] = IdJson(id_);
    sid = stream_id_;
    master = master_;
  }
  return calls_->Call("POST", master + "/api/v1/agent", call.dump(), {{"Mesos-Stream-Id", sid}});
}

Result<http::ClientResponse> SimAgent::Update(const std::string& task_id, const std::string& framework_id,
                                              TaskState state, const std::string& uuid, std::optional<bool> healthy) {
  TaskStatus s;
  s.task_id = task_id;
  s.framework_id = framework_id;
  s.state = state;
  s.uuid = uuid;
  s.healthy = healthy;
  s.timestamp = NowSeconds();
  return Post(json{{"type", "UPDATE"}, {"update", {{"status", ToJson(s)}}}});
}

}  // namespace tug::cluster::testing
