#include "sandbox_fs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace tug::cluster::node::sandbox_fs {
namespace {

Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    return MakeError(Errc::kInvalidArgument, "'" + name + "' is not a single file name");
  return {};
}

// A regular file with one link, else refused.
Status CheckRegular(const struct stat& st, const std::string& name) {
  if (!S_ISREG(st.st_mode)) return MakeError(Errc::kInvalidArgument, name + " is not a regular file");
  if (st.st_nlink > 1) return MakeError(Errc::kInvalidArgument, name + " has other hard links");
  return {};
}

// Opens an existing `name` in two steps so that nothing but a regular file is ever opened for I/O: an O_PATH fd
// (O_NOFOLLOW: a symlink yields the link itself; opening a device, FIFO or socket this way has no side effect),
// checked with fstat, then reopened through /proc/self/fd, which names that very inode (no second lookup of
// `name` the task could race). kNotFound when there is nothing at `name`.
Result<Fd> OpenExisting(int dir, const std::string& name, int flags) {
  int pfd;
  do {
    pfd = ::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  } while (pfd < 0 && errno == EINTR);
  if (pfd < 0) {
    if (errno == ENOENT) return MakeError(Errc::kNotFound, name + " does not exist");
    return ErrnoError(errno, "opening " + name);
  }
  Fd path_fd(pfd);
  struct stat st {};
  if (::fstat(path_fd.get(), &st) != 0) return ErrnoError(errno, "stat " + name);
  TUG_TRY(CheckRegular(st, name));
  const std::string proc = "/proc/self/fd/" + std::to_string(path_fd.get());
  int fd;
  do {
    fd = ::open(proc.c_str(), (flags & ~O_CREAT) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, "opening " + name);
  Fd out(fd);
  struct stat again {};
  if (::fstat(out.get(), &again) != 0) return ErrnoError(errno, "stat " + name);
  if (again.st_dev != st.st_dev || again.st_ino != st.st_ino)
    return MakeError(Errc::kInvalidArgument, name + " changed while it was opened");
  TUG_TRY(CheckRegular(again, name));
  return out;
}

Result<Fd> OpenChecked(int dir, const std::string& name, int flags, mode_t mode) {
  TUG_TRY(CheckName(name));
  auto existing = OpenExisting(dir, name, flags);
  if (existing || !existing.error().Is(Errc::kNotFound) || !(flags & O_CREAT)) return existing;
  // Nothing there: create it, exclusively (a name planted meanwhile is taken as it is, checked, next round).
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::openat(dir, name.c_str(), flags | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
    if (fd >= 0) return Fd(fd);
    if (errno != EEXIST) return ErrnoError(errno, "creating " + name);
    existing = OpenExisting(dir, name, flags);
    if (existing || !existing.error().Is(Errc::kNotFound)) return existing;
  }
  return MakeError(Errc::kUnavailable, name + " keeps appearing and disappearing");
}

}  // namespace

void Fd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<Fd> OpenDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return MakeError(Errc::kNotFound, path + " does not exist");
    return ErrnoError(errno, "opening directory " + path);
  }
  return Fd(fd);
}

Result<Fd> OpenRegularAt(int dir, const std::string& name) { return OpenChecked(dir, name, O_RDONLY, 0); }

Result<Fd> OpenAppendAt(int dir, const std::string& name) {
  return OpenChecked(dir, name, O_RDWR | O_CREAT | O_APPEND, 0644);
}

Result<Fd> CreateExclusiveAt(int dir, const std::string& name, mode_t mode) {
  TUG_TRY(CheckName(name));
  int fd = ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return MakeError(Errc::kAlreadyExists, name + " already exists");
    return ErrnoError(errno, "creating " + name);
  }
  return Fd(fd);
}

Result<std::string> ReadTail(int fd, size_t max) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, "stat");
  const auto size = static_cast<uint64_t>(st.st_size);
  const uint64_t from = size > max ? size - max : 0;
  std::string out(static_cast<size_t>(size - from), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(from + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "reading");
    if (n == 0) break;  // truncated meanwhile
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<std::optional<std::string>> ReadSmallFileAt(int dir, const std::string& name, size_t max) {
  auto fd = OpenRegularAt(dir, name);
  if (!fd && fd.error().Is(Errc::kNotFound)) return std::optional<std::string>();
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return ErrnoError(errno, "stat " + name);
  if (static_cast<uint64_t>(st.st_size) > max)
    return MakeError(Errc::kInvalidArgument, name + " is larger than " + std::to_string(max) + " bytes");
  TUG_ASSIGN_OR_RETURN(auto text, ReadTail(fd->get(), max));
  return std::optional<std::string>(std::move(text));
}

Result<std::optional<std::string>> ReadSmallFile(const std::string& dir_path, const std::string& name, size_t max) {
  auto dir = OpenDir(dir_path);
  if (!dir && dir.error().Is(Errc::kNotFound)) return std::optional<std::string>();
  if (!dir) return tl::unexpected(dir.error());
  return ReadSmallFileAt(dir->get(), name, max);
}

std::optional<struct stat> StatNoFollow(const std::string& dir_path, const std::string& name) {
  if (!CheckName(name)) return std::nullopt;
  auto dir = OpenDir(dir_path);
  if (!dir) return std::nullopt;
  struct stat st {};
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  return st;
}

Status ReplaceFileAt(int dir, const std::string& name, std::string_view data, bool durable) {
  TUG_TRY(CheckName(name));
  const std::string tmp = TempName(name);
  TUG_ASSIGN_OR_RETURN(auto fd, CreateExclusiveAt(dir, tmp));
  auto written = [&]() -> Status {
    while (!data.empty()) {
      ssize_t n = ::write(fd.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "writing " + tmp);
      data.remove_prefix(static_cast<size_t>(n));
    }
    if (durable && ::fsync(fd.get()) != 0) return ErrnoError(errno, "fsync " + tmp);
    fd.Reset();
    if (::renameat(dir, tmp.c_str(), dir, name.c_str()) != 0) return ErrnoError(errno, "renaming " + tmp);
    return {};
  }();
  if (!written) {
    (void)::unlinkat(dir, tmp.c_str(), 0);
    return written;
  }
  if (durable && ::fsync(dir) != 0) return ErrnoError(errno, "fsync of the directory of " + name);
  return {};
}

std::string TempName(const std::string& base) {
  static thread_local std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "." + base + ".tmp-";
  for (int i = 0; i < 16; ++i) s += kHex[(v >> (4 * i)) & 0xf];
  return s;
}

}  // namespace tug::cluster::node::sandbox_fs
