#include "http/recordio.hpp"

namespace tug::http {

std::string RecordIoEncode(std::string_view record) {
  std::string out = std::to_string(record.size());
  out += '\n';
  out += record;
  return out;
}

Result<std::vector<std::string>> RecordIoDecoder::Feed(std::string_view bytes) {
  buf_.append(bytes);
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t nl = buf_.find('\n', pos);
    if (nl == std::string::npos) {
      if (buf_.size() - pos > 20) return MakeError(Errc::kProtocol, "recordio: length line longer than 20 bytes");
      break;
    }
    if (nl == pos) return MakeError(Errc::kProtocol, "recordio: empty length line");
    // The same 20-byte bound as for an incomplete line, so how the stream is split never changes the outcome
    // (recordio_fuzz: 70 leading zeros passed in one read and failed when they came in pieces).
    if (nl - pos > 20) return MakeError(Errc::kProtocol, "recordio: length line longer than 20 bytes");
    size_t len = 0;
    for (size_t i = pos; i < nl; ++i) {
      char c = buf_[i];
      if (c < '0' || c > '9') return MakeError(Errc::kProtocol, "recordio: length line is not a decimal number");
      len = len * 10 + static_cast<size_t>(c - '0');
      if (len > max_record_)
        return MakeError(Errc::kProtocol, "recordio: record of more than " + std::to_string(max_record_) + " bytes");
    }
    if (buf_.size() - (nl + 1) < len) break;
    out.emplace_back(buf_, nl + 1, len);
    pos = nl + 1 + len;
  }
  buf_.erase(0, pos);
  return out;
}

}  // namespace tug::http
