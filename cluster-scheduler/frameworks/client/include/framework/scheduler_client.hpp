// SchedulerClient: the framework side of the scheduler API (docs/cluster-api.md) for C++ frameworks (services,
// batch, tests, benchmarks). Subscribes to the leading master, follows 307 redirects and rotates through the master
// list when one is down, re-subscribes with its framework id after a failover, and hands every event to a callback.
//
// Threading: Start() runs the subscription on a thread of its own; event and connection callbacks run on that
// thread, one at a time, in stream order. Calls (Accept, Decline, ...) may be made from any thread (including the
// callbacks); each is one blocking POST with a deadline. A call made while disconnected fails with kUnavailable.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "http/client.hpp"
#include "model/types.hpp"

namespace tug::cluster::framework {

struct SchedulerClientOptions {
  std::vector<std::string> masters;  // "http://127.0.0.1:5050"
  FrameworkInfo info;                // info.id set = re-subscribe as that framework
  std::chrono::milliseconds call_timeout{5000};
  // No event (heartbeats included) for this long: the stream is considered dead and re-opened.
  std::chrono::milliseconds stream_idle_timeout{8000};
};

class SchedulerClient {
 public:
  using EventHandler = std::function<void(const nlohmann::json& event)>;
  // connected=true after SUBSCRIBED (framework_id() is set), false when the stream ends.
  using ConnectionHandler = std::function<void(bool connected)>;

  SchedulerClient(SchedulerClientOptions opts, EventHandler on_event, ConnectionHandler on_connection = {});
  ~SchedulerClient();  // Stop()
  SchedulerClient(const SchedulerClient&) = delete;
  SchedulerClient& operator=(const SchedulerClient&) = delete;

  void Start();
  // Ends the subscription (the framework stays registered until its failover timeout; see Teardown).
  void Stop();

  std::string framework_id() const;
  bool connected() const { return connected_; }
  std::string leader() const;  // the master URL of the current subscription

  // The calls. Status errors: kUnavailable (not connected / master down), kInvalidArgument (400, message from the
  // master naming the field), kPolicy (other 4xx).
  Status Accept(const std::vector<std::string>& offer_ids, const std::vector<TaskInfo>& tasks, double refuse_seconds = 5);
  Status Decline(const std::vector<std::string>& offer_ids, double refuse_seconds = 5);
  Status Kill(const std::string& task_id, const std::string& agent_id = "");
  Status Acknowledge(const TaskStatus& status);  // no-op when status.uuid is empty
  Status Reconcile(const std::vector<std::pair<std::string, std::string>>& task_agent_ids = {});
  Status Revive();
  Status Suppress();
  Status Teardown();
  // Any call: `call` gets framework_id added.
  Status Call(nlohmann::json call);

 private:
  void Loop();
  Status SubscribeOnce(const std::string& master);

  SchedulerClientOptions opts_;
  EventHandler on_event_;
  ConnectionHandler on_connection_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  mutable std::mutex mu_;
  std::string framework_id_;
  std::string stream_id_;
  std::string leader_;
  http::Client calls_;
};

}  // namespace tug::cluster::framework
