// tug rollout create|get|list|pause|resume|cancel|rollback|cancel-device|watch.
#include <algorithm>
#include <cmath>
#include <memory>

#include "rollout.hpp"

namespace tug::cli {
namespace {

struct CreateFlags {
  uint64_t release = 0;
  std::vector<std::string> labels;
  std::vector<std::string> operator_labels;
  std::vector<std::string> devices;
  bool all = false;
  std::vector<std::string> phases;
  double abort_failure_percent = 20;
  int64_t abort_min_devices = 1;
  std::string device_timeout = "10m";
  int64_t max_concurrency = 100;
  int64_t max_retries = 1;
  bool no_auto_rollback = false;
};

// Whole numbers go out as JSON integers ("percent":50, not 50.0) so bodies read like the API documentation.
Json Number(double d) {
  if (d == std::floor(d) && std::abs(d) < 1e15) return static_cast<int64_t>(d);
  return d;
}

double ParsePercent(const std::string& flag, const std::string& arg, const std::string& text, bool allow_zero) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || !std::isfinite(v) || v > 100 || v < 0 || (!allow_zero && v == 0))
    throw CLI::ValidationError(flag, "'" + arg + "': '" + text + "' is not a percentage " +
                                         (allow_zero ? "from 0" : "above 0") + " to 100");
  return v;
}

// COUNT or PERCENT%, then optionally :THRESHOLD and @SOAK in either order ("1@30s", "50%:90", "100%:95@1h").
// Malformed phases are usage errors (exit 2) so nothing is sent.
Json ParsePhase(const std::string& arg) {
  const std::string flag = "--phase";
  const auto end = arg.find_first_of(":@");
  const std::string size = arg.substr(0, end);
  Json phase = Json::object();
  if (!size.empty() && size.back() == '%') {
    phase["percent"] = Number(ParsePercent(flag, arg, size.substr(0, size.size() - 1), false));
  } else {
    if (size.empty() || size.find_first_not_of("0123456789") != std::string::npos ||
        size.find_first_not_of('0') == std::string::npos || size.size() > 12)
      throw CLI::ValidationError(flag, "'" + arg + "' must start with a device count (e.g. 5) or a percentage (e.g. "
                                           "50%)");
    phase["count"] = std::stoll(size);
  }
  size_t pos = end;
  while (pos != std::string::npos) {
    const char kind = arg[pos];
    const auto next = arg.find_first_of(":@", pos + 1);
    const std::string value = arg.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (kind == ':') {
      if (phase.contains("success_threshold"))
        throw CLI::ValidationError(flag, "'" + arg + "' gives the success threshold twice");
      phase["success_threshold"] = Number(ParsePercent(flag, arg, value, true));
    } else {
      if (phase.contains("soak")) throw CLI::ValidationError(flag, "'" + arg + "' gives the soak time twice");
      auto d = core::ParseDuration(value);
      if (!d) throw CLI::ValidationError(flag, "'" + arg + "': " + d.error().Message());
      phase["soak"] = value;
    }
    pos = next;
  }
  return phase;
}

Json CreateBody(const CreateFlags& f) {
  Json labels = Json::object();
  for (const auto& l : f.labels) {
    auto [k, v] = ParseLabelArg("--label", l);
    labels[k] = v;
  }
  Json selector{{"labels", labels}, {"devices", f.devices}};
  if (!f.operator_labels.empty()) {
    Json op = Json::object();
    for (const auto& l : f.operator_labels) {
      auto [k, v] = ParseLabelArg("--operator-label", l);
      op[k] = v;
    }
    selector["operator_labels"] = op;
  }
  Json phases = Json::array();
  for (const auto& p : f.phases) phases.push_back(ParsePhase(p));
  // Canary first: one device, then half, then everyone, each gated on the one before.
  if (phases.empty()) phases = Json::array({{{"count", 1}}, {{"percent", 50}}, {{"percent", 100}}});
  return {{"release", f.release},
          {"selector", selector},
          {"phases", phases},
          {"abort", {{"failure_percent", Number(f.abort_failure_percent)}, {"min_devices", f.abort_min_devices}}},
          {"device_timeout", f.device_timeout},
          {"max_concurrency", f.max_concurrency},
          {"max_retries", f.max_retries},
          {"auto_rollback", !f.no_auto_rollback}};
}

std::string CountsSummary(const Json& counts) {
  return Num(counts, "succeeded", "0") + " ok  " + Num(counts, "failed", "0") + " failed  " +
         Num(counts, "unreached", "0") + " unreached  " + Num(counts, "in_progress", "0") + " in progress  " +
         Num(counts, "pending", "0") + " pending";
}

struct GetFlags {
  std::string id;
  ReportQuery query;
};

// The command that fetches the page after this one: what `get` prints below a page that has more.
std::string NextPageCommand(const GetFlags& f, const std::string& next_after) {
  std::string cmd = "tug rollout get " + f.id;
  if (!f.query.devices.empty()) cmd += " --devices " + f.query.devices;
  return cmd + " --limit " + std::to_string(f.query.limit) + " --after " + next_after;
}

void RenderRollout(const Io& io, const Json& r) {
  io.out << RolloutHeadline(r) << "  created " << HumanTime(Str(r, "created_at", ""), io.clock.Now()) << "\n";
  io.out << "devices: " << CountsSummary(r.value("counts", Json::object())) << "\n";
  const std::string reason = Str(r, "abort_reason", "");
  if (!reason.empty()) io.out << "abort reason: " << reason << "\n";
  const std::vector<std::string> phases = PhaseLines(r);
  if (!phases.empty()) io.out << "\n";
  for (const auto& l : phases) io.out << l << "\n";
  const Json devices = r.value("devices", Json::array());
  if (devices.empty()) return;
  io.out << "\n";
  Table t({"DEVICE", "PHASE", "STATE", "ATTEMPTS", "JOB", "ERROR"});
  for (const Json& d : devices) {
    // The API numbers phases from 0 and uses -1 for "not assigned yet"; people count from 1.
    const int64_t phase = Int(d, "phase", -1);
    t.Add({Str(d, "id"), phase < 0 ? "-" : std::to_string(phase + 1), Str(d, "state"), Num(d, "attempts", "0"),
           NonEmpty(Str(d, "job")), Str(d, "error", "")});
  }
  t.Print(io.out);
}

// A rollout as `get` shows it; a filtered or paged listing says when it is empty and how to get the next page.
void RenderGet(const Io& io, const Json& r, const GetFlags& f) {
  RenderRollout(io, r);
  const bool listing = f.query.devices != "none" && (!f.query.devices.empty() || f.query.limit > 0 ||
                                                     !f.query.after.empty());
  if (!listing) return;
  if (r.value("devices", Json::array()).empty()) io.out << "\n(no devices match)\n";
  const std::string next = Str(r, "next_after", "");
  if (!next.empty()) io.out << "\nmore devices: " << NextPageCommand(f, next) << "\n";
}

void RenderRolloutList(const Io& io, const Json& j) {
  Table t({"ID", "STATE", "RELEASE", "CREATED", "OK", "FAILED", "UNREACHED", "IN PROGRESS", "PENDING"});
  const Json rollouts = j.value("rollouts", Json::array());
  for (const Json& r : rollouts) {
    const Json rel = r.value("release", Json::object());
    const Json c = r.value("counts", Json::object());
    t.Add({Str(r, "id"), Str(r, "state"), Num(rel, "version") + " " + Str(rel, "name", ""),
           HumanTime(Str(r, "created_at", ""), io.clock.Now()), Num(c, "succeeded", "0"), Num(c, "failed", "0"),
           Num(c, "unreached", "0"), Num(c, "in_progress", "0"), Num(c, "pending", "0")});
  }
  t.Print(io.out);
  if (rollouts.empty()) io.out << "(no rollouts)\n";
}

// pause, resume, cancel, rollback: POST with an empty JSON object; the answer is the rollout if the controller
// sends one.
void AddAction(CLI::App& rollout, Context& ctx, const std::string& verb, const std::string& help,
               const std::string& done) {
  auto id = std::make_shared<std::string>();
  CLI::App* cmd = rollout.add_subcommand(verb, help);
  cmd->add_option("id", *id, "Rollout id")->required()->type_name("ID");
  cmd->footer("Example:\n  tug rollout " + verb + " r-1");
  cmd->callback([&ctx, id, verb, done] {
    ctx.action = [&ctx, id, verb, done] {
      return CallAndRender(ctx, "POST", "/rollouts/" + EscapePathSegment(*id) + "/" + verb, "{}",
                           [&ctx, id, done](const Json& r) {
                             ctx.io.out << "rollout " << *id << ": " << Str(r, "state", done);
                             if (r.is_object() && r.contains("rollback_sent"))
                               ctx.io.out << ", rollback sent to " << Num(r, "rollback_sent") << " device(s)";
                             ctx.io.out << "\n";
                           });
    };
  });
}

}  // namespace

std::string RolloutPath(const std::string& id, const ReportQuery& q) {
  std::string query;
  auto add = [&query](const std::string& kv) { query += (query.empty() ? "?" : "&") + kv; };
  if (!q.devices.empty()) {
    // Each state escaped on its own: the commas between them stay readable, as the API documents them.
    std::string states;
    size_t start = 0;
    for (;;) {
      const size_t comma = std::min(q.devices.find(',', start), q.devices.size());
      states += EscapeQueryValue(q.devices.substr(start, comma - start));
      if (comma == q.devices.size()) break;
      states += ',';
      start = comma + 1;
    }
    add("devices=" + states);
  }
  if (q.limit > 0) add("limit=" + std::to_string(q.limit));
  if (!q.after.empty()) add("after=" + EscapeQueryValue(q.after));
  return "/rollouts/" + EscapePathSegment(id) + query;
}

void AddRolloutCommands(CLI::App& app, Context& ctx) {
  CLI::App* rollout = app.add_subcommand("rollout", "Stage a release across the fleet in phases and follow it.");
  rollout->require_subcommand(1);

  auto cf = std::make_shared<CreateFlags>();
  CLI::App* create = rollout->add_subcommand("create", "Start a rollout of a registered release; prints its id.");
  create->add_option("--release", cf->release, "Release version to roll out")
      ->required()
      ->check(AtLeastOne())
      ->type_name("N");
  create->add_option("--label", cf->labels, "Select devices with this label (repeat: all must match)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  create->add_option("--operator-label", cf->operator_labels,
                     "Select devices an operator labelled so (repeat: all must match); devices cannot claim these")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  create->add_option("--device", cf->devices, "Select this device (repeat)")->allow_extra_args(false)->type_name("ID");
  create->add_flag("--all", cf->all, "Select the whole fleet (needed when no --label or --device is given)");
  create->add_option("--phase", cf->phases,
                     "Phase size, cumulative: COUNT or PERCENT%, then optional :THRESHOLD and @SOAK (repeat; "
                     "default 1, 50%, 100%)")
      ->allow_extra_args(false)
      ->type_name("N[%][:T][@D]");
  create->add_option("--abort-failure-percent", cf->abort_failure_percent,
                     "Abort when more than this % of finished devices failed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0))
      ->type_name("P");
  create->add_option("--abort-min-devices", cf->abort_min_devices,
                     "...but only once this many devices have finished")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->type_name("N");
  create->add_option("--device-timeout", cf->device_timeout, "A device that has not succeeded by then fails")
      ->capture_default_str()
      ->type_name("DURATION");
  create->add_option("--max-concurrency", cf->max_concurrency, "Devices updating at the same time")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->type_name("N");
  create->add_option("--max-retries", cf->max_retries, "Extra attempts for a device that failed")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000}))
      ->type_name("N");
  create->add_flag("--no-auto-rollback", cf->no_auto_rollback,
                   "On abort, leave updated devices on the new release instead of rolling them back");
  create->footer(
      "Phases are cumulative targets of the selected devices. Each phase must reach its success threshold (default "
      "100%)\nof the devices it attempted, then soak (default 0s) before the next starts.\n\n"
      "Examples:\n"
      "  tug rollout create --release 42 --label site=berlin --phase 1@30s --phase 50%:90 --phase 100%\n"
      "  tug rollout create --release 42 --device pi-0001 --device pi-0002 --max-retries 0\n"
      "  id=$(tug rollout create --release 42 --all) && tug rollout watch \"$id\"");
  create->callback([&ctx, cf] {
    if (cf->labels.empty() && cf->operator_labels.empty() && cf->devices.empty() && !cf->all)
      throw CLI::ValidationError("selector", "give --label, --operator-label, --device or --all (an empty selector "
                                             "is the whole fleet)");
    if (cf->all && (!cf->labels.empty() || !cf->operator_labels.empty() || !cf->devices.empty()))
      throw CLI::ValidationError("--all", "cannot be combined with --label, --operator-label or --device");
    auto timeout = core::ParseDuration(cf->device_timeout);
    if (!timeout || timeout->count() <= 0)
      throw CLI::ValidationError("--device-timeout", "'" + cf->device_timeout + "' is not a positive duration");
    auto body = std::make_shared<Json>(CreateBody(*cf));  // throws on a malformed --phase or --label
    ctx.action = [&ctx, body] {
      return CallAndRender(ctx, "POST", "/rollouts", body->dump(),
                           [&ctx](const Json& r) { ctx.io.out << Str(r, "id") << "\n"; });
    };
  });

  auto gf = std::make_shared<GetFlags>();
  CLI::App* get = rollout->add_subcommand("get", "Show a rollout: state, phases and every device's outcome.");
  get->add_option("id", gf->id, "Rollout id")->required()->type_name("ID");
  get->add_option("--devices", gf->query.devices,
                  "List only devices in these states (comma-separated: pending, in_progress, succeeded, failed, "
                  "timed_out, unreached, cancelled, rolled_back), or none for counts only")
      ->type_name("STATE,..|none");
  get->add_option("--limit", gf->query.limit, "List at most N devices; prints how to get the next page")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->type_name("N");
  get->add_option("--after", gf->query.after, "List devices whose id sorts after this one (the next page's start)")
      ->type_name("DEVICE");
  get->footer(
      "Without flags every device is listed: on a large fleet, --devices none (counts only) or --limit pages\n"
      "through them in device id order; each page ends with the command for the next one.\n\n"
      "Examples:\n"
      "  tug rollout get r-1\n"
      "  tug rollout get r-1 --devices none\n"
      "  tug rollout get r-1 --devices failed,timed_out,rolled_back --limit 100\n"
      "  tug rollout get r-1 --limit 500 --after pi-0500");
  get->callback([&ctx, gf] {
    ctx.action = [&ctx, gf] {
      return CallAndRender(ctx, "GET", RolloutPath(gf->id, gf->query), "",
                           [&ctx, gf](const Json& r) { RenderGet(ctx.io, r, *gf); });
    };
  });

  CLI::App* list = rollout->add_subcommand("list", "List rollouts with their device counts.");
  list->footer("Example:\n  tug rollout list");
  list->callback([&ctx] {
    ctx.action = [&ctx] {
      return CallAndRender(ctx, "GET", "/rollouts", "", [&ctx](const Json& j) { RenderRolloutList(ctx.io, j); });
    };
  });

  AddAction(*rollout, ctx, "pause", "Stop starting new devices; devices already updating finish.", "paused");
  AddAction(*rollout, ctx, "resume", "Continue a paused rollout.", "running");
  AddAction(*rollout, ctx, "cancel", "End a rollout; devices keep what they run now.", "cancelled");
  AddAction(*rollout, ctx, "rollback", "Send every updated device of the rollout back to its previous release.",
            "rollback requested");

  auto cid = std::make_shared<std::string>();
  auto dev = std::make_shared<std::string>();
  CLI::App* cancel_dev =
      rollout->add_subcommand("cancel-device", "Stop one device's update within a rollout (it counts as cancelled).");
  cancel_dev->add_option("id", *cid, "Rollout id")->required()->type_name("ID");
  cancel_dev->add_option("device", *dev, "Device id")->required()->type_name("DEVICE");
  cancel_dev->footer("Example:\n  tug rollout cancel-device r-1 pi-0042");
  cancel_dev->callback([&ctx, cid, dev] {
    ctx.action = [&ctx, cid, dev] {
      return CallAndRender(
          ctx, "POST", "/rollouts/" + EscapePathSegment(*cid) + "/devices/" + EscapePathSegment(*dev) + "/cancel",
          "{}", [&ctx, cid, dev](const Json& r) {
            // The answer is the whole rollout; the device's own row says where it ended up.
            std::string state = "cancelled";
            for (const Json& d : r.is_object() ? r.value("devices", Json::array()) : Json::array())
              if (Str(d, "id") == *dev) state = Str(d, "state", state);
            ctx.io.out << "device " << *dev << " in rollout " << *cid << ": " << state << "\n";
          });
    };
  });

  auto wf = std::make_shared<WatchFlags>();
  CLI::App* watch = rollout->add_subcommand("watch", "Follow a rollout live with a progress bar per phase.");
  watch->add_option("id", wf->id, "Rollout id")->required()->type_name("ID");
  watch->add_option("--interval", wf->interval, "Time between polls")->capture_default_str()->type_name("DURATION");
  watch->add_option("--timeout", wf->timeout, "Give up watching (exit 3) after this long; the rollout goes on")
      ->capture_default_str()
      ->type_name("DURATION");
  watch->footer(
      "Redraws in place on a terminal; appends a block of lines whenever something changes otherwise.\n"
      "Exit 0 when the rollout succeeds, 1 when it is aborted or cancelled (reason and failed devices are shown),\n"
      "3 when --timeout passes first.\n\n"
      "Example:\n  tug rollout watch r-1 --interval 2s --timeout 1h");
  watch->callback([&ctx, wf] {
    for (const auto& [flag, value] : {std::pair{"--interval", wf->interval}, std::pair{"--timeout", wf->timeout}}) {
      auto d = core::ParseDuration(value);
      if (!d || d->count() <= 0)
        throw CLI::ValidationError(flag, "'" + value + "' is not a positive duration (e.g. 1s, 5m)");
    }
    ctx.action = [&ctx, wf] { return WatchRollout(ctx, *wf); };
  });
}

}  // namespace tug::cli
