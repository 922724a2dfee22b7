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
#include "sandbox_fs.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;

volatile std::sig_atomic_t g_forward_signal = 0;

void OnTerm(int sig) { g_forward_signal = sig; }

struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
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
  long ppid = 0;
  in >> ppid;  // field 4
  st.ppid = static_cast<pid_t>(ppid);
  std::string field;
  for (int i = 5; i <= 21 && in; ++i) in >> field;  // fields 5..21
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

// A task output file capped at `max` bytes, at most 2 * max per stream on disk. Its fd was opened (sandbox_fs)
// before the task existed and is kept for good: when the next write would pass the cap, the content is copied through
// this fd into a new file created exclusively (O_EXCL|O_NOFOLLOW) in the sandbox, renamed over "<name>.1", and this
// file is truncated. Whatever the task does to the names meanwhile, no path in the sandbox is opened again, so a
// symlink it plants is never written through.
class LogFile {
 public:
  LogFile(int dir, std::string name, sandbox_fs::Fd fd, uint64_t max)
      : dir_(dir), name_(std::move(name)), fd_(std::move(fd)), max_(max) {
    struct stat st{};
    size_ = ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
  void Write(const char* p, size_t n) {
    if (max_ > 0 && size_ > 0 && size_ + n > max_) Rotate();
    while (n > 0) {
      ssize_t w = ::write(fd_.get(), p, n);
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
  void Rotate() {
    const std::string rotated = name_ + ".1";
    const std::string tmp = sandbox_fs::TempName(rotated);
    if (auto out = sandbox_fs::CreateExclusiveAt(dir_, tmp, 0644)) {
      struct stat st{};
      if (::fstat(fd_.get(), &st) == 0 && ::fchown(out->get(), st.st_uid, st.st_gid) != 0) {
        // Owned by the supervisor's user then: still readable by the task (0644).
      }
      // The last `max_` bytes at most: the task may have appended to the file itself.
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      uint64_t off = size > max_ ? size - max_ : 0;
      char buf[65536];
      bool ok = true;
      while (ok && off < size) {
        ssize_t r = ::pread(fd_.get(), buf, sizeof buf, static_cast<off_t>(off));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) ok = false;
        if (r <= 0) break;
        off += static_cast<uint64_t>(r);
        for (ssize_t done = 0; ok && done < r;) {
          ssize_t w = ::write(out->get(), buf + done, static_cast<size_t>(r - done));
          if (w < 0 && errno == EINTR) continue;
          ok = w > 0;
          done += w > 0 ? w : 0;
        }
      }
      if (!ok || ::renameat(dir_, tmp.c_str(), dir_, rotated.c_str()) != 0) ::unlinkat(dir_, tmp.c_str(), 0);
    }
    // O_APPEND: the next write goes to offset 0.
    if (::ftruncate(fd_.get(), 0) == 0) size_ = 0;
  }
  int dir_;  // the sandbox, owned by SuperviseMain
  std::string name_;
  sandbox_fs::Fd fd_;
  uint64_t max_;
  uint64_t size_ = 0;
};

// Not fsynced: after a host crash every process is gone anyway; the rename keeps readers from a torn file.
Status WritePidFile(int state_dir, const char* name, pid_t pid) {
  auto st = ProcessStartTime(pid);
  return sandbox_fs::ReplaceFileAt(state_dir, name, std::to_string(pid) + " " + std::to_string(st ? *st : 0) + "\n",
                                   /*durable=*/false);
}

ExitStatus StartFailure(std::string why) {
  ExitStatus st;
  st.error = std::move(why);
  return st;
}

int WriteExit(int state_dir, ExitStatus st) {
  st.finished_at = NowSeconds();
  auto w = sandbox_fs::ReplaceFileAt(state_dir, kExitStatusFile, ToJson(st).dump() + "\n", /*durable=*/true);
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

Result<std::optional<ExitStatus>> ReadExitStatus(const std::string& state_dir) {
  TUG_ASSIGN_OR_RETURN(auto text, sandbox_fs::ReadSmallFile(state_dir, kExitStatusFile, 64 << 10));
  if (!text) return std::optional<ExitStatus>();
  try {
    auto j = json::parse(*text);
    ExitStatus s;
    if (j.contains("code")) s.code = j["code"].get<int>();
    if (j.contains("signal")) s.signal = j["signal"].get<int>();
    s.error = j.value("error", "");
    s.finished_at = j.value("finished_at", 0.0);
    return std::optional<ExitStatus>(s);
  } catch (const std::exception& e) {
    return MakeError(Errc::kProtocol, core::JoinPath(state_dir, kExitStatusFile) + ": " + e.what());
  }
}

std::optional<PidFile> ReadPidFile(const std::string& dir, const std::string& name) {
  auto text = sandbox_fs::ReadSmallFile(dir, name, 4096);
  if (!text || !*text) return std::nullopt;
  std::istringstream f(**text);
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

bool IsSupervisorOf(pid_t pid, const std::string& sandbox) {
  if (pid <= 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (args.size() < 16 && std::getline(f, arg, '\0')) args.push_back(arg);
  if (args.size() < 4 || args[1] != "supervise") return false;
  for (size_t i = 2; i + 1 < args.size(); ++i)
    if (args[i] == "--sandbox") return args[i + 1] == sandbox;
  return false;
}

std::optional<pid_t> ParentPid(pid_t pid) {
  auto st = ReadProcStat(pid);
  if (!st) return std::nullopt;
  return st->ppid;
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

int SuperviseMain(const std::string& sandbox, const std::string& state_dir) {
  ::setsid();  // the node already did; harmless (EPERM) then
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = OnTerm;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  // Every directory and file is opened once, here, before the task exists; only these fds are used afterwards.
  auto state = sandbox_fs::OpenDir(state_dir);
  if (!state) {
    Log("cannot open the supervisor dir: " + state.error().Message());
    return 1;
  }
  const int state_fd = state->get();
  if (auto w = WritePidFile(state_fd, kSupervisorPidFile, ::getpid()); !w) Log(w.error().Message());

  auto text = sandbox_fs::ReadSmallFileAt(state_fd, kLaunchFile);
  if (!text) return WriteExit(state_fd, StartFailure(text.error().Message()));
  if (!*text) return WriteExit(state_fd, StartFailure(std::string(kLaunchFile) + " is missing"));
  Result<LaunchSpec> spec = MakeError(Errc::kInvalidArgument, "launch.json: not JSON");
  try {
    spec = LaunchSpecFromJson(json::parse(**text));
  } catch (const std::exception&) {
  }
  if (!spec) return WriteExit(state_fd, StartFailure(spec.error().Message()));

  auto box = sandbox_fs::OpenDir(sandbox);
  if (!box) return WriteExit(state_fd, StartFailure("opening the sandbox: " + box.error().Message()));
  sandbox_fs::Fd other_cwd;
  if (!spec->cwd.empty() && spec->cwd != sandbox) {
    auto d = sandbox_fs::OpenDir(spec->cwd);
    if (!d) return WriteExit(state_fd, StartFailure("opening the working directory: " + d.error().Message()));
    other_cwd = std::move(*d);
  }
  const int cwd_fd = other_cwd ? other_cwd.get() : box->get();
  auto out_fd = sandbox_fs::OpenAppendAt(box->get(), "stdout");
  if (!out_fd) return WriteExit(state_fd, StartFailure("the sandbox's stdout: " + out_fd.error().Message()));
  auto err_fd = sandbox_fs::OpenAppendAt(box->get(), "stderr");
  if (!err_fd) return WriteExit(state_fd, StartFailure("the sandbox's stderr: " + err_fd.error().Message()));

  const std::string exe = ResolveExecutable(spec->argv[0], spec->env);
  int out_pipe[2], err_pipe[2], fail_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 || ::pipe2(fail_pipe, O_CLOEXEC) != 0)
    return WriteExit(state_fd, StartFailure(std::string("pipe: ") + std::strerror(errno)));
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<char*> argv, envp;
  for (auto& a : spec->argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : spec->env) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return WriteExit(state_fd, StartFailure(std::string("fork: ") + std::strerror(errno)));
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
    if (::fchdir(cwd_fd) != 0) ChildFail(fail_pipe[1], kCwd);
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
    return WriteExit(state_fd, StartFailure(what + ": " + std::strerror(failure.err)));
  }
  if (auto w = WritePidFile(state_fd, kTaskPidFile, pid); !w) Log(w.error().Message());
  Log("started task pid " + std::to_string(pid) + ": " + exe);

  LogFile out(box->get(), "stdout", std::move(*out_fd), spec->log_max_bytes);
  LogFile err(box->get(), "stderr", std::move(*err_fd), spec->log_max_bytes);
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
  return WriteExit(state_fd, st);
}

}  // namespace tug::cluster::node
