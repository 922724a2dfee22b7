// tug releases add|list|get: signed releases registered with the controller (the controller verifies them; the
// CLI sends the envelope untouched so what devices check is exactly what `tug release sign` wrote).
#include <memory>

#include "fleet.hpp"

namespace tug::cli {
namespace {

void RenderRelease(const Io& io, const Json& r) {
  Table t({"version:", Num(r, "version")});
  t.Add({"name:", Str(r, "name")});
  t.Add({"repository:", Str(r, "repository")});
  t.Add({"digest:", Str(r, "digest")});
  const std::string expires = Str(r, "expires_at", "");
  t.Add({"expires:", expires.empty() ? "-" : expires + " (" + HumanTime(expires, io.clock.Now()) + ")"});
  t.Print(io.out);
}

void RenderReleaseList(const Io& io, const Json& j) {
  Table t({"VERSION", "NAME", "REPOSITORY", "DIGEST", "EXPIRES"});
  const Json releases = j.value("releases", Json::array());
  for (const Json& r : releases)
    t.Add({Num(r, "version"), Str(r, "name"), Str(r, "repository"), ShortDigest(Str(r, "digest")),
           HumanTime(Str(r, "expires_at", ""), io.clock.Now())});
  t.Print(io.out);
  if (releases.empty()) io.out << "(no releases registered)\n";
}

Status Add(const Context& ctx, const std::string& path) {
  TUG_ASSIGN_OR_RETURN(std::string envelope, ReadInput(ctx.io, path));
  return CallAndRender(ctx, "POST", "/releases", envelope, [&ctx](const Json& r) {
    ctx.io.out << "registered release " << Num(r, "version") << " \"" << Str(r, "name") << "\" "
               << Str(r, "repository") << "@" << Str(r, "digest") << ", expires "
               << HumanTime(Str(r, "expires_at", ""), ctx.io.clock.Now()) << "\n";
  });
}

}  // namespace

void AddReleasesCommands(CLI::App& app, Context& ctx) {
  CLI::App* releases = app.add_subcommand("releases", "Register signed releases with the controller and list them.");
  releases->require_subcommand(1);

  auto file = std::make_shared<std::string>();
  CLI::App* add = releases->add_subcommand("add", "Register a signed release envelope (from 'tug release sign').");
  add->add_option("release", *file, "Release envelope ('-' for stdin)")->required()->type_name("release.json");
  add->footer(
      "The controller verifies the signatures against its trust root and refuses versions it already has.\n\n"
      "Example:\n  tug release sign --key release-key --image HOST/REPO@sha256:<hex> --version 42 > release.json\n"
      "  tug releases add release.json");
  add->callback([&ctx, file] { ctx.action = [&ctx, file] { return Add(ctx, *file); }; });

  CLI::App* list = releases->add_subcommand("list", "List registered releases.");
  list->footer("Example:\n  tug releases list");
  list->callback([&ctx] {
    ctx.action = [&ctx] {
      return CallAndRender(ctx, "GET", "/releases", "", [&ctx](const Json& j) { RenderReleaseList(ctx.io, j); });
    };
  });

  auto version = std::make_shared<uint64_t>(0);
  CLI::App* get = releases->add_subcommand("get", "Show one registered release.");
  get->add_option("version", *version, "Release version")->required()->check(AtLeastOne())->type_name("VERSION");
  get->footer("Example:\n  tug releases get 42");
  get->callback([&ctx, version] {
    ctx.action = [&ctx, version] {
      return CallAndRender(ctx, "GET", "/releases/" + std::to_string(*version), "",
                           [&ctx](const Json& r) { RenderRelease(ctx.io, r); });
    };
  });
}

}  // namespace tug::cli
