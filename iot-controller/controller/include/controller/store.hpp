// Store: the controller's SQLite database (DESIGN §6). Everything the rollout engine knows lives here, written
// before anything is published, so a controller killed at any point resumes from it without counting twice.
//
// Threading and blocking: one connection, used from one thread (the controller's io_context thread). Calls block
// on local disk only; the database runs in WAL mode with synchronous=NORMAL, so a commit is an append to the WAL
// (no fsync per transaction; a power cut may lose the last transactions but never corrupts the file, and the engine
// re-derives lost sends from device reports and timeouts).
//
// Errors: kIo with SQLite's message for anything the database refuses; kNotFound only where documented.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controller/types.hpp"
#include "core/error.hpp"

struct sqlite3;

namespace tug::controller {

class StmtCache;

class Store {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" for tests) and applies pending migrations.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Highest migration applied (see migrations.cpp).
  Result<int> SchemaVersion();

  // Transactions nest by counting: only the outermost Begin/Commit reach SQLite. Rollback undoes the outermost.
  Status Begin();
  Status Commit();
  void Rollback();

  Result<std::optional<Device>> GetDevice(const std::string& id);
  Result<std::vector<Device>> ListDevices();
  // Calls f with each device in id order without holding them all (a 10,000-device list as Device values is tens of
  // MiB); stops at f's first error and returns it. f may write to other tables.
  Status ForEachDevice(const std::function<Status(const Device&)>& f);
  // Which devices a filtered ForEachDevice visits (GET /devices?label=&online=&version=); every condition given
  // must hold. SQLite evaluates them, so rows that do not match are never read into a Device.
  struct DeviceFilter {
    Labels labels;                    // each equals the device's effective label (Device::EffectiveLabels)
    std::optional<bool> online;       // the online flag equals this
    std::optional<uint64_t> version;  // the active release's version equals this (active is an object)
  };
  // ForEachDevice over the devices matching `filter` whose id sorts after `after` ("": from the first), at most
  // `limit` (-1: all). Served by the primary key in id order: a page stops after `limit` matches, having read only
  // the rows up to the last of them.
  Status ForEachDevice(const DeviceFilter& filter, const std::string& after, int64_t limit,
                       const std::function<Status(const Device&)>& f);
  Status PutDevice(const Device& d);  // insert or replace

  Result<std::optional<Release>> GetRelease(uint64_t version);
  Result<std::vector<Release>> ListReleases();
  Status PutRelease(const Release& r);

  // Next "r-<n>" id (n = 1 + the number of rollouts ever created).
  Result<std::string> NextRolloutId();
  Result<std::optional<Rollout>> GetRollout(const std::string& id);
  Result<std::vector<Rollout>> ListRollouts();  // in creation order
  Status PutRollout(const Rollout& r);

  Result<std::vector<RolloutDevice>> ListRolloutDevices(const std::string& rollout_id);
  // The rollout device whose install job or rollback job is `job` for that device.
  Result<std::optional<RolloutDevice>> FindByJob(const std::string& device_id, const std::string& job);
  Status PutRolloutDevice(const RolloutDevice& rd);

  // Rows of one rollout in `state`, by device id, at most `limit` (-1: all); with `online`, only rows whose device's
  // online flag equals it. Uses the (rollout_id, state, device_id) index.
  Result<std::vector<RolloutDevice>> ListRolloutDevicesIn(const std::string& rollout_id, DeviceJobState state,
                                                          std::optional<bool> online = std::nullopt,
                                                          int64_t limit = -1);
  // Rows of one rollout whose device id sorts after `after` ("" : from the first), by device id, at most `limit`
  // (-1: all); with `state`, only rows in it. Served by the primary key, or with a state by the (rollout_id, state,
  // device_id) index: a page of a rollout report reads about `limit` rows whatever the rollout's size.
  Result<std::vector<RolloutDevice>> ListRolloutDevicesAfter(const std::string& rollout_id,
                                                             std::optional<DeviceJobState> state,
                                                             const std::string& after, int64_t limit);
  // In-progress, sent rows of a rollout whose timeout clock started at or before `sent_at_or_before`, each with its
  // device's online flag (the timeout candidates; an indexed range, empty while nothing is due).
  Result<std::vector<std::pair<RolloutDevice, bool>>> ListInProgressSentBefore(const std::string& rollout_id,
                                                                              Millis sent_at_or_before);
  Result<std::optional<RolloutDevice>> GetRolloutDevice(const std::string& rollout_id, const std::string& device_id);
  // The rows of one device in every rollout.
  Result<std::vector<RolloutDevice>> ListDeviceRollouts(const std::string& device_id);
  // Number of rows of a rollout per (phase, state): what the engine's in-memory counters start from.
  struct RolloutDeviceCount {
    int phase;
    DeviceJobState state;
    int64_t count;
  };
  Result<std::vector<RolloutDeviceCount>> CountRolloutDevices(const std::string& rollout_id);

  // What the engine needs of a device to issue a desired (without reading its JSON columns).
  struct DesiredVersions {
    uint64_t desired_v, applied_v;
    bool online;
  };
  Result<std::optional<DesiredVersions>> GetDesiredVersions(const std::string& device_id);
  // Sets a device's desired_v and desired payload; kNotFound if the device does not exist.
  Status SetDesired(const std::string& device_id, uint64_t desired_v, const std::string& desired);
  // (id, desired) of every device with a desired it has not applied yet (applied_v < desired_v).
  Result<std::vector<std::pair<std::string, std::string>>> ListUnappliedDesired();

  // Records a job report (device, job, boot_id, seq). Returns true when it is new: seq is above every seq already
  // recorded for the same (device, job, boot_id). false means duplicate or older: the caller must ignore it.
  Result<bool> RecordReport(const std::string& device_id, const std::string& job, const std::string& boot_id,
                            uint64_t seq);

  // The audit log (migration 3): one row per mutating API call.
  struct AuditEntry {
    int64_t id = 0;  // assigned by AppendAudit
    Millis at = 0;
    std::string principal;  // token name, "" when the call was refused before one was known
    std::string method, target;
    int status = 0;
    std::string detail;  // the error text of a refused or failed call
  };
  Status AppendAudit(const AuditEntry& e);
  // Newest first: entries with id below `before` (0: from the newest), at most `limit`.
  Result<std::vector<AuditEntry>> ListAudit(int64_t before, int64_t limit);

  // Number of devices and of those online, counted by SQLite (no row is read into a Device): what /metrics needs.
  struct DeviceCounts {
    int64_t total = 0, online = 0;
  };
  Result<DeviceCounts> CountDevices();

  // Revoked devices (migration 4).
  struct Revocation {
    std::string id;
    Millis at = 0;
    std::string by, reason;
  };
  Status PutRevocation(const Revocation& r);  // idempotent: the first revocation's time and author stay
  Result<std::vector<Revocation>> ListRevocations();
  Result<std::optional<Revocation>> GetRevocation(const std::string& id);

  sqlite3* db() { return db_; }

 private:
  explicit Store(sqlite3* db);
  sqlite3* db_;
  std::unique_ptr<StmtCache> cache_;
  int tx_depth_ = 0;
};

// Applies the migrations above the stored schema_version, each in its own transaction (migrations.cpp).
Status Migrate(sqlite3* db);
// Number of migrations this build knows.
int LatestSchemaVersion();

}  // namespace tug::controller
