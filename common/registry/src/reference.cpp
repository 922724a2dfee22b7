#include "registry/reference.hpp"

#include "crypto/sha256.hpp"

#include <cctype>

namespace tug::registry {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository name (distribution-spec):
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size();) {
    if (IsLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !IsLowerAlnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" || sep.find_first_not_of('-') == std::string_view::npos;
    if (!ok) return false;
    i = j;
  }
  return true;
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t[0])) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

bool ValidHost(std::string_view h) {
  if (h.empty()) return false;
  // A first component without '.' or ':' (and not localhost) is a repository namespace, i.e. Docker Hub implied.
  if (h.find_first_of(".:") == std::string_view::npos && h != "localhost") return false;
  if (h.front() == '[') return h.find(']') != std::string_view::npos;  // IPv6 literal
  size_t colon = h.find(':');
  std::string_view name = h.substr(0, colon);
  if (name.empty()) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') return false;
  if (colon != std::string_view::npos) {
    std::string_view port = h.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port)
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

bool IsValidDigest(std::string_view d) { return crypto::IsSha256Digest(d); }

Result<Reference> Reference::Parse(std::string_view s) {
  auto bad = [&](const std::string& why) {
    return MakeError(Errc::kInvalidArgument, "invalid image reference \"" + std::string(s) + "\": " + why);
  };
  Reference r;
  std::string_view rest = s;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!IsValidDigest(r.digest)) return bad("digest must be sha256:<64 lowercase hex>");
  }
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("a registry host is required (HOST[:PORT]/REPO)");
  std::string_view host = rest.substr(0, slash);
  if (!ValidHost(host)) return bad("a registry host is required (HOST[:PORT]/REPO), got \"" + std::string(host) + "\"");
  r.registry = std::string(host);
  std::string_view path = rest.substr(slash + 1);
  // A tag colon can only come after the last '/'.
  size_t last_slash = path.rfind('/');
  size_t colon = path.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
  if (colon != std::string_view::npos) {
    r.tag = std::string(path.substr(colon + 1));
    path = path.substr(0, colon);
    if (!ValidTag(r.tag)) return bad("invalid tag \"" + r.tag + "\"");
  }
  if (path.empty() || path.size() > 255) return bad("empty or overlong repository");
  for (size_t start = 0;;) {
    size_t end = path.find('/', start);
    std::string_view comp = path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!ValidComponent(comp)) return bad("invalid repository component \"" + std::string(comp) + "\"");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  r.repository = std::string(path);
  return r;
}

std::string Reference::Ref() const {
  if (!digest.empty()) return digest;
  if (!tag.empty()) return tag;
  return "latest";
}

std::string Reference::ToString() const {
  std::string s = Repo();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

}  // namespace tug::registry
