#include <zlib.h>

#include <algorithm>
#include <cstdlib>

#include "oci/layer.hpp"

namespace tug::oci {

std::string Gzip(std::string_view data) {
  z_stream z{};
  // windowBits 15+16: gzip wrapper. Failure here can only be out-of-memory.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  // An explicit header pins mtime 0, no name and OS "unknown", so the bytes do not depend on the building host.
  gz_header header{};
  header.os = 255;
  deflateSetHeader(&z, &header);
  std::string out;
  char buf[64 * 1024];
  size_t offset = 0;
  int rc = Z_OK;
  do {
    // avail_in is 32 bits: very large inputs go in slices.
    if (z.avail_in == 0 && offset < data.size()) {
      const size_t slice = std::min<size_t>(data.size() - offset, 1u << 30);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + offset));
      z.avail_in = static_cast<uInt>(slice);
      offset += slice;
    }
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = deflate(&z, offset == data.size() ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_ERROR) std::abort();
    out.append(buf, sizeof(buf) - z.avail_out);
  } while (rc != Z_STREAM_END);
  deflateEnd(&z);
  return out;
}

}  // namespace tug::oci
