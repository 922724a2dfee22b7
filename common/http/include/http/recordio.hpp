// RecordIO framing as used by the Mesos v1 HTTP APIs and the cluster scheduler's event streams: each record is its
// length in bytes as decimal ASCII, a '\n', then exactly that many bytes ("12\n{\"type\":..}").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::http {

std::string RecordIoEncode(std::string_view record);

// Incremental decoder: Feed() the bytes as they arrive (any split), get the complete records back.
// kProtocol for a malformed length line or a record above max_record (the stream cannot be trusted after that).
class RecordIoDecoder {
 public:
  explicit RecordIoDecoder(size_t max_record = 16 << 20) : max_record_(max_record) {}
  Result<std::vector<std::string>> Feed(std::string_view bytes);
  // Bytes buffered of an incomplete record.
  size_t pending() const { return buf_.size(); }

 private:
  size_t max_record_;
  std::string buf_;
};

}  // namespace tug::http
