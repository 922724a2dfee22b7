// sandbox_fs: the only way the node and the supervisor touch files inside a task's sandbox.
//
// A sandbox (work_dir/tasks/<task>/) is writable by its task, and a container task is root inside it: any name in
// it may be a symlink to a host file, a FIFO, a device, a directory or a hard link to something else by the time we
// look. So nothing under a sandbox is opened by path. A directory is opened once (O_DIRECTORY|O_NOFOLLOW) and every
// file in it with openat() relative to that fd, one path component: first O_PATH|O_NOFOLLOW (a symlink yields the
// link itself, a FIFO or device is not really opened), fstat() must say a regular file with one link (a hard link to
// a host file is refused too), and only then is that same inode opened for I/O through /proc/self/fd (O_NONBLOCK,
// O_NOCTTY), checked again. Reads are bounded. New files are created with O_CREAT|O_EXCL|O_NOFOLLOW, so a planted
// name is refused rather than written through.
//
// The node-private supervisor dir (work_dir/supervisor/<task>/, see supervisor.hpp) is not writable by tasks, but
// its files are read the same way: it costs nothing, and an older node kept those files inside the sandbox
// (recovery still reads them there for tasks started by such a node).
//
// All functions are thread-safe and never block on anything a task controls.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::cluster::node::sandbox_fs {

// An owned file descriptor (closed on destruction). -1: none.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(o.Release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

// The largest small file (pid files, exit_status.json, launch.json) read from a sandbox or supervisor dir.
inline constexpr size_t kMaxSmallFile = 1 << 20;

// Opens a directory by its full path; the last component must not be a symlink. Only for directories whose parents
// the node owns (work_dir/tasks/<task>, work_dir/supervisor/<task>). kNotFound when it does not exist.
Result<Fd> OpenDir(const std::string& path);

// Opens `name` (one path component, no '/') in `dir` for reading, as above: it must be a regular file with a single
// link. kNotFound when absent; kInvalidArgument for a symlink, FIFO, device, directory, hard link, ...
Result<Fd> OpenRegularAt(int dir, const std::string& name);

// Opens `name` in `dir` for appending (O_RDWR|O_APPEND: readable too, so log rotation can copy through the same fd)
// with the same checks, or creates it (O_EXCL|O_NOFOLLOW, 0644) when nothing is there.
Result<Fd> OpenAppendAt(int dir, const std::string& name);

// Creates a new file `name` in `dir` for writing: O_CREAT|O_EXCL|O_NOFOLLOW, so nothing that is already there
// (a planted symlink included) is ever opened. kAlreadyExists when the name is taken.
Result<Fd> CreateExclusiveAt(int dir, const std::string& name, mode_t mode = 0644);

// The whole of a regular file, at most `max` bytes (kInvalidArgument when larger). nullopt when it does not exist.
Result<std::optional<std::string>> ReadSmallFileAt(int dir, const std::string& name, size_t max = kMaxSmallFile);
// Same, opening `dir_path` first (OpenDir); nullopt also when the directory does not exist.
Result<std::optional<std::string>> ReadSmallFile(const std::string& dir_path, const std::string& name,
                                                 size_t max = kMaxSmallFile);

// The last `max` bytes of an open file (pread, so the fd's offset does not matter).
Result<std::string> ReadTail(int fd, size_t max);

// lstat of `name` in `dir_path` (never follows a symlink); nullopt when either does not exist.
std::optional<struct stat> StatNoFollow(const std::string& dir_path, const std::string& name);

// Replaces `name` in `dir` atomically: a new temp file (CreateExclusiveAt, TempName), written, renamed over `name`
// with renameat; with `durable`, fsynced before the rename and the directory after it. The temp is removed on
// failure.
Status ReplaceFileAt(int dir, const std::string& name, std::string_view data, bool durable);

// A temp name for `base` in a directory a task may write: "." + base + ".tmp-" + 16 random hex digits.
std::string TempName(const std::string& base);

}  // namespace tug::cluster::node::sandbox_fs
