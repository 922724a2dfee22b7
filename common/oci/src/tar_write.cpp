#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "oci/layer.hpp"
#include "crypto/sha256.hpp"
#include "dir_list.hpp"

namespace tug::oci {

namespace {

// libarchive writer into a std::string. pax with no padding of the last block: the same entries always give the
// same bytes, and there are no trailing zeros beyond the end-of-archive marker.
class TarWriter {
 public:
  TarWriter() : a_(archive_write_new()) {
    archive_write_set_format_pax(a_);
    archive_write_add_filter_none(a_);
    archive_write_set_bytes_in_last_block(a_, 1);
    archive_write_open(a_, &out_, nullptr, &TarWriter::Write, nullptr);
  }
  ~TarWriter() { archive_write_free(a_); }
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  Status Header(archive_entry* e) {
    if (archive_write_header(a_, e) < ARCHIVE_WARN) return Fail("writing tar header");
    return {};
  }
  Status Data(const void* p, size_t n) {
    if (n > 0 && archive_write_data(a_, p, n) < 0) return Fail("writing tar data");
    return {};
  }
  Result<std::string> Finish() {
    if (archive_write_close(a_) != ARCHIVE_OK) return Fail("closing tar");
    return std::move(out_);
  }

 private:
  static la_ssize_t Write(archive*, void* opaque, const void* buf, size_t n) {
    static_cast<std::string*>(opaque)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  tl::unexpected<Error> Fail(const std::string& what) {
    const char* msg = archive_error_string(a_);
    return MakeError(Errc::kInternal, what + ": " + (msg != nullptr ? msg : "libarchive error"));
  }

  archive* a_;
  std::string out_;
};

struct Entry {
  archive_entry* e = archive_entry_new();
  ~Entry() { archive_entry_free(e); }
};

LayerBlob MakeBlob(std::string tar) {
  LayerBlob blob;
  blob.diff_id = crypto::Sha256Digest(tar);
  blob.data = Gzip(tar);
  blob.digest = crypto::Sha256Digest(blob.data);
  blob.media_type = std::string(media::kOciLayerGzip);
  return blob;
}

struct DirWalk {
  const LayerFromDirOptions& opts;
  TarWriter& tar;
  std::map<std::pair<dev_t, ino_t>, std::string> links;

  Status Add(int parent, const std::string& name, const std::string& rel) {
    struct stat st;
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError(errno, "stat " + rel);
    Entry entry;
    archive_entry* e = entry.e;
    archive_entry_set_pathname(e, rel.c_str());
    archive_entry_set_perm(e, st.st_mode & 07777);
    archive_entry_set_uid(e, opts.numeric_owner_root ? 0 : st.st_uid);
    archive_entry_set_gid(e, opts.numeric_owner_root ? 0 : st.st_gid);
    // Whole seconds only, clamped: nanoseconds and atime/ctime would make identical trees differ.
    archive_entry_set_mtime(e, std::min<int64_t>(st.st_mtim.tv_sec, opts.source_date_epoch), 0);

    if (S_ISDIR(st.st_mode)) {
      archive_entry_set_filetype(e, AE_IFDIR);
      TUG_TRY(tar.Header(e));
      int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return ErrnoError(errno, "opening " + rel);
      auto s = Children(fd, rel);
      ::close(fd);
      return s;
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(parent, name.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoError(errno, "readlink " + rel);
      target.resize(static_cast<size_t>(n));
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, target.c_str());
      return tar.Header(e);
    }
    if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1) {
        auto [it, inserted] = links.emplace(std::make_pair(st.st_dev, st.st_ino), rel);
        if (!inserted) {
          archive_entry_set_filetype(e, AE_IFREG);
          archive_entry_set_hardlink(e, it->second.c_str());
          archive_entry_set_size(e, 0);
          return tar.Header(e);
        }
      }
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, st.st_size);
      int fd = ::openat(parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return ErrnoError(errno, "opening " + rel);
      auto s = [&]() -> Status {
        TUG_TRY(tar.Header(e));
        char buf[64 * 1024];
        while (true) {
          ssize_t n = ::read(fd, buf, sizeof(buf));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return ErrnoError(errno, "reading " + rel);
          if (n == 0) return {};
          TUG_TRY(tar.Data(buf, static_cast<size_t>(n)));
        }
      }();
      ::close(fd);
      return s;
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
      archive_entry_set_filetype(e, S_ISCHR(st.st_mode) ? AE_IFCHR : S_ISBLK(st.st_mode) ? AE_IFBLK : AE_IFIFO);
      archive_entry_set_rdev(e, st.st_rdev);
      return tar.Header(e);
    }
    return {};  // sockets have no tar representation
  }

  Status Children(int dirfd, const std::string& rel) {
    TUG_ASSIGN_OR_RETURN(auto names, internal::ListDirFd(dirfd, rel));
    // readdir order depends on the filesystem; byte order does not.
    std::sort(names.begin(), names.end());
    for (const auto& n : names) TUG_TRY(Add(dirfd, n, rel.empty() ? n : rel + "/" + n));
    return {};
  }
};

}  // namespace

std::string BuildTar(const std::vector<TarEntry>& entries) {
  TarWriter tar;
  for (const auto& t : entries) {
    Entry entry;
    archive_entry* e = entry.e;
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_perm(e, t.mode & 07777);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, 0);
    switch (t.type) {
      case TarEntry::Type::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(t.content.size()));
        break;
      case TarEntry::Type::kDir:
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case TarEntry::Type::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.link.c_str());
        break;
      case TarEntry::Type::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case TarEntry::Type::kCharDevice:
        archive_entry_set_filetype(e, AE_IFCHR);
        archive_entry_set_rdevmajor(e, t.dev_major);
        archive_entry_set_rdevminor(e, t.dev_minor);
        break;
      case TarEntry::Type::kFifo:
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
    }
    // Writing into memory with entries we built ourselves cannot fail short of a libarchive bug.
    if (!tar.Header(e)) std::abort();
    if (t.type == TarEntry::Type::kFile && !tar.Data(t.content.data(), t.content.size())) std::abort();
  }
  auto out = tar.Finish();
  if (!out) std::abort();
  return std::move(*out);
}

LayerBlob LayerFromEntries(const std::vector<TarEntry>& entries) { return MakeBlob(BuildTar(entries)); }

Result<LayerBlob> LayerFromDirectory(const std::string& dir, const LayerFromDirOptions& opts) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening " + dir);
  TarWriter tar;
  DirWalk walk{opts, tar, {}};
  auto s = walk.Children(fd, "");
  ::close(fd);
  if (!s) return tl::unexpected(Wrap(s.error(), "building layer from " + dir));
  TUG_ASSIGN_OR_RETURN(std::string bytes, tar.Finish());
  return MakeBlob(std::move(bytes));
}

}  // namespace tug::oci
