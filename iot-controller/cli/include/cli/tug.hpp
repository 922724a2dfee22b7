// `tug`, the operator CLI (DESIGN.md §6, §9): key generation, trust roots, signing and verifying releases, and the
// fleet commands (devices, releases, rollouts) that talk to the controller's REST API. Each command group lives in
// its own source file and registers itself on the shared CLI11 app.
//
// Exit codes: 0 success; 1 the operation failed (one line "tug: <why>" on stderr); 2 usage error (bad flags);
// 3 `rollout watch` gave up at its --timeout. All commands are blocking and run on the calling thread.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace tug::cli {

// Where a run reads and writes. Tests pass string streams and a FakeClock; Main passes the process's own.
struct Io {
  std::ostream& out;   // command output (release JSON, summaries, help)
  std::ostream& err;   // diagnostics
  std::istream& in;    // read when a file argument is "-"
  const core::Clock& clock;
  // The seams below default to the process's own when left empty, so tests need not set them.
  // Environment lookup (TUG_CONTROLLER, TUG_TOKEN); returns nullptr when unset, like std::getenv.
  std::function<const char*(const char*)> getenv = nullptr;
  // `out` is a terminal: `rollout watch` redraws its progress bars in place instead of appending lines.
  bool tty = false;
  // Waits between polls; tests advance a FakeClock instead of sleeping.
  std::function<void(std::chrono::milliseconds)> sleep = nullptr;
};

// Runs one command line; `args` excludes the program name. Returns the process exit code.
int Run(const std::vector<std::string>& args, const Io& io);

// Process entry point: Run over argv[1..] with std::cout, std::cerr, std::cin and the system clock.
int Main(int argc, char** argv);

}  // namespace tug::cli
