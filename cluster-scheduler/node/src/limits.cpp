#include "limits.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace tug::cluster::node {
namespace {

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!f) return false;
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

bool MakeDir(const std::string& path) { return ::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST; }

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

std::string Mib(double mem) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g MiB", mem);
  return buf;
}

std::string Cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", cpus);
  return buf;
}

}  // namespace

CgroupSupport DetectCgroups(const std::string& group) {
  CgroupSupport cg;
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, opts, line;
  std::string v2_mount, memory_mount, cpu_mount;
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    if (!(in >> dev >> dir >> type >> opts)) continue;
    if (type == "cgroup2" && v2_mount.empty()) v2_mount = dir;
    if (type != "cgroup") continue;
    for (const auto& o : Split(opts, ',')) {
      if (o == "memory") memory_mount = dir;
      if (o == "cpu") cpu_mount = dir;
    }
  }
  if (::geteuid() != 0) {
    cg.why_not = "not running as root";
    return cg;
  }
  // Unified hierarchy with both controllers available: prefer it.
  if (!v2_mount.empty()) {
    std::ifstream f(v2_mount + "/cgroup.controllers");
    std::string controllers;
    std::getline(f, controllers);
    auto have = Split(controllers, ' ');
    bool mem = std::find(have.begin(), have.end(), "memory") != have.end();
    bool cpu = std::find(have.begin(), have.end(), "cpu") != have.end();
    if (mem && cpu) {
      std::string base = v2_mount + "/" + group;
      // Delegate both controllers to our group's children (the root cgroup may have processes; ours does not).
      WriteText(v2_mount + "/cgroup.subtree_control", "+memory");
      WriteText(v2_mount + "/cgroup.subtree_control", "+cpu");
      if (MakeDir(base) && WriteText(base + "/cgroup.subtree_control", "+memory +cpu")) {
        cg.kind = CgroupSupport::Kind::kV2;
        cg.v2_base = base;
        return cg;
      }
    }
  }
  if (!memory_mount.empty() && !cpu_mount.empty()) {
    std::string mem = memory_mount + "/" + group, cpu = cpu_mount + "/" + group;
    if (MakeDir(mem) && MakeDir(cpu) && ::access((mem + "/cgroup.procs").c_str(), W_OK) == 0) {
      cg.kind = CgroupSupport::Kind::kV1;
      cg.memory_base = mem;
      cg.cpu_base = cpu;
      return cg;
    }
    cg.why_not = "cannot create " + mem + ": " + std::strerror(errno);
    return cg;
  }
  cg.why_not = "no writable cgroup hierarchy with memory and cpu controllers";
  return cg;
}

TaskLimits PrepareLimits(const CgroupSupport& cg, const std::string& name, double cpus, double mem_mib) {
  TaskLimits l;
  const auto mem_bytes = static_cast<uint64_t>(mem_mib * 1024 * 1024);
  const auto quota = static_cast<int64_t>(std::llround(cpus * 100000));
  std::string what;
  if (mem_mib > 0) what += "memory " + Mib(mem_mib);
  if (cpus > 0) what += std::string(what.empty() ? "" : ", ") + "cpus " + Cpus(cpus);
  if (what.empty()) what = "no limits requested";
  std::string failed;
  if (cg.kind == CgroupSupport::Kind::kV2) {
    std::string dir = cg.v2_base + "/" + name;
    bool ok = MakeDir(dir);
    if (ok) l.cgroup_dirs.push_back(dir);
    if (ok && mem_mib > 0) ok = WriteText(dir + "/memory.max", std::to_string(mem_bytes));
    if (ok && cpus > 0) ok = WriteText(dir + "/cpu.max", std::to_string(quota) + " 100000");
    if (ok) {
      l.procs_files.push_back(dir + "/cgroup.procs");
      l.description = "cgroup v2 (" + what + ")";
      return l;
    }
    failed = "writing limits in " + dir + ": " + std::strerror(errno);
  } else if (cg.kind == CgroupSupport::Kind::kV1) {
    std::string mem = cg.memory_base + "/" + name, cpu = cg.cpu_base + "/" + name;
    bool ok = MakeDir(mem) && MakeDir(cpu);
    if (ok) l.cgroup_dirs = {mem, cpu};
    if (ok && mem_mib > 0) ok = WriteText(mem + "/memory.limit_in_bytes", std::to_string(mem_bytes));
    if (ok && cpus > 0)
      ok = WriteText(cpu + "/cpu.cfs_period_us", "100000") &&
           WriteText(cpu + "/cpu.cfs_quota_us", std::to_string(std::max<int64_t>(quota, 1000))) &&
           WriteText(cpu + "/cpu.shares", std::to_string(std::max<int64_t>(static_cast<int64_t>(cpus * 1024), 2)));
    if (ok) {
      l.procs_files = {mem + "/cgroup.procs", cpu + "/cgroup.procs"};
      l.description = "cgroup v1 (" + what + ")";
      return l;
    }
    failed = "writing limits under " + mem + ": " + std::strerror(errno);
  } else {
    failed = cg.why_not;
  }
  CleanupCgroups(l.cgroup_dirs);
  l.cgroup_dirs.clear();
  l.procs_files.clear();
  if (mem_mib > 0) l.rlimit_data = mem_bytes;
  l.description = std::string("rlimits (") + (mem_mib > 0 ? "RLIMIT_DATA " + Mib(mem_mib) : "no memory limit") +
                  "; cpu not limited) because cgroups are unusable: " + failed;
  return l;
}

void SignalCgroups(const std::vector<std::string>& dirs, int sig) {
  for (const auto& d : dirs) {
    std::ifstream f(d + "/cgroup.procs");
    long pid;
    while (f >> pid)
      if (pid > 0) ::kill(static_cast<pid_t>(pid), sig);
  }
}

void CleanupCgroups(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) break;
      SignalCgroups({d}, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

}  // namespace tug::cluster::node
