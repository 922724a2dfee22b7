// Private: turns a compressed layer ByteSource into its tar bytes, hashing both sides on the way (digest and
// diff_id) and enforcing the uncompressed-size limit. Decompression is ours rather than libarchive's so the exact
// tar bytes are visible for the diff_id, including the padding after the end-of-archive marker.
#pragma once

#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "oci/layer.hpp"
#include "crypto/sha256.hpp"

namespace tug::oci::internal {

class LayerStream {
 public:
  LayerStream(ByteSource& src, Compression compression, uint64_t max_uncompressed);
  ~LayerStream();
  LayerStream(const LayerStream&) = delete;
  LayerStream& operator=(const LayerStream&) = delete;

  // The next chunk of tar bytes (valid until the next call); empty at the end of the stream.
  Result<std::string_view> Next();
  // Reads (and hashes) whatever the tar reader left unread, up to the end of the compressed stream.
  Status Drain();

  uint64_t compressed_bytes() const { return compressed_bytes_; }
  uint64_t uncompressed_bytes() const { return uncompressed_bytes_; }
  std::string Digest() { return "sha256:" + compressed_hash_.FinishHex(); }
  std::string DiffId() { return "sha256:" + tar_hash_.FinishHex(); }

 private:
  // Refills in_ from the source; false at end of source.
  Result<bool> Fill();
  Result<std::string_view> NextGzip();
  Result<std::string_view> NextZstd();
  Result<std::string_view> Emit(size_t n);

  ByteSource& src_;
  Compression compression_;
  uint64_t max_uncompressed_;
  crypto::Sha256 compressed_hash_;
  crypto::Sha256 tar_hash_;
  uint64_t compressed_bytes_ = 0;
  uint64_t uncompressed_bytes_ = 0;
  std::vector<char> in_;
  size_t in_pos_ = 0, in_len_ = 0;
  bool src_eof_ = false;
  std::vector<char> out_;
  bool done_ = false;

  z_stream z_{};
  bool z_init_ = false;
  bool member_done_ = false;  // between gzip members
  bool saw_member_ = false;

  ZSTD_DStream* zstd_ = nullptr;
  size_t zstd_last_ = 0;  // last ZSTD_decompressStream return: 0 at a frame boundary
  bool saw_frame_ = false;
};

}  // namespace tug::oci::internal
