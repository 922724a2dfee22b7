#include "layer_stream.hpp"

#include <algorithm>

namespace tug::oci::internal {

namespace {
constexpr size_t kBufSize = 128 * 1024;
}

LayerStream::LayerStream(ByteSource& src, Compression compression, uint64_t max_uncompressed)
    : src_(src), compression_(compression), max_uncompressed_(max_uncompressed), in_(kBufSize), out_(kBufSize) {}

LayerStream::~LayerStream() {
  if (z_init_) inflateEnd(&z_);
  if (zstd_ != nullptr) ZSTD_freeDStream(zstd_);
}

Result<bool> LayerStream::Fill() {
  if (src_eof_) return false;
  while (true) {
    auto n = src_.Read(in_.data(), in_.size());
    if (!n) return tl::unexpected(Wrap(n.error(), "reading layer"));
    if (*n == 0) {
      src_eof_ = true;
      return false;
    }
    compressed_hash_.Update(std::string_view(in_.data(), *n));
    compressed_bytes_ += *n;
    in_pos_ = 0;
    in_len_ = *n;
    return true;
  }
}

Result<std::string_view> LayerStream::Emit(size_t n) {
  uncompressed_bytes_ += n;
  if (uncompressed_bytes_ > max_uncompressed_) {
    return MakeError(Errc::kUnsafeArchive, "layer expands beyond the limit of " + std::to_string(max_uncompressed_) +
                                               " uncompressed bytes");
  }
  tar_hash_.Update(std::string_view(out_.data(), n));
  return std::string_view(out_.data(), n);
}

Result<std::string_view> LayerStream::Next() {
  if (done_) return std::string_view();
  switch (compression_) {
    case Compression::kNone: {
      if (in_pos_ == in_len_) {
        TUG_ASSIGN_OR_RETURN(bool more, Fill());
        if (!more) {
          done_ = true;
          return std::string_view();
        }
      }
      size_t n = in_len_ - in_pos_;
      std::copy_n(in_.data() + in_pos_, n, out_.data());
      in_pos_ = in_len_;
      return Emit(n);
    }
    case Compression::kGzip:
      return NextGzip();
    case Compression::kZstd:
      return NextZstd();
  }
  return MakeError(Errc::kInternal, "unknown compression");
}

Result<std::string_view> LayerStream::NextGzip() {
  if (!z_init_) {
    // 16+MAX_WBITS: gzip wrapper only; a zlib or raw deflate stream is not a valid layer.
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) return MakeError(Errc::kInternal, "inflateInit2 failed");
    z_init_ = true;
  }
  while (true) {
    if (in_pos_ == in_len_) {
      TUG_ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) {
        if (!saw_member_) return MakeError(Errc::kIntegrity, "layer is not a gzip stream (empty)");
        if (!member_done_) return MakeError(Errc::kIntegrity, "gzip stream truncated");
        done_ = true;
        return std::string_view();
      }
    }
    if (member_done_) {
      // Some writers pad after the last member with zeros (as gzip(1) tolerates); anything else must be a member.
      while (in_pos_ < in_len_ && in_[in_pos_] == 0) ++in_pos_;
      if (in_pos_ == in_len_) continue;
      inflateReset(&z_);
      member_done_ = false;
    }
    saw_member_ = true;
    z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
    z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
    z_.next_out = reinterpret_cast<Bytef*>(out_.data());
    z_.avail_out = static_cast<uInt>(out_.size());
    int rc = inflate(&z_, Z_NO_FLUSH);
    in_pos_ = in_len_ - z_.avail_in;
    size_t produced = out_.size() - z_.avail_out;
    if (rc == Z_STREAM_END) {
      member_done_ = true;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && produced == 0 && z_.avail_in == 0)) {
      return MakeError(Errc::kIntegrity,
                       std::string("corrupt gzip stream: ") + (z_.msg != nullptr ? z_.msg : "inflate error"));
    }
    if (produced > 0) return Emit(produced);
  }
}

Result<std::string_view> LayerStream::NextZstd() {
  if (zstd_ == nullptr) {
    zstd_ = ZSTD_createDStream();
    if (zstd_ == nullptr) return MakeError(Errc::kInternal, "ZSTD_createDStream failed");
    ZSTD_initDStream(zstd_);
  }
  while (true) {
    if (in_pos_ == in_len_) {
      TUG_ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) {
        // Flush anything zstd still holds before deciding the stream is complete.
        ZSTD_inBuffer in{nullptr, 0, 0};
        ZSTD_outBuffer out{out_.data(), out_.size(), 0};
        if (saw_frame_ && zstd_last_ != 0) {
          size_t rc = ZSTD_decompressStream(zstd_, &out, &in);
          if (ZSTD_isError(rc)) return MakeError(Errc::kIntegrity, std::string("corrupt zstd stream: ") +
                                                                      ZSTD_getErrorName(rc));
          zstd_last_ = rc;
          if (out.pos > 0) return Emit(out.pos);
        }
        if (!saw_frame_) return MakeError(Errc::kIntegrity, "layer is not a zstd stream (empty)");
        if (zstd_last_ != 0) return MakeError(Errc::kIntegrity, "zstd stream truncated");
        done_ = true;
        return std::string_view();
      }
    }
    saw_frame_ = true;
    ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    size_t rc = ZSTD_decompressStream(zstd_, &out, &in);
    if (ZSTD_isError(rc)) {
      return MakeError(Errc::kIntegrity, std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc));
    }
    zstd_last_ = rc;
    in_pos_ = in.pos;
    if (out.pos > 0) return Emit(out.pos);
  }
}

Status LayerStream::Drain() {
  while (true) {
    TUG_ASSIGN_OR_RETURN(std::string_view chunk, Next());
    if (chunk.empty()) return {};
  }
}

}  // namespace tug::oci::internal
