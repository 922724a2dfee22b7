#include "builder/ignore.hpp"

#include <cstdint>
#include <vector>

#include "core/env.hpp"

namespace tug::builder {
namespace {

bool ClassMatch(std::string_view pat, size_t* pi, char c) {
  // pat[*pi] == '['
  size_t i = *pi + 1;
  bool negate = false;
  if (i < pat.size() && (pat[i] == '!' || pat[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  while (i < pat.size() && (first || pat[i] != ']')) {
    first = false;
    char lo = pat[i];
    if (lo == '\\' && i + 1 < pat.size()) lo = pat[++i];
    char hi = lo;
    if (i + 2 < pat.size() && pat[i + 1] == '-' && pat[i + 2] != ']') {
      hi = pat[i + 2];
      i += 2;
    }
    if (c >= lo && c <= hi) matched = true;
    ++i;
  }
  *pi = i < pat.size() ? i + 1 : i;
  return matched != negate;
}

// Glob matching with `*` (within a segment), `**` (whole segments), `?` and classes. A plain backtracking matcher is
// exponential on patterns like "*a*a*a*a*b" (builder_fuzz hung on one), so every (pattern offset, path offset) a
// wildcard tries is remembered once it failed: at most |p| x |s| states, each explored once.
class GlobMatcher {
 public:
  GlobMatcher(std::string_view p, std::string_view s) : p_(p), s_(s) {}
  bool Run() { return At(0, 0); }

 private:
  bool Failed(size_t pi, size_t si) const {
    return !failed_.empty() && failed_[pi * (s_.size() + 1) + si];
  }
  void MarkFailed(size_t pi, size_t si) {
    if (failed_.empty()) failed_.assign((p_.size() + 1) * (s_.size() + 1), 0);
    failed_[pi * (s_.size() + 1) + si] = 1;
  }
  // A wildcard's attempt at continuing the pattern at pi on the path at si.
  bool Try(size_t pi, size_t si) {
    if (Failed(pi, si)) return false;
    if (At(pi, si)) return true;
    MarkFailed(pi, si);
    return false;
  }

  bool At(size_t pi, size_t si) {
    const std::string_view p = p_, s = s_;
    while (pi < p.size()) {
      if (p.substr(pi, 2) == "**") {
        // "**/" matches zero or more whole segments; a trailing "**" matches everything left.
        size_t rest = pi + 2;
        if (rest < p.size() && p[rest] == '/') ++rest;
        else if (rest == p.size()) return true;
        for (size_t k = si; k <= s.size(); ++k)
          if ((k == si || s[k - 1] == '/') && Try(rest, k)) return true;
        return false;
      }
      char c = p[pi];
      if (c == '*') {
        for (size_t k = si; k <= s.size(); ++k) {
          if (Try(pi + 1, k)) return true;
          if (k < s.size() && s[k] == '/') break;
        }
        return false;
      }
      if (si >= s.size()) return false;
      if (c == '?') {
        if (s[si] == '/') return false;
        ++pi;
        ++si;
      } else if (c == '[') {
        if (s[si] == '/' || !ClassMatch(p, &pi, s[si])) return false;
        ++si;
      } else {
        if (c == '\\' && pi + 1 < p.size()) c = p[++pi];
        if (s[si] != c) return false;
        ++pi;
        ++si;
      }
    }
    return si == s.size();
  }

  const std::string_view p_, s_;
  std::vector<uint8_t> failed_;  // allocated at the first wildcard failure only
};

bool Match(std::string_view p, std::string_view s) { return GlobMatcher(p, s).Run(); }

std::string Clean(std::string_view s) {
  std::string out(s);
  while (out.rfind("./", 0) == 0) out.erase(0, 2);
  while (!out.empty() && out[0] == '/') out.erase(0, 1);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view path) { return Match(pattern, path); }

DockerIgnore DockerIgnore::FromText(std::string_view text) {
  DockerIgnore d;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    line = line.substr(b);
    Pattern p;
    if (line[0] == '!') {
      p.negate = true;
      line = line.substr(1);
    }
    p.glob = Clean(line);
    if (!p.glob.empty()) d.patterns_.push_back(std::move(p));
  }
  return d;
}

Result<DockerIgnore> DockerIgnore::Load(const std::string& context_dir) {
  auto* env = core::DefaultEnv();
  const std::string path = context_dir + "/.dockerignore";
  if (!env->Exists(path)) return DockerIgnore{};
  TUG_ASSIGN_OR_RETURN(auto text, env->ReadFile(path));
  return FromText(text);
}

bool DockerIgnore::Excluded(std::string_view rel) const {
  bool excluded = false;
  for (const auto& p : patterns_) {
    // A pattern matches the path itself or any of its parent directories.
    bool m = Match(p.glob, rel);
    for (size_t i = 0; !m && i < rel.size(); ++i) {
      if (rel[i] == '/' && Match(p.glob, rel.substr(0, i))) m = true;
    }
    if (m) excluded = !p.negate;
  }
  return excluded;
}

bool DockerIgnore::MayReinclude(std::string_view rel) const {
  std::string prefix = std::string(rel) + "/";
  for (const auto& p : patterns_) {
    if (!p.negate) continue;
    // Conservative: any exception below this directory, or one that starts with a wildcard, may re-include.
    if (p.glob.rfind(prefix, 0) == 0 || p.glob[0] == '*' || p.glob[0] == '?' || p.glob[0] == '[') return true;
  }
  return false;
}

}  // namespace tug::builder
