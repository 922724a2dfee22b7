// MasterLink: the node's side of the agent protocol (docs/cluster-node.md) against a list of masters, one of which
// leads.
//
//   POST {master}/api/v1/agent {"type":"REGISTER",...}  (agent_info, tasks, task_infos, unacknowledged) -> 200, header Mesos-Stream-Id, RecordIO stream of events:
//        REGISTERED (first; the agent id is persisted), LAUNCH, KILL, ACKNOWLEDGE, HEARTBEAT, SHUTDOWN
//   POST {leader}/api/v1/agent {"type":"UPDATE",...} and {"type":"HEARTBEAT",...} with the stream id -> 202
//
// A non-leader answers 307 with Location (followed) or 503 "no leader" (the next master in the list is tried, with
// jittered backoff between rounds). The stream is dropped and the node registers again when no event (heartbeats
// included) arrives for 3 heartbeat intervals, when the stream ends, or when UPDATE/HEARTBEAT is refused with 400/409
// (stale stream id); after a silent stream, or when UPDATE/HEARTBEAT to that master timed out (each call is bounded by
// about one heartbeat interval), the next master in the list is asked instead of the same one. A REGISTERED with a
// heartbeat interval other than the one the silence timer was armed for makes the node register again at once.
// SHUTDOWN (the master removed this agent; also the first event answering a removed agent's REGISTER) kills every
// task without updates, forgets the agent id and registers as a new agent.
// Registering again lists every non-terminal task and every unacknowledged update, and re-sends
// the unacknowledged updates in order per task; they are also re-sent every `resend_interval` until acknowledged.
// While disconnected the tasks keep running and updates queue in the TaskRunner (checkpointed there).
//
// Threading: two threads. The stream thread registers and reads events with its own http::Client (a Client
// serialises calls, and the stream holds it for the connection's lifetime); the sender thread posts heartbeats and
// updates with another. Link state (connection, stream id, leader, what was sent when) is behind one mutex; events
// are applied to the TaskRunner (itself thread-safe) without holding it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/types.hpp"
#include "node/task_runner.hpp"

namespace tug::cluster::node {

struct LinkOptions {
  std::vector<std::string> masters;  // "http://127.0.0.1:5050" (no path)
  AgentInfo agent;                   // hostname, endpoint, resources, attributes; id comes from the state file
  std::string state_file;            // work_dir/meta/agent.json: agent id + heartbeat interval, written durably
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds resend_interval{std::chrono::seconds(10)};
  // Upper bound of one UPDATE / HEARTBEAT wait; the bound used is about one heartbeat interval (at least 0.5 s).
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  // Assumed before the first REGISTERED ever (cluster-master's --heartbeat-interval default); a REGISTERED with
  // another interval makes the node register again at once with a silence timer for it (then it is persisted).
  double default_heartbeat_s = 2;
};

class MasterLink {
 public:
  // Reads the persisted agent id (if any). Does not connect until Start().
  MasterLink(LinkOptions opts, TaskRunner& runner);
  // Stop().
  ~MasterLink();
  MasterLink(const MasterLink&) = delete;
  MasterLink& operator=(const MasterLink&) = delete;

  void Start();
  // Stops both threads. Returns within about one heartbeat interval (the stream thread notices at the next event;
  // at worst its read times out after 3 intervals). Tasks are untouched.
  void Stop();

  bool connected() const;
  std::string agent_id() const;
  std::string leader() const;      // base URL of the master holding our stream, or ""
  std::string stream_id() const;
  uint64_t registrations() const;  // REGISTERED events received so far

 private:
  void StreamLoop();
  void SenderLoop();
  // One REGISTER (following 307s); returns when the stream ended or could not be opened. `registered`: a
  // REGISTERED event arrived; `rotate`: the next attempt should try the next master in the list.
  Status RegisterOnce(const std::string& base, bool* registered, bool* rotate);
  // Applies one event; an error drops the stream (SHUTDOWN, protocol violations).
  Status HandleEvent(const nlohmann::json& ev, const std::string& stream_id, const std::string& base,
                     uint64_t* generation);
  std::string RegisterBody() const;
  // `expected`: a planned re-registration (logged as info, not as a lost master).
  void Disconnect(uint64_t generation, const std::string& why, bool expected = false);
  void RequestReconnect(uint64_t generation, const std::string& why);
  void SleepFor(std::chrono::milliseconds d);
  void PersistState();

  LinkOptions opts_;
  TaskRunner& runner_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool started_ = false;
  std::string agent_id_;
  double interval_s_;
  // The current connection; generation_ increases with every REGISTERED and every disconnect.
  bool connected_ = false;
  uint64_t generation_ = 0;
  uint64_t reconnect_requested_gen_ = 0;  // the sender asks the stream thread to drop this generation
  uint64_t dead_generation_ = 0;          // the sender's calls to this generation's master failed: rotate after it
  std::string stream_id_;
  std::string leader_;
  uint64_t registrations_ = 0;
  bool wake_sender_ = false;
  std::map<std::string, std::chrono::steady_clock::time_point> sent_;  // uuid -> last sent (this connection)

  std::thread stream_thread_;
  std::thread sender_thread_;
};

}  // namespace tug::cluster::node
