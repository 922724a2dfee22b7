#include "controller/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

namespace tug::controller {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

bool HasAll(const Labels& want, const Labels& have) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

// selector.labels match the effective labels (a device's claims included); selector.operator_labels only what an
// operator set (docs/controller.md, "Labels are claims").
bool Matches(const RolloutSpec& s, const Device& d) {
  if (!s.selector_devices.empty() &&
      std::find(s.selector_devices.begin(), s.selector_devices.end(), d.id) == s.selector_devices.end())
    return false;
  return HasAll(s.selector_operator_labels, d.operator_labels) && HasAll(s.selector_labels, d.EffectiveLabels());
}

// Outcomes as the abort rule and the phase threshold count them: a success is a device that installed the release,
// whether or not the fleet rolled it back afterwards.
constexpr DeviceJobState kSuccesses[] = {DeviceJobState::kSucceeded, DeviceJobState::kRolledBack};
constexpr DeviceJobState kFailures[] = {DeviceJobState::kFailed, DeviceJobState::kTimedOut};

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

// Devices of a rollout per (phase, state), index [phase + 1][state], as Engine::Live keeps them.
using PhaseCounts = std::vector<std::array<int64_t, 8>>;

json CountsJson(const std::array<int64_t, 8>& n) {
  auto at = [&n](DeviceJobState s) { return n[static_cast<size_t>(s)]; };
  return {{"pending", at(DeviceJobState::kPending)},
          {"in_progress", at(DeviceJobState::kInProgress)},
          {"succeeded", at(DeviceJobState::kSucceeded)},
          {"failed", at(DeviceJobState::kFailed) + at(DeviceJobState::kTimedOut)},
          {"unreached", at(DeviceJobState::kUnreached)},
          {"cancelled", at(DeviceJobState::kCancelled)},
          {"rolled_back", at(DeviceJobState::kRolledBack)}};
}

}  // namespace

Engine::Engine(Store& store, Publisher& publisher, const core::Clock& clock, EngineOptions options)
    : store_(store), publisher_(publisher), clock_(clock), options_(options) {
  options_.tick_send_batch = std::max<int64_t>(1, options_.tick_send_batch);
  options_.report_send_batch = std::max<int64_t>(1, options_.report_send_batch);
}

Millis Engine::Now() const {
  return duration_cast<milliseconds>(clock_.Now().time_since_epoch()).count();
}

Status Engine::InTx(const std::function<Status()>& f) {
  TUG_TRY(store_.Begin());
  envelopes_.clear();
  Status st;
  // Nothing below is expected to throw; if something does (a bug, bad_alloc), the transaction is rolled back like
  // any failure instead of leaving it open or taking the process down.
  try {
    st = EnsureLoaded();
    if (st) st = f();
  } catch (const std::exception& e) {
    st = MakeError(Errc::kInternal, std::string("unexpected exception: ") + e.what());
  }
  if (st) st = store_.Commit();
  envelopes_.clear();
  if (!st) {
    store_.Rollback();
    outbox_.clear();  // nothing that was not persisted may leave
    // The in-memory rollouts may hold changes the rollback undid: start again from the Store.
    loaded_ = false;
    live_.clear();
    order_.clear();
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

// ---- the in-memory rollouts ----

int64_t& Engine::Live::At(int phase, DeviceJobState s) {
  const size_t i = static_cast<size_t>(std::max(phase, -1) + 1);
  if (counts.size() <= i) counts.resize(i + 1, std::array<int64_t, 8>{});
  return counts[i][static_cast<size_t>(s)];
}

int64_t Engine::Live::InState(DeviceJobState s) const {
  int64_t n = 0;
  for (const auto& c : counts) n += c[static_cast<size_t>(s)];
  return n;
}

Status Engine::EnsureLoaded() {
  if (loaded_) return {};
  live_.clear();
  order_.clear();
  TUG_ASSIGN_OR_RETURN(auto rollouts, store_.ListRollouts());
  for (auto& r : rollouts) {
    order_.push_back(r.id);
    Live l;
    l.r = std::move(r);
    live_.emplace(l.r.id, std::move(l));
  }
  TUG_ASSIGN_OR_RETURN(auto revoked, store_.ListRevocations());
  revoked_.clear();
  for (const auto& r : revoked) revoked_.insert(r.id);
  loaded_ = true;
  return {};
}

Status Engine::Count(Live& l) {
  if (l.counted) return {};
  TUG_ASSIGN_OR_RETURN(auto counts, store_.CountRolloutDevices(l.r.id));
  l.counts.assign(l.r.spec.phases.size() + 1, std::array<int64_t, 8>{});
  l.fleet = 0;
  for (const auto& c : counts) {
    l.At(c.phase, c.state) += c.count;
    l.fleet += c.count;
  }
  l.counted = true;
  return {};
}

Result<Engine::Live*> Engine::Find(const std::string& rollout_id) {
  TUG_TRY(EnsureLoaded());
  auto it = live_.find(rollout_id);
  if (it == live_.end()) return static_cast<Live*>(nullptr);
  TUG_TRY(Count(it->second));
  return &it->second;
}

// Every write of a rollout row goes through here so the counters follow the Store.
Status Engine::SaveRow(Live& l, const RolloutDevice& rd, std::optional<Slot> before) {
  TUG_TRY(store_.PutRolloutDevice(rd));
  if (!l.counted) return {};  // counted from the Store (this write included) when first needed
  if (before) {
    --l.At(before->phase, before->state);
  } else {
    ++l.fleet;
  }
  ++l.At(rd.phase, rd.state);
  return {};
}

Status Engine::CheckCounters() {
  return InTx([&]() -> Status {
    for (const auto& id : order_) {
      Live& l = live_.at(id);
      if (!l.counted) continue;
      Live fresh;
      fresh.r = l.r;
      TUG_TRY(Count(fresh));
      if (fresh.fleet != l.fleet)
        return MakeError(Errc::kInternal, "rollout " + id + ": fleet " + std::to_string(l.fleet) + " in memory, " +
                                              std::to_string(fresh.fleet) + " stored");
      for (int p = -1; p < static_cast<int>(std::max(fresh.counts.size(), l.counts.size())) - 1; ++p)
        for (int s = 0; s < 8; ++s) {
          const auto st = static_cast<DeviceJobState>(s);
          if (fresh.At(p, st) != l.At(p, st))
            return MakeError(Errc::kInternal, "rollout " + id + ": phase " + std::to_string(p) + " " + ToString(st) +
                                                  " " + std::to_string(l.At(p, st)) + " in memory, " +
                                                  std::to_string(fresh.At(p, st)) + " stored");
        }
    }
    return {};
  });
}

Status Engine::RevokeDevice(const std::string& device_id, const std::string& by, const std::string& reason) {
  return InTx([&]() -> Status {
    TUG_TRY(store_.PutRevocation(Store::Revocation{device_id, Now(), by, reason}));
    revoked_.insert(device_id);
    // Marked offline: it no longer reports, and rollouts must not wait on it as if it might.
    TUG_ASSIGN_OR_RETURN(auto d, store_.GetDevice(device_id));
    if (d && d->online) {
      d->online = false;
      TUG_TRY(store_.PutDevice(*d));
    }
    return {};
  });
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
  return OnReports(
      {DeviceReport{.kind = DeviceReport::Kind::kPresence, .device_id = device_id, .job = "", .payload = payload}});
}

Status Engine::OnState(const std::string& device_id, const std::string& payload) {
  return OnReports(
      {DeviceReport{.kind = DeviceReport::Kind::kState, .device_id = device_id, .job = "", .payload = payload}});
}

Status Engine::OnJobStatus(const std::string& device_id, const std::string& job, const std::string& payload) {
  return OnReports(
      {DeviceReport{.kind = DeviceReport::Kind::kJobStatus, .device_id = device_id, .job = job, .payload = payload}});
}

Status Engine::OnReports(const std::vector<DeviceReport>& reports) {
  if (reports.empty()) return {};
  auto st = InTx([&]() -> Status {
    for (const auto& r : reports) TUG_TRY(ApplyReport(r));
    return {};
  });
  if (st || reports.size() == 1) return st;
  spdlog::warn("applying {} reports in one transaction: {}; applying them one by one", reports.size(),
               st.error().Message());
  Status first;
  for (const auto& r : reports) {
    auto one = InTx([&] { return ApplyReport(r); });
    if (!one) {
      spdlog::error("report {} from {}: {}", r.kind == DeviceReport::Kind::kJobStatus ? "jobs/" + r.job : "",
                    r.device_id, one.error().Message());
      if (first) first = one;
    }
  }
  return first;
}

// One report, inside the caller's transaction: the device's rows change, then each rollout it touched takes its
// next decisions (abort, phase, a few more sends) at once, as if a tick had followed this report alone.
Status Engine::ApplyReport(const DeviceReport& report) {
  std::set<std::string> touched;
  // A refused payload is the device's problem, not the transaction's: drop it, count it, say so (rate-limited).
  auto refused = [&](const Error& e) -> Status {
    counters_.reports_rejected.Add(e);
    if (auto skipped = rejected_log_.Admit())
      spdlog::warn("dropping a report from {}: {} ({} similar lines suppressed)", report.device_id, e.Message(),
                   *skipped);
    return {};
  };
  // A revoked device (a stolen one) may still reach the broker until it refuses the certificate: nothing it says
  // counts, nothing it says is stored.
  if (revoked_.count(report.device_id)) {
    ++counters_.reports_revoked;
    if (auto skipped = rejected_log_.Admit())
      spdlog::warn("dropping a report from revoked device {} ({} similar lines suppressed)", report.device_id,
                   *skipped);
    return {};
  }
  // The device id (and job id) come from a topic the MQTT bridge checked with fleet::ParseTopic.
  switch (report.kind) {
    case DeviceReport::Kind::kPresence: {
      auto p = fleet::ParsePresence(report.payload, options_.limits);
      if (!p) return refused(p.error());
      TUG_TRY(ApplyPresence(report.device_id, *p, touched));
      break;
    }
    case DeviceReport::Kind::kState: {
      auto s = fleet::ParseState(report.payload, options_.limits);
      if (!s) return refused(s.error());
      TUG_TRY(ApplyState(report.device_id, *s, touched));
      break;
    }
    case DeviceReport::Kind::kJobStatus: {
      if (!fleet::ValidJobId(report.job))
        return refused(Error{fleet::make_error_code(fleet::Reason::kBadTopic), "job id"});
      auto js = fleet::ParseJobStatus(report.payload, options_.limits);
      if (!js) return refused(js.error());
      TUG_TRY(ApplyJobReport(report.device_id, report.job, *js, touched));
      break;
    }
  }
  for (const auto& id : touched) {
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (l && l->r.state != RolloutState::kSucceeded)
      TUG_TRY(TickRollout(*l, TickMode{.full = false, .budget = options_.report_send_batch}));
  }
  return {};
}

Status Engine::ApplyPresence(const std::string& device_id, const fleet::Presence& p, std::set<std::string>& touched) {
  TUG_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(device_id));
  Device d = existing ? *existing : NewDevice(device_id);
  const bool was_online = existing && existing->online;
  // boot_id is not taken from presence: state seq is compared per boot_id, and the state of the new boot has
  // to be the one that switches it.
  d.online = p.online;
  d.last_seen = Now();
  TUG_TRY(store_.PutDevice(d));
  ++counters_.reports_applied;
  if (!existing) TUG_TRY(Join(d, touched));
  if (d.online && !was_online) TUG_TRY(DeviceCameOnline(device_id, touched));
  return {};
}

Status Engine::ApplyState(const std::string& device_id, const fleet::State& s, std::set<std::string>& touched) {
  TUG_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(device_id));
  Device d = existing ? *existing : NewDevice(device_id);
  const std::string& boot_id = s.boot_id;
  const uint64_t seq = s.seq;
  if (existing && boot_id == d.boot_id && seq <= d.state_seq) {
    ++counters_.reports_ignored;  // a replay (retained snapshot, duplicate) or an older state
    return {};
  }
  const Labels labels_before = d.EffectiveLabels();
  d.boot_id = boot_id;
  d.state_seq = seq;
  d.last_seen = Now();
  d.applied_v = s.applied_v;
  d.active = fleet::ToJson(s.active);
  d.previous = fleet::ToJson(s.previous);
  d.arch = s.arch;
  d.agent_version = s.agent_version;
  d.reported_labels = Labels(s.labels.begin(), s.labels.end());
  d.job_id = s.job.id;
  d.job_phase = s.job.phase;
  TUG_TRY(store_.PutDevice(d));
  ++counters_.reports_applied;
  // A new device, or new labels: it may now match running rollouts.
  if (!existing || d.EffectiveLabels() != labels_before) TUG_TRY(Join(d, touched));
  // The state carries the job's latest journal entry (same seq as its status message): it stands in for a status
  // message this controller missed (it was down, or the message went to another controller).
  if (!d.job_id.empty() && (d.job_phase == "SUCCEEDED" || d.job_phase == "FAILED" || d.job_phase == "ROLLED_BACK")) {
    fleet::JobStatus report;
    report.state = d.job_phase;
    report.seq = s.job.seq;
    report.boot_id = boot_id;
    report.error = s.job.error;
    TUG_TRY(ApplyJobReport(device_id, d.job_id, report, touched));
  }
  return {};
}

Status Engine::ApplyJobReport(const std::string& device_id, const std::string& job, const fleet::JobStatus& report,
                              std::set<std::string>& touched) {
  // The device is the topic's (the broker's ACL lets a device write only below its own prefix), and the job must
  // be one this controller sent to that device in its current attempt (or its fleet rollback): a report for another
  // device's job, an old attempt or a job never sent finds no row here and is dropped before anything is stored.
  TUG_ASSIGN_OR_RETURN(auto found, store_.FindByJob(device_id, job));
  if (!found || !((found->sent && job == found->job) || (!found->rollback_job.empty() && job == found->rollback_job))) {
    ++counters_.reports_ignored;  // not one of ours (manual install, another controller's data, old attempt)
    ++counters_.reports_foreign_job;
    return {};
  }
  RolloutDevice rd = *found;
  const Slot before = SlotOf(rd);
  TUG_ASSIGN_OR_RETURN(bool fresh, store_.RecordReport(device_id, job, report.boot_id, report.seq));
  if (!fresh) {
    ++counters_.reports_ignored;
    return {};
  }
  TUG_ASSIGN_OR_RETURN(Live * l, Find(rd.rollout_id));
  if (!l) return MakeError(Errc::kInternal, "rollout " + rd.rollout_id + " vanished");
  Rollout& r = l->r;
  const std::string& state = report.state;
  const fleet::JobError err = report.error.value_or(fleet::JobError{});
  const std::string err_text = err.code + (err.message.empty() ? "" : ": " + err.message);

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
      const bool retryable = err.retryable;
      TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDesiredVersions(device_id));
      if (retryable && rd.attempts - 1 < r.spec.max_retries && r.state == RolloutState::kRunning && dev &&
          dev->online) {
        spdlog::info("rollout {}: {} failed retryably ({}), retrying", r.id, device_id, err_text);
        TUG_TRY(SendInstall(*l, rd, before));  // persists rd with the new attempt
        ++counters_.reports_applied;
        touched.insert(r.id);
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
  TUG_TRY(SaveRow(*l, rd, before));
  ++counters_.reports_applied;
  // A device that succeeds after the fleet rollback went out (it was in progress then) is rolled back too.
  if (r.rolled_back && rd.state == DeviceJobState::kSucceeded && rd.rollback_job.empty())
    TUG_TRY(SendRollback(*l, rd));
  touched.insert(r.id);
  return {};
}

Status Engine::Join(const Device& d, std::set<std::string>& touched) {
  for (const auto& id : order_) {
    Live& l = live_.at(id);
    if (l.r.state != RolloutState::kRunning || !Matches(l.r.spec, d)) continue;
    TUG_ASSIGN_OR_RETURN(auto row, store_.GetRolloutDevice(id, d.id));
    if (row) continue;
    RolloutDevice rd;
    rd.rollout_id = id;
    rd.device_id = d.id;
    TUG_TRY(SaveRow(l, rd, std::nullopt));
    touched.insert(id);
  }
  return {};
}

Status Engine::JoinAll(Live& l) {
  if (l.r.state != RolloutState::kRunning) return {};
  std::set<std::string> known;
  {
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(l.r.id));
    for (const auto& rd : rows) known.insert(rd.device_id);
  }
  return store_.ForEachDevice([&](const Device& d) -> Status {
    if (known.count(d.id) || !Matches(l.r.spec, d)) return {};
    RolloutDevice rd;
    rd.rollout_id = l.r.id;
    rd.device_id = d.id;
    return SaveRow(l, rd, std::nullopt);
  });
}

// A device that was offline (or unknown) is online: its unreached rows in running rollouts get their turn again.
Status Engine::DeviceCameOnline(const std::string& device_id, std::set<std::string>& touched) {
  TUG_ASSIGN_OR_RETURN(auto rows, store_.ListDeviceRollouts(device_id));
  for (auto& rd : rows) {
    if (rd.state != DeviceJobState::kUnreached && rd.state != DeviceJobState::kPending) continue;
    TUG_ASSIGN_OR_RETURN(Live * l, Find(rd.rollout_id));
    if (!l || l->r.state != RolloutState::kRunning) continue;
    touched.insert(l->r.id);  // a pending device: the rollout's next decisions may pick it now
    if (rd.state != DeviceJobState::kUnreached) continue;
    const Slot before = SlotOf(rd);
    if (rd.sent) {
      // The retained desired is already on the broker; the device gets it on connect. Restart its clock.
      rd.state = DeviceJobState::kInProgress;
      rd.sent_at = Now();
      TUG_TRY(SaveRow(*l, rd, before));
    } else if (l->InState(DeviceJobState::kInProgress) < l->r.spec.max_concurrency) {
      TUG_TRY(SendInstall(*l, rd, before));  // its turn had come; otherwise a later tick sends it
    }
  }
  return {};
}

// ---- sending ----

Result<const std::string*> Engine::Envelope(uint64_t release) {
  auto it = envelopes_.find(release);
  if (it != envelopes_.end()) return &it->second;
  TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(release));
  if (!rel) return MakeError(Errc::kInternal, "release " + std::to_string(release) + " missing");
  json envelope = json::parse(rel->envelope, nullptr, false);
  if (envelope.is_discarded()) return MakeError(Errc::kInternal, "stored envelope of release is not JSON");
  return &envelopes_.emplace(release, fleet::SafeDump(envelope)).first->second;
}

Status Engine::PublishDesired(const std::string& device_id, fleet::Desired desired) {
  TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDesiredVersions(device_id));
  if (!dev) return MakeError(Errc::kInternal, "device " + device_id + " missing");
  // v must exceed both what we issued before and what the device applied (it may have had another controller or
  // a manual install): the device ignores v <= applied_v.
  const uint64_t v = std::max(dev->desired_v, dev->applied_v) + 1;
  desired.v = v;
  std::string payload = fleet::Serialize(desired);
  TUG_TRY(store_.SetDesired(device_id, v, payload));
  outbox_.push_back(Outgoing{.topic = fleet::DesiredTopic(device_id), .payload = std::move(payload), .retain = true});
  ++counters_.desired_published;
  return {};
}

Status Engine::SendInstall(Live& l, RolloutDevice& rd, Slot before) {
  Rollout& r = l.r;
  TUG_ASSIGN_OR_RETURN(const std::string* envelope, Envelope(r.spec.release));
  rd.attempts += 1;
  rd.job = r.id + "." + rd.device_id + "." + std::to_string(rd.attempts);
  rd.state = DeviceJobState::kInProgress;
  rd.sent = true;
  rd.sent_at = Now();
  rd.error.clear();
  if (rd.phase < 0) rd.phase = r.current_phase;
  const auto deadline = clock_.Now() + r.spec.device_timeout;
  fleet::Desired desired;
  desired.job = rd.job;
  desired.release = *envelope;
  desired.deadline = core::FormatRfc3339(deadline);
  TUG_TRY(PublishDesired(rd.device_id, std::move(desired)));
  TUG_TRY(SaveRow(l, rd, before));
  spdlog::debug("rollout {}: sent release {} to {} (job {})", r.id, r.spec.release, rd.device_id, rd.job);
  return {};
}

Status Engine::SendRollback(Live& l, RolloutDevice& rd) {
  const Slot before = SlotOf(rd);
  rd.rollback_job = l.r.id + "." + rd.device_id + ".rollback";
  rd.rollback_state = "sent";
  fleet::Desired rollback;
  rollback.job = rd.rollback_job;
  rollback.action = fleet::Desired::Action::kRollback;
  TUG_TRY(PublishDesired(rd.device_id, std::move(rollback)));
  TUG_TRY(SaveRow(l, rd, before));
  spdlog::info("rollout {}: sent rollback to {}", l.r.id, rd.device_id);
  return {};
}

Status Engine::AbortRollout(Live& l, const std::string& reason) {
  Rollout& r = l.r;
  spdlog::warn("rollout {} aborted: {}", r.id, reason);
  r.state = RolloutState::kAborted;
  r.abort_reason = reason;
  if (r.spec.auto_rollback) {
    r.rolled_back = true;
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevicesIn(r.id, DeviceJobState::kSucceeded));
    for (auto& rd : rows)
      if (rd.rollback_job.empty()) TUG_TRY(SendRollback(l, rd));
  }
  return store_.PutRollout(r);
}

// ---- the state machine ----

Status Engine::Tick() {
  if (republish_needed_) {
    republish_needed_ = false;
    TUG_TRY(RepublishDesired());
  }
  return InTx([this]() -> Status {
    if (join_scan_needed_) {
      for (const auto& id : order_) {
        TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
        TUG_TRY(JoinAll(*l));
      }
    }
    for (const auto& id : order_) {
      Live& l = live_.at(id);
      if (l.r.state == RolloutState::kSucceeded) continue;
      TUG_TRY(Count(l));
      TUG_TRY(TickRollout(l, TickMode{.full = true, .budget = options_.tick_send_batch}));
    }
    join_scan_needed_ = false;
    return {};
  });
}

Status Engine::TickRollout(Live& l, TickMode mode) {
  TUG_TRY(Count(l));
  Rollout& r = l.r;
  const Millis now = Now();
  const bool running = r.state == RolloutState::kRunning;
  const Rollout before = r;

  // Timeouts run whatever the rollout state: devices left to finish after an abort or cancel still get an outcome.
  if (mode.full && l.InState(DeviceJobState::kInProgress) > 0) {
    const Millis timeout_ms = duration_cast<milliseconds>(r.spec.device_timeout).count();
    TUG_ASSIGN_OR_RETURN(auto due, store_.ListInProgressSentBefore(r.id, now - timeout_ms));
    for (auto& [rd, online] : due) {
      const Slot was = SlotOf(rd);
      if (online) {
        rd.state = DeviceJobState::kTimedOut;
        rd.error = "no terminal report within " + Seconds(r.spec.device_timeout);
      } else {
        rd.state = DeviceJobState::kUnreached;  // offline at its deadline: not its fault, not a failure
      }
      TUG_TRY(SaveRow(l, rd, was));
    }
  }
  // Unreached devices that are online again (reports handle a device coming back at once; this catches the rest,
  // e.g. one that came back while the rollout was paused or the concurrency was full).
  std::vector<RolloutDevice> comeback;  // never sent: their turn had come
  if (mode.full && running && l.InState(DeviceJobState::kUnreached) > 0) {
    TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevicesIn(r.id, DeviceJobState::kUnreached, true));
    for (auto& rd : rows) {
      if (!rd.sent) {
        comeback.push_back(std::move(rd));
        continue;
      }
      // The retained desired is already on the broker; the device gets it on connect. Restart its clock.
      const Slot was = SlotOf(rd);
      rd.state = DeviceJobState::kInProgress;
      rd.sent_at = now;
      TUG_TRY(SaveRow(l, rd, was));
    }
  }

  if (running) {
    int64_t terminal = 0, failures = 0;
    for (auto s : kSuccesses) terminal += l.InState(s);
    for (auto s : kFailures) {
      terminal += l.InState(s);
      failures += l.InState(s);
    }
    if (terminal >= r.spec.min_devices && terminal > 0 &&
        static_cast<double>(failures) * 100.0 >= r.spec.failure_percent * static_cast<double>(terminal)) {
      return AbortRollout(l, std::to_string(failures) + " of " + std::to_string(terminal) +
                                 " devices failed (abort at " + Pct(r.spec.failure_percent) + "%)");
    }
  }

  if (running) {
    int64_t in_progress = l.InState(DeviceJobState::kInProgress);
    int64_t budget = mode.budget;
    int64_t sent = 0;
    for (auto& rd : comeback) {
      if (in_progress >= r.spec.max_concurrency) break;
      TUG_TRY(SendInstall(l, rd, SlotOf(rd)));
      ++in_progress;
      ++sent;
    }
    // Phase transitions can cascade within one tick (a phase with soak 0 finishing starts the next at once);
    // bounded by the number of phases.
    for (size_t guard = 0; guard < r.spec.phases.size() * 3 + 3; ++guard) {
      const int i = r.current_phase;
      const PhaseSpec& ph = r.spec.phases[static_cast<size_t>(i)];
      if (r.phase_state == PhaseState::kActive || r.phase_state == PhaseState::kSoaking) {
        const int64_t fleet = l.fleet;
        if (fleet == 0) break;  // nothing selected yet: wait for devices to join
        // Sending also runs while soaking: devices that joined late (the target grows with the fleet) are not
        // left behind by the phase they arrived in.
        const int64_t target = Target(ph, fleet);
        int64_t assigned = 0;
        for (int p = 0; p < static_cast<int>(l.counts.size()) - 1; ++p)
          for (int s = 0; s < 8; ++s) {
            const auto st = static_cast<DeviceJobState>(s);
            if (st != DeviceJobState::kUnreached && st != DeviceJobState::kPending) assigned += l.At(p, st);
          }
        while (assigned < target && in_progress < r.spec.max_concurrency && budget > 0) {
          // Online pending devices first, in id order.
          const int64_t want = std::min({target - assigned, r.spec.max_concurrency - in_progress, budget});
          TUG_ASSIGN_OR_RETURN(auto next, store_.ListRolloutDevicesIn(r.id, DeviceJobState::kPending, true, want));
          for (auto& rd : next) {
            const Slot was = SlotOf(rd);
            rd.phase = i;
            TUG_TRY(SendInstall(l, rd, was));
            ++assigned;
            ++in_progress;
            --budget;
            ++sent;
          }
          if (static_cast<int64_t>(next.size()) == want) continue;
          // No online pending device left: the offline ones' turn came while offline. Unreached, not counted
          // towards the target; each gets the job when back.
          TUG_ASSIGN_OR_RETURN(auto offline, store_.ListRolloutDevicesIn(r.id, DeviceJobState::kPending, std::nullopt,
                                                                         budget));
          if (offline.empty()) break;
          for (auto& rd : offline) {
            const Slot was = SlotOf(rd);
            rd.phase = i;
            rd.state = DeviceJobState::kUnreached;
            TUG_TRY(SaveRow(l, rd, was));
            --budget;
          }
        }
        const bool pending_left = l.InState(DeviceJobState::kPending) > 0;
        bool busy = false;
        for (int p = -1; p <= i; ++p) busy |= l.At(p, DeviceJobState::kInProgress) > 0;
        const bool unreached_here = l.At(i, DeviceJobState::kUnreached) > 0;
        int64_t ok = 0, bad = 0;
        for (auto s : kSuccesses) ok += l.At(i, s);
        for (auto s : kFailures) bad += l.At(i, s);
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
          return AbortRollout(l, "phase " + std::to_string(i + 1) + ": " + std::to_string(ok) + " of " +
                                     std::to_string(ok + bad) + " devices succeeded, below the " +
                                     Pct(ph.success_threshold) + "% threshold");
        }
        r.phase_state = PhaseState::kSoaking;
        r.soak_until = now + duration_cast<milliseconds>(ph.soak).count();
        continue;
      }
      break;
    }
    // One line per decision rather than per device (a 10,000-device rollout would log 10,000 lines).
    if (sent > 0)
      spdlog::info("rollout {}: sent release {} to {} more device(s), {} in progress (phase {})", r.id,
                   r.spec.release, sent, in_progress, r.current_phase + 1);
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
    Live l;
    l.r.id = id;
    l.r.spec = spec;
    l.r.created_at = Now();
    l.counted = true;  // no rows yet
    l.counts.assign(spec.phases.size() + 1, std::array<int64_t, 8>{});
    TUG_TRY(store_.PutRollout(l.r));
    order_.push_back(id);
    Live& live = live_.emplace(id, std::move(l)).first->second;
    TUG_TRY(JoinAll(live));
    return TickRollout(live, TickMode{.full = true, .budget = options_.tick_send_batch});
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
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (l->r.state != RolloutState::kRunning) return Conflict(l->r, "pause");
    l->r.state = RolloutState::kPaused;
    return store_.PutRollout(l->r);
  });
}

Status Engine::Resume(const std::string& id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (l->r.state != RolloutState::kPaused) return Conflict(l->r, "resume");
    l->r.state = RolloutState::kRunning;
    TUG_TRY(store_.PutRollout(l->r));
    TUG_TRY(JoinAll(*l));  // devices that started to match while it was paused
    return TickRollout(*l, TickMode{.full = true, .budget = options_.tick_send_batch});
  });
}

// Pending and never-sent unreached devices of a stopped rollout never get it.
static Status CancelUnsent(Store& store, const std::string& id, std::vector<RolloutDevice>& out) {
  TUG_ASSIGN_OR_RETURN(auto pending, store.ListRolloutDevicesIn(id, DeviceJobState::kPending));
  TUG_ASSIGN_OR_RETURN(auto unreached, store.ListRolloutDevicesIn(id, DeviceJobState::kUnreached));
  for (auto& rd : pending) out.push_back(std::move(rd));
  for (auto& rd : unreached)
    if (!rd.sent) out.push_back(std::move(rd));
  return {};
}

Status Engine::Cancel(const std::string& id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    if (l->r.state != RolloutState::kRunning && l->r.state != RolloutState::kPaused) return Conflict(l->r, "cancel");
    l->r.state = RolloutState::kCancelled;
    // Devices already holding the desired keep it (in progress is left to finish); the rest never get it.
    std::vector<RolloutDevice> rows;
    TUG_TRY(CancelUnsent(store_, id, rows));
    for (auto& rd : rows) {
      const Slot was = SlotOf(rd);
      rd.state = DeviceJobState::kCancelled;
      TUG_TRY(SaveRow(*l, rd, was));
    }
    return store_.PutRollout(l->r);
  });
}

Result<int> Engine::Rollback(const std::string& id) {
  int sent = 0;
  auto st = InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    Rollout& r = l->r;
    if (r.rolled_back) return MakeError(Errc::kAlreadyExists, "rollout " + id + " was already rolled back");
    if (r.state == RolloutState::kRunning || r.state == RolloutState::kPaused) {
      r.state = RolloutState::kCancelled;
      r.abort_reason = "rolled back by the operator";
      std::vector<RolloutDevice> rows;
      TUG_TRY(CancelUnsent(store_, id, rows));
      for (auto& rd : rows) {
        const Slot was = SlotOf(rd);
        rd.state = DeviceJobState::kCancelled;
        TUG_TRY(SaveRow(*l, rd, was));
      }
    }
    r.rolled_back = true;
    TUG_ASSIGN_OR_RETURN(auto succeeded, store_.ListRolloutDevicesIn(id, DeviceJobState::kSucceeded));
    for (auto& rd : succeeded)
      if (rd.rollback_job.empty()) {
        TUG_TRY(SendRollback(*l, rd));
        ++sent;
      }
    return store_.PutRollout(r);
  });
  if (!st) return tl::unexpected(st.error());
  return sent;
}

Status Engine::CancelDevice(const std::string& id, const std::string& device_id) {
  return InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
    if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
    TUG_ASSIGN_OR_RETURN(auto row, store_.GetRolloutDevice(id, device_id));
    if (!row) return MakeError(Errc::kNotFound, "device " + device_id + " is not part of rollout " + id);
    RolloutDevice rd = *row;
    const Slot was = SlotOf(rd);
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
        outbox_.push_back(Outgoing{.topic = fleet::DesiredTopic(device_id), .payload = "", .retain = true});
      }
      outbox_.push_back(Outgoing{.topic = fleet::CmdReqTopic(device_id),
                                 .payload = fleet::Serialize(fleet::CmdRequest{fleet::Command::kCancel}),
                                 .retain = false});
    }
    rd.state = DeviceJobState::kCancelled;
    rd.error = "cancelled by the operator";
    return SaveRow(*l, rd, was);
  });
}

Result<Device> Engine::SetOperatorLabels(const std::string& device_id, const Labels& labels) {
  Device out;
  auto st = InTx([&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto dev, store_.GetDevice(device_id));
    if (!dev) return MakeError(Errc::kNotFound, "device " + device_id + " not found");
    out = *dev;
    out.operator_labels = labels;
    TUG_TRY(store_.PutDevice(out));
    // Relabelling can make the device match a running rollout's selector.
    std::set<std::string> touched;
    TUG_TRY(Join(out, touched));
    for (const auto& id : touched) {
      TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
      if (l) TUG_TRY(TickRollout(*l, TickMode{.full = false, .budget = options_.report_send_batch}));
    }
    return {};
  });
  if (!st) return tl::unexpected(st.error());
  return out;
}

Status Engine::RepublishDesired() {
  TUG_ASSIGN_OR_RETURN(auto unapplied, store_.ListUnappliedDesired());
  for (const auto& [id, desired] : unapplied) {
    if (auto p = publisher_.Publish(fleet::DesiredTopic(id), desired, true); !p) {
      spdlog::warn("re-publishing desired of {}: {}", id, p.error().Message());
      republish_needed_ = true;  // try the rest on a later tick
      break;
    }
  }
  return {};
}

// ---- reporting ----

namespace {
// Stand-ins RolloutReportText replaces with the streamed device lists ("\u0001" never occurs in a report).
const char* const kDevicesMark = "\x01" "devices" "\x01";
const char* const kTouchedMark = "\x01" "touched" "\x01";

PhaseCounts CountRows(const std::vector<RolloutDevice>& rows) {
  PhaseCounts counts;
  for (const auto& rd : rows) {
    const size_t i = static_cast<size_t>(std::max(rd.phase, -1) + 1);
    if (counts.size() <= i) counts.resize(i + 1, std::array<int64_t, 8>{});
    ++counts[i][static_cast<size_t>(rd.state)];
  }
  return counts;
}

// Everything of a report but the device lists. The full report counts its rows into `counts`; the others pass the
// engine's counters, so both answer with the same numbers.
json ReportHead(const Rollout& r, const std::optional<Release>& rel, const PhaseCounts& counts) {
  json release = rel ? json{{"version", rel->version}, {"name", rel->name}, {"repository", rel->repository},
                            {"digest", rel->digest}, {"expires_at", rel->expires_at}}
                     : json{{"version", r.spec.release}};
  std::array<int64_t, 8> all{};
  for (const auto& c : counts)
    for (size_t s = 0; s < all.size(); ++s) all[s] += c[s];
  int64_t fleet = 0;
  for (int64_t n : all) fleet += n;
  const auto unreached = static_cast<size_t>(DeviceJobState::kUnreached);
  json phases = json::array();
  int64_t assigned_upto = 0;  // devices assigned to this phase or an earlier one, unreached ones not counted
  for (size_t i = 0; i < r.spec.phases.size(); ++i) {
    const int idx = static_cast<int>(i);
    PhaseState ps = idx < r.current_phase   ? PhaseState::kDone
                    : idx > r.current_phase ? PhaseState::kPending
                                            : r.phase_state;
    if (r.state == RolloutState::kSucceeded) ps = PhaseState::kDone;
    const std::array<int64_t, 8> mine = i + 1 < counts.size() ? counts[i + 1] : std::array<int64_t, 8>{};
    for (size_t s = 0; s < mine.size(); ++s)
      if (s != unreached) assigned_upto += mine[s];
    const int64_t target = Target(r.spec.phases[i], fleet);
    json c = CountsJson(mine);
    const bool open = r.state == RolloutState::kRunning || r.state == RolloutState::kPaused;
    c["pending"] = open && ps != PhaseState::kDone ? std::max<int64_t>(0, target - assigned_upto) : 0;
    json p{{"index", idx}, {"target", target}, {"state", ToString(ps)}, {"counts", c},
           {"success_threshold", r.spec.phases[i].success_threshold}, {"soak", Seconds(r.spec.phases[i].soak)}};
    if (ps == PhaseState::kSoaking) p["soak_until"] = core::FormatRfc3339(core::TimePoint(milliseconds(r.soak_until)));
    phases.push_back(p);
  }
  return {{"id", r.id},
          {"state", ToString(r.state)},
          {"release", release},
          {"created_at", core::FormatRfc3339(core::TimePoint(milliseconds(r.created_at)))},
          {"spec", RolloutSpecToJson(r.spec)},
          {"current_phase", r.current_phase},
          {"phases", phases},
          {"counts", CountsJson(all)},
          {"rolled_back", r.rolled_back},
          {"abort_reason", r.abort_reason}};
}

json DeviceRowJson(const RolloutDevice& rd) {
  json d{{"id", rd.device_id}, {"phase", rd.phase}, {"state", ToString(rd.state)}, {"attempts", rd.attempts},
         {"job", rd.job}, {"error", rd.error}};
  if (!rd.rollback_job.empty()) {
    d["rollback_job"] = rd.rollback_job;
    d["rollback_state"] = rd.rollback_state;
  }
  return d;
}

bool WasTouched(const RolloutDevice& rd) { return rd.sent || !rd.rollback_job.empty(); }

// Appends rows to the text of the "devices" and "touched" arrays (each opened with '[' by the caller). One small
// tree at a time: a 10,000-device array as a JSON tree is ~10 MiB for a 1 MB answer.
void AppendRows(const std::vector<RolloutDevice>& rows, std::string* devices_text, std::string* touched_text) {
  for (const auto& rd : rows) {
    if (devices_text->size() > 1) *devices_text += ',';
    *devices_text += DeviceRowJson(rd).dump();
    if (WasTouched(rd)) {
      if (touched_text->size() > 1) *touched_text += ',';
      *touched_text += json(rd.device_id).dump();
    }
  }
}

// head.dump() with the device lists in place of their marks.
Result<std::string> WithDeviceLists(json head, std::string devices, std::string touched) {
  head["devices"] = kDevicesMark;
  head["touched"] = kTouchedMark;
  devices += ']';
  touched += ']';
  std::string out = head.dump();
  for (const auto& [mark, text] : {std::pair<std::string, const std::string*>{json(kDevicesMark).dump(), &devices},
                                   std::pair<std::string, const std::string*>{json(kTouchedMark).dump(), &touched}}) {
    const size_t at = out.find(mark);
    if (at == std::string::npos) return MakeError(Errc::kInternal, "rollout report: device list mark missing");
    out.replace(at, mark.size(), *text);
  }
  return out;
}
}  // namespace

Result<json> Engine::RolloutReport(const std::string& id) { return Report(id, ReportMode::kFull, nullptr, nullptr); }

Result<json> Engine::RolloutSummary(const std::string& id) { return CountedReport(id); }

Result<std::string> Engine::RolloutReportText(const std::string& id, const ReportDevices& which) {
  std::string devices = "[", touched = "[";
  if (which.All()) {
    TUG_ASSIGN_OR_RETURN(json j, Report(id, ReportMode::kText, &devices, &touched));
    return WithDeviceLists(std::move(j), std::move(devices), std::move(touched));
  }
  TUG_ASSIGN_OR_RETURN(json head, CountedReport(id));
  if (which.none) return head.dump();
  bool more = false;
  TUG_ASSIGN_OR_RETURN(auto rows, ListedRows(id, which, &more));
  if (more) head["next_after"] = rows.back().device_id;
  AppendRows(rows, &devices, &touched);
  return WithDeviceLists(std::move(head), std::move(devices), std::move(touched));
}

Result<json> Engine::CountedReport(const std::string& id) {
  TUG_ASSIGN_OR_RETURN(Live * l, Find(id));
  if (!l) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
  // The rollout row from the Store, as the full report reads it; only the counts come from memory.
  TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
  if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
  TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(r->spec.release));
  return ReportHead(*r, rel, l->counts);
}

Result<std::vector<RolloutDevice>> Engine::ListedRows(const std::string& id, const ReportDevices& which, bool* more) {
  // One indexed range per state, merged by device id: each reads at most limit + 1 rows, and the one beyond the
  // limit tells whether another page exists.
  const int64_t want = which.limit > 0 ? which.limit + 1 : -1;
  std::vector<RolloutDevice> rows;
  if (which.states.empty()) {
    TUG_ASSIGN_OR_RETURN(rows, store_.ListRolloutDevicesAfter(id, std::nullopt, which.after, want));
  } else {
    for (DeviceJobState s : std::set<DeviceJobState>(which.states.begin(), which.states.end())) {
      TUG_ASSIGN_OR_RETURN(auto in_state, store_.ListRolloutDevicesAfter(id, s, which.after, want));
      rows.insert(rows.end(), std::make_move_iterator(in_state.begin()), std::make_move_iterator(in_state.end()));
    }
    std::sort(rows.begin(), rows.end(),
              [](const RolloutDevice& a, const RolloutDevice& b) { return a.device_id < b.device_id; });
  }
  *more = which.limit > 0 && static_cast<int64_t>(rows.size()) > which.limit;
  if (*more) rows.resize(static_cast<size_t>(which.limit));
  return rows;
}

Result<json> Engine::Report(const std::string& id, ReportMode mode, std::string* devices_text,
                            std::string* touched_text) {
  TUG_ASSIGN_OR_RETURN(auto r, store_.GetRollout(id));
  if (!r) return MakeError(Errc::kNotFound, "rollout " + id + " not found");
  TUG_ASSIGN_OR_RETURN(auto rows, store_.ListRolloutDevices(id));
  TUG_ASSIGN_OR_RETURN(auto rel, store_.GetRelease(r->spec.release));
  json out = ReportHead(*r, rel, CountRows(rows));
  if (mode == ReportMode::kText) {
    AppendRows(rows, devices_text, touched_text);
    return out;
  }
  json devices = json::array();
  json touched = json::array();
  for (const auto& rd : rows) {
    devices.push_back(DeviceRowJson(rd));
    if (WasTouched(rd)) touched.push_back(rd.device_id);
  }
  out["devices"] = std::move(devices);
  out["touched"] = std::move(touched);
  return out;
}

}  // namespace tug::controller
