// Env: the filesystem seam (after leveldb's Env).
//
// Every state file the device agent persists (journal, slot records, blobs, the active symlink) goes through an Env,
// so a test can substitute FaultInjectionEnv (fault_env.hpp) to drop writes that were never fsynced, simulating a
// power cut, or to fail with ENOSPC/EIO at a chosen point. Bulk rootfs extraction does not go through Env: an
// interrupted install is discarded on recovery, so it only needs a syncfs before the slot is marked installed.
//
// All methods are blocking and thread-compatible (callers serialise access to one path). Errors are Result values;
// ENOSPC surfaces as Errc::kNoSpace.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::core {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable (fdatasync).
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  virtual uint64_t Size() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // Creates or truncates `path`; with `append`, opens an existing file for appending (resuming a download).
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, bool append = false) = 0;
  // Creates `path` only if nothing is there, not even a dangling symlink (O_CREAT|O_EXCL|O_NOFOLLOW): a temp file
  // that someone else planted (a symlink to a file elsewhere) is refused with kAlreadyExists, never written through.
  // The default, for Envs written before this existed, checks Exists() first (not atomic); PosixEnv and
  // FaultInjectionEnv create in one open.
  virtual Result<std::unique_ptr<WritableFile>> NewExclusiveFile(const std::string& path);
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // rename(2): atomic replace of `to`. Durable only after SyncDir(parent of `to`).
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Recursive delete; missing path is not an error.
  virtual Status RemoveAll(const std::string& path) = 0;
  virtual Status CreateDirs(const std::string& path) = 0;
  virtual Status SyncDir(const std::string& path) = 0;
  virtual Status Symlink(const std::string& target, const std::string& link_path) = 0;
  virtual Result<std::string> ReadLink(const std::string& path) = 0;
  virtual Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual bool Exists(const std::string& path) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  // Names (not paths) of the entries in a directory, sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Bytes available to an unprivileged writer on the filesystem holding `path` (statvfs f_bavail).
  virtual Result<uint64_t> FreeBytes(const std::string& path) = 0;
};

// The real POSIX filesystem. Never null; lives for the whole process.
Env* DefaultEnv();

// Durable whole-file replace: write a new temp file `path`.tmp-<16 random hex> (NewExclusiveFile: never an existing
// file or a symlink, and a name nobody can plant in advance), fsync it, rename over `path`, fsync the directory; the
// temp file is removed again when a step fails. After it returns OK the new content survives a power cut; before,
// the old content does.
Status WriteFileDurable(Env& env, const std::string& path, std::string_view data);

// Atomically points symlink `link_path` at `target` (new link under a temp name, rename over, fsync the directory).
Status ReplaceSymlinkDurable(Env& env, const std::string& target, const std::string& link_path);

std::string Dirname(const std::string& path);
std::string Basename(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);

}  // namespace tug::core
