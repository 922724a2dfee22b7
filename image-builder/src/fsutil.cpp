#include "fsutil.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <vector>

#include "core/env.hpp"
#include "crypto/sha256.hpp"

namespace tug::builder::internal {
namespace {

std::vector<std::string> Split(const std::string& p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i) out.push_back(p.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

Status CopyFile(const std::string& src, const std::string& dst, const struct stat& st) {
  int in = ::open(src.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) return ErrnoError(errno, "open " + src);
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoError(err, "create " + dst);
  }
  char buf[64 * 1024];
  Status s;
  while (true) {
    ssize_t n = ::read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = ErrnoError(errno, "read " + src);
      break;
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(out, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        s = ErrnoError(errno, "write " + dst);
        break;
      }
      off += w;
    }
    if (!s) break;
  }
  ::close(in);
  ::close(out);
  return s;
}

Status Finish(const std::string& dst, const struct stat& st, const CopyOptions& opts) {
  if (::lchown(dst.c_str(), opts.uid, opts.gid) != 0) return ErrnoError(errno, "chown " + dst);
  if (!S_ISLNK(st.st_mode)) {
    const mode_t mode = opts.mode ? *opts.mode : (st.st_mode & 07777);
    if (::chmod(dst.c_str(), mode) != 0) return ErrnoError(errno, "chmod " + dst);
  }
  const struct timespec times[2] = {st.st_mtim, st.st_mtim};
  (void)::utimensat(AT_FDCWD, dst.c_str(), times, AT_SYMLINK_NOFOLLOW);
  return {};
}

Status CopyRec(const std::string& src, const std::string& dst, const std::string& rel, const CopyOptions& opts) {
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return ErrnoError(errno, "stat " + src);
  if (opts.skip && !rel.empty() && opts.skip(opts.rel_base.empty() ? rel : opts.rel_base + "/" + rel, S_ISDIR(st.st_mode)))
    return {};
  struct stat dst_st;
  const bool dst_exists = ::lstat(dst.c_str(), &dst_st) == 0;
  if (S_ISDIR(st.st_mode)) {
    if (dst_exists && !S_ISDIR(dst_st.st_mode) && ::unlink(dst.c_str()) != 0) return ErrnoError(errno, "rm " + dst);
    if (!dst_exists || !S_ISDIR(dst_st.st_mode)) {
      if (::mkdir(dst.c_str(), 0755) != 0) return ErrnoError(errno, "mkdir " + dst);
    }
    // core's ListDir: sorted, and a listing cut short by a readdir error is an error, not a smaller directory.
    TUG_ASSIGN_OR_RETURN(auto names, core::DefaultEnv()->ListDir(src));
    for (const auto& n : names) {
      TUG_TRY(CopyRec(src + "/" + n, dst + "/" + n, rel.empty() ? n : rel + "/" + n, opts));
    }
    return Finish(dst, st, opts);
  }
  if (dst_exists) {
    if (S_ISDIR(dst_st.st_mode)) {
      TUG_TRY(core::DefaultEnv()->RemoveAll(dst));
    } else if (::unlink(dst.c_str()) != 0) {
      return ErrnoError(errno, "rm " + dst);
    }
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(src.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoError(errno, "readlink " + src);
    target.resize(static_cast<size_t>(n));
    if (::symlink(target.c_str(), dst.c_str()) != 0) return ErrnoError(errno, "symlink " + dst);
  } else if (S_ISREG(st.st_mode)) {
    TUG_TRY(CopyFile(src, dst, st));
  } else {
    return {};  // devices, fifos and sockets are not copied from a context
  }
  return Finish(dst, st, opts);
}

Status HashRec(const std::string& path, const std::string& rel, crypto::Sha256& h, const SkipFn& skip) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat " + path);
  if (skip && !rel.empty() && skip(rel, S_ISDIR(st.st_mode))) return {};
  h.Update(rel + "\n" + std::to_string(st.st_mode) + "\n");
  if (S_ISDIR(st.st_mode)) {
    TUG_ASSIGN_OR_RETURN(auto names, core::DefaultEnv()->ListDir(path));
    for (const auto& n : names) TUG_TRY(HashRec(path + "/" + n, rel.empty() ? n : rel + "/" + n, h, skip));
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n > 0) h.Update(target.substr(0, static_cast<size_t>(n)));
  } else if (S_ISREG(st.st_mode)) {
    TUG_ASSIGN_OR_RETURN(auto hex, crypto::Sha256FileHex(path));
    h.Update(hex);
  }
  h.Update("\n");
  return {};
}

}  // namespace

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string CleanAbs(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& c : Split(path)) {
    if (c == ".") continue;
    if (c == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.push_back(c);
  }
  std::string s;
  for (const auto& c : out) s += "/" + c;
  return s.empty() ? "/" : s;
}

Result<std::string> ResolveInRoot(const std::string& root, const std::string& path) {
  std::deque<std::string> todo;
  for (auto& c : Split(path)) todo.push_back(c);
  std::vector<std::string> cur;
  int links = 0;
  while (!todo.empty()) {
    std::string c = todo.front();
    todo.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      if (!cur.empty()) cur.pop_back();
      continue;
    }
    std::string host = root;
    for (const auto& p : cur) host += "/" + p;
    host += "/" + c;
    struct stat st;
    if (::lstat(host.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      if (++links > 40) return MakeError(Errc::kInvalidArgument, "too many symlinks resolving " + path);
      std::string target(4096, '\0');
      ssize_t n = ::readlink(host.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoError(errno, "readlink " + host);
      target.resize(static_cast<size_t>(n));
      auto parts = Split(target);
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_front(*it);
      if (!target.empty() && target[0] == '/') cur.clear();
      continue;
    }
    cur.push_back(c);
  }
  std::string out = root;
  for (const auto& p : cur) out += "/" + p;
  return out;
}

Status MakeDirs(const std::string& dir) { return core::DefaultEnv()->CreateDirs(dir); }

Status CopyTree(const std::string& src, const std::string& dst, const CopyOptions& opts) {
  return CopyRec(src, dst, "", opts);
}

Result<std::string> HashTree(const std::string& path, const SkipFn& skip, const std::string& rel_base) {
  crypto::Sha256 h;
  // The skip filter sees context-relative paths: prefix them with the source's own path.
  SkipFn filter = [&](const std::string& rel, bool is_dir) {
    return skip && skip(rel_base.empty() ? rel : rel_base + "/" + rel, is_dir);
  };
  TUG_TRY(HashRec(path, "", h, filter));
  return h.FinishHex();
}

}  // namespace tug::builder::internal
