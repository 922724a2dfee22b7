// tug rollout watch: polls GET /rollouts/{id}?devices=none, one progress line per phase, until the rollout ends.
#include <algorithm>
#include <sstream>
#include <thread>

#include "rollout.hpp"

namespace tug::cli {
namespace {

constexpr int kBarWidth = 10;

bool IsFailure(const std::string& state) {
  return state == "failed" || state == "timed_out" || state == "rolled_back";
}

// The failure states as GET /rollouts/{id}?devices= spells them (IsFailure's), and the page size for them.
constexpr const char* kFailureStates = "failed,timed_out,rolled_back";
constexpr int64_t kFailedPage = 1000;

std::string PadLeft(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

void Sleep(const Io& io, std::chrono::milliseconds d) {
  if (io.sleep) {
    io.sleep(d);
  } else {
    std::this_thread::sleep_for(d);
  }
}

// What the frame shows, so a non-TTY run prints a new block only when something moved.
std::vector<std::string> Frame(const Json& r) {
  std::vector<std::string> lines{RolloutHeadline(r)};
  for (auto& l : PhaseLines(r)) lines.push_back(std::move(l));
  return lines;
}

// The failed devices of a finished rollout, page by page: the polls carried counts only, and only failures are
// printed, so only they are fetched. {"devices":[...]} for PrintFailedDevices.
Result<Json> FetchFailedDevices(const ApiClient& client, const std::string& id) {
  Json devices = Json::array();
  ReportQuery q{.devices = kFailureStates, .limit = kFailedPage, .after = ""};
  for (;;) {
    const std::string path = RolloutPath(id, q);
    TUG_ASSIGN_OR_RETURN(std::string answer, client.Get(path));
    TUG_ASSIGN_OR_RETURN(Json page, ParseBody(answer, "GET " + path));
    for (Json& d : page.value("devices", Json::array())) devices.push_back(std::move(d));
    const std::string next = Str(page, "next_after", "");
    // A cursor that does not advance would loop forever: stop rather than trust it.
    if (next.empty() || next <= q.after) break;
    q.after = next;
  }
  return Json{{"devices", std::move(devices)}};
}

}  // namespace

std::string PhaseLine(const Json& phase, size_t position, int64_t previous_target) {
  const Json counts = phase.value("counts", Json::object());
  const int64_t ok = Int(counts, "succeeded");
  int64_t target = Int(phase, "target", -1);
  if (target >= 0) {
    target = std::max<int64_t>(0, target - previous_target);
  } else {  // no target: fall back to the devices the phase knows about
    target = 0;
    for (const char* k : {"pending", "in_progress", "succeeded", "failed", "unreached"}) target += Int(counts, k);
  }
  const std::string state = Str(phase, "state");
  int64_t pct = target > 0 ? std::min<int64_t>(100, ok * 100 / target) : (state == "done" ? 100 : 0);
  const int64_t filled = pct * kBarWidth / 100;
  std::ostringstream s;
  s << "phase " << position << " " << PadLeft(std::to_string(pct) + "%", 4) << "  ["
    << std::string(static_cast<size_t>(filled), '#') << std::string(static_cast<size_t>(kBarWidth - filled), '.')
    << "]  " << ok << "/" << target << " ok  " << Int(counts, "failed") << " failed  " << Int(counts, "unreached")
    << " unreached  " << state;
  return s.str();
}

std::vector<std::string> PhaseLines(const Json& r) {
  std::vector<std::string> lines;
  int64_t previous = 0;
  const Json phases = r.value("phases", Json::array());
  for (size_t i = 0; i < phases.size(); ++i) {
    lines.push_back(PhaseLine(phases[i], i + 1, previous));
    previous = std::max(previous, Int(phases[i], "target", previous));
  }
  return lines;
}

std::string RolloutHeadline(const Json& r) {
  const Json rel = r.value("release", Json::object());
  std::string s = "rollout " + Str(r, "id") + "  " + Str(r, "state") + "  release " + Num(rel, "version");
  const std::string name = Str(rel, "name", "");
  if (!name.empty()) s += " \"" + name + "\"";
  return s;
}

void PrintFailedDevices(const Io& io, const Json& r) {
  Table t({"FAILED DEVICE", "STATE", "ATTEMPTS", "ERROR"});
  size_t n = 0;
  for (const Json& d : r.value("devices", Json::array())) {
    if (!IsFailure(Str(d, "state"))) continue;
    t.Add({Str(d, "id"), Str(d, "state"), Num(d, "attempts", "0"), Str(d, "error", "")});
    ++n;
  }
  if (n) t.Print(io.out);
}

Status WatchRollout(Context& ctx, const WatchFlags& f) {
  const Io& io = ctx.io;
  TUG_ASSIGN_OR_RETURN(auto interval, ParseDurationFlag("--interval", f.interval));
  TUG_ASSIGN_OR_RETURN(auto timeout, ParseDurationFlag("--timeout", f.timeout));
  TUG_ASSIGN_OR_RETURN(ApiClient client, Connect(ctx));
  // The progress lines need the counts only (a 10,000-device report is ~1.6 MB a poll); --json prints the whole
  // report as it always did.
  const std::string path =
      RolloutPath(f.id, ReportQuery{.devices = ctx.fleet.json ? "" : "none", .limit = 0, .after = ""});
  const core::TimePoint deadline = io.clock.Now() + timeout;

  std::vector<std::string> shown;  // last frame drawn
  std::string shown_json;
  std::string last_warning;
  std::string state = "unknown";
  for (;;) {
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - io.clock.Now());
    if (remaining.count() <= 0) break;
    client.set_timeout(std::clamp<std::chrono::milliseconds>(remaining, std::chrono::seconds(1), kRequestTimeout));
    Result<std::string> answer = client.Get(path);
    if (!answer) {
      // The rollout lives on the controller: a restart or network blip must not end the watch, but a 4xx
      // (unknown rollout, bad token) will not fix itself.
      const int status = ApiStatus(answer.error());
      if (status >= 400 && status < 500) return tl::unexpected(std::move(answer.error()));
      const std::string warning = answer.error().Message();
      if (warning != last_warning) io.err << "tug: " << warning << " (retrying)\n";
      last_warning = warning;
    } else {
      last_warning.clear();
      TUG_ASSIGN_OR_RETURN(Json r, ParseBody(*answer, "GET " + path));
      state = Str(r, "state", "unknown");
      if (ctx.fleet.json) {
        const std::string compact = r.dump();
        if (compact != shown_json) io.out << compact << "\n";
        shown_json = compact;
      } else {
        std::vector<std::string> frame = Frame(r);
        if (io.tty) {
          // Cursor to the first line of the previous frame, clear to the end of the screen, draw again.
          if (!shown.empty()) io.out << "\x1b[" << shown.size() << "F\x1b[J";
          for (const auto& l : frame) io.out << l << "\n";
        } else if (frame != shown) {
          for (const auto& l : frame) io.out << l << "\n";
        }
        shown = std::move(frame);
      }
      io.out.flush();
      if (state == "succeeded") {
        if (!ctx.fleet.json) io.out << "rollout " << f.id << " succeeded\n";
        return {};
      }
      if (state == "aborted" || state == "cancelled") {
        const std::string reason = Str(r, "abort_reason", "");
        if (!ctx.fleet.json) {
          if (!reason.empty()) io.out << "abort reason: " << reason << "\n";
          auto failed = FetchFailedDevices(client, f.id);
          if (failed) {
            PrintFailedDevices(io, *failed);
          } else {  // the outcome is known: say the list is missing rather than lose the exit status
            io.err << "tug: listing the failed devices: " << failed.error().Message() << "\n";
          }
        }
        // Printed here rather than returned: an Error would append its code's name to the controller's reason.
        io.err << "tug: rollout " << f.id << " " << state << (reason.empty() ? "" : ": " + reason) << "\n";
        ctx.exit_code = 1;
        return {};
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - io.clock.Now());
    if (left.count() <= 0) break;
    Sleep(io, std::min<std::chrono::milliseconds>(interval, left));
  }
  io.err << "tug: gave up watching rollout " << f.id << " after " << f.timeout << " (state " << state
         << "); it continues on the controller\n";
  ctx.exit_code = 3;
  return {};
}

}  // namespace tug::cli
