#include "node/supervisor.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/env.hpp"
#include "model/types.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;

volatile std::sig_atomic_t g_forward_signal = 0;

void OnTerm(int sig) { g_forward_signal = sig; }

struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return std::nullopt;
  std::string line;
  std::getline(f, line);
  // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(line.substr(close + 1));
  ProcStat st;
  in >> st.state;
  std::string field;
  for (int i = 4; i <= 21 && in; ++i) in >> field;  // fields 4..21
  in >> st.start_time;                                // field 22
  if (!in) return std::nullopt;
  return st;
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  const char* desc = ::sigdescr_np(sig);
  std::string s = abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
  if (desc) s += ", " + std::string(desc);
  return s;
}

void Log(const std::string& msg) {
  std::fprintf(stderr, "supervisor %d: %s\n", static_cast<int>(::getpid()), msg.c_str());
  std::fflush(stderr);
}

// A task output file capped at `max` bytes: the current file is renamed to ".1" (replacing the older one) when the
// next write would pass the cap, so at most 2 * max bytes per stream stay on disk.
class LogFile {
 public:
  LogFile(std::string path, uint64_t max) : path_(std::move(path)), max_(max) { Open(false); }
  ~LogFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  void Write(const char* p, size_t n) {
    if (max_ > 0 && size_ > 0 && size_ + n > max_) Rotate();
    while (n > 0 && fd_ >= 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return;  // disk full: the task keeps running, its output is lost
      }
      p += w;
      n -= static_cast<size_t>(w);
      size_ += static_cast<uint64_t>(w);
    }
  }

 private:
  void Open(bool truncate) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    struct stat st{};
    size_ = (fd_ >= 0 && ::fstat(fd_, &st) == 0) ? static_cast<uint64_t>(st.st_size) : 0;
  }
  void Rotate() {
    if (fd_ >= 0) ::close(fd_);
    ::rename(path_.c_str(), (path_ + ".1").c_str());
    Open(true);
  }
  std::string path_;
  uint64_t max_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

Status WritePidFileAtomic(const std::string& path, pid_t pid) {
  auto st = ProcessStartTime(pid);
  std::string text = std::to_string(pid) + " " + std::to_string(st ? *st : 0) + "\n";
  // Not fsynced: after a host crash every process is gone anyway; the rename keeps readers from a torn file.
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f) return ErrnoError(errno, "writing " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(errno, "renaming " + tmp);
  return {};
}

ExitStatus StartFailure(std::string why) {
  ExitStatus st;
  st.error = std::move(why);
  return st;
}

int WriteExit(const std::string& sandbox, ExitStatus st) {
  st.finished_at = NowSeconds();
  auto w = core::WriteFileDurable(*core::DefaultEnv(), core::JoinPath(sandbox, "exit_status.json"),
                                  ToJson(st).dump() + "\n");
  if (!w) {
    Log("cannot record the exit status: " + w.error().Message());
    return 1;
  }
  Log("task " + st.Describe());
  return 0;
}

std::string ResolveExecutable(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& kv : env)
    if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string cand = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return name;  // execve fails with ENOENT, which the error message reports
}

// What the child reports through the close-on-exec pipe when a step before exec fails.
struct ChildFailure {
  int stage;
  int err;
};
enum Stage { kCgroup = 1, kRlimit, kUser, kCwd, kExec };

const char* StageName(int stage) {
  switch (stage) {
    case kCgroup: return "joining the task's cgroup";
    case kRlimit: return "setting RLIMIT_DATA";
    case kUser: return "switching user";
    case kCwd: return "entering the sandbox";
    case kExec: return "exec";
  }
  return "starting";
}

[[noreturn]] void ChildFail(int fd, int stage) {
  ChildFailure f{stage, errno};
  ssize_t ignored = ::write(fd, &f, sizeof f);
  (void)ignored;
  _exit(127);
}

}  // namespace

json ToJson(const LaunchSpec& s) {
  json j{{"argv", s.argv}, {"env", s.env}, {"cwd", s.cwd}, {"cgroup_procs", s.cgroup_procs},
         {"log_max_bytes", s.log_max_bytes}};
  if (s.rlimit_data) j["rlimit_data"] = *s.rlimit_data;
  if (s.uid) j["uid"] = *s.uid;
  if (s.gid) j["gid"] = *s.gid;
  return j;
}

Result<LaunchSpec> LaunchSpecFromJson(const json& j) {
  try {
    LaunchSpec s;
    s.argv = j.at("argv").get<std::vector<std::string>>();
    s.env = j.at("env").get<std::vector<std::string>>();
    s.cwd = j.at("cwd").get<std::string>();
    s.cgroup_procs = j.value("cgroup_procs", std::vector<std::string>{});
    if (j.contains("rlimit_data")) s.rlimit_data = j["rlimit_data"].get<uint64_t>();
    if (j.contains("uid")) s.uid = j["uid"].get<uint32_t>();
    if (j.contains("gid")) s.gid = j["gid"].get<uint32_t>();
    s.log_max_bytes = j.value("log_max_bytes", s.log_max_bytes);
    if (s.argv.empty()) return MakeError(Errc::kInvalidArgument, "launch.json: empty argv");
    return s;
  } catch (const std::exception& e) {
    return MakeError(Errc::kInvalidArgument, std::string("launch.json: ") + e.what());
  }
}

std::string ExitStatus::Describe() const {
  if (!error.empty()) return "could not start: " + error;
  if (code) return "exited with status " + std::to_string(*code);
  if (signal) return "terminated by signal " + std::to_string(*signal) + " (" + SignalName(*signal) + ")";
  return "ended without an exit status";
}

json ToJson(const ExitStatus& s) {
  json j{{"finished_at", s.finished_at}};
  if (s.code) j["code"] = *s.code;
  if (s.signal) j["signal"] = *s.signal;
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

Result<std::optional<ExitStatus>> ReadExitStatus(const std::string& sandbox) {
  const std::string path = core::JoinPath(sandbox, "exit_status.json");
  auto* env = core::DefaultEnv();
  if (!env->Exists(path)) return std::optional<ExitStatus>();
  TUG_ASSIGN_OR_RETURN(auto text, env->ReadFile(path));
  try {
    auto j = json::parse(text);
    ExitStatus s;
    if (j.contains("code")) s.code = j["code"].get<int>();
    if (j.contains("signal")) s.signal = j["signal"].get<int>();
    s.error = j.value("error", "");
    s.finished_at = j.value("finished_at", 0.0);
    return std::optional<ExitStatus>(s);
  } catch (const std::exception& e) {
    return MakeError(Errc::kProtocol, path + ": " + e.what());
  }
}

std::optional<PidFile> ReadPidFile(const std::string& path) {
  std::ifstream f(path);
  PidFile p;
  long pid = 0;
  if (!(f >> pid >> p.start_time) || pid <= 0) return std::nullopt;
  p.pid = static_cast<pid_t>(pid);
  return p;
}

std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  auto st = ReadProcStat(pid);
  if (!st) return std::nullopt;
  return st->start_time;
}

bool ProcessAlive(pid_t pid, uint64_t start_time) {
  if (pid <= 0) return false;
  auto st = ReadProcStat(pid);
  if (!st || st->start_time != start_time) return false;
  if (st->state == 'Z' || st->state == 'X') {
    // The same process, dead. Reap it if it is our child (a supervisor this node process started).
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
    return false;
  }
  return true;
}

int SuperviseMain(const std::string& sandbox) {
  ::setsid();  // the node already did; harmless (EPERM) then
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = OnTerm;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  if (auto w = WritePidFileAtomic(core::JoinPath(sandbox, "supervisor.pid"), ::getpid()); !w)
    Log(w.error().Message());

  auto text = core::DefaultEnv()->ReadFile(core::JoinPath(sandbox, "launch.json"));
  if (!text) return WriteExit(sandbox, StartFailure(text.error().Message()));
  Result<LaunchSpec> spec = MakeError(Errc::kInvalidArgument, "launch.json: not JSON");
  try {
    spec = LaunchSpecFromJson(json::parse(*text));
  } catch (const std::exception&) {
  }
  if (!spec) return WriteExit(sandbox, StartFailure(spec.error().Message()));

  const std::string exe = ResolveExecutable(spec->argv[0], spec->env);
  int out_pipe[2], err_pipe[2], fail_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 || ::pipe2(fail_pipe, O_CLOEXEC) != 0)
    return WriteExit(sandbox, StartFailure(std::string("pipe: ") + std::strerror(errno)));
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<char*> argv, envp;
  for (auto& a : spec->argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : spec->env) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return WriteExit(sandbox, StartFailure(std::string("fork: ") + std::strerror(errno)));
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    ::setpgid(0, 0);
    for (const auto& file : spec->cgroup_procs) {
      int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "0", 1) != 1) ChildFail(fail_pipe[1], kCgroup);
      ::close(fd);
    }
    if (spec->rlimit_data) {
      struct rlimit rl{*spec->rlimit_data, *spec->rlimit_data};
      if (::setrlimit(RLIMIT_DATA, &rl) != 0) ChildFail(fail_pipe[1], kRlimit);
    }
    if (spec->gid && (::setgroups(0, nullptr) != 0 || ::setgid(*spec->gid) != 0)) ChildFail(fail_pipe[1], kUser);
    if (spec->uid && ::setuid(*spec->uid) != 0) ChildFail(fail_pipe[1], kUser);
    ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (!spec->cwd.empty() && ::chdir(spec->cwd.c_str()) != 0) ChildFail(fail_pipe[1], kCwd);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(exe.c_str(), argv.data(), envp.data());
    ChildFail(fail_pipe[1], kExec);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(fail_pipe[1]);
  if (devnull >= 0) ::close(devnull);
  // Also set here: the child may not have run setpgid yet when we first signal its group.
  ::setpgid(pid, pid);

  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(fail_pipe[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  ::close(fail_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string what = StageName(failure.stage);
    if (failure.stage == kExec) what += " " + exe;
    return WriteExit(sandbox, StartFailure(what + ": " + std::strerror(failure.err)));
  }
  if (auto w = WritePidFileAtomic(core::JoinPath(sandbox, "task.pid"), pid); !w) Log(w.error().Message());
  Log("started task pid " + std::to_string(pid) + ": " + exe);

  LogFile out(core::JoinPath(sandbox, "stdout"), spec->log_max_bytes);
  LogFile err(core::JoinPath(sandbox, "stderr"), spec->log_max_bytes);
  int fds[2] = {out_pipe[0], err_pipe[0]};
  LogFile* files[2] = {&out, &err};
  char buf[65536];
  auto pump = [&](int timeout_ms) {
    pollfd p[2];
    int count = 0;
    int idx[2];
    for (int i = 0; i < 2; ++i)
      if (fds[i] >= 0) {
        p[count] = {fds[i], POLLIN, 0};
        idx[count++] = i;
      }
    if (count == 0) {
      ::usleep(static_cast<useconds_t>(timeout_ms) * 1000);
      return;
    }
    if (::poll(p, static_cast<nfds_t>(count), timeout_ms) <= 0) return;
    for (int k = 0; k < count; ++k) {
      if (!p[k].revents) continue;
      int i = idx[k];
      ssize_t r = ::read(fds[i], buf, sizeof buf);
      if (r > 0) {
        files[i]->Write(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i]);
        fds[i] = -1;
      }
    }
  };

  siginfo_t info{};
  for (;;) {
    pump(200);
    if (int sig = g_forward_signal; sig != 0) {
      g_forward_signal = 0;
      ::killpg(pid, sig);
    }
    // WNOWAIT: observe the exit without reaping, so the group id stays ours while we kill the leftovers.
    info.si_pid = 0;
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) break;
  }
  ::killpg(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  // Drain what the task wrote before it ended; bounded, in case something outside the group holds the pipes.
  const auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while ((fds[0] >= 0 || fds[1] >= 0) && std::chrono::steady_clock::now() < drain_until) pump(100);
  for (int fd : fds)
    if (fd >= 0) ::close(fd);

  ExitStatus st;
  if (WIFEXITED(status)) st.code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) st.signal = WTERMSIG(status);
  return WriteExit(sandbox, st);
}

}  // namespace tug::cluster::node
