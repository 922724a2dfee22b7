#include "oci/user.hpp"

#include <sstream>
#include <vector>

#include "core/env.hpp"

namespace tug::oci {
namespace {

bool IsNumber(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

std::vector<std::vector<std::string>> ReadDb(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  auto text = core::DefaultEnv()->ReadFile(path);
  if (!text) return rows;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string field;
    while (std::getline(ls, field, ':')) f.push_back(field);
    rows.push_back(std::move(f));
  }
  return rows;
}

// The row whose field `key` equals `value` with numeric fields 2 (and 3 when `need_gid`).
const std::vector<std::string>* Find(const std::vector<std::vector<std::string>>& rows, size_t key,
                                     const std::string& value, bool need_gid) {
  for (const auto& f : rows)
    if (f.size() > key && f[key] == value && f.size() > 2 && IsNumber(f[2]) && (!need_gid || (f.size() > 3 && IsNumber(f[3]))))
      return &f;
  return nullptr;
}

}  // namespace

Result<std::pair<uint32_t, uint32_t>> ResolveImageUser(const std::string& rootfs, const std::string& user) {
  if (user.empty()) return std::make_pair(0u, 0u);
  std::string u = user, g;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    u = user.substr(0, colon);
    g = user.substr(colon + 1);
  }
  const auto passwd = ReadDb(rootfs + "/etc/passwd");
  uint32_t uid = 0, gid = 0;
  bool have_gid = false;
  if (IsNumber(u)) {
    uid = static_cast<uint32_t>(std::stoul(u));
    if (const auto* row = Find(passwd, 2, u, true)) {
      gid = static_cast<uint32_t>(std::stoul((*row)[3]));
      have_gid = true;
    }
  } else if (const auto* row = Find(passwd, 0, u, true)) {
    uid = static_cast<uint32_t>(std::stoul((*row)[2]));
    gid = static_cast<uint32_t>(std::stoul((*row)[3]));
    have_gid = true;
  } else if (u == "root") {
    have_gid = true;  // images as small as busybox may have no passwd at all
  } else {
    return MakeError(Errc::kNotFound, "user " + u + " not found in the image's /etc/passwd");
  }
  if (!g.empty()) {
    if (IsNumber(g)) {
      gid = static_cast<uint32_t>(std::stoul(g));
    } else if (const auto* row = Find(ReadDb(rootfs + "/etc/group"), 0, g, false)) {
      gid = static_cast<uint32_t>(std::stoul((*row)[2]));
    } else {
      return MakeError(Errc::kNotFound, "group " + g + " not found in the image's /etc/group");
    }
  } else if (!have_gid) {
    gid = uid;
  }
  return std::make_pair(uid, gid);
}

}  // namespace tug::oci
