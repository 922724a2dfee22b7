#include "core/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace tug::core {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Builds envp from our environment plus overrides.
std::vector<std::string> MakeEnv(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && extra.count(kv.substr(0, eq))) continue;
    env.push_back(kv);
  }
  for (auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

// In the child after fork: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                            const RunOptions& opts, int in_fd, int out_fd, int err_fd) {
  if (opts.new_session) ::setsid();
  if (in_fd >= 0) ::dup2(in_fd, 0);
  else {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
  }
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  for (int fd = 3; fd < 1024; ++fd) ::close(fd);
  if (opts.cwd && ::chdir(opts.cwd->c_str()) != 0) _exit(126);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  ::execvpe(cargv[0], cargv.data(), cenv.data());
  _exit(127);
}

}  // namespace

std::string RunResult::Describe() const {
  std::string s;
  if (timed_out) s = "timed out";
  else if (signal) s = "killed by signal " + std::to_string(signal);
  else s = "exit code " + std::to_string(exit_code);
  std::string tail = err.empty() ? out : err;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
  if (!tail.empty()) s += ": " + tail;
  return s;
}

std::string FindInPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = ::getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string cand = p.substr(start, end - start) + "/" + name;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return "";
}

Result<RunResult> Run(const std::vector<std::string>& argv, const RunOptions& opts) {
  if (argv.empty()) return MakeError(Errc::kInvalidArgument, "empty command");
  if (FindInPath(argv[0]).empty()) return MakeError(Errc::kNotFound, "command not found: " + argv[0]);
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  int file_fd = -1;
  if (opts.stdin_data && ::pipe2(in_pipe, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  if (opts.output_file) {
    file_fd = ::open(opts.output_file->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (file_fd < 0) return ErrnoError(errno, "opening " + *opts.output_file);
  } else if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return ErrnoError(errno, "pipe");
  }
  auto env = MakeEnv(opts.extra_env);
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    ExecChild(argv, env, opts, in_pipe[0], file_fd >= 0 ? file_fd : out_pipe[1], file_fd >= 0 ? file_fd : err_pipe[1]);
  }
  if (in_pipe[0] >= 0) ::close(in_pipe[0]);
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  if (err_pipe[1] >= 0) ::close(err_pipe[1]);
  if (file_fd >= 0) ::close(file_fd);

  RunResult res;
  const auto deadline = SteadyClock::now() + opts.timeout;
  size_t in_off = 0;
  int in_fd = in_pipe[1];
  if (in_fd >= 0) ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) {
      res.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    int rc = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::min<long long>(left, 1000)));
    if (rc < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in_fd) {
        const std::string& data = *opts.stdin_data;
        ssize_t w = ::write(in_fd, data.data() + in_off, data.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) in_off = data.size();
        if (in_off >= data.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      char buf[65536];
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      std::string& sink = fds[i].fd == out_fd ? res.out : res.err;
      if (r > 0) {
        sink.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
    if (out_fd < 0 && err_fd < 0 && opts.output_file && in_fd < 0) break;
    if (!opts.stdin_data && opts.output_file) break;
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  // With output going to a file there were no pipes to watch: wait for exit against the deadline.
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, res.timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return ErrnoError(errno, "waitpid");
    if (SteadyClock::now() > deadline) {
      res.timed_out = true;
      ::kill(pid, SIGKILL);
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  return res;
}

Result<Process> Spawn(const std::vector<std::string>& argv, const std::string& log_file, const RunOptions& opts) {
  if (argv.empty()) return MakeError(Errc::kInvalidArgument, "empty command");
  if (FindInPath(argv[0]).empty()) return MakeError(Errc::kNotFound, "command not found: " + argv[0]);
  int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "opening " + log_file);
  auto env = MakeEnv(opts.extra_env);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return ErrnoError(errno, "fork");
  }
  if (pid == 0) ExecChild(argv, env, opts, -1, fd, fd);
  ::close(fd);
  return Process(pid);
}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    Stop();
    pid_ = o.pid_;
    o.pid_ = -1;
  }
  return *this;
}

Process::~Process() { Stop(); }

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status;
  pid_t w = ::waitpid(pid_, &status, WNOHANG);
  if (w == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void Process::Kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return 0;
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      pid_ = -1;
      return status;
    }
    if (w < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    if (SteadyClock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!Wait(grace)) {
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
  pid_ = -1;
}

}  // namespace tug::core
