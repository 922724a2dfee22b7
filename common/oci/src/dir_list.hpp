// Private to oci: the names in a directory given by fd, without "." and "..", in readdir order (callers that need a
// stable order sort). The fd stays open and owned by the caller. `what` names the directory in errors.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::oci::internal {

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
  while (struct dirent* de = ::readdir(d)) {
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  ::closedir(d);
  return names;
}

}  // namespace tug::oci::internal
