// Private plumbing shared by the command groups: each Add*Commands registers subcommands on the app and, when
// one of them is selected, stores the work to do in Context::action. Parsing finishes before anything runs, so a
// usage error never leaves half-done work behind.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/tug.hpp"
#include "core/error.hpp"

namespace tug::cli {

struct Context {
  const Io& io;
  std::function<Status()> action;
};

void AddKeygenCommand(CLI::App& app, Context& ctx);
void AddTrustCommands(CLI::App& app, Context& ctx);
void AddReleaseCommands(CLI::App& app, Context& ctx);

// Validator for counts and versions: an integer of at least 1, with a readable message.
CLI::Validator AtLeastOne();

// Reads a whole file, or stdin for "-".
Result<std::string> ReadInput(const Io& io, const std::string& path);
// "30d" and friends, with the flag name in the error.
Result<std::chrono::seconds> ParseDurationFlag(const std::string& flag, const std::string& value);

}  // namespace tug::cli
