// Test fixtures for frameworks run against a real in-process master (cluster-scheduler/master) over HTTP:
//   MasterUnderTest   the master on its own io thread and a loopback port
//   AutoAgent         a scripted node speaking the agent protocol that answers LAUNCH with TASK_RUNNING
//                     (healthy=true, optionally after a delay) and KILL with TASK_KILLED
//   ClusterObserver   the agents' side of the truth: instances alive and healthy at every moment, with the lowest
//                     healthy / highest alive counts seen, for upgrade invariants
//   SseReader         a /v2/events (Server-Sent Events) subscriber
//   EventLog          what a stream delivered, for the test thread to wait on
// Header-only; needs tug_cluster_master, tug_http, tug_cluster_model and tug_testsupport.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/client.hpp"
#include "http/recordio.hpp"
#include "http/server.hpp"
#include "master/master.hpp"
#include "master/state_store.hpp"
#include "master_testing/sim_cluster.hpp"
#include "model/types.hpp"
#include "testsupport/net.hpp"

namespace tug::cluster::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

// EventLog, InProcessMaster and FastMasterOptions come from master_testing (same namespace).
// The master on its own io thread and a loopback port, with its own in-memory store (master_testing's).
struct MasterUnderTest {
  master::MemoryStateStore store;
  InProcessMaster master;
  explicit MasterUnderTest(master::MasterOptions opts) : master(store, std::move(opts)) {}
  std::string url() const { return master.url(); }
  json State() { return master.State(); }
};

// What the agents run, counted at the moment they act: an instance is alive from its LAUNCH until its KILL, and
// healthy from the moment an agent decides to report it healthy (before the report leaves) until its KILL.
class ClusterObserver {
 public:
  void Launched(const std::string& id, const std::string& version, const std::string& host) {
    std::lock_guard lock(mu_);
    alive_[id] = {version, host};
    max_alive_ = std::max(max_alive_, alive_.size());
  }
  void Healthy(const std::string& id) {
    std::lock_guard lock(mu_);
    if (alive_.count(id)) healthy_.insert(id);
  }
  void Killed(const std::string& id) {
    {
      std::lock_guard lock(mu_);
      alive_.erase(id);
      healthy_.erase(id);
      min_healthy_ = std::min(min_healthy_, healthy_.size());
    }
    if (on_kill) on_kill(id);
  }
  // Called (on an agent's thread) as a KILL arrives, before the agent reports TASK_KILLED. Set before agents start.
  std::function<void(const std::string& task_id)> on_kill;
  // Extremes are measured from now on.
  void ResetExtremes() {
    std::lock_guard lock(mu_);
    min_healthy_ = healthy_.size();
    max_alive_ = alive_.size();
  }
  size_t alive() {
    std::lock_guard lock(mu_);
    return alive_.size();
  }
  size_t healthy() {
    std::lock_guard lock(mu_);
    return healthy_.size();
  }
  size_t min_healthy() {
    std::lock_guard lock(mu_);
    return min_healthy_;
  }
  size_t max_alive() {
    std::lock_guard lock(mu_);
    return max_alive_;
  }
  // task id -> (version label, hostname)
  std::map<std::string, std::pair<std::string, std::string>> Alive() {
    std::lock_guard lock(mu_);
    return alive_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<std::string, std::string>> alive_;
  std::set<std::string> healthy_;
  size_t min_healthy_ = SIZE_MAX;
  size_t max_alive_ = 0;
};

class AutoAgent {
 public:
  struct Options {
    std::string hostname;
    std::string resources = "cpus:4;mem:4096;ports:[31000-31099]";
    Attributes attributes;
    std::chrono::milliseconds healthy_after{0};  // 0: the first RUNNING is already healthy
  };

  AutoAgent(std::string master, Options opts, ClusterObserver* observer = nullptr)
      : master_(std::move(master)), opts_(std::move(opts)), observer_(observer), worker_([this] { Work(); }) {}
  ~AutoAgent() {
    Disconnect();
    {
      std::lock_guard lock(jobs_mu_);
      stop_worker_ = true;
      jobs_cv_.notify_all();
    }
    worker_.join();
  }

  // Registers (again), reporting the tasks it runs.
  void Register() {
    Disconnect();
    stop_ = false;
    AgentInfo info;
    info.hostname = opts_.hostname;
    info.resources = *ParseResources(opts_.resources);
    info.attributes = opts_.attributes;
    json tasks = json::array(), infos = json::array();
    {
      std::lock_guard lock(mu_);
      info.id = id_;
      for (const auto& [tid, t] : running_) {
        TaskStatus s;
        s.task_id = tid;
        s.framework_id = t.framework_id;
        s.state = TaskState::kRunning;
        s.healthy = true;
        tasks.push_back(ToJson(s));
        infos.push_back(ToJson(t));
      }
    }
    const std::string body =
        json{{"type", "REGISTER"},
             {"register", {{"agent_info", ToJson(info)}, {"tasks", tasks}, {"task_infos", infos}}}}
            .dump();
    const size_t before = events.Count("REGISTERED");
    reader_ = std::thread([this, body] { Read(body); });
    REQUIRE(testsupport::WaitFor([&] { return events.Count("REGISTERED") > before; }, 5000ms));
  }
  void Disconnect() {
    stop_ = true;
    if (reader_.joinable()) reader_.join();
  }
  // Off: the node looks frozen (stream open, no heartbeats) and the master declares it unreachable, then lost.
  void set_heartbeats(bool on) { heartbeats_ = on; }

  std::string id() {
    std::lock_guard lock(mu_);
    return id_;
  }
  const std::string& hostname() const { return opts_.hostname; }
  std::map<std::string, TaskInfo> Running() {
    std::lock_guard lock(mu_);
    return running_;
  }
  size_t launches() const { return launches_; }
  size_t kills() const { return kills_; }

  EventLog events;

 private:
  void Read(const std::string& body) {
    http::ClientOptions o;
    o.timeout = 3s;
    http::Client c(o);
    http::RecordIoDecoder dec;
    http::BodySink sink = [&](const http::ClientResponse& head, std::string_view chunk) -> Status {
      if (stop_) return MakeError(Errc::kCancelled, "stop");
      {
        std::lock_guard lock(mu_);
        stream_id_ = head.Header("Mesos-Stream-Id");
      }
      auto recs = dec.Feed(chunk);
      if (!recs) return tl::unexpected(recs.error());
      for (const auto& r : *recs) Handle(json::parse(r));
      return {};
    };
    c.Call("POST", master_ + "/api/v1/agent", body, {}, &sink);
  }

  void Handle(const json& e) {
    const std::string type = e.value("type", "");
    if (type == "REGISTERED") {
      std::lock_guard lock(mu_);
      id_ = e["registered"]["agent_id"]["value"];
    } else if (type == "HEARTBEAT") {
      if (heartbeats_) Later(0ms, [this] { Post(json{{"type", "HEARTBEAT"}}); });
    } else if (type == "LAUNCH") {
      auto ti = TaskInfoFromJson(e["launch"]["task_info"], "task_info");
      REQUIRE(ti);
      TaskInfo t = *ti;
      t.framework_id = e["launch"]["framework_id"]["value"];
      {
        std::lock_guard lock(mu_);
        running_[t.task_id] = t;
      }
      launches_++;
      const std::string version = t.labels.count("version") ? t.labels.at("version") : "";
      if (observer_) observer_->Launched(t.task_id, version, opts_.hostname);
      if (opts_.healthy_after.count() == 0) {
        if (observer_) observer_->Healthy(t.task_id);
        Later(0ms, [this, t] { Update(t.task_id, t.framework_id, TaskState::kRunning, true); });
      } else {
        Later(0ms, [this, t] { Update(t.task_id, t.framework_id, TaskState::kRunning, std::nullopt); });
        Later(opts_.healthy_after, [this, t] {
          if (!Running().count(t.task_id)) return;
          if (observer_) observer_->Healthy(t.task_id);
          Update(t.task_id, t.framework_id, TaskState::kRunning, true);
        });
      }
    } else if (type == "KILL") {
      const std::string tid = e["kill"]["task_id"]["value"];
      std::string fid;
      {
        std::lock_guard lock(mu_);
        auto it = running_.find(tid);
        if (it == running_.end()) return;
        fid = it->second.framework_id;
        running_.erase(it);
      }
      kills_++;
      if (observer_) observer_->Killed(tid);
      Later(0ms, [this, tid, fid] { Update(tid, fid, TaskState::kKilled, std::nullopt); });
    }
    events.Push(e);
  }

  void Update(const std::string& task_id, const std::string& framework_id, TaskState state, std::optional<bool> healthy) {
    TaskStatus s;
    s.task_id = task_id;
    s.framework_id = framework_id;
    s.state = state;
    s.healthy = healthy;
    s.uuid = NewId("u");
    Post(json{{"type", "UPDATE"}, {"update", {{"status", ToJson(s)}}}});
  }

  void Post(json call) {
    std::string sid;
    {
      std::lock_guard lock(mu_);
      call["agent_id"] = IdJson(id_);
      sid = stream_id_;
    }
    calls_.Call("POST", master_ + "/api/v1/agent", call.dump(), {{"Mesos-Stream-Id", sid}});
  }

  void Later(std::chrono::milliseconds delay, std::function<void()> fn) {
    std::lock_guard lock(jobs_mu_);
    jobs_.emplace(std::chrono::steady_clock::now() + delay, std::move(fn));
    jobs_cv_.notify_all();
  }

  void Work() {
    std::unique_lock lock(jobs_mu_);
    while (!stop_worker_) {
      if (jobs_.empty()) {
        jobs_cv_.wait(lock);
        continue;
      }
      auto due = jobs_.begin()->first;
      if (std::chrono::steady_clock::now() < due) {
        jobs_cv_.wait_until(lock, due);
        continue;
      }
      auto fn = std::move(jobs_.begin()->second);
      jobs_.erase(jobs_.begin());
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::string master_;
  Options opts_;
  ClusterObserver* observer_;
  std::mutex mu_;
  std::string id_, stream_id_;
  std::map<std::string, TaskInfo> running_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> heartbeats_{true};
  std::atomic<size_t> launches_{0}, kills_{0};
  http::Client calls_;
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> jobs_;
  bool stop_worker_ = false;
  std::thread worker_;
};

// Reads GET <url>/v2/events<query>; every event lands in `events` as its JSON data with "type" = the SSE event name.
// Stopping waits for the next keepalive (ServicesOptions::event_keepalive) or event, or the end of the stream.
class SseReader {
 public:
  SseReader(std::string url, std::string query = "", std::string token = "")
      : url_(std::move(url)), query_(std::move(query)), token_(std::move(token)), thread_([this] { Run(); }) {}
  ~SseReader() {
    stop_ = true;
    thread_.join();
  }
  EventLog events;
  bool attached() { return events.Count("event_stream_attached") > 0; }

 private:
  void Run() {
    while (!stop_) {
      http::ClientOptions o;
      o.timeout = 20s;  // idle this long ends the call (it is re-opened until stopped)
      http::Client c(o);
      std::string buf;
      http::BodySink sink = [&](const http::ClientResponse&, std::string_view chunk) -> Status {
        if (stop_) return MakeError(Errc::kCancelled, "stop");
        buf.append(chunk);
        for (size_t end; (end = buf.find("\n\n")) != std::string::npos;) {
          const std::string frame = buf.substr(0, end);
          buf.erase(0, end + 2);
          std::string type, data;
          size_t pos = 0;
          while (pos < frame.size()) {
            size_t nl = frame.find('\n', pos);
            std::string line = frame.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
            pos = nl == std::string::npos ? frame.size() : nl + 1;
            if (line.rfind("event: ", 0) == 0) type = line.substr(7);
            if (line.rfind("data: ", 0) == 0) data += line.substr(6);
          }
          if (type.empty()) continue;  // a comment (keepalive)
          json j = json::parse(data, nullptr, false);
          if (!j.is_object()) j = json::object();
          j["type"] = type;
          events.Push(j);
        }
        return {};
      };
      http::Headers h{{"Accept", "text/event-stream"}};
      if (!token_.empty()) h.emplace_back("Authorization", "Bearer " + token_);
      c.Call("GET", url_ + "/v2/events" + query_, {}, std::move(h), &sink);
      if (!stop_) std::this_thread::sleep_for(50ms);
    }
  }
  std::string url_, query_, token_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tug::cluster::testing
