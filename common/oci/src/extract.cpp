#include <archive.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "entry_writer.hpp"
#include "layer_stream.hpp"
#include "oci/layer.hpp"

namespace tug::oci {

Result<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening " + path);
  return std::unique_ptr<FileSource>(new FileSource(fd));
}

FileSource::~FileSource() { ::close(fd_); }

Result<size_t> FileSource::Read(char* buf, size_t n) {
  while (true) {
    ssize_t r = ::read(fd_, buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno != EINTR) return ErrnoError(errno, "reading layer file");
  }
}

namespace {

struct ReadContext {
  internal::LayerStream* stream;
  std::optional<Error> error;
};

la_ssize_t ReadCallback(archive* a, void* opaque, const void** buf) {
  auto* ctx = static_cast<ReadContext*>(opaque);
  auto chunk = ctx->stream->Next();
  if (!chunk) {
    ctx->error = chunk.error();
    archive_set_error(a, EIO, "%s", chunk.error().Message().c_str());
    return -1;
  }
  *buf = chunk->data();
  return static_cast<la_ssize_t>(chunk->size());
}

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};

}  // namespace

Result<ExtractStats> ExtractLayer(ByteSource& src, const std::string& rootfs_dir, const ExtractOptions& opts) {
  internal::LayerStream stream(src, opts.compression, opts.max_uncompressed_bytes);
  internal::WriterOptions wopts;
  wopts.allow_device_nodes = opts.allow_device_nodes;
  wopts.preserve_owner = opts.preserve_owner;
  wopts.whiteouts = true;
  wopts.max_entries = opts.max_entries;
  wopts.max_bytes = opts.max_uncompressed_bytes;
  TUG_ASSIGN_OR_RETURN(auto writer, internal::EntryWriter::Open(rootfs_dir, wopts));

  ReadContext ctx{&stream, std::nullopt};
  ArchiveReader reader;
  // Tar only: decompression already happened in LayerStream, so libarchive must not guess at any filter.
  archive_read_support_format_tar(reader.a);
  if (archive_read_open(reader.a, &ctx, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    if (ctx.error) return tl::unexpected(*ctx.error);
    const char* msg = archive_error_string(reader.a);
    return MakeError(Errc::kIntegrity, std::string("opening layer tar: ") + (msg != nullptr ? msg : "error"));
  }
  TUG_TRY(internal::ExtractEntries(reader.a, *writer, [&] { return ctx.error; }));
  // The tar reader stops at the end-of-archive marker; the rest (block padding, gzip trailer) is still part of
  // both digests and must be read, and a truncated trailer must still fail.
  TUG_TRY(stream.Drain());

  ExtractStats stats;
  stats.compressed_bytes = stream.compressed_bytes();
  stats.uncompressed_bytes = stream.uncompressed_bytes();
  stats.entries = writer->entries();
  stats.digest = stream.Digest();
  stats.diff_id = stream.DiffId();
  if (!opts.expected_digest.empty() && stats.digest != opts.expected_digest) {
    return MakeError(Errc::kIntegrity,
                     "layer digest mismatch: expected " + opts.expected_digest + ", got " + stats.digest);
  }
  if (!opts.expected_diff_id.empty() && stats.diff_id != opts.expected_diff_id) {
    return MakeError(Errc::kIntegrity,
                     "layer diff_id mismatch: expected " + opts.expected_diff_id + ", got " + stats.diff_id);
  }
  return stats;
}

}  // namespace tug::oci
