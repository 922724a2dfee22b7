// .dockerignore: one glob per line, '#' comments, "!" re-includes, "**" matches any number of directories.
// As in Docker, a pattern excluding a directory excludes everything below it, and the last matching pattern wins.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::builder {

// Glob match of a whole slash-separated path: '*' and '?' never cross '/', "**" matches zero or more path
// segments, "[a-z]" and "[!a]" classes, backslash escapes.
bool GlobMatch(std::string_view pattern, std::string_view path);

class DockerIgnore {
 public:
  DockerIgnore() = default;
  static DockerIgnore FromText(std::string_view text);
  // Reads CONTEXT/.dockerignore; a missing file means nothing is excluded.
  static Result<DockerIgnore> Load(const std::string& context_dir);

  // `rel` is relative to the context, '/'-separated, without a leading "./".
  bool Excluded(std::string_view rel) const;
  // True when some "!" pattern could re-include something below excluded directory `rel`, so a walk must look in.
  bool MayReinclude(std::string_view rel) const;
  bool empty() const { return patterns_.empty(); }

 private:
  struct Pattern {
    std::string glob;
    bool negate = false;
  };
  std::vector<Pattern> patterns_;
};

}  // namespace tug::builder
