#include "agent/updater.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "crypto/release.hpp"
#include "crypto/sha256.hpp"
#include "crypto/trust_root.hpp"
#include "oci/layer.hpp"

namespace tug::agent {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

// Flushes everything written under `dir` (the unpacked rootfs) to disk before the slot is marked installed.
Status SyncFilesystem(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening " + dir);
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError(err, "syncfs " + dir);
  return {};
}

std::string JobErrorCode(const Error& e) {
  if (e.code.category() == TugCategory()) return ToString(static_cast<Errc>(e.code.value()));
  return e.code.message();
}

milliseconds NsToMs(int64_t ns, milliseconds fallback) {
  return ns > 0 ? milliseconds(ns / 1'000'000) : fallback;
}

}  // namespace

Updater::Updater(core::Env& env, StateDir dir, Runtime& runtime, core::Clock& clock, UpdaterOptions opts,
                 UpdateObserver observer)
    : env_(env),
      dir_(dir),
      runtime_(runtime),
      clock_(clock),
      opts_(std::move(opts)),
      observer_(std::move(observer)),
      slots_(env, dir),
      blobs_(env, dir) {
  std::error_code ec;
  auto abs = std::filesystem::weakly_canonical(dir_.root(), ec);
  container_base_ = opts_.container_prefix + "-" + crypto::Sha256Hex(ec ? dir_.root() : abs.string()).substr(0, 8);
}

Status Updater::Init(const std::string& root_json) {
  TUG_ASSIGN_OR_RETURN(auto root, crypto::LoadTrustRoot(root_json, clock_.Now()));
  TUG_TRY(dir_.Create(env_));
  if (auto current_text = env_.ReadFile(dir_.trust_root())) {
    if (*current_text == root_json) return {};
    // Re-provisioning only moves forward: the new root must be signed by the current root's keys.
    TUG_ASSIGN_OR_RETURN(auto current, crypto::LoadTrustRoot(*current_text, clock_.Now()));
    TUG_TRY(crypto::VerifyRootUpdate(current, root_json, clock_.Now()));
  }
  spdlog::info("trust root v{} with {} key(s), threshold {}", root.version, root.keys.size(), root.threshold);
  return core::WriteFileDurable(env_, dir_.trust_root(), root_json);
}

Status Updater::Transition(Journal& j, UpdateState next, milliseconds bound) {
  j.state = next;
  ++j.seq;
  j.entered_at = clock_.Now();
  j.deadline = j.entered_at + bound;
  if (next == UpdateState::kSucceeded) j.error.reset();
  TUG_TRY(SaveJournal(env_, dir_.journal(), j));
  spdlog::info("job {}: {}", j.job_id, ToString(next));
  if (observer_.on_transition) observer_.on_transition(j);
  return {};
}

Status Updater::Fail(Journal& j, UpdateState terminal, const Error& e) {
  j.error = JobError{JobErrorCode(e), IsRetryable(e), e.Message()};
  spdlog::error("job {}: {}", j.job_id, e.Message());
  return Transition(j, terminal, 0ms);
}

Status Updater::Install(const std::string& envelope_json, const std::string& job_id) {
  TUG_ASSIGN_OR_RETURN(auto previous, LoadJournal(env_, dir_.journal()));
  if (!IsTerminal(previous.state)) {
    spdlog::warn("an earlier update ({}) was interrupted in {}; finishing it first", previous.job_id,
                 ToString(previous.state));
    (void)Recover();
    TUG_ASSIGN_OR_RETURN(previous, LoadJournal(env_, dir_.journal()));
  }
  auto root_text = env_.ReadFile(dir_.trust_root());
  if (!root_text)
    return MakeError(Errc::kNotFound, "state dir " + dir_.root() +
                                          " has no trust root; run: device-agent --state-dir " + dir_.root() +
                                          " init --root root.json");
  TUG_ASSIGN_OR_RETURN(auto root, crypto::LoadTrustRoot(*root_text, clock_.Now()));
  TUG_ASSIGN_OR_RETURN(uint64_t ratchet, ReadRatchet(env_, dir_));
  cancel_requested_ = false;  // a cancel aimed at an earlier job must not hit this one

  Journal j;
  j.job_id = job_id.empty() ? "local-" + core::FormatRfc3339(clock_.Now()) : job_id;
  j.seq = previous.seq;
  j.release_envelope = envelope_json;
  auto verified = crypto::VerifyRelease(envelope_json, root,
                                        crypto::ReleasePolicy{clock_.Now(), ratchet, opts_.expected_repository});
  if (!verified) {
    // Rejected before anything was touched: record why, keep running what runs.
    Error e = Wrap(verified.error(), "release rejected");
    TUG_TRY(Fail(j, UpdateState::kFailed, e));
    return tl::unexpected(e);
  }
  const auto& rel = verified->release;
  j.version = rel.version;
  j.repository = rel.repository;
  j.digest = rel.digest;
  TUG_ASSIGN_OR_RETURN(auto active, slots_.Active());
  j.from_slot = active.value_or("");
  TUG_ASSIGN_OR_RETURN(j.target_slot, slots_.Idle());
  spdlog::info("installing '{}' version {} ({}) into slot {}", rel.name, rel.version, rel.digest, j.target_slot);
  TUG_TRY(Transition(j, UpdateState::kAccepted, 1min));
  return RunFrom(j);
}

Status Updater::CheckCancelled() {
  if (cancel_requested_.exchange(false)) return MakeError(Errc::kCancelled, "cancelled by operator");
  return {};
}

Status Updater::RunFrom(Journal& j) {
  for (;;) {
    if (j.state == UpdateState::kAccepted || j.state == UpdateState::kDownloading ||
        j.state == UpdateState::kVerified || j.state == UpdateState::kInstalling) {
      if (auto c = CheckCancelled(); !c) {
        TUG_TRY(Fail(j, UpdateState::kFailed, c.error()));
        return c;
      }
    }
    switch (j.state) {
      case UpdateState::kAccepted:
        TUG_TRY(Transition(j, UpdateState::kDownloading, opts_.download_deadline));
        break;
      case UpdateState::kDownloading:
        if (auto st = Download(j); !st) {
          TUG_TRY(Fail(j, UpdateState::kFailed, st.error()));
          return st;
        }
        TUG_TRY(Transition(j, UpdateState::kVerified, 1min));
        break;
      case UpdateState::kVerified:
        if (++j.attempt > opts_.max_install_attempts) {
          Error e{make_error_code(Errc::kIo), "install interrupted " + std::to_string(j.attempt - 1) + " times"};
          TUG_TRY(Fail(j, UpdateState::kFailed, e));
          return tl::unexpected(e);
        }
        TUG_TRY(Transition(j, UpdateState::kInstalling, 1h));
        break;
      case UpdateState::kInstalling:
        if (auto st = InstallSlot(j); !st) {
          // The half-unpacked slot is never activated. Free its space first (the failure may be a full disk, and the
          // journal write below needs room), then mark it failed and keep running the active one.
          (void)env_.RemoveAll(slots_.RootfsDir(j.target_slot));
          if (auto rec = slots_.Read(j.target_slot)) {
            rec->status = SlotStatus::kFailed;
            (void)slots_.Write(*rec);
          }
          TUG_TRY(Fail(j, UpdateState::kFailed, st.error()));
          return st;
        }
        TUG_TRY(Transition(j, UpdateState::kActivating, 5min));
        break;
      case UpdateState::kActivating:
        if (auto st = Activate(j); !st) return RollBackTo(j, st.error());
        TUG_TRY(Transition(j, UpdateState::kHealthCheck, opts_.healthcheck_timeout + opts_.commit_window + 1min));
        break;
      case UpdateState::kHealthCheck:
        if (auto st = HealthCheck(j); !st) return RollBackTo(j, st.error());
        TUG_TRY(Transition(j, UpdateState::kSucceeded, 0ms));
        break;
      case UpdateState::kSucceeded:
        return Commit(j);
      case UpdateState::kIdle:
      case UpdateState::kFailed:
      case UpdateState::kRolledBack:
        return {};
    }
  }
}

Status Updater::Download(Journal& j) {
  TUG_ASSIGN_OR_RETURN(auto ref, registry::Reference::Parse(j.repository + "@" + j.digest));
  registry::Client client(opts_.registry);
  uint64_t counted = client.bytes_received();
  auto count = [&] {
    bytes_downloaded_ += client.bytes_received() - counted;
    counted = client.bytes_received();
  };

  auto fetch_manifest = [&](const std::string& digest) -> Result<std::string> {
    if (blobs_.Has(digest)) return blobs_.Read(digest);
    TUG_ASSIGN_OR_RETURN(auto m, client.GetManifest(ref, digest));
    TUG_TRY(blobs_.Put(digest, m.bytes));
    return m.bytes;
  };
  TUG_ASSIGN_OR_RETURN(auto top, fetch_manifest(j.digest));
  auto release = crypto::Envelope::Parse(j.release_envelope)
                     .and_then([](const crypto::Envelope& e) { return crypto::ParseReleasePayload(e.payload); });
  if (!release) return tl::unexpected(release.error());
  const std::string want = opts_.platform.ToString();

  std::string manifest_digest = j.digest;
  if (oci::IsIndexMediaType(oci::SniffMediaType(top))) {
    TUG_ASSIGN_OR_RETURN(auto index, oci::ParseIndex(top));
    TUG_ASSIGN_OR_RETURN(auto desc, oci::SelectPlatform(index, opts_.platform));
    manifest_digest = desc.digest;
  }
  for (const auto& [platform, digest] : release->platforms) {
    auto p = oci::Platform::Parse(platform);
    if (p && p->Matches(opts_.platform) && digest != manifest_digest)
      return MakeError(Errc::kPolicy, "registry's " + want + " manifest is " + manifest_digest +
                                          " but the release signs " + digest);
  }
  TUG_ASSIGN_OR_RETURN(auto manifest_bytes, fetch_manifest(manifest_digest));
  if (j.manifest != manifest_digest) {
    j.manifest = manifest_digest;
    TUG_TRY(SaveJournal(env_, dir_.journal(), j));
  }
  TUG_ASSIGN_OR_RETURN(auto manifest, oci::ParseManifest(manifest_bytes));
  TUG_TRY(blobs_.Fetch(client, ref, manifest.config.digest, static_cast<uint64_t>(manifest.config.size), opts_.fetch,
                       {}));
  TUG_ASSIGN_OR_RETURN(auto config, LoadConfigFor(manifest_digest));
  if (!config.GetPlatform().Matches(opts_.platform))
    return MakeError(Errc::kPolicy, "image is for " + config.GetPlatform().ToString() + ", this device runs " + want);
  if (config.diff_ids.size() != manifest.layers.size())
    return MakeError(Errc::kProtocol, "image config lists " + std::to_string(config.diff_ids.size()) +
                                          " diff_ids for " + std::to_string(manifest.layers.size()) + " layers");

  // Check space before downloading anything: missing layers plus room to unpack all of them.
  uint64_t missing = 0, total = 0;
  for (const auto& l : manifest.layers) {
    TUG_TRY(oci::LayerCompression(l.media_type));
    total += static_cast<uint64_t>(l.size);
    if (!blobs_.Has(l.digest)) missing += static_cast<uint64_t>(l.size) - blobs_.PartialBytes(l.digest);
  }
  const uint64_t needed = missing + total * opts_.unpack_margin_percent / 100;
  TUG_ASSIGN_OR_RETURN(uint64_t free_bytes, env_.FreeBytes(dir_.root()));
  if (free_bytes < needed)
    return MakeError(Errc::kNoSpace, "update needs " + std::to_string(needed >> 20) + " MiB (download " +
                                         std::to_string(missing >> 20) + " MiB + unpack), " +
                                         std::to_string(free_bytes >> 20) + " MiB free");

  // Progress covers what this update downloads, not layers already in the blob store.
  uint64_t done_before = 0;
  total = 0;
  std::vector<oci::Descriptor> to_fetch;
  for (const auto& l : manifest.layers)
    if (!blobs_.Has(l.digest)) {
      to_fetch.push_back(l);
      total += static_cast<uint64_t>(l.size);
    }
  auto last_report = std::chrono::steady_clock::now() - 2s;
  for (const auto& l : to_fetch) {
    auto progress = [&](const FetchProgress& p) {
      auto now = std::chrono::steady_clock::now();
      if (observer_.on_progress && (now - last_report >= 1s || p.bytes == p.total)) {
        last_report = now;
        observer_.on_progress("downloading", done_before + p.bytes, total);
      }
    };
    FetchPolicy policy = opts_.fetch;
    policy.cancelled = [this] { return cancel_requested_.load(); };
    auto st = blobs_.Fetch(client, ref, l.digest, static_cast<uint64_t>(l.size), policy, progress);
    if (!st && st.error().Is(Errc::kCancelled)) cancel_requested_ = false;
    count();
    if (!st) return st;
    done_before += static_cast<uint64_t>(l.size);
  }
  count();
  if (observer_.on_progress) observer_.on_progress("downloaded", total, total);
  return {};
}

Result<oci::Manifest> Updater::LoadManifest(const std::string& manifest_digest) {
  TUG_ASSIGN_OR_RETURN(auto bytes, blobs_.Read(manifest_digest));
  return oci::ParseManifest(bytes);
}

Result<oci::ImageConfig> Updater::LoadConfigFor(const std::string& manifest_digest) {
  TUG_ASSIGN_OR_RETURN(auto manifest, LoadManifest(manifest_digest));
  TUG_ASSIGN_OR_RETURN(auto bytes, blobs_.Read(manifest.config.digest));
  return oci::ParseImageConfig(bytes);
}

Status Updater::InstallSlot(Journal& j) {
  TUG_TRY(slots_.Reset(j.target_slot));
  TUG_ASSIGN_OR_RETURN(auto manifest, LoadManifest(j.manifest));
  TUG_ASSIGN_OR_RETURN(auto config, LoadConfigFor(j.manifest));
  const std::string rootfs = slots_.RootfsDir(j.target_slot);
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const auto& l = manifest.layers[i];
    TUG_ASSIGN_OR_RETURN(auto src, oci::FileSource::Open(blobs_.Path(l.digest)));
    oci::ExtractOptions o;
    TUG_ASSIGN_OR_RETURN(o.compression, oci::LayerCompression(l.media_type));
    o.expected_digest = l.digest;
    o.expected_diff_id = config.diff_ids[i];
    auto stats = oci::ExtractLayer(*src, rootfs, o);
    if (!stats)
      return tl::unexpected(Wrap(stats.error(), "unpacking layer " + std::to_string(i + 1) + "/" +
                                                    std::to_string(manifest.layers.size()) + " (" + l.digest + ")"));
    if (observer_.on_progress) observer_.on_progress("installing", i + 1, manifest.layers.size());
  }
  TUG_TRY(WriteRuntimeSpec(slots_.BundleDir(j.target_slot), config, "tugboat"));
  TUG_TRY(SyncFilesystem(slots_.BundleDir(j.target_slot)));
  SlotRecord rec;
  rec.slot = j.target_slot;
  rec.status = SlotStatus::kInstalled;
  rec.digest = j.digest;
  rec.manifest = j.manifest;
  rec.version = j.version;
  rec.repository = j.repository;
  rec.release_envelope = j.release_envelope;
  if (auto env = crypto::Envelope::Parse(j.release_envelope))
    if (auto r = crypto::ParseReleasePayload(env->payload)) rec.name = r->name;
  return slots_.Write(rec);
}

Status Updater::Activate(Journal& j) {
  if (!j.from_slot.empty() && j.from_slot != j.target_slot)
    TUG_TRY(runtime_.Stop(ContainerId(j.from_slot), opts_.stop_grace));
  TUG_TRY(slots_.SwitchActive(j.target_slot));
  return runtime_.Start(ContainerId(j.target_slot), slots_.BundleDir(j.target_slot));
}

Status Updater::HealthCheck(Journal& j) {
  TUG_ASSIGN_OR_RETURN(auto config, LoadConfigFor(j.manifest));
  const std::string id = ContainerId(j.target_slot);
  const auto start = std::chrono::steady_clock::now();
  auto log_tail = [&]() -> std::string {
    auto text = env_.ReadFile(slots_.BundleDir(j.target_slot) + "/container.log");
    if (!text || text->empty()) return "";
    std::string t = text->size() > 400 ? text->substr(text->size() - 400) : *text;
    while (!t.empty() && t.back() == '\n') t.pop_back();
    return "; container log: " + t;
  };
  const auto& hc = config.config.healthcheck;
  if (hc && !hc->test.empty() && hc->test[0] != "NONE") {
    std::vector<std::string> cmd;
    if (hc->test[0] == "CMD-SHELL" && hc->test.size() > 1) cmd = {"/bin/sh", "-c", hc->test[1]};
    else if (hc->test[0] == "CMD") cmd.assign(hc->test.begin() + 1, hc->test.end());
    else cmd.assign(hc->test.begin(), hc->test.end());
    // Docker's defaults where the image leaves a value out.
    const auto interval = NsToMs(hc->interval_ns, 30s);
    const auto timeout = NsToMs(hc->timeout_ns, 30s);
    const auto start_period = NsToMs(hc->start_period_ns, 0ms);
    const int retries = hc->retries > 0 ? hc->retries : 3;
    int failures = 0;
    std::string last;
    for (;;) {
      TUG_ASSIGN_OR_RETURN(bool running, runtime_.IsRunning(id));
      if (!running) return MakeError(Errc::kHealthCheckFailed, "container exited during the health check" + log_tail());
      TUG_ASSIGN_OR_RETURN(auto r, runtime_.Exec(id, cmd, timeout));
      if (r.ok()) {
        spdlog::info("health check passed after {} ms",
                     std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start).count());
        return {};
      }
      last = r.Describe();
      const auto elapsed = std::chrono::steady_clock::now() - start;
      if (elapsed >= start_period && ++failures >= retries)
        return MakeError(Errc::kHealthCheckFailed,
                         "health check failed " + std::to_string(failures) + " time(s): " + last);
      if (elapsed >= opts_.healthcheck_timeout)
        return MakeError(Errc::kHealthCheckFailed, "not healthy within " +
                                                       std::to_string(opts_.healthcheck_timeout.count()) +
                                                       " ms: " + last);
      std::this_thread::sleep_for(interval);
    }
  }
  // No HEALTHCHECK: the app must stay up for the whole commit window.
  while (std::chrono::steady_clock::now() - start < opts_.commit_window) {
    TUG_ASSIGN_OR_RETURN(bool running, runtime_.IsRunning(id));
    if (!running) return MakeError(Errc::kHealthCheckFailed, "container exited within the commit window" + log_tail());
    std::this_thread::sleep_for(250ms);
  }
  TUG_ASSIGN_OR_RETURN(bool running, runtime_.IsRunning(id));
  if (!running) return MakeError(Errc::kHealthCheckFailed, "container exited within the commit window" + log_tail());
  return {};
}

Status Updater::Commit(Journal& j) {
  TUG_ASSIGN_OR_RETURN(auto rec, slots_.Read(j.target_slot));
  if (rec.status != SlotStatus::kCommitted) {
    rec.status = SlotStatus::kCommitted;
    TUG_TRY(slots_.Write(rec));
  }
  TUG_ASSIGN_OR_RETURN(uint64_t ratchet, ReadRatchet(env_, dir_));
  if (j.version > ratchet) TUG_TRY(WriteRatchet(env_, dir_, j.version));
  if (auto freed = CollectGarbage(); !freed) spdlog::warn("garbage collection: {}", freed.error().Message());
  return {};
}

Status Updater::RollBackTo(Journal& j, const Error& cause) {
  spdlog::warn("job {}: rolling back to slot {}", j.job_id, j.from_slot.empty() ? "(none)" : j.from_slot);
  if (auto st = runtime_.Stop(ContainerId(j.target_slot), opts_.stop_grace); !st)
    spdlog::warn("stopping the failed container: {}", st.error().Message());
  if (auto rec = slots_.Read(j.target_slot); rec && rec->status != SlotStatus::kCommitted) {
    rec->status = SlotStatus::kFailed;
    TUG_TRY(slots_.Write(*rec));
  }
  if (j.from_slot.empty()) {
    // A fresh device had nothing to go back to: leave no active slot rather than a broken one.
    TUG_TRY(env_.RemoveFile(dir_.active_link()));
    TUG_TRY(env_.SyncDir(dir_.root()));
    TUG_TRY(Fail(j, UpdateState::kFailed, cause));
    return tl::unexpected(cause);
  }
  TUG_TRY(slots_.SwitchActive(j.from_slot));
  // Restart the rollback target even if it looks alive: an agent killed mid-switch may already have sent it SIGTERM,
  // and a dying container still reads "running" for a moment.
  TUG_TRY(runtime_.Stop(ContainerId(j.from_slot), opts_.stop_grace));
  TUG_TRY(runtime_.Start(ContainerId(j.from_slot), slots_.BundleDir(j.from_slot)));
  TUG_TRY(Fail(j, UpdateState::kRolledBack, cause));
  return tl::unexpected(Wrap(cause, "rolled back to slot " + j.from_slot));
}

Status Updater::EnsureActiveRunning() {
  TUG_ASSIGN_OR_RETURN(auto active, slots_.Active());
  if (!active) return {};
  // Only one app runs: the idle slot's container may survive a crash mid-switch.
  TUG_TRY(runtime_.Stop(ContainerId(Slots::Other(*active)), opts_.stop_grace));
  TUG_ASSIGN_OR_RETURN(bool running, runtime_.IsRunning(ContainerId(*active)));
  if (running) return {};
  spdlog::info("starting the active slot {}", *active);
  return runtime_.Start(ContainerId(*active), slots_.BundleDir(*active));
}

Status Updater::Recover() {
  TUG_ASSIGN_OR_RETURN(auto j, LoadJournal(env_, dir_.journal()));
  Status result;
  switch (j.state) {
    case UpdateState::kIdle:
    case UpdateState::kFailed:
    case UpdateState::kRolledBack:
      break;
    case UpdateState::kSucceeded:
      result = Commit(j);  // the commit bookkeeping may have been cut short
      break;
    case UpdateState::kAccepted:
    case UpdateState::kDownloading:
    case UpdateState::kVerified:
      if (clock_.Now() > j.deadline && j.state == UpdateState::kDownloading) {
        Error e{make_error_code(Errc::kTimeout), "download did not finish before its deadline"};
        TUG_TRY(Fail(j, UpdateState::kFailed, e));
        result = tl::unexpected(e);
        break;
      }
      spdlog::info("resuming job {} from {}", j.job_id, ToString(j.state));
      result = RunFrom(j);
      break;
    case UpdateState::kInstalling:
      // An interrupted unpack is discarded and redone from the verified blobs (bounded by max_install_attempts).
      spdlog::info("job {}: install was interrupted; unpacking again", j.job_id);
      TUG_TRY(Transition(j, UpdateState::kVerified, 1min));
      result = RunFrom(j);
      break;
    case UpdateState::kActivating:
    case UpdateState::kHealthCheck: {
      // The boot-counter rule: a switch that was not committed before we died is undone.
      Error e{make_error_code(Errc::kHealthCheckFailed),
              std::string("agent stopped during ") + ToString(j.state) + " before the release was committed"};
      result = RollBackTo(j, e);
      break;
    }
  }
  if (auto st = EnsureActiveRunning(); !st) return st;
  return result;
}

Status Updater::Rollback(const std::string& job_id) {
  TUG_ASSIGN_OR_RETURN(auto last, LoadJournal(env_, dir_.journal()));
  if (!IsTerminal(last.state))
    return MakeError(Errc::kInvalidArgument, "an update (" + last.job_id + ") is in progress in state " +
                                                 ToString(last.state) + "; run recover first");
  TUG_ASSIGN_OR_RETURN(auto active, slots_.Active());
  if (!active) return MakeError(Errc::kNotFound, "nothing is installed");
  const std::string prev = Slots::Other(*active);
  TUG_ASSIGN_OR_RETURN(auto rec, slots_.Read(prev));
  if (rec.status != SlotStatus::kCommitted)
    return MakeError(Errc::kNotFound, "no previous committed release to roll back to (slot " + prev + " is " +
                                          ToString(rec.status) + ")");
  Journal j;
  j.job_id = job_id.empty() ? "rollback-" + core::FormatRfc3339(clock_.Now()) : job_id;
  j.seq = last.seq;
  j.release_envelope = rec.release_envelope;
  j.version = rec.version;
  j.repository = rec.repository;
  j.digest = rec.digest;
  j.manifest = rec.manifest;
  j.from_slot = *active;
  j.target_slot = prev;
  TUG_TRY(Transition(j, UpdateState::kActivating, 5min));
  return RunFrom(j);
}

Status Updater::Cancel() {
  TUG_ASSIGN_OR_RETURN(auto j, LoadJournal(env_, dir_.journal()));
  switch (j.state) {
    case UpdateState::kAccepted:
    case UpdateState::kDownloading:
    case UpdateState::kVerified:
    case UpdateState::kInstalling:
      return Fail(j, UpdateState::kFailed, Error{make_error_code(Errc::kCancelled), "cancelled by operator"});
    default:
      return MakeError(Errc::kInvalidArgument, std::string("cannot cancel a job in state ") + ToString(j.state));
  }
}

Status Updater::RestartApp() {
  TUG_ASSIGN_OR_RETURN(auto active, slots_.Active());
  if (!active) return MakeError(Errc::kNotFound, "nothing is installed");
  TUG_TRY(runtime_.Stop(ContainerId(*active), opts_.stop_grace));
  return runtime_.Start(ContainerId(*active), slots_.BundleDir(*active));
}

Result<AgentStatus> Updater::GetStatus() {
  AgentStatus s;
  TUG_ASSIGN_OR_RETURN(s.job, LoadJournal(env_, dir_.journal()));
  TUG_ASSIGN_OR_RETURN(s.ratchet, ReadRatchet(env_, dir_));
  TUG_ASSIGN_OR_RETURN(auto active, slots_.Active());
  if (!active) return s;
  TUG_ASSIGN_OR_RETURN(auto a, slots_.Read(*active));
  TUG_ASSIGN_OR_RETURN(bool running, runtime_.IsRunning(ContainerId(*active)));
  s.active = SlotView{a, running};
  TUG_ASSIGN_OR_RETURN(auto p, slots_.Read(Slots::Other(*active)));
  if (p.status == SlotStatus::kCommitted) {
    TUG_ASSIGN_OR_RETURN(bool prun, runtime_.IsRunning(ContainerId(p.slot)));
    s.previous = SlotView{p, prun};
  }
  return s;
}

Result<std::set<std::string>> Updater::BlobsOf(const std::string& digest) {
  std::set<std::string> keep{digest};
  TUG_ASSIGN_OR_RETURN(auto bytes, blobs_.Read(digest));
  if (oci::IsIndexMediaType(oci::SniffMediaType(bytes))) {
    TUG_ASSIGN_OR_RETURN(auto index, oci::ParseIndex(bytes));
    // Only the manifest we installed is stored; the others of the index were never fetched.
    for (const auto& m : index.manifests)
      if (blobs_.Has(m.digest)) {
        TUG_ASSIGN_OR_RETURN(auto sub, BlobsOf(m.digest));
        keep.insert(sub.begin(), sub.end());
      }
    return keep;
  }
  TUG_ASSIGN_OR_RETURN(auto manifest, oci::ParseManifest(bytes));
  keep.insert(manifest.config.digest);
  for (const auto& l : manifest.layers) keep.insert(l.digest);
  return keep;
}

Result<uint64_t> Updater::CollectGarbage() {
  TUG_ASSIGN_OR_RETURN(auto j, LoadJournal(env_, dir_.journal()));
  if (!IsTerminal(j.state)) return uint64_t{0};  // never collect under a job in flight
  std::set<std::string> keep;
  for (const std::string slot : {"a", "b"}) {
    TUG_ASSIGN_OR_RETURN(auto rec, slots_.Read(slot));
    if (rec.status != SlotStatus::kCommitted || rec.digest.empty()) continue;
    auto blobs = BlobsOf(rec.digest);
    if (!blobs) return 0;  // unsure what a slot needs: keep everything
    keep.insert(blobs->begin(), blobs->end());
  }
  return blobs_.CollectGarbage(keep);
}

}  // namespace tug::agent
