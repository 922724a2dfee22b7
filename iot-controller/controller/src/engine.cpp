#include "controller/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace tug::controller {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

std::string DeviceTopic(const std::string& device_id, const std::string& leaf) {
  return "tug/v1/d/" + device_id + "/" + leaf;
}

namespace {

bool Matches(const RolloutSpec& s, const Device& d) {
  if (!s.selector_devices.empty() &&
      std::find(s.selector_devices.begin(), s.selector_devices.end(), d.id) == s.selector_devices.end())
    return false;
  const Labels l = d.EffectiveLabels();
  for (const auto& [k, v] : s.selector_labels) {
    auto it = l.find(k);
    if (it == l.end() || it->second != v) return false;
  }
  return true;
}

bool IsFailure(DeviceJobState s) { return s == DeviceJobState::kFailed || s == DeviceJobState::kTimedOut; }
// A device that installed the release, whether or not it was rolled back by the fleet afterwards.
bool IsSuccess(DeviceJobState s) { return s == DeviceJobState::kSucceeded || s == DeviceJobState::kRolledBack; }

int64_t Target(const PhaseSpec& p, int64_t fleet) {
  if (p.count) return std::min(*p.count, fleet);
  const double t = std::ceil(p.percent.value_or(100) * static_cast<double>(fleet) / 100.0 - 1e-9);
  return std::min(fleet, static_cast<int64_t>(t));
}

// "20" rather than std::to_string's "20.000000" in messages operators read.
std::string Pct(double p) {
  std::ostringstream o;
  o << p;
  return o.str();
}

std::string Seconds(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

json CountsJson(const std::vector<const RolloutDevice*>& rows) {
  json c{{"pending", 0}, {"in_progress", 0}, {"succeeded", 0}, {"failed", 0},
         {"unreached", 0}, {"cancelled", 0}, {"rolled_back", 0}};
  for (const auto* rd : rows) {
    switch (rd->state) {
      case DeviceJobState::kPending: c["pending"] = c["pending"].get<int>() + 1; break;
      case DeviceJobState::kInProgress: c["in_progress"] = c["in_progress"].get<int>() + 1; break;
      case DeviceJobState::kSucceeded: c["succeeded"] = c["succeeded"].get<int>() + 1; break;
      case DeviceJobState::kFailed:
      case DeviceJobState::kTimedOut: c["failed"] = c["failed"].get<int>() + 1; break;
      case DeviceJobState::kUnreached: c["unreached"] = c["unreached"].get<int>() + 1; break;
      case DeviceJobState::kCancelled: c["cancelled"] = c["cancelled"].get<int>() + 1; break;
      case DeviceJobState::kRolledBack: c["rolled_back"] = c["rolled_back"].get<int>() + 1; break;
    }
  }
  return c;
}

std::optional<json> ParseJson(const std::string& payload, const char* what, const std::string& device_id) {
  auto j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    spdlog::warn("ignoring malformed {} from {}", what, device_id);
    return std::nullopt;
  }
  return j;
}

uint64_t UintOr(const json& j, const char* key, uint64_t def) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return def;
}

std::string StrOr(const json& j, const char* key) {
  if (j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

}  // namespace

Engine::Engine(Store& store, Publisher& publisher, const core::Clock& clock)
    : store_(store), publisher_(publisher), clock_(clock) {}

Millis Engine::Now() const {
  return duration_cast<milliseconds>(clock_.Now().time_since_epoch()).count();
}

Status Engine::InTx(const std::function<Status()>& f) {
  TUG_TRY(store_.Begin());
  auto st = f();
  if (st) st = store_.Commit();
  if (!st) {
    store_.Rollback();
    outbox_.clear();  // nothing that was not persisted may leave
    return st;
  }
  // Publish only after the commit: a crash before this point loses messages, never state; RepublishDesired and the
  // retained desired topic make the device catch up.
  auto out = std::move(outbox_);
  outbox_.clear();
  for (const auto& m : out) {
    if (auto p = publisher_.Publish(m.topic, m.payload, m.retain); !p) {
      spdlog::warn("publishing {}: {}", m.topic, p.error().Message());
      republish_needed_ = true;
    }
  }
  return {};
}

// ---- reports ----

// A device seen for the first time registers itself with its first report.
Device Engine::NewDevice(const std::string& device_id) const {
  Device d;
  d.id = device_id;
  d.created_at = Now();
  return d;
}

Status Engine::OnPresence(const std::string& device_id, const std::string& payload) {
  auto j = ParseJson(payload, "presence", device_id);
  if (!j) return {};
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(device_id));
    Device d = existing ? *existing : NewDevice(device_id);
    // boot_id is not taken from presence: state seq is compared per boot_id, and the state of the new boot has
    // to be the one that switches it.
    d.online = j->value("online", false);
    d.last_seen = Now();
    TUG_TRY(store_.PutDevice(d));
    ++counters_.reports_applied;
    return TickAll();
  });
}

Status Engine::OnState(const std::string& device_id, const std::string& payload) {
  auto j = ParseJson(payload, "state", device_id);
  if (!j) return {};
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(device_id));
    Device d = existing ? *existing : NewDevice(device_id);
    const std::string boot_id = StrOr(*j, "boot_id");
    const uint64_t seq = UintOr(*j, "seq", 0);
    if (existing && boot_id == d.boot_id && seq <= d.state_seq) {
      ++counters_.reports_ignored;  // a replay (retained snapshot, duplicate) or an older state
      return {};
    }
    d.boot_id = boot_id;
    d.state_seq = seq;
    d.last_seen = Now();
    d.applied_v = UintOr(*j, "applied_v", d.applied_v);
    d.active = j->contains("active") ? (*j)["active"] : json(nullptr);
    d.previous = j->contains("previous") ? (*j)["previous"] : json(nullptr);
    d.arch = StrOr(*j, "arch");
    d.agent_version = StrOr(*j, "agent_version");
    d.reported_labels.clear();
    if (j->contains("labels") && (*j)["labels"].is_object())
      for (const auto& [k, v] : (*j)["labels"].items())
        if (v.is_string()) d.reported_labels[k] = v.get<std::string>();
    json job = j->contains("job") && (*j)["job"].is_object() ? (*j)["job"] : json::object();
    d.job_id = StrOr(job, "id");
    d.job_phase = StrOr(job, "phase");
    TUG_TRY(store_.PutDevice(d));
    ++counters_.reports_applied;
    // The state carries the job's latest journal entry (same seq as its status message): it stands in for a status
    // message this controller missed (it was down, or the message went to another controller).
    if (!d.job_id.empty() && (d.job_phase == "SUCCEEDED" || d.job_phase == "FAILED" || d.job_phase == "ROLLED_BACK")) {
      json report{{"state", d.job_phase}, {"seq", UintOr(job, "seq", 0)}, {"boot_id", boot_id},
                  {"error", job.contains("error") ? job["error"] : json(nullptr)}};
      bool changed = false;
      TUG_TRY(ApplyJobReport(device_id, d.job_id, report, &changed));
    }
    return TickAll();
  });
}

Status Engine::OnJobStatus(const std::string& device_id, const std::string& job, const std::string& payload) {
  auto j = ParseJson(payload, "job status", device_id);
  if (!j) return {};
  return InTx([&]() -> Status {
    bool changed = false;
    TUG_TRY(ApplyJobReport(device_id, job, *j, &changed));
    if (!changed) return {};
    return TickAll();
  });
}

Status Engine::ApplyJobReport(const std::string& device_id, const std::string& job, const json& report,
                              bool* changed) {
  *changed = false;
  TUG_ASSIGN_OR_RETURN(auto found, store_.FindByJob(device_id, job));
  if (!found) {
    ++counters_.reports_ignored;  // not one of ours (manual install, another controller's data, old attempt)
    return {};
  }
  RolloutDevice rd = *found;
  TUG_ASSIGN_OR_RETURN(bool fresh,
                       store_.RecordReport(device_id, job, StrOr(report, "boot_id"), UintOr(report, "seq", 0)));
  if (!fresh) {
    ++counters_.reports_ignored;
    return {};
  }
  TUG_ASSIGN_OR_RETURN(auto rollout, store_.GetRollout(rd.rollout_id));
  if (!rollout) return MakeError(Errc::kInternal, "rollout " + rd.rollout_id + " vanished");
  Rollout r = *rollout;
  const std::string state = StrOr(report, "state");
  const json err = report.contains("error") && report["error"].is_object() ? report["error"] : json::object();
  const std::string err_text = StrOr(err, "code") + (StrOr(err, "message").empty() ? "" : ": " + StrOr(err, "message"));

  if (job == rd.job) {
    // Terminal outcomes are sticky: a late or replayed report must never move a counted device.
    if (rd.state != DeviceJobState::kInProgress && rd.state != DeviceJobState::kUnreached) {
      ++counters_.reports_ignored;
      return {};
    }
    if (state == "SUCCEEDED") {
      rd.state = DeviceJobState::kSucceeded;
      rd.error.clear();
    } else if (state == "FAILED") {
      const bool retryable = err.value("retryable", false);
      TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDevice(device_id));
      if (retryable && rd.attempts - 1 < r.spec.max_retries && r.state == RolloutState::kRunning && dev &&
          dev->online) {
        spdlog::info("rollout {}: {} failed retryably ({}), retrying", r.id, device_id, err_text);
        TUG_TRY(SendInstall(r, rd));  // persists rd with the new attempt
        ++counters_.reports_applied;
        *changed = true;
        return {};
      }
      rd.state = DeviceJobState::kFailed;
      rd.error = err_text.empty() ? "FAILED" : err_text;
    } else if (state == "ROLLED_BACK") {
      rd.state = DeviceJobState::kFailed;
      rd.error = "ROLLED_BACK" + (err_text.empty() ? std::string() : ": " + err_text);
    } else if (rd.state == DeviceJobState::kUnreached) {
      // Progress from a device we had written off as unreached: it is online and working on the job.
      rd.state = DeviceJobState::kInProgress;
      rd.sent_at = Now();
    } else {
      ++counters_.reports_applied;
      return {};
    }
  } else {  // the fleet rollback job
    if (rd.rollback_state != "sent") {
      ++counters_.reports_ignored;
      return {};
    }
    if (state == "SUCCEEDED") {
      rd.rollback_state = "succeeded";
      rd.state = DeviceJobState::kRolledBack;
    } else if (state == "FAILED" || state == "ROLLED_BACK") {
      rd.rollback_state = "failed";
      rd.error = "rollback: " + (err_text.empty() ? state : err_text);
    } else {
      ++counters_.reports_applied;
      return {};
    }
  }
  TUG_TRY(store_.PutRolloutDevice(rd));
  ++counters_.reports_applied;
  *changed = true;
  return {};
}

// ---- sending ----

Status Engine::PublishDesired(Device& d, json desired) {
  // v must exceed both what we issued before and what the device applied (it may have had another controller or
  // a manual install): the device ignores v <= applied_v.
  d.desired_v = std::max(d.desired_v, d.applied_v) + 1;
  desired["v"] = d.desired_v;
  d.desired = desired.dump();
  TUG_TRY(store_.PutDevice(d));
  outbox_.push_back(Outgoing{.topic = DeviceTopic(d.id, "desired"), .payload = d.desired, .retain = true});
  ++counters_.desired_published;
  return {};
}

Status Engine::SendInstall(Rollout& r, RolloutDevice& rd) {
  TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDevice(rd.device_id));
  TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(r.spec.release));
  if (!dev || !rel) return MakeError(Errc::kInternal, "device or release missing for rollout " + r.id);
  rd.attempts += 1;
  rd.job = r.id + "." + rd.device_id + "." + std::to_string(rd.attempts);
  rd.state = DeviceJobState::kInProgress;
  rd.sent = true;
  rd.sent_at = Now();
  rd.error.clear();
  if (rd.phase < 0) rd.phase = r.current_phase;
  json envelope = json::parse(rel->envelope, nullptr, false);
  if (envelope.is_discarded()) return MakeError(Errc::kInternal, "stored envelope of release is not JSON");
  const auto deadline = clock_.Now() + r.spec.device_timeout;
  json desired{{"job", rd.job}, {"release", envelope}, {"policy", {{"deadline", core::FormatRfc3339(deadline)}}}};
  Device d = *dev;
  TUG_TRY(PublishDesired(d, std::move(desired)));
  TUG_TRY(store_.PutRolloutDevice(rd));
  spdlog::info("rollout {}: sent release {} to {} (job {})", r.id, r.spec.release, rd.device_id, rd.job);
  return {};
}

Status Engine::SendRollback(Rollout& r, RolloutDevice& rd) {
  TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDevice(rd.device_id));
  if (!dev) return MakeError(Errc::kInternal, "device " + rd.device_id + " missing");
  rd.rollback_job = r.id + "." + rd.device_id + ".rollback";
  rd.rollback_state = "sent";
  Device d = *dev;
  TUG_TRY(PublishDesired(d, json{{"job", rd.rollback_job}, {"action", "rollback"}}));
  TUG_TRY(store_.PutRolloutDevice(rd));
  spdlog::info("rollout {}: sent rollback to {}", r.id, rd.device_id);
  return {};
}

Status Engine::AbortRollout(Rollout& r, std::vector<RolloutDevice>& rows, const std::string& reason) {
  spdlog::warn("rollout {} aborted: {}", r.id, reason);
  r.state = RolloutState::kAborted;
  r.abort_reason = reason;
  if (r.spec.auto_rollback) {
    r.rolled_back = true;
    for (auto& rd : rows)
      if (rd.state == DeviceJobState::kSucceeded && rd.rollback_job.empty()) TUG_TRY(SendRollback(r, rd));
  }
  return store_.PutRollout(r);
}

// ---- the state machine ----

Status Engine::Tick() {
  if (republish_needed_) {
    republish_needed_ = false;
    TUG_TRY(RepublishDesired());
  }
  return InTx([this] { return TickAll(); });
}

Status Engine::TickAll() {
  TUG_ASSIGN_OR_RETURN(auto rollouts, store_.ListRollouts());
  for (auto& r : rollouts) {
    if (r.state == RolloutState::kSucceeded) continue;
    TUG_TRY(TickRollout(r));
  }
  return {};
}

Status Engine::TickRollout(Rollout& r) {
  const Millis now = Now();
  const bool running = r.state == RolloutState::kRunning;
  TUG_ASSIGN_OR_RETURN(auto devices, store_.ListDevices());
  std::map<std::string, Device> dev_by_id;
  for (auto& d : devices) dev_by_id[d.id] = std::move(d);
  TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(r.id));
  auto online = [&](const RolloutDevice& rd) {
    auto it = dev_by_id.find(rd.device_id);
    return it != dev_by_id.end() && it->second.online;
  };
  const Rollout before = r;

  if (running) {
    std::map<std::string, bool> known;
    for (const auto& rd : rows) known[rd.device_id] = true;
    for (const auto& [id, d] : dev_by_id) {
      if (known.count(id) || !Matches(r.spec, d)) continue;
      RolloutDevice rd;
      rd.rollout_id = r.id;
      rd.device_id = id;
      TUG_TRY(store_.PutRolloutDevice(rd));
      rows.push_back(rd);
    }
  }

  // Timeouts run whatever the rollout state: devices left to finish after an abort or cancel still get an outcome.
  const Millis timeout_ms = duration_cast<milliseconds>(r.spec.device_timeout).count();
  for (auto& rd : rows) {
    if (rd.state == DeviceJobState::kInProgress && rd.sent && now - rd.sent_at >= timeout_ms) {
      if (online(rd)) {
        rd.state = DeviceJobState::kTimedOut;
        rd.error = "no terminal report within " + Seconds(r.spec.device_timeout);
      } else {
        rd.state = DeviceJobState::kUnreached;  // offline at its deadline: not its fault, not a failure
      }
      TUG_TRY(store_.PutRolloutDevice(rd));
    } else if (rd.state == DeviceJobState::kUnreached && rd.sent && online(rd) && running) {
      // The retained desired is already on the broker; the device gets it on connect. Restart its clock.
      rd.state = DeviceJobState::kInProgress;
      rd.sent_at = now;
      TUG_TRY(store_.PutRolloutDevice(rd));
    }
  }

  if (r.rolled_back) {
    // Devices that were still in progress when the fleet rollback went out and succeeded afterwards.
    for (auto& rd : rows)
      if (rd.state == DeviceJobState::kSucceeded && rd.rollback_job.empty()) TUG_TRY(SendRollback(r, rd));
  }

  if (running) {
    int64_t terminal = 0, failures = 0;
    for (const auto& rd : rows) {
      if (IsSuccess(rd.state)) ++terminal;
      if (IsFailure(rd.state)) ++terminal, ++failures;
    }
    if (terminal >= r.spec.min_devices && terminal > 0 &&
        static_cast<double>(failures) * 100.0 >= r.spec.failure_percent * static_cast<double>(terminal)) {
      return AbortRollout(r, rows, std::to_string(failures) + " of " + std::to_string(terminal) +
                                       " devices failed (abort at " + Pct(r.spec.failure_percent) + "%)");
    }
  }

  if (running) {
    const int64_t fleet = static_cast<int64_t>(rows.size());
    int64_t in_progress = 0;
    for (const auto& rd : rows) in_progress += rd.state == DeviceJobState::kInProgress;
    // Unreached devices that came back and never got the desired published: their turn had come.
    for (auto& rd : rows) {
      if (in_progress >= r.spec.max_concurrency) break;
      if (rd.state == DeviceJobState::kUnreached && !rd.sent && online(rd)) {
        TUG_TRY(SendInstall(r, rd));
        ++in_progress;
      }
    }
    // Phase transitions can cascade within one tick (a phase with soak 0 finishing starts the next at once);
    // bounded by the number of phases.
    for (size_t guard = 0; guard < r.spec.phases.size() * 3 + 3; ++guard) {
      const int i = r.current_phase;
      const PhaseSpec& ph = r.spec.phases[static_cast<size_t>(i)];
      if (r.phase_state == PhaseState::kActive || r.phase_state == PhaseState::kSoaking) {
        if (fleet == 0) break;  // nothing selected yet: wait for devices to join
        // Sending also runs while soaking: devices that joined late (the target grows with the fleet) are not
        // left behind by the phase they arrived in.
        const int64_t target = Target(ph, fleet);
        int64_t assigned = 0;
        for (const auto& rd : rows)
          assigned += rd.phase >= 0 && rd.state != DeviceJobState::kUnreached && rd.state != DeviceJobState::kPending;
        while (assigned < target && in_progress < r.spec.max_concurrency) {
          RolloutDevice* next = nullptr;
          for (auto& rd : rows)
            if (rd.state == DeviceJobState::kPending && online(rd)) {
              next = &rd;
              break;
            }
          if (next) {
            next->phase = i;
            TUG_TRY(SendInstall(r, *next));
            ++assigned;
            ++in_progress;
            continue;
          }
          for (auto& rd : rows)
            if (rd.state == DeviceJobState::kPending) {
              next = &rd;
              break;
            }
          if (!next) break;
          // Its turn came while offline: unreached, not counted towards the target; it gets the job when back.
          next->phase = i;
          next->state = DeviceJobState::kUnreached;
          TUG_TRY(store_.PutRolloutDevice(*next));
        }
        bool pending_left = false, busy = false, unreached_here = false;
        int64_t ok = 0, bad = 0;
        for (const auto& rd : rows) {
          pending_left |= rd.state == DeviceJobState::kPending;
          busy |= rd.state == DeviceJobState::kInProgress && rd.phase <= i;
          if (rd.phase != i) continue;
          unreached_here |= rd.state == DeviceJobState::kUnreached;
          ok += IsSuccess(rd.state);
          bad += IsFailure(rd.state);
        }
        if (r.phase_state == PhaseState::kSoaking) {
          if (now < r.soak_until || busy) break;
          r.phase_state = PhaseState::kDone;
          if (static_cast<size_t>(i) + 1 < r.spec.phases.size()) {
            r.current_phase = i + 1;
            r.phase_state = PhaseState::kActive;
            continue;
          }
          r.state = RolloutState::kSucceeded;
          spdlog::info("rollout {} succeeded", r.id);
          break;
        }
        if ((assigned < target && pending_left) || busy) break;
        if (ok + bad == 0 && unreached_here) break;  // no evidence yet: wait for the unreached to come back
        if (ok + bad > 0 && static_cast<double>(ok) * 100.0 < ph.success_threshold * static_cast<double>(ok + bad)) {
          return AbortRollout(r, rows, "phase " + std::to_string(i + 1) + ": " + std::to_string(ok) + " of " +
                                           std::to_string(ok + bad) + " devices succeeded, below the " +
                                           Pct(ph.success_threshold) + "% threshold");
        }
        r.phase_state = PhaseState::kSoaking;
        r.soak_until = now + duration_cast<milliseconds>(ph.soak).count();
        continue;
      }
      break;
    }
  }
  if (r.state != before.state || r.current_phase != before.current_phase || r.phase_state != before.phase_state ||
      r.soak_until != before.soak_until)
    TUG_TRY(store_.PutRollout(r));
  return {};
}

// ---- operator actions ----

Result<std::string> Engine::CreateRollout(const RolloutSpec& spec) {
  std::string id;
  auto st = InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(spec.release));
    if (!rel) return MakeError(Errc::kNotFound, "release: version " + std::to_string(spec.release) + " is not registered");
    TUG_ASSIGN_OR_RETURN(id, store_.NextRolloutId());
    Rollout r;
    r.id = id;
    r.spec = spec;
    r.created_at = Now();
    TUG_TRY(store_.PutRollout(r));
    return TickAll();
  });
  if (!st) return tl::unexpected(st.error());
  return id;
}

namespace {
tl::unexpected<Error> Conflict(const Rollout& r, const std::string& what) {
  return MakeError(Errc::kAlreadyExists, "cannot " + what + " rollout " + r.id + " in state " + ToString(r.state));
}
}  // namespace

Status Engine::Pause(const std::string& id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
    if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (r->state != RolloutState::kRunning) return Conflict(*r, "pause");
    r->state = RolloutState::kPaused;
    return store_.PutRollout(*r);
  });
}

Status Engine::Resume(const std::string& id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
    if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (r->state != RolloutState::kPaused) return Conflict(*r, "resume");
    r->state = RolloutState::kRunning;
    TUG_TRY(store_.PutRollout(*r));
    return TickAll();
  });
}

Status Engine::Cancel(const std::string& id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
    if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (r->state != RolloutState::kRunning && r->state != RolloutState::kPaused) return Conflict(*r, "cancel");
    r->state = RolloutState::kCancelled;
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(id));
    for (auto& rd : rows) {
      // Devices already holding the desired keep it (in progress is left to finish); the rest never get it.
      if (rd.state == DeviceJobState::kPending || (rd.state == DeviceJobState::kUnreached && !rd.sent)) {
        rd.state = DeviceJobState::kCancelled;
        TUG_TRY(store_.PutRolloutDevice(rd));
      }
    }
    return store_.PutRollout(*r);
  });
}

Result<int> Engine::Rollback(const std::string& id) {
  int sent = 0;
  auto st = InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
    if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (r->rolled_back) return MakeError(Errc::kAlreadyExists, "rollout " + id + " was already rolled back");
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(id));
    if (r->state == RolloutState::kRunning || r->state == RolloutState::kPaused) {
      r->state = RolloutState::kCancelled;
      r->abort_reason = "rolled back by the operator";
      for (auto& rd : rows)
        if (rd.state == DeviceJobState::kPending || (rd.state == DeviceJobState::kUnreached && !rd.sent)) {
          rd.state = DeviceJobState::kCancelled;
          TUG_TRY(store_.PutRolloutDevice(rd));
        }
    }
    r->rolled_back = true;
    for (auto& rd : rows)
      if (rd.state == DeviceJobState::kSucceeded && rd.rollback_job.empty()) {
        TUG_TRY(SendRollback(*r, rd));
        ++sent;
      }
    return store_.PutRollout(*r);
  });
  if (!st) return tl::unexpected(st.error());
  return sent;
}

Status Engine::CancelDevice(const std::string& id, const std::string& device_id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
    if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(id));
    auto it = std::find_if(rows.begin(), rows.end(), [&](const RolloutDevice& rd) { return rd.device_id == device_id; });
    if (it == rows.end()) return MakeError(Errc::kNotFound, "device " + device_id + " is not part of rollout " + id);
    RolloutDevice& rd = *it;
    if (rd.state != DeviceJobState::kPending && rd.state != DeviceJobState::kInProgress &&
        rd.state != DeviceJobState::kUnreached)
      return MakeError(Errc::kAlreadyExists,
                       "device " + device_id + " is already " + ToString(rd.state) + " in rollout " + id);
    if (rd.sent) {
      TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDevice(device_id));
      if (dev && dev->applied_v < dev->desired_v) {
        // Not taken yet: withdraw the retained desired so the device does not pick it up on its next connect.
        Device d = *dev;
        d.desired.clear();
        TUG_TRY(store_.PutDevice(d));
        outbox_.push_back(Outgoing{.topic = DeviceTopic(device_id, "desired"), .payload = "", .retain = true});
      }
      outbox_.push_back(
          Outgoing{.topic = DeviceTopic(device_id, "cmd/req"), .payload = json{{"cmd", "cancel"}}.dump(), .retain = false});
    }
    rd.state = DeviceJobState::kCancelled;
    rd.error = "cancelled by the operator";
    return store_.PutRolloutDevice(rd);
  });
}

Status Engine::RepublishDesired() {
  TUG_ASSIGN_OR_RETURN(auto devices, store_.ListDevices());
  for (const auto& d : devices) {
    if (d.desired.empty() || d.applied_v >= d.desired_v) continue;
    if (auto p = publisher_.Publish(DeviceTopic(d.id, "desired"), d.desired, true); !p) {
      spdlog::warn("re-publishing desired of {}: {}", d.id, p.error().Message());
      republish_needed_ = true;  // try the rest on a later tick
      break;
    }
  }
  return {};
}

// ---- reporting ----

Result<json> Engine::RolloutReport(const std::string& id) {
  TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
  if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
  TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(id));
  TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(r->spec.release));
  json release = rel ? json{{"version", rel->version}, {"name", rel->name}, {"repository", rel->repository},
                            {"digest", rel->digest}, {"expires_at", rel->expires_at}}
                     : json{{"version", r->spec.release}};
  const int64_t fleet = static_cast<int64_t>(rows.size());
  json phases = json::array();
  for (size_t i = 0; i < r->spec.phases.size(); ++i) {
    const int idx = static_cast<int>(i);
    PhaseState ps = idx < r->current_phase   ? PhaseState::kDone
                     : idx > r->current_phase ? PhaseState::kPending
                                              : r->phase_state;
    if (r->state == RolloutState::kSucceeded) ps = PhaseState::kDone;
    std::vector<const RolloutDevice*> mine;
    int64_t assigned_upto = 0;
    for (const auto& rd : rows) {
      if (rd.phase == idx) mine.push_back(&rd);
      if (rd.phase >= 0 && rd.phase <= idx && rd.state != DeviceJobState::kUnreached) ++assigned_upto;
    }
    const int64_t target = Target(r->spec.phases[i], fleet);
    json counts = CountsJson(mine);
    const bool open = r->state == RolloutState::kRunning || r->state == RolloutState::kPaused;
    counts["pending"] = open && ps != PhaseState::kDone ? std::max<int64_t>(0, target - assigned_upto) : 0;
    json p{{"index", idx}, {"target", target}, {"state", ToString(ps)}, {"counts", counts},
           {"success_threshold", r->spec.phases[i].success_threshold}, {"soak", Seconds(r->spec.phases[i].soak)}};
    if (ps == PhaseState::kSoaking)
      p["soak_until"] = core::FormatRfc3339(core::TimePoint(milliseconds(r->soak_until)));
    phases.push_back(p);
  }
  std::vector<const RolloutDevice*> all;
  json devices = json::array();
  json touched = json::array();
  for (const auto& rd : rows) {
    all.push_back(&rd);
    json d{{"id", rd.device_id}, {"phase", rd.phase}, {"state", ToString(rd.state)}, {"attempts", rd.attempts},
           {"job", rd.job}, {"error", rd.error}};
    if (!rd.rollback_job.empty()) {
      d["rollback_job"] = rd.rollback_job;
      d["rollback_state"] = rd.rollback_state;
    }
    devices.push_back(d);
    if (rd.sent || !rd.rollback_job.empty()) touched.push_back(rd.device_id);
  }
  return json{{"id", r->id},
              {"state", ToString(r->state)},
              {"release", release},
              {"created_at", core::FormatRfc3339(core::TimePoint(milliseconds(r->created_at)))},
              {"spec", RolloutSpecToJson(r->spec)},
              {"current_phase", r->current_phase},
              {"phases", phases},
              {"counts", CountsJson(all)},
              {"devices", devices},
              {"touched", touched},
              {"rolled_back", r->rolled_back},
              {"abort_reason", r->abort_reason}};
}

}  // namespace tug::controller
