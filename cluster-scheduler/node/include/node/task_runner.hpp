// TaskRunner: runs the node's tasks (plain processes or runc containers), checkpoints them, health-checks them and
// keeps their status updates until the master acknowledges them. Independent of the master link, so it can be
// tested alone.
//
// Layout under work_dir:
//   tasks/<task>/          the sandbox, writable by the task: stdout, stderr (capped, rotated to .1); kept after the
//                          task ended; touched only through sandbox_fs (never a path followed, see sandbox_fs.hpp)
//   supervisor/<task>/     node-private (0700): launch.json, pid files, exit_status.json, supervisor.log
//                          (supervisor.hpp); collected with the sandbox
//   containers/<task>/     a container task's runc bundle (config.json, rootfs/); removed when the task ended
//   images/sha256/<hex>    verified layer blobs, shared by tasks
//   meta/gc/<task>.json    a sandbox waiting for garbage collection: task id, when it ended, the blobs it used
//   trash/                 sandboxes and blobs being deleted (off the monitor thread; emptied again on Open)
//   runc/                  runc's state root
//   meta/tasks/<task>.json checkpoint: TaskInfo, state, supervisor pid + start time, unacknowledged updates
//                          (written temp + fsync + rename + fsync dir on every change)
//   lock                   flock: one runner per work dir
// <task> is the task id with anything outside [A-Za-z0-9._-] percent-encoded.
//
// Every task runs under its own supervisor (the node binary in `supervise` mode, in a new session), so the task and
// its exit status survive the node's restart. Open() re-attaches: a live supervisor (pid and start time match) is
// monitored again, a finished one's exit status is read, a vanished one is reported TASK_FAILED saying so, and a
// task whose launch was interrupted before its supervisor started is launched again.
//
// Threading: thread-safe. All state is behind one mutex. A monitor thread ticks every `tick` (supervisor liveness,
// exit status files, kill escalation), reading files and /proc without the mutex and applying what it saw under it;
// launches (image pull, unpack) and health checks run on their own threads and take the mutex only to apply results.
// Blocking calls (runc, cgroup cleanup, probes) and reads of anything a task can write never run under the mutex.
// Public methods block only briefly (a checkpoint fsync at most).
//
// Status updates: every transition (TASK_STARTING -> TASK_RUNNING -> [TASK_KILLING] -> FINISHED/FAILED/KILLED) and
// every change of health is an update with a fresh uuid and the task's latest `healthy`, queued per task in order
// and checkpointed until Acknowledge(). A terminal task whose updates are all acknowledged is forgotten (its
// checkpoint replaced by a GC record in meta/gc; its sandbox stays until collected).
//
// Garbage collection (GcOptions): every `gc.interval` the monitor collects the sandboxes of forgotten tasks that
// ended more than the (disk-usage adjusted) delay ago, oldest first, and the cached blobs no uncollected task uses.
// Only renames into trash/ happen on the monitor thread; a Trash thread deletes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "model/types.hpp"

namespace tug::cluster::node {

// Garbage collection of sandboxes and cached image blobs (docs/cluster-node.md, "Garbage collection").
struct GcOptions {
  // A forgotten task's sandbox (terminal, every update acknowledged) is removed this long after the task ended.
  std::chrono::milliseconds delay{std::chrono::hours(1)};
  // Above this percentage of the work dir's filesystem used, the delay shrinks with the room left (EffectiveGcDelay).
  double disk_watermark = 90;
  // A cached blob that no uncollected task uses is removed this long after its last use.
  std::chrono::milliseconds image_delay{std::chrono::hours(24)};
  // How often the monitor runs a pass.
  std::chrono::milliseconds interval{std::chrono::minutes(1)};
  // Percent used of the filesystem holding the work dir; empty: statvfs (as df computes it). Tests inject one.
  std::function<Result<double>(const std::string& work_dir)> disk_usage;
};

// The sandbox delay a pass applies: `delay` below the watermark; above it, delay * (100 - used) / (100 - watermark),
// i.e. half the delay at 95% used with the default 90, nothing left at 100%. Unknown usage: `delay`.
std::chrono::milliseconds EffectiveGcDelay(std::chrono::milliseconds delay, std::optional<double> used_percent,
                                           double watermark);

// What garbage collection did since the runner opened, and what it keeps now (GET /api/v1/node).
struct GcStats {
  size_t sandboxes_kept = 0;          // on disk now: tasks not yet collected (running, unacknowledged, waiting)
  size_t sandboxes_waiting = 0;       // of those, forgotten ones waiting for their delay
  uint64_t sandboxes_collected = 0;
  uint64_t blobs_collected = 0;
  size_t blobs_in_use = 0;            // blobs referenced by uncollected tasks
  uint64_t bytes_freed = 0;           // by sandboxes and blobs, as allocated on disk (deleted so far)
  uint64_t passes = 0;
  std::optional<double> disk_used_percent;  // at the last pass
  std::chrono::milliseconds effective_delay{0};  // the sandbox delay the last pass applied
};
nlohmann::json ToJson(const GcStats& s, const GcOptions& o);

// Label on a TaskInfo overriding the kill grace period, in seconds ("0.5").
inline constexpr const char* kKillGraceLabel = "tugboat.kill_grace_period_seconds";

struct RunnerOptions {
  std::string work_dir;
  std::string hostname;                       // $HOST for tasks, container hostname
  // The binary started as `<supervisor_exe> supervise --sandbox DIR --state-dir DIR`; empty: this process's own
  // executable.
  std::string supervisor_exe;
  std::chrono::milliseconds kill_grace{std::chrono::seconds(3)};
  uint64_t log_max_bytes = 10ull << 20;       // per stream, then rotated to .1
  std::string runc = "runc";
  bool use_cgroups = true;                    // false: rlimits only
  // Cgroup directory (under each hierarchy) holding the tasks' cgroups, named <task>@<hash of the work dir>.
  std::string cgroup_group = "tugboat-node";
  std::chrono::milliseconds tick{std::chrono::milliseconds(100)};
  size_t keep_completed = 100;                // forgotten tasks still listed by Tasks() (most recent)
  GcOptions gc;
};

// A snapshot of one task for the API and tests.
struct TaskView {
  TaskInfo info;
  TaskState state = TaskState::kStaging;
  TaskStatus last;                 // the latest update
  std::optional<bool> healthy;
  std::string sandbox;
  bool container = false;
  pid_t supervisor_pid = 0;
  pid_t pid = 0;                   // the task's main process (runc for containers); 0 until started
  std::string limits;              // how limits were applied
  size_t unacknowledged = 0;
  bool forgotten = false;          // terminal and acknowledged (kept only in memory for listing)
  double sandbox_collected_at = 0; // seconds since the epoch when its sandbox was garbage-collected; 0: not
};
nlohmann::json ToJson(const TaskView& v);

class TaskRunner {
 public:
  // Creates the work dir layout, takes its lock (kAlreadyExists when another runner holds it), recovers the
  // checkpointed tasks and starts the monitor thread.
  static Result<std::unique_ptr<TaskRunner>> Open(RunnerOptions opts);
  // Stops the runner's threads and releases the lock. Tasks keep running (their supervisors are independent);
  // a runner opened later on the same work dir re-attaches to them.
  ~TaskRunner();
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  // Starts a task (TASK_STARTING, then a worker pulls/prepares and starts its supervisor). Idempotent: a task id
  // already known (running, or terminal with unacknowledged updates) is ignored and false returned.
  // `framework_id` fills info.framework_id when that is empty.
  bool Launch(TaskInfo info, const std::string& framework_id = "");

  // SIGTERM to the task's process group (runc kill TERM for containers), TASK_KILLING, SIGKILL after the grace
  // period, TASK_KILLED once it is gone. kNotFound for an unknown (or forgotten) task; no-op if already terminal.
  Status Kill(const std::string& task_id);

  // Queues an update for a task this node does not run (KILL of an unknown task -> TASK_DROPPED "unknown task";
  // a LAUNCH that does not parse -> TASK_ERROR), acknowledged like any other.
  void ReportForeign(const std::string& task_id, const std::string& framework_id, TaskState state,
                     const std::string& message, const std::string& reason = "");

  // Forgets the update with this uuid. False when there is no such pending update.
  bool Acknowledge(const std::string& task_id, const std::string& uuid);

  // The master removed this node: kill every task and drop all pending updates, sending none for these tasks.
  void ShutdownAll();

  // Kills every task and waits (bounded) until all are terminal: --kill-tasks-on-exit.
  void KillAllAndWait(std::chrono::milliseconds timeout);

  std::vector<TaskView> Tasks() const;
  std::optional<TaskView> Get(const std::string& task_id) const;
  // The latest status of every non-terminal task (for REGISTER's "tasks").
  std::vector<TaskStatus> LatestStatuses() const;
  // The TaskInfo of every non-terminal task (for REGISTER's "task_infos").
  std::vector<TaskInfo> ActiveTaskInfos() const;
  // Every pending update, oldest first within a task (for REGISTER's "unacknowledged" and re-sending).
  std::vector<TaskStatus> Unacknowledged() const;

  // Called, with the runner's mutex held, whenever an update is queued: it must only signal (notify a condition
  // variable), never call back into the runner.
  void SetUpdateListener(std::function<void()> fn);

  // The sandbox dir of a task (known or not): work_dir/tasks/<escaped id>.
  std::string SandboxOf(const std::string& task_id) const;
  // When this task's sandbox was garbage-collected (seconds since the epoch), if it was since the runner opened
  // (the last 1000 collections are remembered).
  std::optional<double> SandboxCollectedAt(const std::string& task_id) const;
  GcStats GcStatus() const;
  const RunnerOptions& options() const { return opts_; }

  class Impl;

 private:
  explicit TaskRunner(RunnerOptions opts);
  RunnerOptions opts_;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes a task id into a safe directory name.
std::string EscapeTaskId(const std::string& task_id);

}  // namespace tug::cluster::node
