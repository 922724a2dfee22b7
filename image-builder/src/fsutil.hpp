// Private filesystem helpers for the build engine: path resolution confined to a root (the way a chroot would
// see it), copying trees for COPY/ADD, and hashing COPY inputs for cache keys.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/error.hpp"

namespace tug::builder::internal {

// Resolves `path` (absolute inside the root, or relative to it) to a host path under `root`, following symlinks
// as if `root` were "/": ".." and absolute link targets never leave it. Missing components are kept as they are.
Result<std::string> ResolveInRoot(const std::string& root, const std::string& path);

// "/a/./b/../c/" -> "/a/c" (absolute result).
std::string CleanAbs(const std::string& path);

struct CopyOptions {
  uint32_t uid = 0, gid = 0;            // owner of everything copied (COPY defaults to root, like Docker)
  std::optional<uint32_t> mode;         // --chmod
  // Context-relative path (rel_base + path below the source) -> skip; null copies everything.
  std::function<bool(const std::string& rel, bool is_dir)> skip;
  std::string rel_base;                 // the source's path relative to its root, for `skip`
};

// Copies `src` (file, symlink or directory) to `dst`. A directory's contents are merged into `dst`. Symlinks are
// copied as symlinks. Existing non-directories at a destination are replaced.
Status CopyTree(const std::string& src, const std::string& dst, const CopyOptions& opts);

// Creates `dir` and missing parents (0755, root) under a host path known to be inside the rootfs.
Status MakeDirs(const std::string& dir);

// sha256 over the tree at `path`: each entry's relative path, type, mode, link target and content hash, in order.
using SkipFn = std::function<bool(const std::string& rel, bool is_dir)>;
Result<std::string> HashTree(const std::string& path, const SkipFn& skip,
                             const std::string& rel_base);

bool IsDir(const std::string& path);
bool Exists(const std::string& path);  // lstat

}  // namespace tug::builder::internal
