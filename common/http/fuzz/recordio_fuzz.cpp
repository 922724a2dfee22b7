// libFuzzer target for RecordIO decoding (the cluster scheduler's event streams): the stream is fed in chunks
// whose sizes come from the first byte; every record decoded must re-encode to the bytes it came from, and a
// stream of whole records must decode the same however it is split.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/recordio.hpp"

using namespace tug::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] % 17 + 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  RecordIoDecoder chunked(1 << 16), whole(1 << 16);
  std::string chunked_out, whole_out;
  bool chunked_ok = true;
  for (size_t i = 0; i < in.size() && chunked_ok; i += step) {
    auto recs = chunked.Feed(in.substr(i, step));
    if (!recs) chunked_ok = false;
    else
      for (const auto& r : *recs) chunked_out += RecordIoEncode(r);
  }
  auto recs = whole.Feed(in);
  if (recs)
    for (const auto& r : *recs) whole_out += RecordIoEncode(r);
  if (chunked_ok != recs.has_value()) std::abort();
  if (chunked_ok && (chunked_out != whole_out || chunked.pending() != whole.pending())) std::abort();
  return 0;
}
