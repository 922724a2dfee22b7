// FaultInjectionEnv: an Env wrapper for crash and fault tests (after leveldb's FaultInjectionTestEnv).
//
// It remembers what has not been made durable yet: bytes appended since a file's last Sync, files created and
// renames done since their directory's last SyncDir. DropUnsyncedData() then does what a power cut does to the
// page cache: truncates files to their synced size, deletes files whose directory entry was never synced and
// undoes renames that were never synced (restoring the file they replaced).
//
// Faults: CrashAfterOps(n) makes the (n+1)th mutating call and every one after fail with EIO, as if the machine
// had died there; FailWritesAfterBytes(n, err) makes appends fail with `err` (ENOSPC, EIO) once n bytes were written.
// Not thread-safe: one test drives one instance.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/env.hpp"

namespace tug::core {

class FaultInjectionEnv : public Env {
 public:
  explicit FaultInjectionEnv(Env* base);
  ~FaultInjectionEnv() override;

  // Counts from now: the next n mutating calls succeed, the one after fails.
  void CrashAfterOps(uint64_t n) { crash_after_ = ops_ + n; }
  void FailWritesAfterBytes(uint64_t n, int err) { fail_after_bytes_ = n; fail_errno_ = err; }
  bool crashed() const { return crashed_; }
  uint64_t mutating_ops() const { return ops_; }

  // Applies the power cut to the underlying filesystem and forgets all pending state.
  Status DropUnsyncedData();

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, bool append) override;
  Result<std::unique_ptr<WritableFile>> NewExclusiveFile(const std::string& path) override;
  Result<std::string> ReadFile(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status RemoveAll(const std::string& path) override;
  Status CreateDirs(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  Status Symlink(const std::string& target, const std::string& link_path) override;
  Result<std::string> ReadLink(const std::string& path) override;
  Status Truncate(const std::string& path, uint64_t size) override;
  bool Exists(const std::string& path) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Result<uint64_t> FreeBytes(const std::string& path) override;

 private:
  friend class FaultFile;
  struct FileState {
    uint64_t synced_size = 0;
    bool new_entry = false;  // created since its directory was last synced
  };
  struct PendingRename {
    std::string from, to;
    std::optional<std::string> backup;  // where the replaced `to` was saved, if there was one
  };

  Status Tick();  // counts a mutating op; fails once the crash point is passed
  Status CountBytes(uint64_t n);

  Env* base_;
  std::map<std::string, FileState> files_;
  std::vector<PendingRename> renames_;
  uint64_t ops_ = 0;
  std::optional<uint64_t> crash_after_;
  bool crashed_ = false;
  std::optional<uint64_t> fail_after_bytes_;
  int fail_errno_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t backup_seq_ = 0;
};

}  // namespace tug::core
