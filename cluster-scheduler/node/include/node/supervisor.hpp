// The task supervisor: a small process that is the cluster-node binary itself in a hidden mode
// (`cluster-node supervise --sandbox DIR --state-dir DIR`). The node starts one per task in a new session, so the
// supervisor and the task survive the node's own restart (SIGTERM, crash, upgrade); the supervisor records what the
// node may miss.
//
// Two directories per task (docs/cluster-node.md, "Sandbox"):
//   work_dir/tasks/<task>/       the sandbox: the task's working directory, writable by the task
//     stdout, stderr             the task's output, copied through pipes and rotated to stdout.1/stderr.1 at
//                                log_max_bytes
//   work_dir/supervisor/<task>/  node-private (0700, never shown to the task): what the node and the supervisor
//                                tell each other, so a task can neither forge nor redirect it
//     launch.json                written by the node before starting the supervisor: what to run (LaunchSpec)
//     supervisor.pid             "<pid> <start time>" written by the supervisor first thing (the node may die
//                                between fork and checkpoint; recovery finds the supervisor through this file)
//     task.pid                   "<pid> <start time>" of the task once exec succeeded (it leads its own group)
//     exit_status.json           written atomically and durably (temp + fsync + rename + fsync dir) when it ended
//     supervisor.log             the supervisor's own messages
// A node before this layout kept the second group inside the sandbox; recovery still reads them there (with
// sandbox_fs) for the tasks such a node started.
//
// The supervisor opens the sandbox, the supervisor dir and both log files before the task exists, and keeps those
// descriptors: it never opens a path inside the sandbox again (rotation copies through its own fd into a new,
// exclusively created file). So whatever the task plants there (symlinks, FIFOs, hard links) is never followed.
//
// The supervisor forwards SIGTERM/SIGINT to the task's process group, and after the task's main process exits it
// SIGKILLs whatever is left in that group, so a task never leaks background processes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace tug::cluster::node {

struct LaunchSpec {
  std::vector<std::string> argv;       // argv[0] is resolved against the task's PATH when it has no '/'
  std::vector<std::string> env;        // the task's complete environment, "K=V"
  std::string cwd;                     // the sandbox
  std::vector<std::string> cgroup_procs;  // cgroup.procs files the task joins before exec (memory, cpu)
  std::optional<uint64_t> rlimit_data;    // RLIMIT_DATA when no cgroup could be used
  std::optional<uint32_t> uid, gid;       // run as this user (command.user), when set
  uint64_t log_max_bytes = 10ull << 20;   // per stream before rotating to .1
};

// File names in a task's supervisor dir (above).
inline constexpr const char* kLaunchFile = "launch.json";
inline constexpr const char* kSupervisorPidFile = "supervisor.pid";
inline constexpr const char* kTaskPidFile = "task.pid";
inline constexpr const char* kExitStatusFile = "exit_status.json";
inline constexpr const char* kSupervisorLogFile = "supervisor.log";

nlohmann::json ToJson(const LaunchSpec& s);
Result<LaunchSpec> LaunchSpecFromJson(const nlohmann::json& j);

// How the task ended, as the supervisor saw it.
struct ExitStatus {
  std::optional<int> code;    // exited with this status
  std::optional<int> signal;  // terminated by this signal
  std::string error;          // could not be started (exec failed, bad launch.json): why
  double finished_at = 0;     // seconds since the epoch
  // "exited with status 3", "terminated by signal 9 (Killed)", "could not start: ..."
  std::string Describe() const;
  bool Success() const { return error.empty() && code && *code == 0; }
};

nlohmann::json ToJson(const ExitStatus& s);
// Reads `state_dir`/exit_status.json (sandbox_fs: never a symlink, FIFO or big file). nullopt when the file does not
// exist yet; an error when it exists but cannot be read or parsed.
Result<std::optional<ExitStatus>> ReadExitStatus(const std::string& state_dir);

// "<pid> <start time>" files (supervisor.pid, task.pid) in `dir`, read with sandbox_fs; nullopt when absent,
// malformed or not a regular file.
struct PidFile {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot): tells a reused pid apart
};
std::optional<PidFile> ReadPidFile(const std::string& dir, const std::string& name);

// /proc/<pid>/stat start time (a zombie still has one); nullopt when there is no such process.
std::optional<uint64_t> ProcessStartTime(pid_t pid);
// True while `pid` runs and is the same process (start time matches). Reaps it first when it is our child, so a
// supervisor started by this process never lingers as a zombie.
bool ProcessAlive(pid_t pid, uint64_t start_time);

// For files an older node kept in the sandbox, where the task could have forged them: whether `pid` is a supervisor
// started for `sandbox` (its /proc cmdline is `... supervise --sandbox <sandbox> ...`), and a process's parent.
bool IsSupervisorOf(pid_t pid, const std::string& sandbox);
std::optional<pid_t> ParentPid(pid_t pid);

// The hidden `supervise` mode: runs `state_dir`/launch.json in `sandbox` to completion. Returns the supervisor's exit
// code (0 when it recorded an exit status, 1 when it could not even do that). Blocks until the task ends.
int SuperviseMain(const std::string& sandbox, const std::string& state_dir);

}  // namespace tug::cluster::node
