// Engine: the rollout state machine (DESIGN §6). Consumes device reports (presence, state, job status), decides
// which devices get a release next, publishes desired/rollback/cancel messages through a Publisher seam, and keeps
// every decision in the Store *before* publishing it, so a controller killed at any point resumes where it was.
//
// Threading: not thread-safe; every call on one thread (the controller's io_context thread). Calls block only on
// the Store (local SQLite). Time comes from a core::Clock so tests move it without sleeping.
//
// Semantics (docs/controller.md has the long form):
//  - The selected fleet of a rollout = devices matching selector.labels (all) and listed in selector.devices (if
//    given). Devices that start matching while the rollout runs (new or relabelled) join it as pending.
//  - Phase i has a cumulative target T_i (count, or ceil(percent * fleet / 100)). While phase i is active, pending
//    devices are sent the release, online ones first, until T_i devices (not counting unreached ones) were sent,
//    never more than max_concurrency in progress. An offline device's turn makes it UNREACHED (not a failure): it
//    gets the release when it comes back online while the rollout runs.
//  - Outcomes: SUCCEEDED only when the device reports SUCCEEDED for the job; FAILED (retried with a new job id when
//    the device says retryable and fewer than max_retries retries were made), ROLLED_BACK and no terminal report
//    within device_timeout of the device being online with the job (TIMED_OUT) are failures. A device offline at
//    its deadline becomes unreached instead.
//  - Phase i is done when it has no in-progress device and its target is met (or the fleet is exhausted); if the
//    phase's succeeded/(succeeded+failed) is below success_threshold the rollout aborts, otherwise it soaks for
//    `soak` and the next phase starts. After the last phase the rollout succeeds.
//  - Abort: once min_devices devices have a terminal outcome and failed*100 >= failure_percent*terminal, the
//    rollout is ABORTED: nothing new is sent, in-progress devices finish, and with auto_rollback every device that
//    succeeded on this rollout (also later ones) gets a fleet rollback desired.
//  - Reports are idempotent on (device, job, boot_id, seq); terminal outcomes are sticky.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/store.hpp"
#include "controller/types.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"

namespace tug::controller {

// Where the engine's messages go: the MQTT bridge in production, a recorder in tests. Publishing is asynchronous
// and may fail only for local reasons (queue full); the engine has already persisted its intent and re-publishes
// pending desired states on every (re)connect (Engine::RepublishDesired).
class Publisher {
 public:
  virtual ~Publisher() = default;
  virtual Status Publish(const std::string& topic, const std::string& payload, bool retain) = 0;
};

// Counters the engine bumps (read by /metrics).
struct EngineCounters {
  uint64_t reports_applied = 0;
  uint64_t reports_ignored = 0;  // duplicate, out of order, unknown job or after a terminal outcome
  uint64_t desired_published = 0;
};

std::string DeviceTopic(const std::string& device_id, const std::string& leaf);  // "tug/v1/d/<id>/<leaf>"

class Engine {
 public:
  Engine(Store& store, Publisher& publisher, const core::Clock& clock);

  // Device reports, payloads as received (JSON text). Malformed payloads are ignored (logged), not errors;
  // errors are Store failures only.
  Status OnPresence(const std::string& device_id, const std::string& payload);
  Status OnState(const std::string& device_id, const std::string& payload);
  Status OnJobStatus(const std::string& device_id, const std::string& job, const std::string& payload);

  // Advances every running rollout (sends, timeouts, phases, abort) and paused ones' timeouts.
  Status Tick();

  // Creates a running rollout from a validated spec. kNotFound naming "release" when the version is unknown.
  Result<std::string> CreateRollout(const RolloutSpec& spec);
  // State changes; kNotFound (no such rollout / device in it), kAlreadyExists for an illegal transition (-> 409).
  Status Pause(const std::string& id);
  Status Resume(const std::string& id);
  Status Cancel(const std::string& id);
  // Sends the fleet rollback desired to every device that succeeded; a running/paused rollout is cancelled first.
  Result<int> Rollback(const std::string& id);
  Status CancelDevice(const std::string& id, const std::string& device_id);

  // Re-publishes every device's stored desired that the device has not applied yet (after an MQTT (re)connect or
  // a restart that may have happened between persisting and publishing).
  Status RepublishDesired();

  // GET /rollouts/{id} body (see docs/api.md); kNotFound.
  Result<nlohmann::json> RolloutReport(const std::string& id);

  const EngineCounters& counters() const { return counters_; }

 private:
  Device NewDevice(const std::string& device_id) const;
  struct Outgoing {
    std::string topic, payload;
    bool retain;
  };
  Millis Now() const;
  // Runs f in one SQLite transaction; the messages it queued are published only after the commit.
  Status InTx(const std::function<Status()>& f);
  Status TickAll();
  Status TickRollout(Rollout& r);
  Status ApplyJobReport(const std::string& device_id, const std::string& job, const nlohmann::json& report,
                        bool* changed);
  Status SendInstall(Rollout& r, RolloutDevice& rd);
  Status SendRollback(Rollout& r, RolloutDevice& rd);
  Status PublishDesired(Device& d, nlohmann::json desired);
  Status AbortRollout(Rollout& r, std::vector<RolloutDevice>& rows, const std::string& reason);

  Store& store_;
  Publisher& publisher_;
  const core::Clock& clock_;
  EngineCounters counters_;
  std::vector<Outgoing> outbox_;
  // A desired publish failed (e.g. the MQTT client's pending bound): re-publish pending desired states on the next
  // tick instead of waiting for a reconnect (a rollout would otherwise stall until device_timeout).
  bool republish_needed_ = false;
};

}  // namespace tug::controller
