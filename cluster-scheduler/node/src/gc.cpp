#include "gc.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstdio>

#include "core/env.hpp"
#include "model/types.hpp"

namespace tug::cluster::node {
namespace {

constexpr size_t kHexLen = 64;

bool IsHex(const std::string& s) {
  return s.size() == kHexLen &&
         s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// "sha256:<hex>" -> "<hex>"; "" for anything else (never a path component we did not expect).
std::string HexOf(const std::string& digest) {
  const std::string prefix = "sha256:";
  if (digest.rfind(prefix, 0) != 0) return "";
  std::string hex = digest.substr(prefix.size());
  return IsHex(hex) ? hex : "";
}

void TouchNow(const std::string& path) { (void)::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

// nftw has no user pointer: the walk's state lives here, one walk per thread at a time.
struct WalkState {
  uint64_t bytes = 0;
  const std::atomic<bool>* stopping = nullptr;
};
thread_local WalkState* g_walk = nullptr;

int RemoveEntry(const char* path, const struct stat* st, int type, struct FTW*) {
  if (g_walk->stopping->load()) return 1;  // stops the walk; the rest is deleted by the next runner
  const int rc = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
  if (rc == 0) g_walk->bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  return 0;  // an entry that cannot be removed is reported once, for the whole tree, by the caller
}

std::string FormatBytes(uint64_t bytes) {
  char buf[32];
  if (bytes < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

std::optional<double> MtimeSeconds(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
}

Result<double> StatvfsUsedPercent(const std::string& path) {
  struct statvfs st{};
  if (::statvfs(path.c_str(), &st) != 0) return ErrnoError(errno, "statvfs " + path);
  const double used = static_cast<double>(st.f_blocks - st.f_bfree);
  const double total = used + static_cast<double>(st.f_bavail);
  if (total <= 0) return MakeError(Errc::kRuntime, "statvfs " + path + ": filesystem reports no blocks");
  return 100.0 * used / total;
}

std::string FormatDelay(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  char buf[32];
  if (ms % 3600000 == 0 && ms > 0) std::snprintf(buf, sizeof buf, "%lldh", static_cast<long long>(ms / 3600000));
  else if (ms % 60000 == 0 && ms > 0) std::snprintf(buf, sizeof buf, "%lldm", static_cast<long long>(ms / 60000));
  else if (ms % 1000 == 0) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(ms / 1000));
  else if (ms >= 10000) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(ms / 1000));
  else std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  return buf;
}

Result<std::string> MoveToTrash(const std::string& path, const std::string& trash_dir) {
  const std::string to = core::JoinPath(trash_dir, core::Basename(path) + "." + NewId("gc"));
  TUG_TRY(core::DefaultEnv()->Rename(path, to));
  return to;
}

// ---- ImageCache ----

ImageCache::ImageCache(std::string images_dir) : blobs_dir_(core::JoinPath(images_dir, "sha256")) {}

std::string ImageCache::BlobPath(const std::string& hex) const { return core::JoinPath(blobs_dir_, hex); }

void ImageCache::Acquire(const std::string& owner, const std::string& digest) {
  const std::string hex = HexOf(digest);
  if (hex.empty()) return;  // PullImage rejects such a digest before it touches the cache
  std::lock_guard<std::mutex> lock(mu_);
  users_[hex].insert(owner);
  owned_[owner].insert(hex);
  TouchNow(BlobPath(hex));  // absent until downloaded: then its fresh mtime says "used now" by itself
}

void ImageCache::Adopt(const std::string& owner, const std::vector<std::string>& digests) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& d : digests) {
    const std::string hex = HexOf(d);
    if (hex.empty()) continue;
    users_[hex].insert(owner);
    owned_[owner].insert(hex);
  }
}

std::vector<std::string> ImageCache::UsedBy(const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  if (auto it = owned_.find(owner); it != owned_.end())
    for (const auto& hex : it->second) out.push_back("sha256:" + hex);
  return out;
}

void ImageCache::Release(const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = owned_.find(owner);
  if (it == owned_.end()) return;
  for (const auto& hex : it->second) {
    auto u = users_.find(hex);
    if (u == users_.end()) continue;
    u->second.erase(owner);
    if (u->second.empty()) users_.erase(u);
    TouchNow(BlobPath(hex));  // the image-gc delay counts from the last task that held it
  }
  owned_.erase(it);
}

std::vector<std::string> ImageCache::Sweep(std::chrono::system_clock::time_point now, std::chrono::milliseconds delay,
                                           const std::string& trash_dir) {
  auto names = core::DefaultEnv()->ListDir(blobs_dir_);
  if (!names) return {};  // no blob ever cached
  const double cutoff = std::chrono::duration<double>(now.time_since_epoch()).count() -
                        std::chrono::duration<double>(delay).count();
  std::vector<std::string> moved;
  // Held across check and rename: see the class comment (a launch's Acquire must not slip in between).
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& name : *names) {
    const std::string hex = name.substr(0, kHexLen);
    const bool blob = IsHex(name);
    const bool partial = IsHex(hex) && name.compare(kHexLen, 9, ".partial-") == 0;
    if (!blob && !partial) continue;  // not ours: leave it
    if (users_.count(hex)) continue;
    const std::string path = BlobPath(name);
    auto mtime = MtimeSeconds(path);
    if (!mtime || *mtime > cutoff) continue;
    auto to = MoveToTrash(path, trash_dir);
    if (!to) {
      spdlog::warn("gc: could not move image blob {} to the trash: {}", path, to.error().Message());
      continue;
    }
    moved.push_back(*to);
  }
  return moved;
}

size_t ImageCache::blobs_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return users_.size();
}

// ---- Trash ----

Trash::Trash() : thread_([this] { Loop(); }) {}

Trash::~Trash() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Trash::Submit(Batch b) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(b));
  }
  cv_.notify_all();
}

bool Trash::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.empty() && !busy_;
}

uint64_t Trash::RemoveTree(const std::string& path) {
  WalkState state;
  state.stopping = &stopping_;
  g_walk = &state;
  // FTW_DEPTH: children before their directory; FTW_PHYS: never follow a symlink out of the tree; FTW_MOUNT: never
  // cross into a filesystem a task may have left mounted.
  (void)::nftw(path.c_str(), RemoveEntry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  g_walk = nullptr;
  if (!stopping_ && core::DefaultEnv()->Exists(path)) {
    auto st = core::DefaultEnv()->RemoveAll(path);
    if (!st) spdlog::error("gc: could not delete {}: {}", path, st.error().Message());
  }
  return state.bytes;
}

void Trash::Loop() {
  for (;;) {
    Batch b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      b = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    uint64_t bytes = 0;
    for (const auto& p : b.paths) {
      if (stopping_) break;
      bytes += RemoveTree(p);
    }
    bytes_freed_ += bytes;
    if (!b.why.empty()) spdlog::info("gc: removed {}, freed {} ({})", b.what, FormatBytes(bytes), b.why);
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
  }
}

}  // namespace tug::cluster::node
