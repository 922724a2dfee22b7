// The layer cache: what a filesystem-changing step produced, keyed by everything that determines it, so a rebuild
// reuses the layer without executing the step.
//
// Key = sha256 over the parent layer chain (digests of all layers below), the platform, the step's instruction text
// after substitution, the config that affects it (env, workdir, user) and the digests of its inputs (COPY/ADD
// source content). On disk, under DIR: keys/<key>.json {"digest","diff_id","size","empty"} and
// blobs/sha256/<hex> (the gzip layer). Entries are written temp + rename so a crashed build leaves no half entry;
// a blob that no longer hashes to its name is treated as a miss. Blocking; several builders may share a directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "oci/layer.hpp"

namespace tug::builder {

struct CachedLayer {
  bool empty = false;  // the step changed nothing (no layer)
  oci::LayerBlob blob; // when !empty: data, digest, diff_id, media type
};

class LayerCache {
 public:
  // An empty `dir` disables the cache (Lookup misses, Store does nothing).
  explicit LayerCache(std::string dir) : dir_(std::move(dir)) {}
  // $XDG_CACHE_HOME/tugboat/builder when XDG_CACHE_HOME is set, else /var/cache/tugboat/builder.
  static std::string DefaultDir();
  static std::string Key(const std::vector<std::string>& parts);

  bool enabled() const { return !dir_.empty(); }
  std::optional<CachedLayer> Lookup(const std::string& key) const;
  // `blob` null records an empty step.
  Status Store(const std::string& key, const oci::LayerBlob* blob) const;

 private:
  std::string dir_;
};

}  // namespace tug::builder
