#include "crypto/sha256.hpp"

#include <fstream>

#include <catch2/catch.hpp>

#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::crypto;

TEST_CASE("SHA-256 matches the FIPS 180-2 test vectors") {
  CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("Streaming SHA-256 over many updates equals the one-shot hash") {
  Sha256 h;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.Update(chunk);
  CHECK(h.FinishHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("A moved-from hasher's state lives on in the target") {
  Sha256 a;
  a.Update("ab");
  Sha256 b(std::move(a));
  b.Update("c");
  CHECK(b.FinishHex() == Sha256Hex("abc"));
}

TEST_CASE("Sha256Digest prefixes the algorithm") {
  CHECK(Sha256Digest("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("Hashing a file streams its content and reports a missing file as not found") {
  testsupport::TempDir dir;
  const std::string path = dir.Sub("blob");
  std::string content(200000, 'x');
  content += "tail";
  std::ofstream(path, std::ios::binary) << content;
  auto hex = Sha256FileHex(path);
  REQUIRE(hex);
  CHECK(*hex == Sha256Hex(content));
  CHECK(Sha256FileHex(dir.Sub("missing")).error().Is(Errc::kNotFound));
}

TEST_CASE("Digest parsing accepts sha256 with lowercase hex only") {
  const std::string hex(64, 'a');
  auto d = Digest::Parse("sha256:" + hex);
  REQUIRE(d);
  CHECK(d->algorithm == "sha256");
  CHECK(d->hex == hex);
  CHECK(d->ToString() == "sha256:" + hex);

  CHECK(Digest::Parse("sha256:" + std::string(64, 'A')).error().Is(Errc::kInvalidArgument));
  CHECK(Digest::Parse("sha256:" + std::string(63, 'a')).error().Is(Errc::kInvalidArgument));
  CHECK(Digest::Parse(hex).error().Is(Errc::kInvalidArgument));
  CHECK(Digest::Parse(":" + hex).error().Is(Errc::kInvalidArgument));
  CHECK(Digest::Parse("sha512:" + std::string(128, 'a')).error().Is(Errc::kUnsupported));
}
