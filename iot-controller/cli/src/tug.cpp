#include "cli/tug.hpp"

#include <unistd.h>

#include <iostream>
#include <iterator>
#include <sstream>

#include "command.hpp"
#include "core/env.hpp"

namespace tug::cli {

Result<std::string> ReadInput(const Io& io, const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(io.in), {});
  return core::DefaultEnv()->ReadFile(path);
}

CLI::Validator AtLeastOne() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        const bool digits = !v.empty() && v.find_first_not_of("0123456789") == std::string::npos;
        if (!digits || v.find_first_not_of('0') == std::string::npos)
          return "must be a whole number of at least 1, got '" + v + "'";
        return {};
      },
      "");
}

Result<std::chrono::seconds> ParseDurationFlag(const std::string& flag, const std::string& value) {
  auto d = core::ParseDuration(value);
  if (!d) return tl::unexpected(Wrap(d.error(), flag));
  if (d->count() <= 0) return MakeError(Errc::kInvalidArgument, flag + " must be positive");
  return *d;
}

int Run(const std::vector<std::string>& args, const Io& io) {
  CLI::App app{"tug: Tugboat operator CLI. Generates signing keys, builds device trust roots, signs and verifies "
               "releases (signed statements that pin an OCI image by digest), and drives the fleet controller: "
               "devices, releases and staged rollouts.",
               "tug"};
  app.require_subcommand(1);
  // Global options (--controller, --json, ...) may follow the subcommand: `tug devices list --json`.
  app.fallthrough();
  app.footer(
      "Exit codes: 0 success, 1 the operation failed (reason on stderr), 2 usage error, 3 'rollout watch' "
      "reached its --timeout.\n"
      "Run 'tug COMMAND --help' for a command's flags and an example.\n\n"
      "Typical flow:\n"
      "  tug keygen --out release-key\n"
      "  tug trust init --key release-key.pub --threshold 1 --out root.json\n"
      "  tug release sign --key release-key --image 127.0.0.1:5000/acme/sensor@sha256:<hex> --version 1 "
      "> release.json\n"
      "  tug release verify --root root.json release.json\n\n"
      "Fleet (controller at --controller or $TUG_CONTROLLER, http:// or https:// with --ca or $TUG_CA; token from\n"
      "--token, --token-file or $TUG_TOKEN):\n"
      "  tug releases add release.json\n"
      "  tug rollout create --release 1 --label site=berlin --phase 1@30s --phase 50% --phase 100%\n"
      "  tug rollout watch r-1\n"
      "  tug devices list --online\n"
      "  tug audit --limit 20");

  Context ctx{io, {}, {}, {}};
  AddFleetOptions(app, ctx);
  AddKeygenCommand(app, ctx);
  AddTrustCommands(app, ctx);
  AddReleaseCommands(app, ctx);
  AddDevicesCommands(app, ctx);
  AddReleasesCommands(app, ctx);
  AddAuditCommands(app, ctx);
  AddRolloutCommands(app, ctx);

  // CLI11 wants argv; it reports problems as exceptions, which stay inside this function.
  std::vector<std::string> storage;
  storage.reserve(args.size() + 1);
  storage.push_back("tug");
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, io.out, io.err);
    return code == 0 ? 0 : 2;  // --help is a "parse error" with code 0
  }

  if (!ctx.action) {
    io.err << "tug: no command given\n";
    return 2;
  }
  Status st = ctx.action();
  if (!st) {
    io.err << "tug: " << st.error().Message() << "\n";
    return 1;
  }
  return ctx.exit_code.value_or(0);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  Io io{std::cout, std::cerr, std::cin, *core::SystemClock()};
  io.tty = ::isatty(STDOUT_FILENO) == 1;
  return Run(args, io);
}

}  // namespace tug::cli
