// Test and benchmark helpers for the cluster scheduler: an in-process master on a real loopback HTTP server, and
// simulated agents that speak the agent protocol over HTTP (docs/cluster-api.md) without running anything, so tests
// of the master and of frameworks cross the wire exactly as production does, in milliseconds.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/client.hpp"
#include "http/server.hpp"
#include "master/master.hpp"
#include "model/types.hpp"

namespace tug::cluster::testing {

// Events received on a stream, for a test thread to wait on.
class EventLog {
 public:
  void Push(nlohmann::json e);
  // The first event of this type (from the start, or from index `from`) matching pred, waiting up to `timeout`.
  std::optional<nlohmann::json> Find(const std::string& type,
                                     const std::function<bool(const nlohmann::json&)>& pred = {},
                                     std::chrono::milliseconds timeout = std::chrono::seconds(5), size_t from = 0);
  size_t Count(const std::string& type);
  size_t size();
  std::vector<nlohmann::json> All();
  void Clear();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nlohmann::json> events_;
};

// A Master with its HTTP server and io thread.
class InProcessMaster {
 public:
  InProcessMaster(master::StateStore& store, master::MasterOptions opts, bool lead = true);
  ~InProcessMaster();
  std::string url() const;
  master::Master& master() { return m_; }
  // Runs f on the master's io thread and returns its result.
  template <typename F>
  auto OnLoop(F f) {
    std::promise<decltype(f())> p;
    boost::asio::post(io_, [&] { p.set_value(f()); });
    return p.get_future().get();
  }
  nlohmann::json State() {
    return OnLoop([this] { return m_.StateJson(); });
  }

 private:
  boost::asio::io_context io_;
  master::Master m_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

// Fast timeouts for tests: heartbeats 0.5 s, unreachable after 1.5 s, removed after 3 s, declines filter 1 s.
master::MasterOptions FastMasterOptions();

struct SimAgentOptions {
  std::string hostname = "node";
  std::string resources = "cpus:4;mem:4096;ports:[31000-31099]";
  Attributes attributes;
  // Answer LAUNCH with TASK_RUNNING (healthy=true) and KILL with TASK_KILLED, like a node whose tasks start at once.
  bool auto_run = true;
};

// A simulated agent: registers (following 307s is not needed in tests), records events, heartbeats, and answers
// launches/kills when auto_run. Thread-safe.
class SimAgent {
 public:
  SimAgent(std::string master_url, SimAgentOptions opts);
  ~SimAgent();  // Disconnect()

  // Opens the stream (REGISTER with the current id, if any, and these tasks) and waits for REGISTERED.
  // false when registration did not succeed within 5 s.
  bool Register(const nlohmann::json& tasks = nlohmann::json::array(),
                const nlohmann::json& task_infos = nlohmann::json::array());
  void Disconnect();
  // Asks the stream reader to end at its next event (heartbeats bound it), without waiting: call it on many agents
  // before destroying them so they wind down together.
  void RequestStop() { stop_ = true; }
  void set_master(std::string url);
  // Stop/resume answering heartbeats (a frozen node).
  void set_heartbeats(bool on) { heartbeats_ = on; }

  // POSTs a call with agent_id and the stream id added.
  Result<http::ClientResponse> Post(nlohmann::json call);
  Result<http::ClientResponse> Update(const std::string& task_id, const std::string& framework_id, TaskState state,
                                      const std::string& uuid, std::optional<bool> healthy = std::nullopt);
  std::string id();
  // Tasks launched and not killed (auto_run), by id.
  std::vector<std::string> RunningTasks();

  EventLog events;

 private:
  void OnEvent(const nlohmann::json& e);

  std::string master_;
  SimAgentOptions opts_;
  std::mutex mu_;
  std::string id_, stream_id_;
  std::vector<std::string> running_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> heartbeats_{true};
  std::unique_ptr<http::Client> calls_;
};

}  // namespace tug::cluster::testing
