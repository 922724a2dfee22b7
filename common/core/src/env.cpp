#include "core/env.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>

namespace tug::core {
namespace {

// 32-bit builds need -D_FILE_OFFSET_BITS=64 (CMakeLists.txt): with a 32-bit off_t/ino_t, stat, truncate and readdir
// fail (EOVERFLOW) or truncate on files over 2 GiB and on large inode numbers or directory cookies.
static_assert(sizeof(off_t) == 8 && sizeof(ino_t) == 8, "build with -D_FILE_OFFSET_BITS=64");

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Append(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "writing " + path_);
      }
      data.remove_prefix(static_cast<size_t>(n));
      size_ += static_cast<uint64_t>(n);
    }
    return {};
  }
  Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoError(errno, "fsync " + path_);
    return {};
  }
  Status Close() override {
    if (fd_ < 0) return {};
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return ErrnoError(errno, "closing " + path_);
    return {};
  }
  uint64_t Size() const override { return size_; }

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
};

class PosixEnv : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, bool append) override {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return ErrnoError(errno, "opening " + path + " for writing");
    uint64_t size = 0;
    if (append) {
      struct stat st {};
      if (::fstat(fd, &st) == 0) size = static_cast<uint64_t>(st.st_size);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd, size));
  }

  Result<std::unique_ptr<WritableFile>> NewExclusiveFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) return MakeError(Errc::kAlreadyExists, path + " already exists");
      return ErrnoError(errno, "creating " + path);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd, 0));
  }

  Result<std::string> ReadFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return MakeError(Errc::kNotFound, path);
      return ErrnoError(errno, "opening " + path);
    }
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        return ErrnoError(err, "reading " + path);
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoError(errno, "renaming " + from + " to " + to);
    return {};
  }
  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(errno, "removing " + path);
    return {};
  }
  Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return tl::unexpected(Error{ec, "removing " + path});
    return {};
  }
  Status CreateDirs(const std::string& path) override {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return tl::unexpected(Error{ec, "creating directory " + path});
    return {};
  }
  Status SyncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, "opening directory " + path);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoError(err, "fsync directory " + path);
    return {};
  }
  Status Symlink(const std::string& target, const std::string& link_path) override {
    if (::symlink(target.c_str(), link_path.c_str()) != 0)
      return ErrnoError(errno, "creating symlink " + link_path);
    return {};
  }
  Result<std::string> ReadLink(const std::string& path) override {
    char buf[4096];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
    if (n < 0) {
      if (errno == ENOENT) return MakeError(Errc::kNotFound, path);
      return ErrnoError(errno, "reading link " + path);
    }
    return std::string(buf, static_cast<size_t>(n));
  }
  Status Truncate(const std::string& path, uint64_t size) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) return ErrnoError(errno, "truncating " + path);
    return {};
  }
  bool Exists(const std::string& path) override {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
  }
  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return MakeError(Errc::kNotFound, path);
      return ErrnoError(errno, "stat " + path);
    }
    return static_cast<uint64_t>(st.st_size);
  }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (!d) {
      if (errno == ENOENT) return MakeError(Errc::kNotFound, path);
      return ErrnoError(errno, "listing " + path);
    }
    std::vector<std::string> names;
    // readdir returns NULL both at the end and on an error (EOVERFLOW, EIO): only errno tells them apart, and a
    // listing cut short must not pass for the whole directory.
    while (true) {
      errno = 0;
      auto* e = ::readdir(d);
      if (e == nullptr) break;
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoError(err, "listing " + path);
    std::sort(names.begin(), names.end());
    return names;
  }
  Result<uint64_t> FreeBytes(const std::string& path) override {
    struct statvfs st {};
    if (::statvfs(path.c_str(), &st) != 0) return ErrnoError(errno, "statvfs " + path);
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  }
};

// 64 bits from the OS's entropy source: a temp name another process cannot guess and plant beforehand.
std::string RandomSuffix() {
  static thread_local std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 0; i < 16; ++i) s[static_cast<size_t>(i)] = kHex[(v >> (4 * i)) & 0xf];
  return s;
}

}  // namespace

Result<std::unique_ptr<WritableFile>> Env::NewExclusiveFile(const std::string& path) {
  if (Exists(path)) return MakeError(Errc::kAlreadyExists, path + " already exists");
  return NewWritableFile(path, false);
}

Env* DefaultEnv() {
  static PosixEnv env;
  return &env;
}

std::string Dirname(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string Basename(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

Status WriteFileDurable(Env& env, const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp-" + RandomSuffix();
  auto written = [&]() -> Status {
    TUG_ASSIGN_OR_RETURN(auto file, env.NewExclusiveFile(tmp));
    TUG_TRY(file->Append(data));
    TUG_TRY(file->Sync());
    TUG_TRY(file->Close());
    return env.Rename(tmp, path);
  }();
  if (!written) {
    // Ours to remove only if we created it: kAlreadyExists means the name was taken (by nobody we know).
    if (!written.error().Is(Errc::kAlreadyExists)) (void)env.RemoveFile(tmp);
    return written;
  }
  return env.SyncDir(Dirname(path));
}

Status ReplaceSymlinkDurable(Env& env, const std::string& target, const std::string& link_path) {
  const std::string tmp = link_path + ".tmp";
  TUG_TRY(env.RemoveFile(tmp));
  TUG_TRY(env.Symlink(target, tmp));
  TUG_TRY(env.Rename(tmp, link_path));
  return env.SyncDir(Dirname(link_path));
}

}  // namespace tug::core
