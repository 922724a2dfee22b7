// Content-addressed blob store with resumable, verified downloads.
//
// A blob lands in partial/<hex> while downloading and moves to blobs/sha256/<hex> only after its sha256 matched, so
// everything under blobs/ is verified content. partial/<hex>.ckpt records the offset up to which the partial file was
// fsynced; after a crash the partial file is truncated to that offset (bytes beyond it may be garbage after a power
// cut) and the hash state is rebuilt by re-reading that prefix, which costs a local read instead of a 4G refetch.
// Within one process a cut connection resumes from the bytes already written, so a cut re-fetches nothing twice.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "agent/state_dir.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "registry/client.hpp"

namespace tug::agent {

struct FetchProgress {
  std::string digest;
  uint64_t bytes = 0;  // bytes of this blob present so far
  uint64_t total = 0;
};
using ProgressFn = std::function<void(const FetchProgress&)>;

struct FetchPolicy {
  int max_attempts = 8;                       // consecutive tries without progress, for retryable errors
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
  uint64_t checkpoint_bytes = 1 << 20;        // fsync + checkpoint every this many bytes
  std::function<bool()> cancelled;            // when it returns true the download stops with kCancelled
};

class BlobStore {
 public:
  BlobStore(core::Env& env, StateDir dir) : env_(env), dir_(std::move(dir)) {}

  std::string Path(const std::string& digest) const;
  bool Has(const std::string& digest);
  Result<std::string> Read(const std::string& digest);
  // Stores bytes already in memory (manifests, configs) after checking they hash to `digest`.
  Status Put(const std::string& digest, std::string_view data);

  // Downloads `digest` of `size` bytes from the registry unless present, resuming a partial download.
  // kIntegrity when the content does not hash to `digest` (the partial is discarded, never retried with it).
  Status Fetch(registry::Client& client, const registry::Reference& repo, const std::string& digest, uint64_t size,
               const FetchPolicy& policy, const ProgressFn& progress);

  // Re-hashes every blob; returns the digests that do not match (and removes them when `repair`).
  Result<std::vector<std::string>> Verify(bool repair);
  // Removes blobs and partials not in `keep` (digests). Returns bytes freed.
  Result<uint64_t> CollectGarbage(const std::set<std::string>& keep);
  // Bytes of partial download present for `digest` (0 if none).
  uint64_t PartialBytes(const std::string& digest);

 private:
  core::Env& env_;
  StateDir dir_;
};

}  // namespace tug::agent
