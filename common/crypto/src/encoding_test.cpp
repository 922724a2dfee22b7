#include "crypto/encoding.hpp"

#include <catch2/catch.hpp>

using namespace tug;
using namespace tug::crypto;

TEST_CASE("Hex encoding is lowercase and round-trips arbitrary bytes") {
  std::string bytes("\x00\x01\x7f\x80\xfe\xff", 6);
  CHECK(HexEncode(bytes) == "00017f80feff");
  auto back = HexDecode("00017F80FEff");
  REQUIRE(back);
  CHECK(*back == bytes);
  CHECK(HexEncode("") == "");
}

TEST_CASE("Hex decoding rejects odd lengths and non-hex characters") {
  CHECK(HexDecode("abc").error().Is(Errc::kInvalidArgument));
  CHECK(HexDecode("zz").error().Is(Errc::kInvalidArgument));
  CHECK(HexDecode("0g").error().Is(Errc::kInvalidArgument));
}

TEST_CASE("Base64 matches the RFC 4648 test vectors") {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, b64] : vectors) {
    CHECK(Base64Encode(plain) == b64);
    auto back = Base64Decode(b64);
    REQUIRE(back);
    CHECK(*back == plain);
  }
}

TEST_CASE("Base64 round-trips every byte value") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t len = 0; len <= all.size(); len += 37) {
    auto back = Base64Decode(Base64Encode(all.substr(0, len)));
    REQUIRE(back);
    CHECK(*back == all.substr(0, len));
  }
}

TEST_CASE("Base64 decoding rejects malformed input") {
  for (const char* bad : {"Zg", "Zg=", "Z===", "====", "Zm9v\n", "Zm9v Yg==", "Zm-v", "Zg==Zg==", "Zh==", "Zm9=",
                          "=Zm9"}) {
    INFO(bad);
    auto r = Base64Decode(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kInvalidArgument));
  }
}
