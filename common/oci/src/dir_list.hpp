// Private to oci: the names in a directory given by fd, without "." and "..", in readdir order (callers that need a
// stable order sort). The fd stays open and owned by the caller. `what` names the directory in errors.
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::oci::internal {

// 32-bit builds need -D_FILE_OFFSET_BITS=64 (CMakeLists.txt): with a 32-bit ino_t/off_t readdir fails on large
// inode numbers or directory cookies, and the extractor's pwrite/ftruncate would truncate offsets past 2 GiB.
static_assert(sizeof(off_t) == 8 && sizeof(ino_t) == 8, "build with -D_FILE_OFFSET_BITS=64");

inline Result<std::vector<std::string>> ListDirFd(int dirfd, const std::string& what) {
  int fd = ::dup(dirfd);  // fdopendir takes ownership; keep the caller's fd
  if (fd < 0) return ErrnoError(errno, "dup");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, "listing " + what);
  }
  std::vector<std::string> names;
  // readdir returns NULL both at the end and on an error (EOVERFLOW, EIO): only errno tells them apart. Taking an
  // error for the end would silently drop entries (an empty layer, a whiteout or opaque directory that hides nothing).
  while (true) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) break;
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError(err, "listing " + what);
  return names;
}

}  // namespace tug::oci::internal
