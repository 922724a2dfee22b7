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

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "controller/types.hpp"
#include "core/error.hpp"

struct sqlite3;

namespace tug::controller {

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

  // Records a job report (device, job, boot_id, seq). Returns true when it is new: seq is above every seq already
  // recorded for the same (device, job, boot_id). false means duplicate or older: the caller must ignore it.
  Result<bool> RecordReport(const std::string& device_id, const std::string& job, const std::string& boot_id,
                            uint64_t seq);

  sqlite3* db() { return db_; }

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  int tx_depth_ = 0;
};

// Applies the migrations above the stored schema_version, each in its own transaction (migrations.cpp).
Status Migrate(sqlite3* db);
// Number of migrations this build knows.
int LatestSchemaVersion();

}  // namespace tug::controller
