// Engine: the rollout state machine (DESIGN §6). Consumes device reports (presence, state, job status), decides
// which devices get a release next, publishes desired/rollback/cancel messages through a Publisher seam, and keeps
// every decision in the Store *before* publishing it, so a controller killed at any point resumes where it was.
//
// Threading: not thread-safe; every call on one thread (the controller's io_context thread). Calls block only on
// the Store (local SQLite). Time comes from a core::Clock so tests move it without sleeping.
//
// Cost (docs/controller.md, "Scale"): a report costs O(1) store work plus what it triggers, never O(fleet). The
// engine keeps, per rollout, the number of its devices in each (phase, state) in memory; they are derived from the
// Store (counted on first use, updated with every row it writes, recounted after a failed transaction), so phase,
// abort and concurrency decisions read counters instead of scanning the fleet. Devices are picked from the Store
// by indexed (rollout, state) queries. A report that changes a rollout sends at most
// EngineOptions::report_send_batch more devices; the periodic Tick sends up to tick_send_batch per rollout and runs
// the timeouts. OnReports applies a batch of reports in one transaction.
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

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/store.hpp"
#include "controller/types.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "fleet/log_limiter.hpp"
#include "fleet/messages.hpp"

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
  fleet::ReasonCounts reports_rejected;  // payloads the fleet parsers refused, per reason (dropped)
  uint64_t reports_foreign_job = 0;      // job reports for a job this controller did not send the device (dropped)
  uint64_t reports_revoked = 0;          // reports from a revoked device (dropped)
};

// One device report as received from MQTT (see Engine::OnReports).
struct DeviceReport {
  enum class Kind { kPresence, kState, kJobStatus };
  Kind kind = Kind::kPresence;
  std::string device_id;
  std::string job;  // kJobStatus only
  std::string payload;
};

struct EngineOptions {
  // At most this many devices per rollout are sent the release (or marked unreached) by one periodic Tick (and by
  // CreateRollout/Resume); the rest go on the next ticks. Bounds how long one tick holds the io thread.
  int64_t tick_send_batch = 1000;
  // After a report changed a rollout (a slot freed, a device joined or came back), at most this many more.
  int64_t report_send_batch = 8;
  // Caps on what one device's report may be (and make the Store keep): payload sizes, boot_id, label count and
  // sizes, error message length. A report beyond them is dropped and counted (reports_rejected).
  fleet::Limits limits;
};

// Which devices a rollout report lists (GET /rollouts/{id}?devices=&limit=&after=, docs/api.md). The default lists
// every device, the body the API always had.
struct ReportDevices {
  bool none = false;                   // no "devices" and "touched" at all, counts only (the rest is ignored)
  std::vector<DeviceJobState> states;  // only devices in these states (empty: every state)
  std::string after;                   // only device ids sorting after this one ("": from the first)
  int64_t limit = 0;                   // at most this many, with "next_after" when more remain (0: no limit)
  bool All() const { return !none && states.empty() && after.empty() && limit == 0; }
};

class Engine {
 public:
  Engine(Store& store, Publisher& publisher, const core::Clock& clock, EngineOptions options = {});

  // Device reports, payloads as received (JSON text). Payloads the fleet parsers refuse are dropped, counted per
  // reason and logged (rate-limited), not errors; errors are Store failures only. Never throws.
  Status OnPresence(const std::string& device_id, const std::string& payload);
  Status OnState(const std::string& device_id, const std::string& payload);
  Status OnJobStatus(const std::string& device_id, const std::string& job, const std::string& payload);
  // Applies reports in order, all in one transaction (the same result as one call each, in order). If that
  // transaction fails, each report is retried in its own so one bad report does not lose the others; the first
  // error is returned.
  Status OnReports(const std::vector<DeviceReport>& reports);

  // Advances every running rollout (sends up to tick_send_batch, timeouts, phases, abort) and paused, aborted and
  // cancelled ones' timeouts. The first Tick after construction also joins every running rollout's selected devices
  // that are not part of it yet (a relabel the controller did not live to apply).
  Status Tick();

  // Sets a device's operator labels (PUT /devices/{id}/labels) and lets it join the running rollouts it now
  // matches, in one transaction. kNotFound if the device is unknown.
  Result<Device> SetOperatorLabels(const std::string& device_id, const Labels& labels);

  // Revokes a device (POST /devices/{id}/revoke): from now on every report from it is dropped and counted
  // (reports_revoked), also after a restart. Idempotent. The device need not be known (a certificate revoked before
  // the device ever reported).
  Status RevokeDevice(const std::string& device_id, const std::string& by, const std::string& reason);
  bool IsRevoked(const std::string& device_id) const { return revoked_.count(device_id) > 0; }

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
  // The same body as text (RolloutReport(id)->dump()), written device by device instead of as one JSON tree. With
  // `which` other than the default, the counts come from the in-memory counters (no rollout_devices row is read
  // for them) and only the listed devices are read from the Store, by indexed range: the cost follows the answer's
  // size, not the rollout's. "touched" then lists the touched devices among those listed.
  Result<std::string> RolloutReportText(const std::string& id, const ReportDevices& which = {});
  // RolloutReport without "devices" and "touched" (GET /rollouts, ?devices=none), from the in-memory counters.
  Result<nlohmann::json> RolloutSummary(const std::string& id);

  const EngineCounters& counters() const { return counters_; }
  const fleet::Limits& limits() const { return options_.limits; }

  // Tests: compares the in-memory counters of every rollout with a count from the Store; kInternal naming the
  // first difference.
  Status CheckCounters();

 private:
  // A rollout as the engine keeps it between calls: the stored Rollout plus the number of its devices per
  // (phase, state), index [phase + 1][state] (phase -1: not assigned yet).
  struct Live {
    Rollout r;
    bool counted = false;
    int64_t fleet = 0;
    std::vector<std::array<int64_t, 8>> counts;
    int64_t& At(int phase, DeviceJobState s);
    int64_t InState(DeviceJobState s) const;
  };
  // (phase, state) of a row before a change, for the counters.
  struct Slot {
    int phase;
    DeviceJobState state;
  };
  static Slot SlotOf(const RolloutDevice& rd) { return Slot{rd.phase, rd.state}; }
  struct TickMode {
    bool full;       // the periodic tick: timeouts, unreached devices that came back
    int64_t budget;  // devices it may send (or mark unreached)
  };

  Device NewDevice(const std::string& device_id) const;
  struct Outgoing {
    std::string topic, payload;
    bool retain;
  };
  Millis Now() const;
  // Runs f in one SQLite transaction; the messages it queued are published only after the commit. On failure the
  // in-memory rollouts are dropped and reloaded from the Store by the next call.
  Status InTx(const std::function<Status()>& f);
  Status EnsureLoaded();
  Result<Live*> Find(const std::string& rollout_id);  // loaded and counted; nullptr if unknown
  Status Count(Live& l);
  Status SaveRow(Live& l, const RolloutDevice& rd, std::optional<Slot> before);
  Status ApplyReport(const DeviceReport& report);
  Status ApplyPresence(const std::string& device_id, const fleet::Presence& p, std::set<std::string>& touched);
  Status ApplyState(const std::string& device_id, const fleet::State& s, std::set<std::string>& touched);
  Status ApplyJobReport(const std::string& device_id, const std::string& job, const fleet::JobStatus& report,
                        std::set<std::string>& touched);
  // Adds the device to every running rollout it matches and is not part of.
  Status Join(const Device& d, std::set<std::string>& touched);
  // Adds every matching device not yet part of the rollout (creation, resume, first tick).
  Status JoinAll(Live& l);
  Status DeviceCameOnline(const std::string& device_id, std::set<std::string>& touched);
  Status TickRollout(Live& l, TickMode mode);
  Status SendInstall(Live& l, RolloutDevice& rd, Slot before);
  Status SendRollback(Live& l, RolloutDevice& rd);
  Status PublishDesired(const std::string& device_id, fleet::Desired desired);
  Status AbortRollout(Live& l, const std::string& reason);
  Result<const std::string*> Envelope(uint64_t release);  // compact JSON text of the release's envelope
  enum class ReportMode { kFull, kText };
  Result<nlohmann::json> Report(const std::string& id, ReportMode mode, std::string* devices_text,
                                std::string* touched_text);
  // Everything of the report but the device lists, counts from the engine's counters; kNotFound.
  Result<nlohmann::json> CountedReport(const std::string& id);
  // The rows `which` selects, by device id; *more tells whether rows beyond its limit remain.
  Result<std::vector<RolloutDevice>> ListedRows(const std::string& id, const ReportDevices& which, bool* more);

  Store& store_;
  Publisher& publisher_;
  const core::Clock& clock_;
  EngineOptions options_;
  EngineCounters counters_;
  std::vector<Outgoing> outbox_;
  bool loaded_ = false;
  std::set<std::string> revoked_;  // loaded with the rollouts (EnsureLoaded), kept in step by RevokeDevice
  bool join_scan_needed_ = true;
  std::vector<std::string> order_;     // rollout ids in creation order
  std::map<std::string, Live> live_;   // every rollout (small: counters, not rows)
  std::map<uint64_t, std::string> envelopes_;  // compact release envelopes, for one transaction
  fleet::LogLimiter rejected_log_{5};         // at most 5 lines a second about refused reports
  // A desired publish failed (e.g. the MQTT client's pending bound): re-publish pending desired states on the next
  // tick instead of waiting for a reconnect (a rollout would otherwise stall until device_timeout).
  bool republish_needed_ = false;
};

}  // namespace tug::controller
