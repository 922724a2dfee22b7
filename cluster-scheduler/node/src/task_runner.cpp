#include "node/task_runner.hpp"

#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "container.hpp"
#include "core/env.hpp"
#include "core/clock.hpp"
#include "crypto/sha256.hpp"
#include "gc.hpp"
#include "limits.hpp"
#include "node/supervisor.hpp"
#include "probe.hpp"
#include "sandbox_fs.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kReasonLaunchFailed = "REASON_CONTAINER_LAUNCH_FAILED";
constexpr const char* kReasonCommandExited = "REASON_COMMAND_EXITED";
constexpr const char* kReasonHealthCheckFailed = "REASON_HEALTH_CHECK_FAILED";
constexpr const char* kReasonSupervisorGone = "REASON_EXECUTOR_TERMINATED";
constexpr const char* kReasonAgentRemoved = "REASON_AGENT_REMOVED";
// Collections remembered for SandboxCollectedAt (the API's "garbage-collected" answer).
constexpr size_t kKeepCollected = 1000;

std::string NewUuid() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t a = rng(), b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(a >> 32),
                static_cast<unsigned long long>((a >> 16) & 0xffff), static_cast<unsigned long long>(a & 0xffff),
                static_cast<unsigned long long>(b >> 48), static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// The last non-empty line of a task's stderr (its last 1 KiB at most, opened with sandbox_fs), to make a failure
// message say something useful. Empty when the task replaced its stderr with something that is not a plain file.
std::string LastLine(const std::string& sandbox) {
  auto dir = sandbox_fs::OpenDir(sandbox);
  if (!dir) return "";
  auto fd = sandbox_fs::OpenRegularAt(dir->get(), "stderr");
  if (!fd) return "";
  auto tail = sandbox_fs::ReadTail(fd->get(), 1024);
  if (!tail) return "";
  std::string buf = std::move(*tail);
  while (!buf.empty() && (buf.back() == '\n' || buf.back() == '\r' || buf.back() == ' ')) buf.pop_back();
  auto nl = buf.rfind('\n');
  std::string line = nl == std::string::npos ? buf : buf.substr(nl + 1);
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

double GraceSeconds(const TaskInfo& info, std::chrono::milliseconds fallback) {
  if (auto it = info.labels.find(kKillGraceLabel); it != info.labels.end()) {
    try {
      double v = std::stod(it->second);
      if (v >= 0 && v <= 3600) return v;
    } catch (const std::exception&) {
    }
    spdlog::warn("task {}: ignoring label {}='{}' (not seconds)", info.task_id, kKillGraceLabel, it->second);
  }
  return std::chrono::duration<double>(fallback).count();
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

// The supervisor's own output: the (node-private) state dir's supervisor.log. Opened before the launch takes the
// runner's lock.
Result<sandbox_fs::Fd> OpenSupervisorLog(const std::string& state_dir) {
  TUG_ASSIGN_OR_RETURN(auto dir, sandbox_fs::OpenDir(state_dir));
  return sandbox_fs::OpenAppendAt(dir.get(), kSupervisorLogFile);
}

// Starts `<exe> supervise --sandbox DIR --state-dir DIR` in a new session with `log` as its stdout and stderr.
// Everything the child does before exec is async-signal-safe (this process has other threads).
Result<pid_t> SpawnSupervisor(const std::string& exe, const std::string& sandbox, const std::string& state_dir,
                              int log) {
  std::vector<std::string> args{exe, "supervise", "--sandbox", sandbox, "--state-dir", state_dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    if (devnull >= 0) ::close(devnull);
    return ErrnoError(err, "fork");
  }
  if (pid == 0) {
    ::setsid();
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::close_range(3, ~0U, 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(exe.c_str(), argv.data());
    _exit(127);
  }
  if (devnull >= 0) ::close(devnull);
  return pid;
}

struct Task {
  TaskInfo info;
  TaskState state = TaskState::kStaging;
  std::string dir;  // escaped id
  std::string sandbox;
  // Where the supervisor's files are (supervisor.hpp): work_dir/supervisor/<dir>, or the sandbox itself for a task
  // an older node started (private_state false; checkpoints without the field).
  std::string state_dir;
  bool private_state = true;
  std::string bundle;
  bool container = false;
  std::string container_id;
  pid_t supervisor_pid = 0;
  uint64_t supervisor_start = 0;
  pid_t task_pid = 0;
  std::string limits;
  std::vector<std::string> cgroups;
  double grace_s = 3;
  // Kill in progress: what the task becomes when it is gone.
  bool kill_requested = false;
  TaskState kill_state = TaskState::kKilled;
  std::string kill_reason;
  std::string kill_message;
  bool term_sent = false;
  bool sigkill_sent = false;
  SteadyClock::time_point kill_deadline;
  // Health.
  std::optional<bool> healthy;
  uint32_t health_failures = 0;
  bool health_running = false;
  // Updates.
  std::vector<TaskStatus> unacked;
  TaskStatus last;
  bool silent = false;   // ShutdownAll: no more updates for this task
  bool foreign = false;  // ReportForeign: a record of an update only
  bool launching = false;
  bool cleanup_scheduled = false;
  // Image blobs ("sha256:..") this task's launch referenced: held until its sandbox is collected.
  std::vector<std::string> blobs;
  // Set by a kill: a launch still pulling its image gives up.
  std::shared_ptr<std::atomic<bool>> cancel_launch = std::make_shared<std::atomic<bool>>(false);
};

TaskView ViewOf(const Task& t) {
  TaskView v;
  v.info = t.info;
  v.state = t.state;
  v.last = t.last;
  v.healthy = t.healthy;
  v.sandbox = t.foreign ? "" : t.sandbox;
  v.container = t.container;
  v.supervisor_pid = t.supervisor_pid;
  v.pid = t.task_pid;
  v.limits = t.limits;
  v.unacknowledged = t.unacked.size();
  return v;
}

json CheckpointJson(const Task& t) {
  json unacked = json::array();
  for (const auto& s : t.unacked) unacked.push_back(ToJson(s));
  json j{{"foreign", t.foreign},
         {"task_id", t.info.task_id},
         {"framework_id", t.info.framework_id},
         {"state", TaskStateName(t.state)},
         {"container", t.container},
         {"private_state", t.private_state},
         {"container_id", t.container_id},
         {"supervisor_pid", t.supervisor_pid},
         {"supervisor_start", t.supervisor_start},
         {"task_pid", t.task_pid},
         {"limits", t.limits},
         {"cgroups", t.cgroups},
         {"grace_s", t.grace_s},
         {"kill_requested", t.kill_requested},
         {"kill_state", TaskStateName(t.kill_state)},
         {"kill_reason", t.kill_reason},
         {"kill_message", t.kill_message},
         {"silent", t.silent},
         {"blobs", t.blobs},
         {"unacked", unacked},
         {"last", ToJson(t.last)}};
  if (!t.foreign) j["info"] = ToJson(t.info);
  if (t.healthy) j["healthy"] = *t.healthy;
  return j;
}

Result<std::unique_ptr<Task>> TaskFromCheckpoint(const json& j) {
  try {
    auto t = std::make_unique<Task>();
    t->foreign = j.value("foreign", false);
    if (t->foreign) {
      t->info.task_id = j.at("task_id").get<std::string>();
      t->info.framework_id = j.value("framework_id", "");
    } else {
      TUG_ASSIGN_OR_RETURN(t->info, TaskInfoFromJson(j.at("info"), "info"));
    }
    auto state = ParseTaskState(j.at("state").get<std::string>());
    if (!state) return MakeError(Errc::kInvalidArgument, "unknown state");
    t->state = *state;
    t->container = j.value("container", false);
    t->private_state = j.value("private_state", false);
    t->container_id = j.value("container_id", "");
    t->supervisor_pid = j.value("supervisor_pid", 0);
    t->supervisor_start = j.value("supervisor_start", uint64_t{0});
    t->task_pid = j.value("task_pid", 0);
    t->limits = j.value("limits", "");
    t->cgroups = j.value("cgroups", std::vector<std::string>{});
    t->grace_s = j.value("grace_s", 3.0);
    t->kill_requested = j.value("kill_requested", false);
    t->kill_state = ParseTaskState(j.value("kill_state", "TASK_KILLED")).value_or(TaskState::kKilled);
    t->kill_reason = j.value("kill_reason", "");
    t->kill_message = j.value("kill_message", "");
    t->silent = j.value("silent", false);
    t->blobs = j.value("blobs", std::vector<std::string>{});
    if (j.contains("healthy")) t->healthy = j["healthy"].get<bool>();
    for (const auto& u : j.value("unacked", json::array())) {
      TUG_ASSIGN_OR_RETURN(auto s, TaskStatusFromJson(u, "unacked"));
      t->unacked.push_back(std::move(s));
    }
    if (j.contains("last")) {
      TUG_ASSIGN_OR_RETURN(t->last, TaskStatusFromJson(j["last"], "last"));
    }
    return t;
  } catch (const std::exception& e) {
    return MakeError(Errc::kInvalidArgument, e.what());
  }
}

}  // namespace

std::string EscapeTaskId(const std::string& task_id) {
  std::string out;
  for (size_t i = 0; i < task_id.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(task_id[i]);
    bool safe = std::isalnum(c) || c == '-' || c == '_' || (c == '.' && i > 0);
    if (safe) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out.empty() ? "%00" : out;
}

json ToJson(const TaskView& v) {
  json ports = json::array();
  for (auto p : v.info.Ports()) ports.push_back(p);
  json j{{"task_id", v.info.task_id},
         {"name", v.info.name},
         {"framework_id", v.info.framework_id},
         {"state", TaskStateName(v.state)},
         {"message", v.last.message},
         {"sandbox", v.sandbox},
         {"container", v.container},
         {"supervisor_pid", v.supervisor_pid},
         {"pid", v.pid},
         {"ports", ports},
         {"resources", ResourcesToJson(v.info.resources)},
         {"limits", v.limits},
         {"unacknowledged", v.unacknowledged},
         {"last_update", ToJson(v.last)}};
  if (!v.info.container.image.empty()) j["image"] = v.info.container.image;
  if (v.healthy) j["healthy"] = *v.healthy;
  if (v.sandbox_collected_at > 0) j["sandbox_collected_at"] = v.sandbox_collected_at;
  return j;
}

std::chrono::milliseconds EffectiveGcDelay(std::chrono::milliseconds delay, std::optional<double> used_percent,
                                           double watermark) {
  if (!used_percent || *used_percent < watermark || watermark >= 100) return delay;
  const double room = std::clamp((100 - *used_percent) / (100 - watermark), 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(delay.count()) * room));
}

json ToJson(const GcStats& s, const GcOptions& o) {
  json j{{"sandboxes_kept", s.sandboxes_kept},
         {"sandboxes_waiting", s.sandboxes_waiting},
         {"sandboxes_collected", s.sandboxes_collected},
         {"blobs_collected", s.blobs_collected},
         {"blobs_in_use", s.blobs_in_use},
         {"bytes_freed", s.bytes_freed},
         {"passes", s.passes},
         {"gc_delay", FormatDelay(o.delay)},
         {"effective_gc_delay", FormatDelay(s.effective_delay)},
         {"gc_disk_watermark", o.disk_watermark},
         {"image_gc_delay", FormatDelay(o.image_delay)}};
  j["disk_used_percent"] = s.disk_used_percent ? json(*s.disk_used_percent) : json(nullptr);
  return j;
}

class TaskRunner::Impl {
 public:
  explicit Impl(const RunnerOptions& o)
      : opts(o),
        meta_dir(core::JoinPath(o.work_dir, "meta/tasks")),
        tasks_dir(core::JoinPath(o.work_dir, "tasks")),
        containers_dir(core::JoinPath(o.work_dir, "containers")),
        images_dir(core::JoinPath(o.work_dir, "images")),
        supervisor_dir(core::JoinPath(o.work_dir, "supervisor")),
        gc_dir(core::JoinPath(o.work_dir, "meta/gc")),
        trash_dir(core::JoinPath(o.work_dir, "trash")),
        runc(o.runc, core::JoinPath(o.work_dir, "runc")),
        images(images_dir) {}

  const RunnerOptions& opts;
  const std::string meta_dir, tasks_dir, containers_dir, images_dir, supervisor_dir, gc_dir, trash_dir;
  Runc runc;
  ImageCache images;  // thread-safe on its own; taken after `mu` when both are held, never the other way
  Trash trash;
  CgroupSupport cgroups;
  // Tells this node's cgroups and container ids apart from another node's on the same host (a hash of the work dir).
  std::string node_key;
  int lock_fd = -1;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> stopping{false};
  std::map<std::string, std::unique_ptr<Task>> tasks;
  std::deque<TaskView> completed;
  std::function<void()> listener;

  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;
  std::thread monitor;
  // Supervisors this process started: reaped once they exit (the exit status file usually tells us the task ended
  // before the supervisor itself is gone, so liveness checks alone would leave zombies).
  std::set<pid_t> children;

  // Garbage collection, under `mu`. A forgotten task's sandbox waits in gc_pending (and meta/gc/<dir>.json) until
  // it is due; the API can tell a collected sandbox from an unknown task through `collected`.
  struct GcEntry {
    std::string task_id;
    std::string dir;
    double ended_at = 0;  // seconds since the epoch
    std::vector<std::string> blobs;
  };
  std::map<std::string, GcEntry> gc_pending;  // by dir
  std::deque<std::pair<std::string, double>> collected;  // (task id, when), oldest first
  GcStats gc_stats;
  SteadyClock::time_point next_gc{};  // monitor thread only

  // Work that must not run under `mu` (runc, signals to cgroups, rmdir), collected while holding it.
  using Actions = std::vector<std::function<void()>>;

  // ---- helpers, called with `mu` held ----

  void StartWorker(std::function<void()> fn) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers.push_back(Worker{std::thread([fn = std::move(fn), done] {
                               fn();
                               done->store(true);
                             }),
                             done});
  }

  std::vector<std::thread> TakeFinishedWorkers() {
    std::vector<std::thread> out;
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->done->load()) {
        out.push_back(std::move(it->thread));
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  Task* Find(const std::string& id) {
    auto it = tasks.find(id);
    return it == tasks.end() ? nullptr : it->second.get();
  }

  std::string CheckpointPath(const Task& t) const { return core::JoinPath(meta_dir, t.dir + ".json"); }

  void Checkpoint(const Task& t) {
    auto st = core::WriteFileDurable(*core::DefaultEnv(), CheckpointPath(t), CheckpointJson(t).dump() + "\n");
    if (!st) spdlog::error("task {}: checkpoint failed: {}", t.info.task_id, st.error().Message());
  }

  void Emit(Task& t, TaskState s, const std::string& message, const std::string& reason = "") {
    t.state = s;
    TaskStatus st;
    st.task_id = t.info.task_id;
    st.framework_id = t.info.framework_id;
    st.state = s;
    st.message = message;
    st.reason = reason;
    st.healthy = t.healthy;
    st.uuid = NewUuid();
    st.timestamp = NowSeconds();
    t.last = st;
    if (!t.silent) t.unacked.push_back(st);
    Checkpoint(t);
    spdlog::info("task {}: {}{}{}", t.info.task_id, TaskStateName(s), message.empty() ? "" : ": " + message,
                 t.healthy ? (*t.healthy ? " [healthy]" : " [unhealthy]") : "");
    if (listener && !t.silent) listener();
    cv.notify_all();
  }

  // Removes a terminal task whose updates are all acknowledged (its sandbox stays).
  void MaybeForget(const std::string& id) {
    Task* t = Find(id);
    if (!t || !IsTerminal(t->state) || !t->unacked.empty() || t->launching) return;
    // The GC record is written before the checkpoint goes, so a crash in between leaves both (the checkpoint wins
    // on recovery and is forgotten again), never neither.
    if (!t->foreign) ScheduleGc(*t);
    (void)core::DefaultEnv()->RemoveFile(CheckpointPath(*t));
    TaskView v = ViewOf(*t);
    v.forgotten = true;
    completed.push_back(std::move(v));
    while (completed.size() > opts.keep_completed) completed.pop_front();
    tasks.erase(id);
  }

  // ---- garbage collection, `mu` held ----

  std::string GcRecordPath(const std::string& dir) const { return core::JoinPath(gc_dir, dir + ".json"); }

  // The time the sandbox's delay counts from is the terminal update's timestamp: when the node saw the task end
  // (after a node restart, when recovery read its exit status), never the acknowledgement's time.
  void ScheduleGc(const Task& t) {
    GcEntry e{.task_id = t.info.task_id,
              .dir = t.dir,
              .ended_at = t.last.timestamp > 0 ? t.last.timestamp : NowSeconds(),
              .blobs = t.blobs};
    json j{{"task_id", e.task_id}, {"ended_at", e.ended_at}, {"blobs", e.blobs}};
    auto st = core::WriteFileDurable(*core::DefaultEnv(), GcRecordPath(e.dir), j.dump() + "\n");
    // Without its record a restarted node still finds the sandbox, and schedules it by its mtime.
    if (!st) spdlog::error("task {}: writing its GC record failed: {}", e.task_id, st.error().Message());
    gc_pending[e.dir] = std::move(e);
  }

  // A new task takes over `dir` (a relaunch of a forgotten task's id): the old sandbox's collection is cancelled,
  // since the launch wipes and reuses the directory, and the old task's blobs are released.
  void DropGc(const std::string& task_id, const std::string& dir) {
    if (gc_pending.erase(dir)) {
      (void)core::DefaultEnv()->RemoveFile(GcRecordPath(dir));
      images.Release(dir);
    }
    std::erase_if(collected, [&](const auto& c) { return c.first == task_id; });
  }

  // Moves the due sandboxes (ended before now - delay), oldest first, into the trash; their GC records go and their
  // blobs are released. Returns the task ids collected and adds the trash paths to `paths`.
  std::vector<std::string> CollectSandboxes(double now, std::chrono::milliseconds delay,
                                            std::vector<std::string>* paths) {
    const double cutoff = now - std::chrono::duration<double>(delay).count();
    std::vector<const GcEntry*> due;
    for (const auto& [dir, e] : gc_pending)
      if (e.ended_at <= cutoff) due.push_back(&e);
    std::sort(due.begin(), due.end(), [](const GcEntry* a, const GcEntry* b) { return a->ended_at < b->ended_at; });
    std::vector<std::string> ids;
    for (const GcEntry* e : due) {
      const std::string sandbox = core::JoinPath(tasks_dir, e->dir);
      if (core::DefaultEnv()->Exists(sandbox)) {
        auto to = MoveToTrash(sandbox, trash_dir);
        if (!to) {
          spdlog::error("gc: task {}: moving its sandbox to the trash failed (retried next pass): {}", e->task_id,
                        to.error().Message());
          continue;
        }
        paths->push_back(*to);
      }
      // The supervisor dir goes with it (after the sandbox: a crash in between leaves a dir RecoverGc trashes).
      if (const std::string state = core::JoinPath(supervisor_dir, e->dir); core::DefaultEnv()->Exists(state)) {
        if (auto to = MoveToTrash(state, trash_dir)) paths->push_back(*to);
        else spdlog::warn("gc: task {}: moving its supervisor dir to the trash failed: {}", e->task_id,
                          to.error().Message());
      }
      (void)core::DefaultEnv()->RemoveFile(GcRecordPath(e->dir));
      images.Release(e->dir);
      MarkCollected(e->task_id, now);
      ids.push_back(e->task_id);
      gc_pending.erase(std::string(e->dir));  // e dangles from here on
    }
    return ids;
  }

  void MarkCollected(const std::string& task_id, double now) {
    collected.emplace_back(task_id, now);
    while (collected.size() > kKeepCollected) collected.pop_front();
    for (auto& v : completed)
      if (v.info.task_id == task_id) v.sandbox_collected_at = now;
    ++gc_stats.sandboxes_collected;
  }

  void ScheduleCleanup(Task& t, Actions& actions) {
    if (t.cleanup_scheduled || t.foreign) return;
    t.cleanup_scheduled = true;
    auto cgroups_copy = t.cgroups;
    if (!cgroups_copy.empty()) actions.push_back([cgroups_copy] { CleanupCgroups(cgroups_copy); });
    if (t.container) {
      actions.push_back([this, id = t.container_id, bundle = t.bundle] {
        if (auto st = runc.Delete(id); !st) spdlog::warn("{}", st.error().Message());
        (void)core::DefaultEnv()->RemoveAll(bundle);
      });
    }
  }

  void SendSignal(const Task& t, int sig, Actions& actions) {
    if (t.task_pid <= 0) return;
    pid_t pgid = t.task_pid;
    if (t.container) {
      actions.push_back([this, id = t.container_id, pgid, sig] {
        auto st = runc.Kill(id, sig == SIGKILL ? "KILL" : "TERM");
        // Before runc has created the container (or after it is gone), signal `runc run` itself: it forwards.
        if (!st || sig == SIGKILL) ::killpg(pgid, sig);
      });
    } else {
      ::killpg(pgid, sig);
      if (sig == SIGKILL && !t.cgroups.empty()) {
        auto dirs = t.cgroups;
        actions.push_back([dirs] { SignalCgroups(dirs, SIGKILL); });
      }
    }
  }

  void KillLocked(Task& t, TaskState final_state, const std::string& reason, const std::string& message,
                  Actions& actions) {
    if (IsTerminal(t.state) || t.kill_requested) return;
    t.kill_requested = true;
    t.kill_state = final_state;
    t.kill_reason = reason;
    t.kill_message = message;
    t.cancel_launch->store(true);
    Emit(t, TaskState::kKilling, message);
    if (t.task_pid > 0) {
      SendSignal(t, SIGTERM, actions);
      t.term_sent = true;
      t.kill_deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                 std::chrono::duration<double>(t.grace_s));
    }
    // Otherwise the launch worker (not started yet) or the monitor (pid not known yet) finishes the kill.
  }

  // `stderr_line`: the last line of the task's stderr, read (outside `mu`) when the task failed.
  void Finish(Task& t, const ExitStatus& es, const std::string& stderr_line, Actions& actions) {
    TaskState s;
    std::string message, reason;
    if (!es.error.empty()) {
      s = TaskState::kFailed;
      message = es.Describe();
      reason = kReasonLaunchFailed;
    } else if (t.kill_requested) {
      s = t.kill_state;
      message = t.kill_message + " (" + es.Describe() + ")";
      reason = t.kill_reason;
    } else if (es.Success()) {
      s = TaskState::kFinished;
      message = es.Describe();
      reason = kReasonCommandExited;
    } else {
      s = TaskState::kFailed;
      message = es.Describe();
      if (!stderr_line.empty()) message += "; stderr: " + stderr_line;
      reason = kReasonCommandExited;
    }
    Emit(t, s, message, reason);
    ScheduleCleanup(t, actions);
  }

  // `orphan`: the task's main process, found still running (outside `mu`) after its supervisor vanished.
  void FinishLost(Task& t, const std::optional<PidFile>& orphan, Actions& actions) {
    std::string message = "the task's supervisor (pid " + std::to_string(t.supervisor_pid) +
                          ") is gone without recording an exit status (killed, or the host restarted)";
    if (orphan) {
      // An unsupervised task could exit unnoticed: stop it rather than leave it running untracked.
      ::killpg(orphan->pid, SIGKILL);
      message += "; the orphaned task was killed";
    }
    Emit(t, TaskState::kFailed, message, kReasonSupervisorGone);
    ScheduleCleanup(t, actions);
  }

  std::map<std::string, std::string> TaskEnv(const TaskInfo& info, const std::string& sandbox_seen) const {
    std::map<std::string, std::string> env = info.command.environment;
    auto ports = info.Ports();
    std::string all;
    for (size_t i = 0; i < ports.size(); ++i) {
      env["PORT" + std::to_string(i)] = std::to_string(ports[i]);
      all += (i ? "," : "") + std::to_string(ports[i]);
    }
    if (!ports.empty()) {
      env["PORT"] = std::to_string(ports[0]);
      env["PORTS"] = all;
    }
    env["TASK_ID"] = info.task_id;
    env["FRAMEWORK_ID"] = info.framework_id;
    env["HOST"] = opts.hostname;
    env["SANDBOX"] = sandbox_seen;
    env["MESOS_SANDBOX"] = sandbox_seen;
    return env;
  }

  // ---- launch (worker thread, `mu` not held) ----

  struct Prepared {
    LaunchSpec spec;
    TaskLimits limits;
  };

  Result<Prepared> Prepare(const TaskInfo& info, const std::string& sandbox, const std::string& state_dir,
                           const std::string& bundle, const std::string& container_id, const std::string& dir,
                           const std::shared_ptr<std::atomic<bool>>& cancel) {
    auto* env = core::DefaultEnv();
    // A sandbox left by an earlier task with this id (or by an interrupted launch) must not leak its exit status.
    TUG_TRY(env->RemoveAll(sandbox));
    TUG_TRY(env->RemoveAll(state_dir));
    TUG_TRY(env->CreateDirs(sandbox));
    TUG_TRY(env->CreateDirs(state_dir));
    if (::chmod(state_dir.c_str(), 0700) != 0) return ErrnoError(errno, "chmod " + state_dir);
    TUG_ASSIGN_OR_RETURN(auto box, sandbox_fs::OpenDir(sandbox));
    std::vector<sandbox_fs::Fd> logs;  // chowned below for command.user
    for (const char* f : {"stdout", "stderr"}) {
      TUG_ASSIGN_OR_RETURN(auto fd, sandbox_fs::CreateExclusiveAt(box.get(), f));
      logs.push_back(std::move(fd));
    }
    Prepared p;
    p.spec.cwd = sandbox;
    p.spec.log_max_bytes = opts.log_max_bytes;
    const double cpus = info.resources.cpus(), mem = info.resources.mem();
    if (!info.container.image.empty()) {
      const std::string rootfs = core::JoinPath(bundle, "rootfs");
      // Each layer is referenced (for this task's sandbox dir) before the cache is looked at: see ImageCache.
      auto config = PullImage(
          info.container.image, info.container.insecure_registry, images_dir, rootfs,
          [this, cancel] { return stopping.load() || cancel->load(); },
          [this, dir](const std::string& digest) { images.Acquire(dir, digest); });
      if (!config) return tl::unexpected(Wrap(config.error(), "pulling " + info.container.image));
      ContainerProcess cp;
      const auto& cmd = info.command;
      if (!cmd.value.empty() && cmd.shell) {
        cp.args = {"/bin/sh", "-c", cmd.value};
      } else if (!cmd.value.empty()) {
        cp.args = cmd.arguments.empty() ? std::vector<std::string>{cmd.value} : cmd.arguments;
        cp.args[0] = cmd.value;
      }
      cp.env = TaskEnv(info, kSandboxInContainer);
      cp.user = cmd.user;
      cp.hostname = opts.hostname;
      cp.sandbox = sandbox;
      cp.cpus = cpus;
      cp.mem_mib = mem;
      cp.cgroups_path = "/" + opts.cgroup_group + "/" + container_id;
      TUG_TRY(WriteContainerSpec(bundle, *config, cp));
      p.spec.argv = runc.RunArgv(bundle, container_id);
      const char* path = ::getenv("PATH");
      p.spec.env = {std::string("PATH=") + (path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")};
      char buf[64];
      std::string what;
      if (mem > 0) {
        std::snprintf(buf, sizeof buf, "memory %g MiB", mem);
        what = buf;
      }
      if (cpus > 0) {
        std::snprintf(buf, sizeof buf, "cpus %g", cpus);
        what += std::string(what.empty() ? "" : ", ") + buf;
      }
      p.limits.description = "runc linux.resources (" + (what.empty() ? "none requested" : what) + ")";
    } else {
      const auto& cmd = info.command;
      if (cmd.shell) {
        p.spec.argv = {"/bin/sh", "-c", cmd.value};
      } else {
        p.spec.argv = cmd.arguments.empty() ? std::vector<std::string>{cmd.value} : cmd.arguments;
        p.spec.argv[0] = cmd.value;
      }
      std::map<std::string, std::string> vars;
      const char* path = ::getenv("PATH");
      vars["PATH"] = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
      vars["HOME"] = sandbox;
      for (auto& [k, v] : TaskEnv(info, sandbox)) vars[k] = v;
      for (auto& [k, v] : vars) p.spec.env.push_back(k + "=" + v);
      if (!cmd.user.empty()) {
        struct passwd pw{};
        struct passwd* found = nullptr;
        std::vector<char> buf(16384);
        if (::getpwnam_r(cmd.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
          return MakeError(Errc::kNotFound, "user '" + cmd.user + "' does not exist on this node");
        p.spec.uid = found->pw_uid;
        p.spec.gid = found->pw_gid;
        if (::fchown(box.get(), found->pw_uid, found->pw_gid) != 0) return ErrnoError(errno, "chown " + sandbox);
        for (const auto& fd : logs)
          if (::fchown(fd.get(), found->pw_uid, found->pw_gid) != 0)
            return ErrnoError(errno, "chown of the logs in " + sandbox);
      }
      CgroupSupport cg = cgroups;
      if (!opts.use_cgroups) {
        cg = CgroupSupport{};
        cg.why_not = "disabled on this node";
      }
      p.limits = PrepareLimits(cg, dir + "@" + node_key, cpus, mem);
      p.spec.cgroup_procs = p.limits.procs_files;
      p.spec.rlimit_data = p.limits.rlimit_data;
    }
    auto st = core::WriteFileDurable(*env, core::JoinPath(state_dir, kLaunchFile), ToJson(p.spec).dump(1) + "\n");
    if (!st) {
      CleanupCgroups(p.limits.cgroup_dirs);
      return tl::unexpected(st.error());
    }
    return p;
  }

  void LaunchWorker(const std::string& id) {
    TaskInfo info;
    std::string sandbox, state_dir, bundle, container_id, dir;
    std::shared_ptr<std::atomic<bool>> cancel;
    {
      std::lock_guard<std::mutex> lock(mu);
      Task* t = Find(id);
      if (!t) return;
      info = t->info;
      sandbox = t->sandbox;
      state_dir = t->state_dir;
      bundle = t->bundle;
      container_id = t->container_id;
      dir = t->dir;
      cancel = t->cancel_launch;
    }
    auto prepared = Prepare(info, sandbox, state_dir, bundle, container_id, dir, cancel);
    sandbox_fs::Fd supervisor_log;
    if (prepared) {
      if (auto log = OpenSupervisorLog(state_dir)) {
        supervisor_log = std::move(*log);
      } else {
        CleanupCgroups(prepared->limits.cgroup_dirs);
        prepared = tl::unexpected(Wrap(log.error(), "opening the supervisor's log"));
      }
    }
    Actions actions;
    {
      std::lock_guard<std::mutex> lock(mu);
      Task* t = Find(id);
      if (!t) return;
      t->launching = false;
      t->blobs = images.UsedBy(dir);  // checkpointed by what follows, so a restart keeps the references
      if (!prepared && stopping && !t->kill_requested && prepared.error().Is(Errc::kCancelled)) {
        t->launching = true;  // left STARTING without a supervisor: the next runner launches it again
        return;
      }
      if (t->kill_requested) {
        if (prepared) {
          auto dirs = prepared->limits.cgroup_dirs;
          actions.push_back([dirs] { CleanupCgroups(dirs); });
        }
        Emit(*t, t->kill_state, t->kill_message + " (before it started)", t->kill_reason);
        ScheduleCleanup(*t, actions);
      } else if (!prepared) {
        Emit(*t, TaskState::kFailed, prepared.error().Message(), kReasonLaunchFailed);
        ScheduleCleanup(*t, actions);
      } else {
        t->limits = prepared->limits.description;
        t->cgroups = prepared->limits.cgroup_dirs;
        auto pid = SpawnSupervisor(opts.supervisor_exe, sandbox, state_dir, supervisor_log.get());
        if (!pid) {
          Emit(*t, TaskState::kFailed, "starting the supervisor: " + pid.error().Message(), kReasonLaunchFailed);
          ScheduleCleanup(*t, actions);
        } else {
          t->supervisor_pid = *pid;
          t->supervisor_start = ProcessStartTime(*pid).value_or(0);
          children.insert(*pid);
          Checkpoint(*t);
          spdlog::info("task {}: supervisor pid {} started", id, *pid);
        }
      }
      MaybeForget(id);
    }
    for (auto& a : actions) a();
  }

  // ---- health checks (worker thread) ----

  void HealthWorker(const std::string& id) {
    HealthCheck hc;
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;
    std::string cwd;
    uint16_t port = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      Task* t = Find(id);
      if (!t || !t->info.health_check) return;
      hc = *t->info.health_check;
      auto ports = t->info.Ports();
      if (hc.port_index < ports.size()) port = static_cast<uint16_t>(ports[hc.port_index]);
      if (hc.type == HealthCheck::Type::kCommand) {
        if (t->container) {
          argv = {opts.runc, "--root", runc.root(), "exec", t->container_id, "/bin/sh", "-c", hc.command};
        } else {
          argv = {"/bin/sh", "-c", hc.command};
          env = t->info.command.environment;
          for (auto& [k, v] : TaskEnv(t->info, t->sandbox)) env[k] = v;
          cwd = t->sandbox;
        }
      }
    }
    auto still_running = [&](Task*& t) {
      t = Find(id);
      return !stopping && t && t->state == TaskState::kRunning && !t->kill_requested;
    };
    auto wait = [&](double seconds) {
      std::unique_lock<std::mutex> lock(mu);
      Task* t = nullptr;
      cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return !still_running(t); });
      return still_running(t);
    };
    if (!wait(hc.grace_period_s)) return;
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(hc.timeout_s * 1000));
    for (;;) {
      ProbeResult r;
      switch (hc.type) {
        case HealthCheck::Type::kHttp: r = ProbeHttp(port, hc.path, timeout); break;
        case HealthCheck::Type::kTcp: r = ProbeTcp(port, timeout); break;
        case HealthCheck::Type::kCommand: r = ProbeCommand(argv, env, cwd, timeout); break;
        case HealthCheck::Type::kNone: return;
      }
      Actions actions;
      {
        std::lock_guard<std::mutex> lock(mu);
        Task* t = nullptr;
        if (!still_running(t)) return;
        if (r.ok) {
          t->health_failures = 0;
          if (t->healthy != true) {
            t->healthy = true;
            Emit(*t, TaskState::kRunning, "health check passed");
          }
        } else {
          ++t->health_failures;
          spdlog::debug("task {}: health check failed ({}/{}): {}", id, t->health_failures,
                        hc.max_consecutive_failures, r.detail);
          if (t->healthy != false) {
            t->healthy = false;
            Emit(*t, TaskState::kRunning, "health check failed: " + r.detail);
          }
          if (t->health_failures >= hc.max_consecutive_failures) {
            KillLocked(*t, TaskState::kFailed, kReasonHealthCheckFailed,
                       "health check failed " + std::to_string(t->health_failures) + " times in a row: " + r.detail,
                       actions);
          }
        }
      }
      for (auto& a : actions) a();
      if (!actions.empty() || !wait(hc.interval_s)) return;
    }
  }

  void MaybeStartHealth(Task& t) {
    if (!t.info.health_check || t.health_running || t.info.health_check->type == HealthCheck::Type::kNone) return;
    t.health_running = true;
    StartWorker([this, id = t.info.task_id] { HealthWorker(id); });
  }

  // ---- monitor ----

  // What the monitor reads about one task: its supervisor dir's files, its stderr, /proc. Gathered outside `mu`
  // (Observe), applied under it (Apply), so nothing a task can make slow ever runs under the lock.
  struct Observation {
    std::string id;
    pid_t supervisor_pid = 0;
    uint64_t supervisor_start = 0;
    std::string state_dir, sandbox;
    bool want_task_pid = false;
    // An older node's task: its pid files are in the sandbox, so the task could have forged them; a pid read there
    // is believed only if it checks out (below), since the node signals it as root.
    bool legacy = false;
    pid_t known_task_pid = 0;
    // Results.
    std::optional<PidFile> task_pid;
    Result<std::optional<ExitStatus>> exit = std::optional<ExitStatus>();
    bool supervisor_alive = true;
    std::optional<PidFile> orphan;  // supervisor gone without an exit status, its task still running
    std::string stderr_line;        // for a failure's message
  };

  static void Observe(Observation& o) {
    if (o.want_task_pid) {
      o.task_pid = ReadPidFile(o.state_dir, kTaskPidFile);
      if (o.legacy && o.task_pid && ParentPid(o.task_pid->pid) != o.supervisor_pid) o.task_pid.reset();
    }
    o.exit = ReadExitStatus(o.state_dir);
    if (o.exit && !*o.exit) {
      o.supervisor_alive = ProcessAlive(o.supervisor_pid, o.supervisor_start);
      if (!o.supervisor_alive) {
        // The supervisor may have written the file just before exiting.
        auto again = ReadExitStatus(o.state_dir);
        o.exit = again && *again ? std::move(again) : Result<std::optional<ExitStatus>>(std::optional<ExitStatus>());
        if (!*o.exit) {
          auto tp = ReadPidFile(o.state_dir, kTaskPidFile);
          if (tp && o.legacy && tp->pid != o.known_task_pid) tp.reset();
          if (tp && ProcessAlive(tp->pid, tp->start_time)) o.orphan = tp;
        }
      }
    }
    if (o.exit && *o.exit && (*o.exit)->error.empty() && !(*o.exit)->Success()) o.stderr_line = LastLine(o.sandbox);
  }

  void Tick() {
    Actions actions;
    std::vector<std::thread> finished;
    std::vector<Observation> seen;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [id, t] : tasks)
        if (!IsTerminal(t->state) && !t->launching && t->supervisor_pid > 0) {
          Observation& o = seen.emplace_back();
          o.id = id;
          o.supervisor_pid = t->supervisor_pid;
          o.supervisor_start = t->supervisor_start;
          o.state_dir = t->state_dir;
          o.sandbox = t->sandbox;
          o.want_task_pid = t->task_pid == 0;
          o.legacy = !t->private_state;
          o.known_task_pid = t->task_pid;
        }
    }
    for (auto& o : seen) Observe(o);
    {
      std::lock_guard<std::mutex> lock(mu);
      const auto now = SteadyClock::now();
      for (const auto& o : seen) {
        Task* t = Find(o.id);
        // Skipped when it changed meanwhile (ended, relaunched); the next tick looks again.
        if (t && !IsTerminal(t->state) && !t->launching && t->supervisor_pid == o.supervisor_pid)
          Apply(*t, o, now, actions);
      }
      std::vector<std::string> ids;
      for (auto& [id, t] : tasks) ids.push_back(id);
      for (const auto& id : ids) MaybeForget(id);
      finished = TakeFinishedWorkers();
      for (auto it = children.begin(); it != children.end();) {
        int status = 0;
        pid_t r = ::waitpid(*it, &status, WNOHANG);
        it = (r == *it || (r < 0 && errno == ECHILD)) ? children.erase(it) : std::next(it);
      }
    }
    for (auto& a : actions) a();
    for (auto& th : finished) th.join();
  }

  void Apply(Task& t, const Observation& o, SteadyClock::time_point now, Actions& actions) {
    if (t.task_pid == 0 && o.task_pid) {
      t.task_pid = o.task_pid->pid;
      Checkpoint(t);
    }
    if (t.state == TaskState::kStarting && t.task_pid > 0) {
      Emit(t, TaskState::kRunning, "running as pid " + std::to_string(t.task_pid) + "; limits: " + t.limits);
      MaybeStartHealth(t);
    }
    if (!o.exit) {
      // Only a task an older node started can do this (its status files are in its sandbox): one that replaced
      // exit_status.json by a FIFO or a symlink. It is stopped rather than left running untracked.
      if (t.task_pid > 0) SendSignal(t, SIGKILL, actions);
      Emit(t, TaskState::kFailed, "unreadable exit status: " + o.exit.error().Message(), kReasonSupervisorGone);
      ScheduleCleanup(t, actions);
      return;
    }
    if (*o.exit) {
      if (t.state == TaskState::kStarting && o.exit->value().error.empty())
        Emit(t, TaskState::kRunning, "running; limits: " + t.limits);
      Finish(t, **o.exit, o.stderr_line, actions);
      return;
    }
    if (!o.supervisor_alive) {
      FinishLost(t, o.orphan, actions);
      return;
    }
    // Signals only while the supervisor lives and has recorded no exit: until then the task's process group is
    // still the task's (the supervisor reaps its leader only after killing the group).
    if (t.kill_requested && t.task_pid > 0) {
      if (!t.term_sent) {
        SendSignal(t, SIGTERM, actions);
        t.term_sent = true;
        t.kill_deadline = now + std::chrono::duration_cast<SteadyClock::duration>(
                                    std::chrono::duration<double>(t.grace_s));
      } else if (!t.sigkill_sent && now >= t.kill_deadline) {
        spdlog::info("task {}: still running {}s after SIGTERM, sending SIGKILL", t.info.task_id, t.grace_s);
        SendSignal(t, SIGKILL, actions);
        t.sigkill_sent = true;
      }
    }
  }

  void MonitorLoop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, opts.tick, [&] { return stopping.load(); });
        if (stopping) return;
      }
      Tick();
      if (SteadyClock::now() >= next_gc) {
        GcPass();
        next_gc = SteadyClock::now() + opts.gc.interval;
      }
    }
  }

  // ---- garbage collection pass (monitor thread) ----

  std::optional<double> DiskUsedPercent() const {
    auto used = opts.gc.disk_usage ? opts.gc.disk_usage(opts.work_dir) : StatvfsUsedPercent(opts.work_dir);
    if (!used) {
      spdlog::warn("gc: disk usage of {} unknown ({}); using the full --gc-delay", opts.work_dir,
                   used.error().Message());
      return std::nullopt;
    }
    return *used;
  }

  // Decides and renames only (mu is held for one rename per sandbox); the Trash thread deletes.
  void GcPass() {
    const auto used = DiskUsedPercent();  // outside mu: statvfs (or the injected source) may be slow
    const auto delay = EffectiveGcDelay(opts.gc.delay, used, opts.gc.disk_watermark);
    const double now = NowSeconds();
    Trash::Batch batch;
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu);
      ids = CollectSandboxes(now, delay, &batch.paths);
    }
    // After the sandboxes: blobs they released are still fresh (Release marks them used now), so a blob is removed
    // image_delay after the last task holding it was collected.
    auto blobs = images.Sweep(std::chrono::system_clock::now(), opts.gc.image_delay, trash_dir);
    batch.paths.insert(batch.paths.end(), blobs.begin(), blobs.end());
    {
      std::lock_guard<std::mutex> lock(mu);
      ++gc_stats.passes;
      gc_stats.blobs_collected += blobs.size();
      gc_stats.disk_used_percent = used;
      gc_stats.effective_delay = delay;
    }
    if (batch.paths.empty()) return;
    batch.what = DescribeCollected(ids, blobs.size());
    char usage[32] = "unknown";
    if (used) std::snprintf(usage, sizeof usage, "%.1f%%", *used);
    batch.why = std::string("disk ") + usage + " used, sandbox delay " + FormatDelay(delay) + " of --gc-delay " +
                FormatDelay(opts.gc.delay) + ", --image-gc-delay " + FormatDelay(opts.gc.image_delay);
    trash.Submit(std::move(batch));
  }

  static std::string DescribeCollected(const std::vector<std::string>& ids, size_t blobs) {
    std::string out = std::to_string(ids.size()) + " sandbox(es)";
    if (!ids.empty()) {
      out += " (";
      for (size_t i = 0; i < ids.size() && i < 10; ++i) out += (i ? ", " : "") + ids[i];
      out += ids.size() > 10 ? ", ...)" : ")";
    }
    return out + " and " + std::to_string(blobs) + " image blob(s)";
  }

  // ---- garbage collection recovery (Open, `mu` held, after the tasks were recovered) ----

  void RecoverGc() {
    auto* env = core::DefaultEnv();
    std::set<std::string> live_dirs;
    for (const auto& [id, t] : tasks) {
      live_dirs.insert(t->dir);
      images.Adopt(t->dir, t->blobs);
    }
    if (auto names = env->ListDir(gc_dir)) {
      for (const auto& name : *names) LoadGcRecord(name, live_dirs);
    }
    if (auto dirs = env->ListDir(tasks_dir)) {
      for (const auto& dir : *dirs)
        if (!live_dirs.count(dir) && !gc_pending.count(dir)) AdoptOrphanSandbox(dir);
    }
    // Supervisor dirs whose sandbox is gone (a crash between GC's two renames, or an interrupted launch): nothing
    // refers to them any more.
    if (auto dirs = env->ListDir(supervisor_dir)) {
      for (const auto& dir : *dirs) {
        if (live_dirs.count(dir) || gc_pending.count(dir) || env->Exists(core::JoinPath(tasks_dir, dir))) continue;
        if (auto to = MoveToTrash(core::JoinPath(supervisor_dir, dir), trash_dir); !to)
          spdlog::warn("gc: moving the leftover supervisor dir {} to the trash failed: {}", dir, to.error().Message());
      }
    }
    // Deletions a previous runner did not finish (and the leftovers just moved).
    if (auto left = env->ListDir(trash_dir); left && !left->empty()) {
      Trash::Batch b;
      for (const auto& n : *left) b.paths.push_back(core::JoinPath(trash_dir, n));
      b.what = std::to_string(left->size()) + " leftover(s) of an interrupted collection";
      b.why = "trash left by the previous run";
      trash.Submit(std::move(b));
    }
  }

  void LoadGcRecord(const std::string& name, const std::set<std::string>& live_dirs) {
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json") return;
    const std::string dir = name.substr(0, name.size() - 5);
    const std::string path = core::JoinPath(gc_dir, name);
    if (live_dirs.count(dir)) {  // a relaunch of the id took the sandbox over (crash before the record went)
      (void)core::DefaultEnv()->RemoveFile(path);
      return;
    }
    try {
      auto j = json::parse(core::DefaultEnv()->ReadFile(path).value_or("{}"));
      GcEntry e{.task_id = j.at("task_id").get<std::string>(),
                .dir = dir,
                .ended_at = j.at("ended_at").get<double>(),
                .blobs = j.value("blobs", std::vector<std::string>{})};
      images.Adopt(dir, e.blobs);
      gc_pending[dir] = std::move(e);
    } catch (const std::exception& e) {
      // The sandbox is then found without a record and scheduled by its mtime.
      spdlog::error("gc record {} is unusable ({}); moved aside", path, e.what());
      (void)core::DefaultEnv()->Rename(path, path + ".corrupt");
    }
  }

  // A sandbox no checkpoint or GC record mentions: left by a node version without GC, or a record that could not
  // be written. Its end is taken from exit_status.json's mtime, else the directory's. A live supervisor (a task this
  // node lost track of, e.g. a corrupt checkpoint) keeps it: its output still goes there.
  void AdoptOrphanSandbox(const std::string& dir) {
    const std::string sandbox = core::JoinPath(tasks_dir, dir);
    const std::string private_dir = core::JoinPath(supervisor_dir, dir);
    // An older node kept the supervisor's files in the sandbox; sandbox_fs reads either safely.
    const std::string state = core::DefaultEnv()->Exists(private_dir) ? private_dir : sandbox;
    if (auto sp = ReadPidFile(state, kSupervisorPidFile); sp && ProcessAlive(sp->pid, sp->start_time)) return;
    std::optional<double> ended;
    if (auto st = sandbox_fs::StatNoFollow(state, kExitStatusFile))
      ended = static_cast<double>(st->st_mtim.tv_sec) + static_cast<double>(st->st_mtim.tv_nsec) / 1e9;
    if (!ended) ended = MtimeSeconds(sandbox);
    if (!ended) return;
    std::string task_id = dir;  // best effort for logs: the escaped id
    if (auto launch = sandbox_fs::ReadSmallFile(state, kLaunchFile); launch && *launch) {
      try {
        auto j = json::parse(**launch);
        for (const auto& kv : j.value("env", std::vector<std::string>{}))
          if (kv.rfind("TASK_ID=", 0) == 0) task_id = kv.substr(8);
      } catch (const std::exception&) {
      }
    }
    gc_pending[dir] = GcEntry{.task_id = task_id, .dir = dir, .ended_at = *ended, .blobs = {}};
  }

  // ---- recovery (Open, before the threads start) ----

  Status Recover() {
    auto* env = core::DefaultEnv();
    TUG_ASSIGN_OR_RETURN(auto names, env->ListDir(meta_dir));
    Actions actions;
    std::vector<std::string> relaunch;
    for (const auto& name : names) {
      if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
      const std::string path = core::JoinPath(meta_dir, name);
      auto text = env->ReadFile(path);
      Result<std::unique_ptr<Task>> t = MakeError(Errc::kInvalidArgument, "unreadable");
      if (text) {
        try {
          t = TaskFromCheckpoint(json::parse(*text));
        } catch (const std::exception& e) {
          t = MakeError(Errc::kInvalidArgument, e.what());
        }
      }
      if (!t) {
        spdlog::error("checkpoint {} is unusable ({}); moved aside", path, t.error().Message());
        (void)env->Rename(path, path + ".corrupt");
        continue;
      }
      Task& task = **t;
      task.dir = (task.foreign ? "foreign-" : "") + EscapeTaskId(task.info.task_id);
      task.sandbox = core::JoinPath(tasks_dir, task.dir);
      task.state_dir = task.private_state ? core::JoinPath(supervisor_dir, task.dir) : task.sandbox;
      task.bundle = core::JoinPath(containers_dir, task.dir);
      const std::string id = task.info.task_id;
      tasks[id] = std::move(*t);
      Task& r = *tasks[id];
      if (IsTerminal(r.state)) {
        ScheduleCleanup(r, actions);  // idempotent; the node may have died before it ran
        MaybeForget(id);
        continue;
      }
      if (r.supervisor_pid == 0) {
        // The node died between checkpointing the launch and recording the supervisor: it may have started.
        auto sp = ReadPidFile(r.state_dir, kSupervisorPidFile);
        // In an older node's layout the file is in the sandbox: only a real supervisor of this sandbox counts.
        if (sp && !r.private_state && !IsSupervisorOf(sp->pid, r.sandbox)) sp.reset();
        if (sp) {
          r.supervisor_pid = sp->pid;
          r.supervisor_start = sp->start_time;
          Checkpoint(r);
        }
      }
      if (r.supervisor_pid == 0) {
        spdlog::info("task {}: its launch was interrupted by the node's restart; launching again", id);
        r.launching = true;
        r.private_state = true;  // launched again in this node's layout
        r.state_dir = core::JoinPath(supervisor_dir, r.dir);
        relaunch.push_back(id);
        continue;
      }
      r.term_sent = false;  // a kill in progress starts over: TERM again, then a fresh grace period
      if (ProcessAlive(r.supervisor_pid, r.supervisor_start))
        spdlog::info("task {}: re-attached (supervisor pid {}, {}){}", id, r.supervisor_pid, TaskStateName(r.state),
                     r.private_state ? "" : "; started by an older node, its supervisor files are in its sandbox");
      if (r.state == TaskState::kRunning) MaybeStartHealth(r);
    }
    // Containers and bundles of tasks that are no longer running (or unknown) are leftovers of a crash.
    std::set<std::string> live_ids, live_dirs;
    for (const auto& [id, t] : tasks)
      if (t->container && !IsTerminal(t->state)) {
        live_ids.insert(t->container_id);
        live_dirs.insert(t->dir);
      }
    actions.push_back([this, live_ids, live_dirs] {
      if (auto ids = runc.List(); ids) {
        for (const auto& id : *ids)
          if (!live_ids.count(id)) (void)runc.Delete(id);
      }
      auto bundles = core::DefaultEnv()->ListDir(containers_dir);
      if (bundles)
        for (const auto& b : *bundles)
          if (!live_dirs.count(b)) (void)core::DefaultEnv()->RemoveAll(core::JoinPath(containers_dir, b));
    });
    // Cgroups of this node (name ends with @node_key) that no live task owns: left by tasks that ended while the node
    // was down and could not clean up. Anything still inside is a straggler of a finished task.
    std::set<std::string> live_cgroups;
    for (const auto& [id, t] : tasks)
      if (!IsTerminal(t->state)) live_cgroups.insert(t->dir + "@" + node_key);
    for (const auto& base : {cgroups.v2_base, cgroups.memory_base, cgroups.cpu_base}) {
      if (base.empty()) continue;
      auto entries = env->ListDir(base);
      if (!entries) continue;
      const std::string suffix = "@" + node_key;
      for (const auto& n : *entries) {
        if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        if (live_cgroups.count(n)) continue;
        std::vector<std::string> dirs{core::JoinPath(base, n)};
        actions.push_back([dirs] { CleanupCgroups(dirs); });
      }
    }
    RecoverGc();
    for (const auto& id : relaunch) StartWorker([this, id] { LaunchWorker(id); });
    for (auto& a : actions) a();
    return {};
  }
};

TaskRunner::TaskRunner(RunnerOptions opts) : opts_(std::move(opts)), impl_(std::make_unique<Impl>(opts_)) {}

Result<std::unique_ptr<TaskRunner>> TaskRunner::Open(RunnerOptions opts) {
  if (opts.work_dir.empty()) return MakeError(Errc::kInvalidArgument, "work dir not set");
  if (opts.supervisor_exe.empty()) opts.supervisor_exe = SelfExe();
  if (::access(opts.supervisor_exe.c_str(), X_OK) != 0)
    return MakeError(Errc::kNotFound, "supervisor binary " + opts.supervisor_exe + " is not executable");
  auto* env = core::DefaultEnv();
  for (const char* d : {"meta/tasks", "meta/gc", "tasks", "containers", "images", "runc", "trash", "supervisor"})
    TUG_TRY(env->CreateDirs(core::JoinPath(opts.work_dir, d)));
  // Node-private: the supervisors' files (supervisor.hpp) are nobody else's business, tasks' least of all.
  if (const auto d = core::JoinPath(opts.work_dir, "supervisor"); ::chmod(d.c_str(), 0700) != 0)
    return ErrnoError(errno, "chmod " + d);
  std::unique_ptr<TaskRunner> r(new TaskRunner(std::move(opts)));
  auto& impl = *r->impl_;
  const std::string lock_path = core::JoinPath(r->opts_.work_dir, "lock");
  impl.lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl.lock_fd < 0) return ErrnoError(errno, "opening " + lock_path);
  if (::flock(impl.lock_fd, LOCK_EX | LOCK_NB) != 0)
    return MakeError(Errc::kAlreadyExists, "another cluster-node uses work dir " + r->opts_.work_dir);
  if (r->opts_.use_cgroups) impl.cgroups = DetectCgroups(r->opts_.cgroup_group);
  {
    char real[PATH_MAX];
    const char* p = ::realpath(r->opts_.work_dir.c_str(), real);
    impl.node_key = crypto::Sha256Hex(p ? p : r->opts_.work_dir).substr(0, 8);
  }
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    TUG_TRY(impl.Recover());
  }
  impl.monitor = std::thread([&impl] { impl.MonitorLoop(); });
  return r;
}

TaskRunner::~TaskRunner() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
  for (;;) {
    std::list<Impl::Worker> workers;
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      workers.swap(impl_->workers);
    }
    if (workers.empty()) break;
    for (auto& w : workers) w.thread.join();
  }
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
}

bool TaskRunner::Launch(TaskInfo info, const std::string& framework_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& impl = *impl_;
  if (impl.Find(info.task_id)) return false;
  for (const auto& c : impl.completed)
    if (c.info.task_id == info.task_id) return false;
  if (info.framework_id.empty()) info.framework_id = framework_id;
  auto t = std::make_unique<Task>();
  t->info = std::move(info);
  t->dir = EscapeTaskId(t->info.task_id);
  t->sandbox = core::JoinPath(impl.tasks_dir, t->dir);
  t->state_dir = core::JoinPath(impl.supervisor_dir, t->dir);
  t->bundle = core::JoinPath(impl.containers_dir, t->dir);
  t->container = !t->info.container.image.empty();
  if (t->container) t->container_id = ContainerId(t->info.task_id, impl.node_key);
  t->grace_s = GraceSeconds(t->info, opts_.kill_grace);
  t->launching = true;
  impl.DropGc(t->info.task_id, t->dir);
  const std::string id = t->info.task_id;
  Task& ref = *t;
  impl.tasks[id] = std::move(t);
  impl.Emit(ref, TaskState::kStarting, ref.container ? "pulling " + ref.info.container.image : "launching");
  impl.StartWorker([this, id] { impl_->LaunchWorker(id); });
  return true;
}

Status TaskRunner::Kill(const std::string& task_id) {
  Impl::Actions actions;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Task* t = impl_->Find(task_id);
    if (!t) return MakeError(Errc::kNotFound, "unknown task " + task_id);
    impl_->KillLocked(*t, TaskState::kKilled, "", "killed on request", actions);
  }
  for (auto& a : actions) a();
  return {};
}

void TaskRunner::ReportForeign(const std::string& task_id, const std::string& framework_id, TaskState state,
                               const std::string& message, const std::string& reason) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->Find(task_id)) return;
  auto t = std::make_unique<Task>();
  t->foreign = true;
  t->info.task_id = task_id;
  t->info.framework_id = framework_id;
  t->dir = "foreign-" + EscapeTaskId(task_id);
  Task& ref = *t;
  impl_->tasks[task_id] = std::move(t);
  impl_->Emit(ref, state, message, reason);
}

bool TaskRunner::Acknowledge(const std::string& task_id, const std::string& uuid) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Task* t = impl_->Find(task_id);
  if (!t) return false;
  auto it = std::find_if(t->unacked.begin(), t->unacked.end(), [&](const TaskStatus& s) { return s.uuid == uuid; });
  if (it == t->unacked.end()) return false;
  t->unacked.erase(it);
  impl_->Checkpoint(*t);
  impl_->MaybeForget(task_id);
  return true;
}

void TaskRunner::ShutdownAll() {
  Impl::Actions actions;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::vector<std::string> ids;
    for (auto& [id, t] : impl_->tasks) ids.push_back(id);
    for (const auto& id : ids) {
      Task* t = impl_->Find(id);
      if (!t) continue;
      t->silent = true;
      t->unacked.clear();
      impl_->KillLocked(*t, TaskState::kKilled, kReasonAgentRemoved, "the master removed this node", actions);
      impl_->Checkpoint(*t);
      impl_->MaybeForget(id);
    }
  }
  for (auto& a : actions) a();
}

void TaskRunner::KillAllAndWait(std::chrono::milliseconds timeout) {
  Impl::Actions actions;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (auto& [id, t] : impl_->tasks)
      impl_->KillLocked(*t, TaskState::kKilled, "", "the node is shutting down", actions);
  }
  for (auto& a : actions) a();
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] {
    for (auto& [id, t] : impl_->tasks)
      if (!IsTerminal(t->state)) return false;
    return true;
  });
}

std::vector<TaskView> TaskRunner::Tasks() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<TaskView> out(impl_->completed.begin(), impl_->completed.end());
  for (const auto& [id, t] : impl_->tasks)
    if (!t->foreign) out.push_back(ViewOf(*t));
  return out;
}

std::optional<TaskView> TaskRunner::Get(const std::string& task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (auto it = impl_->tasks.find(task_id); it != impl_->tasks.end()) return ViewOf(*it->second);
  for (auto it = impl_->completed.rbegin(); it != impl_->completed.rend(); ++it)
    if (it->info.task_id == task_id) return *it;
  return std::nullopt;
}

std::vector<TaskStatus> TaskRunner::LatestStatuses() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<TaskStatus> out;
  for (const auto& [id, t] : impl_->tasks)
    if (!IsTerminal(t->state) && !t->silent && !t->foreign) out.push_back(t->last);
  return out;
}

std::vector<TaskInfo> TaskRunner::ActiveTaskInfos() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<TaskInfo> out;
  for (const auto& [id, t] : impl_->tasks)
    if (!IsTerminal(t->state) && !t->silent && !t->foreign) out.push_back(t->info);
  return out;
}

std::vector<TaskStatus> TaskRunner::Unacknowledged() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<TaskStatus> out;
  for (const auto& [id, t] : impl_->tasks) out.insert(out.end(), t->unacked.begin(), t->unacked.end());
  return out;
}

void TaskRunner::SetUpdateListener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->listener = std::move(fn);
}

std::string TaskRunner::SandboxOf(const std::string& task_id) const {
  return core::JoinPath(impl_->tasks_dir, EscapeTaskId(task_id));
}

std::optional<double> TaskRunner::SandboxCollectedAt(const std::string& task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto it = impl_->collected.rbegin(); it != impl_->collected.rend(); ++it)
    if (it->first == task_id) return it->second;
  return std::nullopt;
}

GcStats TaskRunner::GcStatus() const {
  GcStats s;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    s = impl_->gc_stats;
    s.sandboxes_waiting = impl_->gc_pending.size();
    s.sandboxes_kept = s.sandboxes_waiting;
    for (const auto& [id, t] : impl_->tasks)
      if (!t->foreign) ++s.sandboxes_kept;
  }
  s.blobs_in_use = impl_->images.blobs_in_use();
  s.bytes_freed = impl_->trash.bytes_freed();
  return s;
}

}  // namespace tug::cluster::node
