#include "agent/blob_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "crypto/sha256.hpp"
#include "oci/layer.hpp"

namespace tug::agent {
namespace {

Result<std::string> HexOf(const std::string& digest) {
  TUG_ASSIGN_OR_RETURN(auto d, crypto::Digest::Parse(digest));
  return d.hex;
}

// Rebuilds the hash state of the first `len` bytes of a partial download.
Status HashPrefix(const std::string& path, uint64_t len, crypto::Sha256& h) {
  if (len == 0) return {};
  TUG_ASSIGN_OR_RETURN(auto src, oci::FileSource::Open(path));
  std::string buf(1 << 16, '\0');
  uint64_t left = len;
  while (left > 0) {
    TUG_ASSIGN_OR_RETURN(size_t n, src->Read(buf.data(), std::min<uint64_t>(buf.size(), left)));
    if (n == 0) return MakeError(Errc::kIo, "partial download " + path + " is shorter than its checkpoint");
    h.Update(std::string_view(buf.data(), n));
    left -= n;
  }
  return {};
}

}  // namespace

std::string BlobStore::Path(const std::string& digest) const {
  auto pos = digest.find(':');
  return dir_.blobs() + "/" + (pos == std::string::npos ? digest : digest.substr(pos + 1));
}

bool BlobStore::Has(const std::string& digest) { return env_.Exists(Path(digest)); }

Result<std::string> BlobStore::Read(const std::string& digest) { return env_.ReadFile(Path(digest)); }

Status BlobStore::Put(const std::string& digest, std::string_view data) {
  if (crypto::Sha256Digest(data) != digest)
    return MakeError(Errc::kIntegrity, "content does not hash to " + digest);
  if (Has(digest)) return {};
  TUG_ASSIGN_OR_RETURN(auto hex, HexOf(digest));
  const std::string tmp = dir_.partial() + "/" + hex + ".put";
  {
    TUG_ASSIGN_OR_RETURN(auto f, env_.NewWritableFile(tmp, false));
    TUG_TRY(f->Append(data));
    TUG_TRY(f->Sync());
    TUG_TRY(f->Close());
  }
  TUG_TRY(env_.Rename(tmp, Path(digest)));
  return env_.SyncDir(dir_.blobs());
}

uint64_t BlobStore::PartialBytes(const std::string& digest) {
  auto hex = HexOf(digest);
  if (!hex) return 0;
  auto size = env_.FileSize(dir_.partial() + "/" + *hex);
  return size ? *size : 0;
}

Status BlobStore::Fetch(registry::Client& client, const registry::Reference& repo, const std::string& digest,
                        uint64_t size, const FetchPolicy& policy, const ProgressFn& progress) {
  if (Has(digest)) return {};
  TUG_ASSIGN_OR_RETURN(auto hex, HexOf(digest));
  const std::string partial = dir_.partial() + "/" + hex;
  const std::string ckpt = partial + ".ckpt";

  // After a crash only the checkpointed prefix is trusted: a power cut may leave garbage past it.
  uint64_t offset = 0;
  if (env_.Exists(partial)) {
    uint64_t ckpt_offset = 0;
    if (auto text = env_.ReadFile(ckpt)) {
      try {
        ckpt_offset = std::stoull(*text);
      } catch (...) {
        ckpt_offset = 0;
      }
    }
    TUG_ASSIGN_OR_RETURN(uint64_t have, env_.FileSize(partial));
    offset = std::min(have, ckpt_offset);
    if (offset > size) offset = 0;
    TUG_TRY(env_.Truncate(partial, offset));
  }
  crypto::Sha256 hasher;
  TUG_TRY(HashPrefix(partial, offset, hasher));
  if (offset > 0) spdlog::info("resuming {} at {} of {} bytes", digest, offset, size);

  TUG_ASSIGN_OR_RETURN(auto file, env_.NewWritableFile(partial, true));
  TUG_TRY(env_.SyncDir(dir_.partial()));
  uint64_t since_ckpt = 0;
  auto checkpoint = [&]() -> Status {
    TUG_TRY(file->Sync());
    since_ckpt = 0;
    return core::WriteFileDurable(env_, ckpt, std::to_string(file->Size()));
  };
  auto sink = [&](std::string_view chunk) -> Status {
    if (policy.cancelled && policy.cancelled()) return MakeError(Errc::kCancelled, "download cancelled");
    if (file->Size() + chunk.size() > size)
      return MakeError(Errc::kIntegrity, "registry sent more than the " + std::to_string(size) +
                                             " bytes the manifest declares for " + digest);
    TUG_TRY(file->Append(chunk));
    hasher.Update(chunk);
    since_ckpt += chunk.size();
    if (since_ckpt >= policy.checkpoint_bytes) TUG_TRY(checkpoint());
    if (progress) progress(FetchProgress{digest, file->Size(), size});
    return {};
  };

  // Attempts and backoff count only tries that made no progress: a 4G link that drops every few hundred KiB but keeps
  // delivering is resumed at once, while a dead link backs off and eventually gives up.
  auto backoff = policy.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    if (file->Size() == size) break;
    const uint64_t before = file->Size();
    auto st = client.FetchBlob(repo, digest, before, sink);
    if (st && file->Size() == size) break;
    Error err = st ? Error{make_error_code(Errc::kUnavailable), "connection ended after " +
                                                                     std::to_string(file->Size()) + " of " +
                                                                     std::to_string(size) + " bytes"}
                   : st.error();
    if (err.Is(Errc::kCancelled)) {
      (void)checkpoint();  // keep the bytes: a later job for the same blob resumes here
      return tl::unexpected(err);
    }
    if (err.Is(Errc::kIntegrity)) {
      (void)file->Close();
      (void)env_.RemoveFile(partial);
      (void)env_.RemoveFile(ckpt);
      return tl::unexpected(err);
    }
    if (!IsRetryable(err) || attempt >= policy.max_attempts) {
      (void)checkpoint();  // keep what we have for the next try
      return tl::unexpected(Wrap(err, "downloading " + digest + " (attempt " + std::to_string(attempt) + ")"));
    }
    if (file->Size() > before) {
      attempt = 0;
      backoff = policy.initial_backoff;
      spdlog::info("download of {} cut at {} of {} bytes ({}); resuming", digest, file->Size(), size, err.Message());
      continue;
    }
    spdlog::warn("download of {} made no progress at {} bytes ({}); retrying in {} ms", digest, file->Size(),
                 err.Message(), backoff.count());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
  TUG_TRY(file->Sync());
  TUG_TRY(file->Close());
  const std::string got = "sha256:" + hasher.FinishHex();
  if (got != digest) {
    (void)env_.RemoveFile(partial);
    (void)env_.RemoveFile(ckpt);
    return MakeError(Errc::kIntegrity, "blob " + digest + " from " + repo.Repo() + " hashed to " + got +
                                           "; discarded");
  }
  TUG_TRY(env_.Rename(partial, Path(digest)));
  TUG_TRY(env_.SyncDir(dir_.blobs()));
  (void)env_.RemoveFile(ckpt);
  return {};
}

Result<std::vector<std::string>> BlobStore::Verify(bool repair) {
  TUG_ASSIGN_OR_RETURN(auto names, env_.ListDir(dir_.blobs()));
  std::vector<std::string> bad;
  for (const auto& n : names) {
    auto got = crypto::Sha256FileHex(dir_.blobs() + "/" + n);
    if (!got || *got != n) {
      bad.push_back("sha256:" + n);
      if (repair) TUG_TRY(env_.RemoveFile(dir_.blobs() + "/" + n));
    }
  }
  return bad;
}

Result<uint64_t> BlobStore::CollectGarbage(const std::set<std::string>& keep) {
  std::set<std::string> keep_hex;
  for (const auto& d : keep) {
    auto pos = d.find(':');
    keep_hex.insert(pos == std::string::npos ? d : d.substr(pos + 1));
  }
  uint64_t freed = 0;
  TUG_ASSIGN_OR_RETURN(auto blobs, env_.ListDir(dir_.blobs()));
  for (const auto& n : blobs) {
    if (keep_hex.count(n)) continue;
    auto size = env_.FileSize(dir_.blobs() + "/" + n);
    TUG_TRY(env_.RemoveFile(dir_.blobs() + "/" + n));
    if (size) freed += *size;
  }
  TUG_ASSIGN_OR_RETURN(auto partials, env_.ListDir(dir_.partial()));
  for (const auto& n : partials) {
    std::string base = n.substr(0, n.find('.'));
    if (keep_hex.count(base)) continue;
    auto size = env_.FileSize(dir_.partial() + "/" + n);
    TUG_TRY(env_.RemoveFile(dir_.partial() + "/" + n));
    if (size) freed += *size;
  }
  return freed;
}

}  // namespace tug::agent
