// The device's update engine: verifies a signed release, downloads it into the blob store, installs it into the
// idle slot, switches slots, health-checks and commits or rolls back (DESIGN.md §4). Also startup recovery and
// operator rollback. Blocking; one Updater per state dir at a time (callers hold the state dir lock).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "agent/blob_store.hpp"
#include "agent/journal.hpp"
#include "agent/runtime.hpp"
#include "agent/slots.hpp"
#include "agent/state_dir.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "oci/image.hpp"
#include "registry/client.hpp"

namespace tug::agent {

struct UpdaterOptions {
  oci::Platform platform;                       // which manifest of an index to install
  registry::ClientOptions registry;
  std::string expected_repository;              // empty: any repository the root signs for
  // Without an image HEALTHCHECK the app must stay running this long to be committed.
  std::chrono::milliseconds commit_window{std::chrono::seconds(10)};
  // Upper bound on the health check phase with an image HEALTHCHECK (start period + retries * interval is capped).
  std::chrono::milliseconds healthcheck_timeout{std::chrono::seconds(120)};
  std::chrono::milliseconds stop_grace{std::chrono::seconds(5)};
  std::chrono::hours download_deadline{24};
  int max_install_attempts = 3;
  FetchPolicy fetch;
  uint64_t unpack_margin_percent = 250;         // disk needed for unpacking, as % of compressed layer bytes
  // Container ids are <prefix>-<8 hex of the state dir path>-<slot>: unique per state dir, because runc derives the
  // cgroup path from the id and several agents (tests, the demo fleet) share one host.
  std::string container_prefix = "tug";
};

// Transition and progress callbacks: the MQTT daemon reports them; the CLI prints them.
struct UpdateObserver {
  std::function<void(const Journal&)> on_transition;
  std::function<void(const std::string& phase, uint64_t bytes, uint64_t total)> on_progress;
};

struct SlotView {
  SlotRecord record;
  bool running = false;
};

struct AgentStatus {
  std::optional<SlotView> active;
  std::optional<SlotView> previous;
  Journal job;
  uint64_t ratchet = 0;
};

class Updater {
 public:
  Updater(core::Env& env, StateDir dir, Runtime& runtime, core::Clock& clock, UpdaterOptions opts,
          UpdateObserver observer = {});

  // Provisions the trust root (after checking it is self-signed and current). Creates the state dir.
  Status Init(const std::string& root_json);

  // Runs a whole update. OK only when the release is committed and healthy. When it rolled back, returns
  // kHealthCheckFailed (or the activation error) and the previous release is active and running again.
  Status Install(const std::string& envelope_json, const std::string& job_id = "");

  // Startup recovery: finishes or undoes whatever the journal says was in flight (resume a download, redo an
  // interrupted install, roll back an interrupted activation or health check), then makes sure the active slot's
  // container is running. Idempotent.
  Status Recover();

  // Operator rollback: switch to the previous committed slot and run it (job id default: rollback-<time>).
  Status Rollback(const std::string& job_id = "");

  // Cancels a job that has not reached ACTIVATING (FAILED with kCancelled); later states cannot be cancelled.
  // For a job left behind by a crash; a job running in another thread is stopped with RequestCancel().
  Status Cancel();

  // Thread-safe: asks the job running in another thread to stop at its next check (between download chunks and
  // before each state up to INSTALLING); it then ends FAILED with kCancelled. No effect once ACTIVATING began.
  void RequestCancel() { cancel_requested_ = true; }

  // Restarts the active app's container (operator "restart" command).
  Status RestartApp();
  // Makes sure the active slot's container runs (and only it); restarts it if it died. Cheap when all is well.
  Status Supervise() { return EnsureActiveRunning(); }

  Result<AgentStatus> GetStatus();

  // Blobs needed by the active and previous slots (and the job in flight) stay; everything else goes.
  Result<uint64_t> CollectGarbage();

  std::string ContainerId(const std::string& slot) const { return container_base_ + "-" + slot; }
  uint64_t bytes_downloaded() const { return bytes_downloaded_; }

 private:
  Status Transition(Journal& j, UpdateState next, std::chrono::milliseconds bound);
  Status Fail(Journal& j, UpdateState terminal, const Error& e);
  Status RunFrom(Journal& j);  // drives the state machine from j.state to a terminal state
  Status Download(Journal& j);
  Status InstallSlot(Journal& j);
  Status Activate(Journal& j);
  Status HealthCheck(Journal& j);
  Status Commit(Journal& j);
  Status RollBackTo(Journal& j, const Error& cause);
  Status EnsureActiveRunning();
  Result<oci::ImageConfig> LoadConfigFor(const std::string& manifest_digest);
  Result<oci::Manifest> LoadManifest(const std::string& manifest_digest);
  Result<std::set<std::string>> BlobsOf(const std::string& digest);

  core::Env& env_;
  StateDir dir_;
  Runtime& runtime_;
  core::Clock& clock_;
  UpdaterOptions opts_;
  UpdateObserver observer_;
  Slots slots_;
  BlobStore blobs_;
  Status CheckCancelled();

  uint64_t bytes_downloaded_ = 0;
  std::string container_base_;
  std::atomic<bool> cancel_requested_{false};
};

}  // namespace tug::agent
