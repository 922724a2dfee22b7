// Garbage collection helpers for the TaskRunner (docs/cluster-node.md, "Garbage collection"):
//   ImageCache  which cached layer blobs (work_dir/images/sha256/<hex>) live tasks use, and sweeping the rest
//   Trash       deletes what was renamed into work_dir/trash on its own thread, counting the bytes freed
// The runner decides what is due under its mutex and only renames there (one syscall per sandbox or blob); the slow
// part, walking and unlinking big trees, happens on the Trash thread, so GC never holds up launches or the monitor.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"

namespace tug::cluster::node {

// Seconds since the epoch of a file's mtime; nullopt when it cannot be stat'ed.
std::optional<double> MtimeSeconds(const std::string& path);

// Percent used of the filesystem holding `path`, as df computes it: used / (used + available to non-root).
Result<double> StatvfsUsedPercent(const std::string& path);

// Reference counts of the image cache's blobs, by owner (a task's sandbox dir name). A blob's last use is its mtime,
// touched on every Acquire and Release, so it survives the node's restart.
//
// The race with a concurrent launch: PullImage calls Acquire for a layer *before* it looks for the blob in the
// cache (EnsureBlob's Exists, then open + extract). Acquire and Sweep's check-and-rename both run under mu_, so
// either Acquire came first (Sweep sees a user and keeps the blob; the reference is held until the task's sandbox
// is collected) or Sweep came first (the blob is gone before the launch looks, and the launch downloads it again).
// A blob that a launch has found can therefore never vanish under it.
class ImageCache {
 public:
  explicit ImageCache(std::string images_dir);

  // `owner` uses blob `digest` ("sha256:<hex>") from now on; marks it used now.
  void Acquire(const std::string& owner, const std::string& digest);
  // Recovery: `owner` (a checkpointed task or a sandbox waiting for collection) uses these; no touch.
  void Adopt(const std::string& owner, const std::vector<std::string>& digests);
  std::vector<std::string> UsedBy(const std::string& owner) const;
  // `owner`'s sandbox was collected (or taken over by a new task with its id): its blobs are marked used now and
  // become collectable `delay` later unless another task uses them.
  void Release(const std::string& owner);

  // Renames into `trash_dir` every blob no owner uses whose mtime is older than `delay`, and partial downloads
  // (`<hex>.partial-*`) older than that (a crash's leftovers). Returns the new paths (in the trash).
  std::vector<std::string> Sweep(std::chrono::system_clock::time_point now, std::chrono::milliseconds delay,
                                 const std::string& trash_dir);
  size_t blobs_in_use() const;

 private:
  std::string BlobPath(const std::string& hex) const;

  const std::string blobs_dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> users_;  // hex -> owners
  std::map<std::string, std::set<std::string>> owned_;  // owner -> hexes
};

// Moves a path into a trash dir under a unique name (rename: same filesystem, O(1)). Returns the new path.
Result<std::string> MoveToTrash(const std::string& path, const std::string& trash_dir);

// Deletes trash batches on its own thread. Stopping (the destructor) interrupts between files; whatever is left in
// the trash dir is submitted again by the next runner on the work dir.
class Trash {
 public:
  struct Batch {
    std::vector<std::string> paths;  // inside the trash dir
    std::string what;                // "2 sandbox(es) (a, b) and 1 image blob(s)": for the pass's log line
    std::string why;                 // "disk 95.0% used, sandbox delay 30m" (empty: no log line)
  };
  Trash();
  ~Trash();
  Trash(const Trash&) = delete;
  Trash& operator=(const Trash&) = delete;

  void Submit(Batch b);
  uint64_t bytes_freed() const { return bytes_freed_.load(); }
  // True when nothing is queued or being deleted (tests).
  bool idle() const;

 private:
  void Loop();
  // Removes one tree, returning the bytes it occupied on disk (st_blocks).
  uint64_t RemoveTree(const std::string& path);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool busy_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> bytes_freed_{0};
  std::thread thread_;
};

// "1h", "30m", "45s", "250ms": for log lines and the API.
std::string FormatDelay(std::chrono::milliseconds d);

}  // namespace tug::cluster::node
