#include "builder/snapshot.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "core/env.hpp"

namespace tug::builder {

bool FileMeta::SameAs(const FileMeta& o) const {
  return type == o.type && mode == o.mode && uid == o.uid && gid == o.gid && size == o.size &&
         mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns && ino == o.ino && dev == o.dev && rdev == o.rdev &&
         link == o.link;
}

namespace {

char TypeOf(mode_t m) {
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISCHR(m)) return 'c';
  if (S_ISBLK(m)) return 'b';
  if (S_ISFIFO(m)) return 'p';
  if (S_ISSOCK(m)) return 's';
  return 'f';
}

Status Walk(int dirfd, const std::string& rel, Snapshot* out) {
  int fd = ::dup(dirfd);
  if (fd < 0) return ErrnoError(errno, "dup");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoError(errno, "opendir " + rel);
  }
  std::vector<std::string> names;
  // NULL from readdir is the end or an error; only errno tells (a listing cut short would drop files from a layer).
  while (true) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) break;
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  const int read_err = errno;
  ::closedir(d);
  if (read_err != 0) return ErrnoError(read_err, "listing " + rel);
  for (const auto& n : names) {
    const std::string path = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError(errno, "stat " + path);
    FileMeta m;
    m.type = TypeOf(st.st_mode);
    m.mode = st.st_mode & 07777;
    m.uid = st.st_uid;
    m.gid = st.st_gid;
    m.size = m.type == 'f' ? static_cast<uint64_t>(st.st_size) : 0;
    m.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    m.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
    m.ino = st.st_ino;
    m.dev = st.st_dev;
    m.rdev = st.st_rdev;
    m.nlink = static_cast<uint32_t>(st.st_nlink);
    if (m.type == 'l') {
      std::string target(4096, '\0');
      ssize_t len = ::readlinkat(dirfd, n.c_str(), target.data(), target.size());
      if (len < 0) return ErrnoError(errno, "readlink " + path);
      target.resize(static_cast<size_t>(len));
      m.link = target;
    }
    (*out)[path] = m;
    // Mount points of a RUN step: their contents belong to the host or the runtime, never to the image.
    if (m.type == 'd' && !(rel.empty() && (n == "proc" || n == "sys" || n == "dev"))) {
      int child = ::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) return ErrnoError(errno, "open " + path);
      auto s = Walk(child, path, out);
      ::close(child);
      TUG_TRY(s);
    }
  }
  return {};
}

std::string Parent(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? std::string() : p.substr(0, slash);
}

}  // namespace

Result<Snapshot> TakeSnapshot(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open " + root);
  Snapshot snap;
  auto s = Walk(fd, "", &snap);
  ::close(fd);
  TUG_TRY(s);
  return snap;
}

Result<DiffResult> Diff(const std::string& root, const Snapshot& before, const Snapshot& after,
                        int64_t source_date_epoch) {
  DiffResult out;
  std::set<std::string> include;  // paths of `after` to write, parents added below
  for (const auto& [path, meta] : after) {
    auto it = before.find(path);
    if (it == before.end() || !it->second.SameAs(meta)) include.insert(path);
  }
  out.changed = include.size();
  // Parents of changed paths go in too, so the layer carries their current mode and owner (Docker does the same).
  std::set<std::string> parents;
  for (const auto& p : include) {
    for (std::string q = Parent(p); !q.empty(); q = Parent(q)) {
      if (include.count(q) || !parents.insert(q).second) break;
    }
  }
  include.insert(parents.begin(), parents.end());

  std::map<std::string, oci::TarEntry> entries;
  for (const auto& [path, meta] : before) {
    if (after.count(path)) {
      // A path whose type changed (file -> dir) is replaced by its new entry; the extractor handles that.
      continue;
    }
    const std::string parent = Parent(path);
    // Only the top of a deleted tree needs a whiteout.
    if (!parent.empty() && !after.count(parent)) continue;
    if (!parent.empty() && after.at(parent).type != 'd') continue;
    const std::string name = path.substr(parent.empty() ? 0 : parent.size() + 1);
    oci::TarEntry wh;
    wh.type = oci::TarEntry::Type::kFile;
    wh.path = (parent.empty() ? "" : parent + "/") + ".wh." + name;
    wh.mode = 0644;
    wh.mtime = std::min<int64_t>(0, source_date_epoch);
    entries[wh.path] = wh;
    ++out.deleted;
    if (!parent.empty() && !include.count(parent)) include.insert(parent);
  }

  // First path (in sorted order) written for each inode: later ones become hardlinks to it.
  std::map<std::pair<uint64_t, uint64_t>, std::string> first_link;
  for (const auto& path : include) {
    const FileMeta& m = after.at(path);
    oci::TarEntry e;
    e.path = path;
    e.mode = m.mode;
    e.uid = m.uid;
    e.gid = m.gid;
    e.mtime = std::min<int64_t>(m.mtime_ns / 1'000'000'000, source_date_epoch);
    switch (m.type) {
      case 'd': e.type = oci::TarEntry::Type::kDir; break;
      case 'l':
        e.type = oci::TarEntry::Type::kSymlink;
        e.link = m.link;
        break;
      case 'c':
      case 'b':
        if (m.type == 'b') continue;  // block devices have no place in an app image
        e.type = oci::TarEntry::Type::kCharDevice;
        e.dev_major = major(m.rdev);
        e.dev_minor = minor(m.rdev);
        break;
      case 'p': e.type = oci::TarEntry::Type::kFifo; break;
      case 's': continue;  // sockets cannot be archived
      default: {
        if (m.nlink > 1) {
          auto [it, inserted] = first_link.emplace(std::make_pair(m.dev, m.ino), path);
          if (!inserted) {
            e.type = oci::TarEntry::Type::kHardlink;
            e.link = it->second;
            break;
          }
        }
        e.type = oci::TarEntry::Type::kFile;
        TUG_ASSIGN_OR_RETURN(e.content, core::DefaultEnv()->ReadFile(root + "/" + path));
      }
    }
    entries[path] = std::move(e);
  }
  for (auto& [path, e] : entries) out.entries.push_back(std::move(e));
  return out;
}

}  // namespace tug::builder
