#include <catch2/catch.hpp>

#include "core/clock.hpp"

using namespace tug::core;

TEST_CASE("RFC 3339 times round-trip and honour offsets") {
  auto t = ParseRfc3339("2026-11-22T10:00:00Z").value();
  CHECK(FormatRfc3339(t) == "2026-11-22T10:00:00Z");
  CHECK(ParseRfc3339("2026-11-22T12:00:00+02:00").value() == t);
  CHECK(ParseRfc3339("2026-11-22T10:00:00.123Z").value() == t);
  CHECK_FALSE(ParseRfc3339("2026-11-22 10:00:00"));
  CHECK_FALSE(ParseRfc3339("2026-11-22T10:00:00"));
}

TEST_CASE("durations accept s, m, h and d") {
  CHECK(ParseDuration("30d").value().count() == 30 * 86400);
  CHECK(ParseDuration("15m").value().count() == 900);
  CHECK_FALSE(ParseDuration("10"));
  CHECK_FALSE(ParseDuration("1x"));
  CHECK_FALSE(ParseDuration("d"));
}

TEST_CASE("RFC 3339 years the clock cannot hold are an error, not an overflow (crypto_fuzz)") {
  CHECK_FALSE(ParseRfc3339("9082-01-01T00:00:00Z").has_value());
  CHECK_FALSE(ParseRfc3339("0001-01-01T00:00:00Z").has_value());
  CHECK(ParseRfc3339("2200-12-31T23:59:59Z").has_value());
}
