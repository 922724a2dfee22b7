#include <sqlite3.h>

#include <string>
#include <vector>

#include "controller/store.hpp"

namespace tug::controller {

namespace {

// Append-only: a released migration is never edited, a schema change is a new entry, so any older database can be
// brought forward step by step.
const std::vector<const char*>& Migrations() {
  static const std::vector<const char*> m = {
      // 1: initial schema.
      R"sql(
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  reported_labels TEXT NOT NULL DEFAULT '{}',
  operator_labels TEXT NOT NULL DEFAULT '{}',
  online INTEGER NOT NULL DEFAULT 0,
  last_seen INTEGER NOT NULL DEFAULT 0,
  boot_id TEXT NOT NULL DEFAULT '',
  active TEXT NOT NULL DEFAULT 'null',
  previous TEXT NOT NULL DEFAULT 'null',
  job_id TEXT NOT NULL DEFAULT '',
  job_phase TEXT NOT NULL DEFAULT '',
  applied_v INTEGER NOT NULL DEFAULT 0,
  arch TEXT NOT NULL DEFAULT '',
  agent_version TEXT NOT NULL DEFAULT '',
  state_seq INTEGER NOT NULL DEFAULT 0,
  desired_v INTEGER NOT NULL DEFAULT 0,
  desired TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE releases (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  envelope TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE rollouts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  current_phase INTEGER NOT NULL,
  phase_state TEXT NOT NULL,
  soak_until INTEGER NOT NULL,
  abort_reason TEXT NOT NULL,
  rolled_back INTEGER NOT NULL
);
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  phase INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  job TEXT NOT NULL,
  sent INTEGER NOT NULL,
  sent_at INTEGER NOT NULL,
  error TEXT NOT NULL,
  rollback_job TEXT NOT NULL,
  rollback_state TEXT NOT NULL,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_job ON rollout_devices (device_id, job);
CREATE INDEX rollout_devices_rollback_job ON rollout_devices (device_id, rollback_job);
CREATE TABLE job_reports (
  device_id TEXT NOT NULL,
  job TEXT NOT NULL,
  boot_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (device_id, job, boot_id)
);
)sql",
      // 2: the engine selects rollout rows by (rollout, state): pending devices in id order to send, unreached ones,
      // in-progress ones by when their timeout clock started. Without these every such query scanned the rollout.
      R"sql(
CREATE INDEX rollout_devices_state ON rollout_devices (rollout_id, state, device_id);
CREATE INDEX rollout_devices_sent_at ON rollout_devices (rollout_id, state, sent_at);
)sql",
      // 3: the audit log: every mutating API call (who, what, when, result), refused ones included.
      R"sql(
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  principal TEXT NOT NULL,
  method TEXT NOT NULL,
  target TEXT NOT NULL,
  status INTEGER NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);
)sql",
      // 4: revoked devices: a stolen device's certificate is revoked at the broker (CRL) and its id here, so the
      // controller ignores whatever it still manages to report.
      R"sql(
CREATE TABLE revoked_devices (
  id TEXT PRIMARY KEY,
  at INTEGER NOT NULL,
  by TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT ''
);
)sql",
  };
  return m;
}

Status Exec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return MakeError(Errc::kIo, what + ": " + msg);
  }
  return {};
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

Status Migrate(sqlite3* db) {
  TUG_TRY(Exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", "creating schema_version"));
  int current = 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st, nullptr) != SQLITE_OK)
    return MakeError(Errc::kIo, std::string("reading schema_version: ") + sqlite3_errmsg(db));
  if (sqlite3_step(st) == SQLITE_ROW) current = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (current > LatestSchemaVersion())
    return MakeError(Errc::kUnsupported, "database schema version " + std::to_string(current) +
                                             " is newer than this controller (" +
                                             std::to_string(LatestSchemaVersion()) + ")");
  for (int v = current + 1; v <= LatestSchemaVersion(); ++v) {
    // Each migration and its version row commit together: a crash mid-migration leaves the previous version.
    TUG_TRY(Exec(db, "BEGIN IMMEDIATE", "migration " + std::to_string(v)));
    auto st2 = Exec(db, Migrations()[static_cast<size_t>(v - 1)], "migration " + std::to_string(v));
    if (st2) st2 = Exec(db, "INSERT INTO schema_version (version) VALUES (" + std::to_string(v) + ")",
                        "migration " + std::to_string(v));
    if (!st2) {
      (void)Exec(db, "ROLLBACK", "rollback");
      return st2;
    }
    TUG_TRY(Exec(db, "COMMIT", "migration " + std::to_string(v)));
  }
  return {};
}

}  // namespace tug::controller
