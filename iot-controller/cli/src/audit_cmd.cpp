// tug audit: the controller's audit log (GET /api/v1/audit, operator scope): who changed what, when, and the result,
// refused attempts included. Newest first.
#include <ctime>
#include <memory>

#include "fleet.hpp"

namespace tug::cli {
namespace {

std::string When(const Json& e) {
  // Milliseconds since the epoch, shown as UTC.
  if (!e.contains("at") || !e["at"].is_number_integer()) return "-";
  const std::time_t secs = static_cast<std::time_t>(e["at"].get<int64_t>() / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void RenderAudit(const Io& io, const Json& j) {
  Table t({"ID", "WHEN", "WHO", "CALL", "RESULT", "DETAIL"});
  const Json entries = j.value("entries", Json::array());
  for (const Json& e : entries) {
    const std::string who = Str(e, "principal", "");
    t.Add({Num(e, "id"), When(e), who.empty() ? "(no valid token)" : who, Str(e, "method") + " " + Str(e, "target"),
           Num(e, "status"), Str(e, "detail", "")});
  }
  t.Print(io.out);
  if (entries.empty()) io.out << "(no audited calls)\n";
  if (j.contains("next_before")) io.out << "older: tug audit --before " << Num(j, "next_before") << "\n";
}

}  // namespace

void AddAuditCommands(CLI::App& app, Context& ctx) {
  auto limit = std::make_shared<int>(50);
  auto before = std::make_shared<int64_t>(0);
  CLI::App* audit = app.add_subcommand("audit", "Show the controller's audit log of changes (operator token).");
  audit->add_option("--limit", *limit, "How many entries (1..1000)")->capture_default_str();
  audit->add_option("--before", *before, "Only entries older than this id (the 'older:' line gives it)");
  audit->footer("Example:\n  tug audit --limit 20");
  audit->callback([&ctx, limit, before] {
    ctx.action = [&ctx, limit, before] {
      std::string path = "/audit?limit=" + std::to_string(*limit);
      if (*before > 0) path += "&before=" + std::to_string(*before);
      return CallAndRender(ctx, "GET", path, "", [&ctx](const Json& j) { RenderAudit(ctx.io, j); });
    };
  });
}

}  // namespace tug::cli
