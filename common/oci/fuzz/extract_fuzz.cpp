// libFuzzer target for layer extraction: the input is a layer (first byte: 0 plain tar, 1 gzip, 2 zstd; the rest
// the blob), extracted into a fresh temp dir that is removed after each input. Extraction must never create
// anything outside that dir: a sibling sentinel dir is checked to stay empty, and the temp dir's parent must hold
// nothing but the two.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <unistd.h>

#include "oci/layer.hpp"

using namespace tug::oci;
namespace fs = std::filesystem;

namespace {
class BytesSource : public ByteSource {
 public:
  explicit BytesSource(std::string_view b) : b_(b) {}
  tug::Result<size_t> Read(char* buf, size_t n) override {
    // Odd chunk sizes, so stream boundaries fall everywhere.
    n = std::min({n, b_.size() - pos_, size_t{4093}});
    std::copy_n(b_.data() + pos_, n, buf);
    pos_ += n;
    return n;
  }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

fs::path& Base() {
  static fs::path base = [] {
    std::string tmpl = (fs::temp_directory_path() / "tug-extract-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    return fs::path(tmpl);
  }();
  return base;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fs::path root = Base() / "rootfs";
  const fs::path sentinel = Base() / "outside";
  std::error_code ec;
  fs::create_directories(root, ec);
  fs::create_directories(sentinel, ec);
  BytesSource src(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  ExtractOptions opts;
  opts.compression = data[0] % 3 == 0 ? Compression::kNone : data[0] % 3 == 1 ? Compression::kGzip : Compression::kZstd;
  opts.max_uncompressed_bytes = 64 << 20;
  opts.max_entries = 10'000;
  opts.preserve_owner = false;
  (void)ExtractLayer(src, root.string(), opts);
  // Nothing may appear beside the rootfs or in the sentinel.
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(Base())) {
    (void)e;
    ++n;
  }
  if (n != 2 || !fs::is_empty(sentinel)) std::abort();
  // Make everything removable (extracted dirs may be read-only), then start clean for the next input.
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_directory(ec) && !it->is_symlink(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(root, ec);
  if (ec || fs::exists(root)) std::abort();
  return 0;
}
