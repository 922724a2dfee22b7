#include "http/recordio.hpp"

#include <catch2/catch.hpp>

using tug::http::RecordIoDecoder;
using tug::http::RecordIoEncode;

TEST_CASE("recordio records split at every byte boundary decode to the same records") {
  const std::string wire = RecordIoEncode(R"({"type":"SUBSCRIBED"})") + RecordIoEncode("") + RecordIoEncode("x\ny");
  for (size_t split = 0; split <= wire.size(); ++split) {
    RecordIoDecoder d;
    auto a = d.Feed(wire.substr(0, split));
    REQUIRE(a);
    auto b = d.Feed(wire.substr(split));
    REQUIRE(b);
    std::vector<std::string> all = *a;
    all.insert(all.end(), b->begin(), b->end());
    REQUIRE(all == std::vector<std::string>{R"({"type":"SUBSCRIBED"})", "", "x\ny"});
    REQUIRE(d.pending() == 0);
  }
}

TEST_CASE("recordio rejects a malformed length line and an oversized record") {
  RecordIoDecoder d;
  REQUIRE_FALSE(d.Feed("12a\n"));
  RecordIoDecoder e(10);
  REQUIRE_FALSE(e.Feed("11\n"));
  RecordIoDecoder f;
  REQUIRE_FALSE(f.Feed("\n"));
  RecordIoDecoder g;
  REQUIRE_FALSE(g.Feed(std::string(30, '1')));
}

TEST_CASE("recordio: an over-long length line fails whether it arrives whole or in pieces (recordio_fuzz)") {
  const std::string stream = std::string(70, '0') + "2\nab";
  RecordIoDecoder whole;
  CHECK_FALSE(whole.Feed(stream).has_value());
  RecordIoDecoder pieces;
  bool ok = true;
  for (char c : stream) ok = ok && pieces.Feed(std::string_view(&c, 1)).has_value();
  CHECK_FALSE(ok);
}
