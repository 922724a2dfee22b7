// Helpers shared by the oci tests.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/subprocess.hpp"
#include "oci/layer.hpp"

namespace tug::oci::testing {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tug-oci-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data, size_t chunk = 7000) : data_(std::move(data)), chunk_(chunk) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min({n, chunk_, data_.size() - pos_});
    std::copy_n(data_.data() + pos_, k, buf);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t chunk_;
  size_t pos_ = 0;
};

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

// sha256 by the coreutils tool, independent of our own hashing; `filter` is a shell pipeline stage before it.
inline std::string ToolSha256(const std::string& data, const std::string& filter = "cat") {
  core::RunOptions o;
  o.stdin_data = data;
  auto r = core::Run({"sh", "-c", filter + " | sha256sum"}, o);
  if (!r || !r->ok()) return "tool failed";
  return "sha256:" + r->out.substr(0, 64);
}

inline bool Exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace tug::oci::testing
