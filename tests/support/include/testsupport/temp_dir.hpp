// A scratch directory for one test: created under /tmp with mkdtemp, removed recursively when the object dies.
#pragma once

#include <string>

namespace tug::testsupport {

class TempDir {
 public:
  // Aborts the test process if /tmp is unusable: a test without its scratch dir cannot say anything useful.
  explicit TempDir(const std::string& prefix = "tug-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tug::testsupport
