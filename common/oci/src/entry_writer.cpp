#include "entry_writer.hpp"

#include "dir_list.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tug::oci::internal {

namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

tl::unexpected<Error> Unsafe(const std::string& entry, const std::string& why) {
  return MakeError(Errc::kUnsafeArchive, "tar entry '" + entry + "': " + why);
}

std::string JoinComponents(const std::vector<std::string>& c, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) s += '/';
    s += c[i];
  }
  return s;
}

void EntryTimes(archive_entry* e, struct timespec times[2]) {
  times[1].tv_sec = archive_entry_mtime(e);
  times[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_atime_is_set(e)) {
    times[0].tv_sec = archive_entry_atime(e);
    times[0].tv_nsec = archive_entry_atime_nsec(e);
  } else {
    times[0] = times[1];
  }
}

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";

}  // namespace

Status RemoveAt(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return ErrnoError(errno, "stat " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, "opening " + name);
    auto children = ListDirFd(fd, name);
    Status s;
    if (!children) s = tl::unexpected(children.error());
    for (size_t i = 0; s && children && i < children->size(); ++i) s = RemoveAt(fd, (*children)[i]);
    ::close(fd);
    if (!s) return s;
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return ErrnoError(errno, "removing directory " + name);
    }
    return {};
  }
  if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return ErrnoError(errno, "removing " + name);
  return {};
}

Result<std::unique_ptr<EntryWriter>> EntryWriter::Open(const std::string& root, const WriterOptions& opts) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening rootfs " + root);
  return std::unique_ptr<EntryWriter>(new EntryWriter(fd, opts));
}

EntryWriter::~EntryWriter() { ::close(root_fd_); }

Result<EntryWriter::Components> EntryWriter::Split(const std::string& entry, const char* path) const {
  if (path == nullptr || *path == '\0') return Unsafe(entry, "empty path");
  std::string_view p(path);
  if (p.front() == '/') return Unsafe(entry, "absolute path '" + std::string(p) + "'");
  Components out;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    std::string_view c = p.substr(start, slash - start);
    if (c == "..") return Unsafe(entry, "'..' in path '" + std::string(p) + "'");
    if (!c.empty() && c != ".") out.emplace_back(c);
    start = slash + 1;
  }
  return out;
}

Result<int> EntryWriter::OpenDir(const std::string& entry, const Components& path, size_t n, bool create) {
  int cur = ::dup(root_fd_);
  if (cur < 0) return ErrnoError(errno, "dup");
  for (size_t i = 0; i < n; ++i) {
    const char* comp = path[i].c_str();
    int next = ::openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur, comp, 0755) != 0 && errno != EEXIST) {
        int err = errno;
        ::close(cur);
        return ErrnoError(err, "creating " + JoinComponents(path, i + 1));
      }
      next = ::openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (next < 0) {
      int err = errno;
      struct stat st;
      bool is_link = ::fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      ::close(cur);
      const std::string where = JoinComponents(path, i + 1);
      if (is_link) return Unsafe(entry, "parent '" + where + "' is a symlink; refusing to write through it");
      if (err == ENOTDIR || err == ELOOP) return Unsafe(entry, "parent '" + where + "' is not a directory");
      if (err == ENOENT) return MakeError(Errc::kNotFound, "tar entry '" + entry + "': '" + where + "' does not exist");
      return ErrnoError(err, "opening " + where);
    }
    ::close(cur);
    cur = next;
  }
  return cur;
}

void EntryWriter::MarkLayer(const Components& path, size_t n) {
  for (size_t i = 1; i <= n; ++i) layer_paths_.insert(JoinComponents(path, i));
}

Status EntryWriter::Apply(archive* a, archive_entry* e) {
  ++entries_;
  const char* raw = archive_entry_pathname(e);
  const std::string entry = raw != nullptr ? raw : "";
  if (entries_ > opts_.max_entries) {
    return Unsafe(entry, "more than " + std::to_string(opts_.max_entries) + " entries in the archive");
  }
  TUG_ASSIGN_OR_RETURN(Components path, Split(entry, raw));
  if (path.empty()) return {};  // "./": the rootfs itself, which the caller owns

  const std::string& base = path.back();
  if (opts_.whiteouts && base.compare(0, kWhiteoutPrefix.size(), kWhiteoutPrefix) == 0) {
    return ApplyWhiteout(entry, path);
  }

  const char* hardlink = archive_entry_hardlink(e);
  const auto type = archive_entry_filetype(e);
  if (hardlink == nullptr && type == AE_IFREG && archive_entry_size_is_set(e)) {
    declared_bytes_ += static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(e), 0));
    if (declared_bytes_ > opts_.max_bytes) {
      return Unsafe(entry, "files add up to more than " + std::to_string(opts_.max_bytes) + " bytes");
    }
  }
  if (hardlink == nullptr && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO) &&
      !opts_.allow_device_nodes) {
    return Unsafe(entry, type == AE_IFIFO ? "FIFOs are not allowed" : "device nodes are not allowed");
  }

  TUG_ASSIGN_OR_RETURN(int parent_fd, OpenDir(entry, path, path.size() - 1, true));
  Fd parent(parent_fd);
  MarkLayer(path, path.size());

  if (hardlink != nullptr) return MakeHardlink(entry, e, parent.get(), path);
  switch (type) {
    case AE_IFREG:
      return WriteFile(entry, a, e, parent.get(), base);
    case AE_IFDIR:
      return MakeDir(entry, e, parent.get(), path);
    case AE_IFLNK:
      return MakeSymlink(entry, e, parent.get(), base);
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
      return MakeNode(entry, e, parent.get(), base);
    default:
      return Unsafe(entry, "unsupported entry type " + std::to_string(type));
  }
}

Status EntryWriter::ApplyWhiteout(const std::string& entry, const Components& path) {
  const std::string& base = path.back();
  const size_t dir_len = path.size() - 1;
  if (base == kOpaque) {
    // The directory exists in this layer (the marker says so) and hides everything below it from lower layers.
    TUG_ASSIGN_OR_RETURN(int dfd, OpenDir(entry, path, dir_len, true));
    Fd dir(dfd);
    MarkLayer(path, dir_len);
    return ClearOpaque(dir.get(), JoinComponents(path, dir_len));
  }
  if (base.compare(0, 8, ".wh..wh.") == 0) return {};  // aufs bookkeeping (.wh..wh.plnk etc.), not a whiteout
  const std::string target = base.substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == "..") return Unsafe(entry, "malformed whiteout");
  MarkLayer(path, dir_len);
  Components target_path(path.begin(), path.end() - 1);
  target_path.push_back(target);
  // A name this same layer provides wins over its whiteout, whatever their order in the tar.
  if (layer_paths_.count(JoinComponents(target_path, target_path.size())) > 0) return {};
  auto dfd = OpenDir(entry, path, dir_len, false);
  if (!dfd) {
    if (dfd.error().Is(Errc::kNotFound)) return {};  // nothing below to hide
    return tl::unexpected(dfd.error());
  }
  Fd dir(*dfd);
  return RemoveAt(dir.get(), target);
}

Status EntryWriter::ClearOpaque(int dirfd, const std::string& prefix) {
  TUG_ASSIGN_OR_RETURN(auto children, ListDirFd(dirfd, prefix));
  for (const auto& name : children) {
    const std::string child = prefix.empty() ? name : prefix + "/" + name;
    if (layer_paths_.count(child) == 0) {
      TUG_TRY(RemoveAt(dirfd, name));
      continue;
    }
    int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;  // a file or symlink of this layer: kept as is
    Fd subdir(sub);
    TUG_TRY(ClearOpaque(subdir.get(), child));
  }
  return {};
}

Status EntryWriter::WriteFile(const std::string& entry, archive* a, archive_entry* e, int parent,
                              const std::string& base) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(parent, base.c_str(), flags, 0600);
  if (fd < 0 && errno == EEXIST) {
    // A layer replaces whatever a lower layer (or an earlier entry) had here; never open the old one, it may be a
    // symlink or a hardlink shared with another path.
    TUG_TRY(RemoveAt(parent, base));
    fd = ::openat(parent, base.c_str(), flags, 0600);
  }
  if (fd < 0) return ErrnoError(errno, "creating " + entry);
  Fd file(fd);
  while (true) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(a, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      const char* msg = archive_error_string(a);
      return MakeError(Errc::kIntegrity, "reading data of '" + entry + "': " + (msg != nullptr ? msg : "error"));
    }
    const char* p = static_cast<const char*>(buf);
    while (size > 0) {
      ssize_t n = ::pwrite(fd, p, size, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "writing " + entry);
      p += n;
      size -= static_cast<size_t>(n);
      offset += n;
    }
  }
  // Sparse files end in a hole the data blocks do not cover.
  if (archive_entry_size_is_set(e) && ::ftruncate(fd, archive_entry_size(e)) != 0) {
    return ErrnoError(errno, "sizing " + entry);
  }
  if (opts_.preserve_owner && ::fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0) {
    return ErrnoError(errno, "chown " + entry);
  }
  // After chown, which clears setuid/setgid: the bits end up exactly as the tar gives them.
  if (::fchmod(fd, archive_entry_mode(e) & 07777) != 0) return ErrnoError(errno, "chmod " + entry);
  struct timespec times[2];
  EntryTimes(e, times);
  if (::futimens(fd, times) != 0) return ErrnoError(errno, "setting times of " + entry);
  return {};
}

Status EntryWriter::MakeDir(const std::string& entry, archive_entry* e, int parent, const Components& path) {
  const std::string& base = path.back();
  if (::mkdirat(parent, base.c_str(), 0700) != 0) {
    if (errno != EEXIST) return ErrnoError(errno, "creating directory " + entry);
    struct stat st;
    if (::fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError(errno, "stat " + entry);
    if (!S_ISDIR(st.st_mode)) {
      // A directory replaces a file or symlink; following an old symlink here would chmod/chown its target.
      TUG_TRY(RemoveAt(parent, base));
      if (::mkdirat(parent, base.c_str(), 0700) != 0) return ErrnoError(errno, "creating directory " + entry);
    }
  }
  int fd = ::openat(parent, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening directory " + entry);
  Fd dir(fd);
  if (opts_.preserve_owner && ::fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0) {
    return ErrnoError(errno, "chown " + entry);
  }
  DeferredDir d;
  d.path = path;
  d.mode = archive_entry_mode(e) & 07777;
  EntryTimes(e, d.times);
  deferred_.push_back(std::move(d));
  return {};
}

Status EntryWriter::MakeSymlink(const std::string& entry, archive_entry* e, int parent, const std::string& base) {
  const char* target = archive_entry_symlink(e);
  if (target == nullptr) return Unsafe(entry, "symlink without a target");
  if (::symlinkat(target, parent, base.c_str()) != 0) {
    if (errno != EEXIST) return ErrnoError(errno, "creating symlink " + entry);
    TUG_TRY(RemoveAt(parent, base));
    if (::symlinkat(target, parent, base.c_str()) != 0) return ErrnoError(errno, "creating symlink " + entry);
  }
  if (opts_.preserve_owner &&
      ::fchownat(parent, base.c_str(), archive_entry_uid(e), archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "chown " + entry);
  }
  struct timespec times[2];
  EntryTimes(e, times);
  if (::utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "setting times of " + entry);
  }
  return {};
}

Status EntryWriter::MakeHardlink(const std::string& entry, archive_entry* e, int parent, const Components& path) {
  const char* link = archive_entry_hardlink(e);
  TUG_ASSIGN_OR_RETURN(Components target, Split(entry, link));
  if (target.empty()) return Unsafe(entry, "hardlink to the rootfs itself");
  if (target == path) return {};  // a link to itself: nothing to do
  auto tdir = OpenDir(entry, target, target.size() - 1, false);
  if (!tdir) {
    if (tdir.error().Is(Errc::kNotFound)) return Unsafe(entry, "hardlink target '" + std::string(link) + "' missing");
    return tl::unexpected(tdir.error());
  }
  Fd tparent(*tdir);
  const std::string& tbase = target.back();
  struct stat st;
  if (::fstatat(tparent.get(), tbase.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Unsafe(entry, "hardlink target '" + std::string(link) + "' missing");
  }
  if (S_ISDIR(st.st_mode)) return Unsafe(entry, "hardlink to a directory");
  if (S_ISLNK(st.st_mode)) {
    // Linking the symlink itself is harmless only if it cannot point out of the rootfs.
    char buf[4096];
    ssize_t n = ::readlinkat(tparent.get(), tbase.c_str(), buf, sizeof(buf) - 1);
    if (n < 0) return ErrnoError(errno, "readlink " + std::string(link));
    std::string_view t(buf, static_cast<size_t>(n));
    if (t.empty() || t.front() == '/' || t == ".." || t.substr(0, 3) == "../" || t.find("/../") != t.npos ||
        (t.size() >= 3 && t.substr(t.size() - 3) == "/..")) {
      return Unsafe(entry, "hardlink to a symlink pointing outside ('" + std::string(t) + "')");
    }
  }
  const std::string& base = path.back();
  if (::linkat(tparent.get(), tbase.c_str(), parent, base.c_str(), 0) != 0) {
    if (errno != EEXIST) return ErrnoError(errno, "creating hardlink " + entry);
    TUG_TRY(RemoveAt(parent, base));
    if (::linkat(tparent.get(), tbase.c_str(), parent, base.c_str(), 0) != 0) {
      return ErrnoError(errno, "creating hardlink " + entry);
    }
  }
  return {};
}

Status EntryWriter::MakeNode(const std::string& entry, archive_entry* e, int parent, const std::string& base) {
  const auto type = archive_entry_filetype(e);
  const mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
  const dev_t dev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
  if (::mknodat(parent, base.c_str(), kind | 0600, dev) != 0) {
    if (errno != EEXIST) return ErrnoError(errno, "creating node " + entry);
    TUG_TRY(RemoveAt(parent, base));
    if (::mknodat(parent, base.c_str(), kind | 0600, dev) != 0) return ErrnoError(errno, "creating node " + entry);
  }
  if (opts_.preserve_owner &&
      ::fchownat(parent, base.c_str(), archive_entry_uid(e), archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "chown " + entry);
  }
  // The node was just created by us in a directory fd we hold; chmod cannot be redirected by a symlink here.
  if (::fchmodat(parent, base.c_str(), archive_entry_mode(e) & 07777, 0) != 0) return ErrnoError(errno, "chmod " + entry);
  struct timespec times[2];
  EntryTimes(e, times);
  if (::utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "setting times of " + entry);
  }
  return {};
}

Status EntryWriter::Finish() {
  // Deepest-last entries first, so a read-only parent is locked only after its children are done.
  for (auto it = deferred_.rbegin(); it != deferred_.rend(); ++it) {
    const std::string entry = JoinComponents(it->path, it->path.size());
    auto pfd = OpenDir(entry, it->path, it->path.size() - 1, false);
    if (!pfd) continue;  // replaced or removed by a later entry
    Fd parent(*pfd);
    int fd = ::openat(parent.get(), it->path.back().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    Fd dir(fd);
    if (::fchmod(fd, it->mode) != 0) return ErrnoError(errno, "chmod " + entry);
    if (::futimens(fd, it->times) != 0) return ErrnoError(errno, "setting times of " + entry);
  }
  deferred_.clear();
  return {};
}

Status ExtractEntries(archive* a, EntryWriter& w, const std::function<std::optional<Error>()>& source_error) {
  auto fail = [&](Error e) -> Status {
    if (auto src = source_error()) return tl::unexpected(*src);
    return tl::unexpected(std::move(e));
  };
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      const char* msg = archive_error_string(a);
      return fail(Error{make_error_code(Errc::kIntegrity),
                        std::string("reading tar: ") + (msg != nullptr ? msg : "malformed archive")});
    }
    auto s = w.Apply(a, e);
    if (!s) return fail(s.error());
  }
  if (auto src = source_error()) return tl::unexpected(*src);
  return w.Finish();
}

}  // namespace tug::oci::internal
