// Child processes: run a command to completion with a deadline (runc, tar tools), or start a long-lived one
// (a registry in tests) and stop it by pid. Blocking; safe to call from several threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::core {

struct RunOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::optional<std::string> stdin_data;
  std::optional<std::string> cwd;
  std::map<std::string, std::string> extra_env;
  // When set, the child's stdout/stderr go to this file (appended) instead of being captured.
  std::optional<std::string> output_file;
  // Start the child in a new session so it outlives us and our signals (runc run -d does its own).
  bool new_session = false;
};

struct RunResult {
  int exit_code = -1;       // valid when !signaled
  int signal = 0;           // the signal that killed it, if any
  bool timed_out = false;   // we killed it because the deadline passed
  std::string out;
  std::string err;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "exit code 3: <last stderr line>", for error messages.
  std::string Describe() const;
};

// Runs argv[0] (looked up in PATH) and waits. Fails only when it cannot start; a non-zero exit is in RunResult.
Result<RunResult> Run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// A started background process. The destructor kills it (SIGTERM, then SIGKILL) unless Release() was called.
class Process {
 public:
  Process() = default;
  explicit Process(pid_t pid) : pid_(pid) {}
  Process(Process&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Process& operator=(Process&& o) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  bool Running();
  // SIGTERM, wait up to `grace`, then SIGKILL; reaps the child.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  void Kill(int sig);
  // Waits for exit up to `timeout`; returns the exit status (as from waitpid) or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  pid_t Release() { pid_t p = pid_; pid_ = -1; return p; }

 private:
  pid_t pid_ = -1;
};

// Starts argv in the background with stdout+stderr appended to `log_file`.
Result<Process> Spawn(const std::vector<std::string>& argv, const std::string& log_file, const RunOptions& opts = {});

// Path of an executable in PATH, or empty.
std::string FindInPath(const std::string& name);

}  // namespace tug::core
