// Filesystem snapshots of a stage's rootfs and the layer that is the difference between two of them.
//
// A snapshot records, per path, what a change would alter: type, mode, owner, size, mtime and ctime (ns), inode,
// link target. Like Docker's naive differ it compares metadata rather than hashing content: any write moves
// mtime/ctime, so nothing changed is missed, and an untouched file is never re-read. The contents below the
// mount points /proc, /sys and /dev are not part of the image and are skipped.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "oci/layer.hpp"

namespace tug::builder {

struct FileMeta {
  char type = 'f';  // f file, d dir, l symlink, c char dev, b block dev, p fifo, s socket
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  uint64_t ino = 0, dev = 0, rdev = 0;
  uint32_t nlink = 0;
  std::string link;
  bool SameAs(const FileMeta& o) const;
};

// Relative paths ("etc/passwd"), without the root itself. Sorted.
using Snapshot = std::map<std::string, FileMeta>;

// Walks `root` without following symlinks. Blocking.
Result<Snapshot> TakeSnapshot(const std::string& root);

struct DiffResult {
  std::vector<oci::TarEntry> entries;  // sorted by path; whiteouts included
  size_t changed = 0;                  // added or modified paths
  size_t deleted = 0;                  // whiteouts
  bool empty() const { return entries.empty(); }
};

// The layer entries turning `before` into `after`: added/changed paths with their parent directories, and a
// ".wh.<name>" whiteout for each deleted path whose parent still exists (one for a deleted tree). Owners are kept
// numerically; mtimes are clamped to `source_date_epoch`. Reads changed file contents from `root`.
Result<DiffResult> Diff(const std::string& root, const Snapshot& before, const Snapshot& after,
                        int64_t source_date_epoch);

}  // namespace tug::builder
