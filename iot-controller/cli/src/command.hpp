// Private plumbing shared by the command groups: each Add*Commands registers subcommands on the app and, when
// one of them is selected, stores the work to do in Context::action. Parsing finishes before anything runs, so a
// usage error never leaves half-done work behind.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/tug.hpp"
#include "core/error.hpp"

namespace tug::cli {

// Global options of the fleet commands, read by the top-level app whatever the subcommand.
struct FleetOptions {
  std::string controller;  // empty: $TUG_CONTROLLER, else http://127.0.0.1:8080
  std::string token;       // empty: --token-file, else $TUG_TOKEN
  std::string token_file;
  std::string ca_file;     // empty: $TUG_CA; the CA an https:// controller's certificate must chain to
  bool json = false;       // print the API's JSON instead of tables
};

struct Context {
  const Io& io;
  std::function<Status()> action;
  FleetOptions fleet;
  // Set by an action that ends with an exit code of its own (rollout watch: 3 on --timeout) after printing why.
  std::optional<int> exit_code;
};

void AddKeygenCommand(CLI::App& app, Context& ctx);
void AddTrustCommands(CLI::App& app, Context& ctx);
void AddReleaseCommands(CLI::App& app, Context& ctx);
void AddFleetOptions(CLI::App& app, Context& ctx);
void AddDevicesCommands(CLI::App& app, Context& ctx);
void AddAuditCommands(CLI::App& app, Context& ctx);
void AddReleasesCommands(CLI::App& app, Context& ctx);
void AddRolloutCommands(CLI::App& app, Context& ctx);

// Validator for counts and versions: an integer of at least 1, with a readable message.
CLI::Validator AtLeastOne();

// Reads a whole file, or stdin for "-".
Result<std::string> ReadInput(const Io& io, const std::string& path);
// "30d" and friends, with the flag name in the error.
Result<std::chrono::seconds> ParseDurationFlag(const std::string& flag, const std::string& value);

}  // namespace tug::cli
