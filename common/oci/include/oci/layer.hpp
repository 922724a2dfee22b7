// Layer tarballs: secure streaming extraction and reproducible creation (libarchive).
//
// Extraction treats every layer as hostile. It refuses, with Errc::kUnsafeArchive and the entry name:
// absolute paths, ".." components, any write that would pass through a symlink (parent components are resolved
// inside the rootfs with O_NOFOLLOW / openat, never by the kernel following links), hardlinks whose target is
// outside the rootfs or not yet extracted, device nodes and FIFOs unless allowed, more entries or more
// uncompressed bytes than the limits (decompression bombs). It applies OCI whiteouts: ".wh.<name>" deletes <name>
// from lower layers, ".wh..wh..opq" empties the directory; whiteout files themselves are never created.
// While extracting it hashes the compressed stream (digest) and the uncompressed tar (diff_id).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "oci/image.hpp"

namespace tug::oci {

// Pull-style byte source. Read returns bytes read (0 at end) or an error.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

// Reads a local file.
class FileSource : public ByteSource {
 public:
  static Result<std::unique_ptr<FileSource>> Open(const std::string& path);
  ~FileSource() override;
  Result<size_t> Read(char* buf, size_t n) override;

 private:
  explicit FileSource(int fd) : fd_(fd) {}
  int fd_;
};

struct ExtractOptions {
  Compression compression = Compression::kGzip;
  uint64_t max_uncompressed_bytes = 8ULL << 30;
  uint64_t max_entries = 1'000'000;
  bool allow_device_nodes = false;
  // Keep numeric uid/gid from the tar (true when running as root; false maps everything to the caller).
  bool preserve_owner = true;
  // When non-empty, the computed values must match or extraction fails with kIntegrity (after which the
  // rootfs is in an undefined state and must be discarded by the caller).
  std::string expected_digest;
  std::string expected_diff_id;
};

struct ExtractStats {
  uint64_t compressed_bytes = 0;
  uint64_t uncompressed_bytes = 0;
  uint64_t entries = 0;
  std::string digest;   // sha256 of the compressed stream
  std::string diff_id;  // sha256 of the uncompressed tar
};

// Extracts one layer on top of `rootfs_dir` (which must exist). Blocking.
Result<ExtractStats> ExtractLayer(ByteSource& src, const std::string& rootfs_dir, const ExtractOptions& opts);

// One entry for TarBuilder.
struct TarEntry {
  enum class Type { kFile, kDir, kSymlink, kHardlink, kCharDevice, kFifo };
  Type type = Type::kFile;
  std::string path;      // as written in the tar, e.g. "bin/app" (may be hostile in tests)
  std::string content;   // file content
  std::string link;      // symlink or hardlink target
  uint32_t mode = 0644;
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  uint32_t dev_major = 0, dev_minor = 0;  // kCharDevice
};

// Builds a tar (pax) in memory, entries in the given order, exactly as given (no sanitising: tests use it to make
// malicious layers).
std::string BuildTar(const std::vector<TarEntry>& entries);
std::string Gzip(std::string_view data);  // deterministic: mtime 0, no name

struct LayerBlob {
  std::string data;        // compressed bytes
  std::string media_type;  // kOciLayerGzip
  std::string digest;      // of data
  std::string diff_id;     // of the uncompressed tar
};

struct LayerFromDirOptions {
  int64_t source_date_epoch = 0;  // every mtime is clamped to this
  bool numeric_owner_root = true; // uid/gid 0 for everything (reproducible, like Docker's COPY)
};

// A reproducible gzip layer from a directory tree: entries sorted, numeric owners, mtimes clamped, no atime/ctime.
Result<LayerBlob> LayerFromDirectory(const std::string& dir, const LayerFromDirOptions& opts = {});
// A gzip layer from explicit entries (TarBuilder + Gzip + digests).
LayerBlob LayerFromEntries(const std::vector<TarEntry>& entries);

// Unpacks a Debian .deb's data.tar.* into `dir` (safe extraction, no whiteouts), for ARM base images.
Status ExtractDebData(const std::string& deb_path, const std::string& dir);

}  // namespace tug::oci
