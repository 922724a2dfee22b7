#include "oci/layout.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/env.hpp"
#include "crypto/sha256.hpp"

namespace tug::oci {

namespace {

constexpr std::string_view kLayoutFile = R"({"imageLayoutVersion":"1.0.0"})";
constexpr const char* kRefName = "org.opencontainers.image.ref.name";

core::Env& Fs() { return *core::DefaultEnv(); }

Result<std::string> HashFile(const std::string& path, int64_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening " + path);
  crypto::Sha256 h;
  char buf[64 * 1024];
  int64_t total = 0;
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError(err, "reading " + path);
    }
    if (n == 0) break;
    h.Update(std::string_view(buf, static_cast<size_t>(n)));
    total += n;
  }
  // The blob must be durable before it is renamed into the layout, or a crash could leave a named but empty blob.
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, "fsync " + path);
  }
  ::close(fd);
  *size = total;
  return "sha256:" + h.FinishHex();
}

}  // namespace

Result<ImageLayout> ImageLayout::Create(const std::string& dir) {
  TUG_TRY(Fs().CreateDirs(core::JoinPath(dir, "blobs/sha256")));
  const std::string layout_file = core::JoinPath(dir, "oci-layout");
  if (!Fs().Exists(layout_file)) TUG_TRY(core::WriteFileDurable(Fs(), layout_file, kLayoutFile));
  const std::string index_file = core::JoinPath(dir, "index.json");
  if (!Fs().Exists(index_file)) TUG_TRY(core::WriteFileDurable(Fs(), index_file, Serialize(Index{})));
  return ImageLayout(dir);
}

Result<ImageLayout> ImageLayout::Open(const std::string& dir) {
  const std::string layout_file = core::JoinPath(dir, "oci-layout");
  if (!Fs().Exists(layout_file)) return MakeError(Errc::kNotFound, dir + " is not an OCI image layout (no oci-layout)");
  TUG_ASSIGN_OR_RETURN(std::string text, Fs().ReadFile(layout_file));
  if (text.find("imageLayoutVersion") == std::string::npos) {
    return MakeError(Errc::kInvalidArgument, layout_file + ": no imageLayoutVersion");
  }
  if (!Fs().Exists(core::JoinPath(dir, "index.json"))) {
    return MakeError(Errc::kInvalidArgument, dir + " is not an OCI image layout (no index.json)");
  }
  return ImageLayout(dir);
}

std::string ImageLayout::BlobPath(std::string_view digest) const {
  std::string d(digest);
  auto colon = d.find(':');
  if (colon == std::string::npos) return core::JoinPath(dir_, "blobs/" + d);
  return core::JoinPath(dir_, "blobs/" + d.substr(0, colon) + "/" + d.substr(colon + 1));
}

Result<Descriptor> ImageLayout::WriteBlob(std::string_view data, std::string_view media_type) {
  Descriptor desc;
  desc.media_type = std::string(media_type);
  desc.digest = crypto::Sha256Digest(data);
  desc.size = static_cast<int64_t>(data.size());
  // Content addressing makes an existing blob with this name identical; rewriting it would only cost I/O.
  if (!HasBlob(desc.digest)) TUG_TRY(core::WriteFileDurable(Fs(), BlobPath(desc.digest), data));
  return desc;
}

Result<Descriptor> ImageLayout::ImportBlobFile(const std::string& path, std::string_view media_type,
                                               std::string_view expected_digest) {
  Descriptor desc;
  desc.media_type = std::string(media_type);
  TUG_ASSIGN_OR_RETURN(desc.digest, HashFile(path, &desc.size));
  if (!expected_digest.empty() && desc.digest != expected_digest) {
    return MakeError(Errc::kIntegrity, "importing " + path + ": expected " + std::string(expected_digest) +
                                           ", content is " + desc.digest);
  }
  const std::string dest = BlobPath(desc.digest);
  if (::rename(path.c_str(), dest.c_str()) != 0) {
    if (errno != EXDEV) return ErrnoError(errno, "moving " + path + " to " + dest);
    // Another filesystem: copy durably, then drop the source as a move would.
    TUG_ASSIGN_OR_RETURN(std::string data, Fs().ReadFile(path));
    TUG_TRY(core::WriteFileDurable(Fs(), dest, data));
    TUG_TRY(Fs().RemoveFile(path));
    return desc;
  }
  TUG_TRY(Fs().SyncDir(core::Dirname(dest)));
  return desc;
}

Result<std::string> ImageLayout::ReadBlob(std::string_view digest) const {
  if (!crypto::IsSha256Digest(digest)) {
    return MakeError(Errc::kInvalidArgument, "unsupported or malformed digest '" + std::string(digest) + "'");
  }
  const std::string path = BlobPath(digest);
  if (!Fs().Exists(path)) return MakeError(Errc::kNotFound, "blob " + std::string(digest) + " not in " + dir_);
  TUG_ASSIGN_OR_RETURN(std::string data, Fs().ReadFile(path));
  if (crypto::Sha256Digest(data) != digest) {
    return MakeError(Errc::kIntegrity, "blob " + std::string(digest) + " in " + dir_ + " does not match its digest");
  }
  return data;
}

bool ImageLayout::HasBlob(std::string_view digest) const {
  return crypto::IsSha256Digest(digest) && Fs().Exists(BlobPath(digest));
}

Result<Index> ImageLayout::ReadIndex() const {
  TUG_ASSIGN_OR_RETURN(std::string text, Fs().ReadFile(core::JoinPath(dir_, "index.json")));
  auto idx = ParseIndex(text);
  if (!idx) return tl::unexpected(Wrap(idx.error(), dir_ + "/index.json"));
  return idx;
}

Status ImageLayout::AddToIndex(Descriptor desc, const std::string& ref_name) {
  TUG_ASSIGN_OR_RETURN(Index idx, ReadIndex());
  std::vector<Descriptor> kept;
  for (auto& d : idx.manifests) {
    auto it = d.annotations.find(kRefName);
    const bool same_ref = !ref_name.empty() && it != d.annotations.end() && it->second == ref_name;
    const bool same_untagged = ref_name.empty() && it == d.annotations.end() && d.digest == desc.digest;
    if (!same_ref && !same_untagged) kept.push_back(std::move(d));
  }
  if (!ref_name.empty()) desc.annotations[kRefName] = ref_name;
  kept.push_back(std::move(desc));
  idx.manifests = std::move(kept);
  return core::WriteFileDurable(Fs(), core::JoinPath(dir_, "index.json"), Serialize(idx));
}

}  // namespace tug::oci
