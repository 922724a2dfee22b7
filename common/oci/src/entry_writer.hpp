// Private: writes tar entries into a rootfs without ever letting the kernel resolve a path. Every parent directory
// is opened component by component with O_NOFOLLOW|O_DIRECTORY relative to the rootfs fd, and every create uses
// the *at() call on that parent, so neither a hostile layer nor a lower layer's symlink can redirect a write.
// Shared by ExtractLayer and ExtractDebData so both apply the same rules.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/error.hpp"

namespace tug::oci::internal {

struct WriterOptions {
  bool allow_device_nodes = false;
  bool preserve_owner = true;
  bool whiteouts = true;
  uint64_t max_entries = 1'000'000;
  uint64_t max_bytes = 8ULL << 30;  // sum of declared file sizes (covers sparse files the tar bytes do not)
};

class EntryWriter {
 public:
  // `root` must exist and be a directory.
  static Result<std::unique_ptr<EntryWriter>> Open(const std::string& root, const WriterOptions& opts);
  ~EntryWriter();
  EntryWriter(const EntryWriter&) = delete;
  EntryWriter& operator=(const EntryWriter&) = delete;

  // Applies one entry; a regular file's data is read from `a`.
  Status Apply(archive* a, archive_entry* e);
  // Sets directory modes and mtimes, which later entries inside them would otherwise disturb.
  Status Finish();
  uint64_t entries() const { return entries_; }

 private:
  using Components = std::vector<std::string>;
  struct DeferredDir {
    Components path;
    uint32_t mode;
    struct timespec times[2];
  };

  EntryWriter(int root_fd, const WriterOptions& opts) : root_fd_(root_fd), opts_(opts) {}
  Result<Components> Split(const std::string& entry, const char* path) const;
  // Opens the directory holding the last component of `path` (prefix of `n` components).
  Result<int> OpenDir(const std::string& entry, const Components& path, size_t n, bool create);
  void MarkLayer(const Components& path, size_t n);
  Status ApplyWhiteout(const std::string& entry, const Components& path);
  Status ClearOpaque(int dirfd, const std::string& prefix);
  Status WriteFile(const std::string& entry, archive* a, archive_entry* e, int parent, const std::string& base);
  Status MakeDir(const std::string& entry, archive_entry* e, int parent, const Components& path);
  Status MakeSymlink(const std::string& entry, archive_entry* e, int parent, const std::string& base);
  Status MakeHardlink(const std::string& entry, archive_entry* e, int parent, const Components& path);
  Status MakeNode(const std::string& entry, archive_entry* e, int parent, const std::string& base);

  int root_fd_;
  WriterOptions opts_;
  uint64_t entries_ = 0;
  uint64_t declared_bytes_ = 0;
  // Paths ("a/b") this layer wrote, and their ancestors: an opaque whiteout must not remove them.
  std::unordered_set<std::string> layer_paths_;
  std::vector<DeferredDir> deferred_;
};

// Reads every entry of `a` into `w`, then Finish(). `source_error` reports a failure behind libarchive's read
// callback (a bomb, a truncated stream), which is the real cause when libarchive then fails.
Status ExtractEntries(archive* a, EntryWriter& w, const std::function<std::optional<Error>()>& source_error);

// Removes `name` under `dirfd` recursively without following symlinks; a missing name is fine.
Status RemoveAt(int dirfd, const std::string& name);

}  // namespace tug::oci::internal
