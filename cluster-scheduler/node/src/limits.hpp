// Resource limits for plain-process tasks: a cgroup per task (v2, else v1 memory + cpu) when this host lets us
// create one, else RLIMIT_DATA for memory and no cpu limit. Blocking (small sysfs writes); no shared state.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::cluster::node {

struct CgroupSupport {
  enum class Kind { kNone, kV1, kV2 };
  Kind kind = Kind::kNone;
  std::string v2_base;      // <cgroup2 mount>/<group>
  std::string memory_base;  // v1: <memory mount>/<group>
  std::string cpu_base;     // v1: <cpu mount>/<group>
  std::string why_not;      // kNone: why (for the task's status message)
};

// Finds a writable cgroup hierarchy and creates the node's group `group` in it (idempotent).
CgroupSupport DetectCgroups(const std::string& group);

struct TaskLimits {
  std::vector<std::string> cgroup_dirs;   // created for this task (removed by CleanupCgroups)
  std::vector<std::string> procs_files;   // the task joins these before exec
  std::optional<uint64_t> rlimit_data;
  std::string description;                // "cgroup v1 (memory 64 MiB, cpus 0.5)"
};

// Creates the task's cgroups and writes the limits (0 = unlimited). Falls back to rlimits when a write fails.
TaskLimits PrepareLimits(const CgroupSupport& cg, const std::string& name, double cpus, double mem_mib);

// Sends `sig` to every process in the cgroups (the task and anything it left behind).
void SignalCgroups(const std::vector<std::string>& dirs, int sig);
// SIGKILLs what is left and removes the directories (retrying briefly while the kernel frees them).
void CleanupCgroups(const std::vector<std::string>& dirs);

}  // namespace tug::cluster::node
