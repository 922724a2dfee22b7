#include "crypto/ed25519.hpp"

#include <sys/stat.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "crypto/encoding.hpp"
#include "crypto/sha256.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::crypto;

namespace {
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteAll(const std::string& path, const std::string& data) { std::ofstream(path, std::ios::binary) << data; }
}  // namespace

TEST_CASE("Generated keys have libsodium sizes and sign verifiable messages") {
  KeyPair k = GenerateKeyPair();
  CHECK(k.public_key.size() == 32);
  CHECK(k.secret_key.size() == 64);
  std::string sig = Sign(k, "hello");
  CHECK(sig.size() == 64);
  CHECK(Verify(k.public_key, "hello", sig));
}

TEST_CASE("Verification fails for another message, another key or a damaged signature") {
  KeyPair k = GenerateKeyPair();
  KeyPair other = GenerateKeyPair();
  std::string sig = Sign(k, "hello");
  CHECK_FALSE(Verify(k.public_key, "hellO", sig));
  CHECK_FALSE(Verify(other.public_key, "hello", sig));
  std::string bad = sig;
  bad[10] ^= 1;
  CHECK_FALSE(Verify(k.public_key, "hello", bad));
  CHECK_FALSE(Verify(k.public_key, "hello", sig.substr(0, 63)));
  CHECK_FALSE(Verify(k.public_key.substr(0, 31), "hello", sig));
}

TEST_CASE("Key id is the hex sha256 of the raw public key") {
  KeyPair k = GenerateKeyPair();
  CHECK(KeyId(k.public_key) == Sha256Hex(k.public_key));
  CHECK(KeyId(k.public_key).size() == 64);
}

TEST_CASE("Key files are written with a private secret and a loadable public half") {
  testsupport::TempDir dir;
  const std::string path = dir.Sub("release-key");
  KeyPair k = GenerateKeyPair();
  REQUIRE(WriteKeyFiles(path, k));

  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto loaded = LoadSecretKeyFile(path);
  REQUIRE(loaded);
  CHECK(loaded->public_key == k.public_key);
  CHECK(loaded->secret_key == k.secret_key);

  auto pub = LoadPublicKeyFile(path + ".pub");
  REQUIRE(pub);
  CHECK(*pub == k.public_key);
  auto pub_from_secret = LoadPublicKeyFile(path);
  REQUIRE(pub_from_secret);
  CHECK(*pub_from_secret == k.public_key);

  CHECK(ReadAll(path + ".pub").find("secret") == std::string::npos);
  CHECK(ReadAll(path + ".pub").find(KeyId(k.public_key)) != std::string::npos);
}

TEST_CASE("Writing key files refuses to overwrite an existing key") {
  testsupport::TempDir dir;
  const std::string path = dir.Sub("k");
  REQUIRE(WriteKeyFiles(path, GenerateKeyPair()));
  const std::string before = ReadAll(path);
  auto again = WriteKeyFiles(path, GenerateKeyPair());
  REQUIRE_FALSE(again);
  CHECK(again.error().Is(Errc::kAlreadyExists));
  CHECK(ReadAll(path) == before);

  // A stray .pub alone also blocks, and no secret is left behind.
  const std::string path2 = dir.Sub("k2");
  WriteAll(path2 + ".pub", "{}");
  CHECK(WriteKeyFiles(path2, GenerateKeyPair()).error().Is(Errc::kAlreadyExists));
  struct stat st {};
  CHECK(::stat(path2.c_str(), &st) != 0);
}

TEST_CASE("Loading a public file as a secret key explains what is wrong") {
  testsupport::TempDir dir;
  const std::string path = dir.Sub("k");
  REQUIRE(WriteKeyFiles(path, GenerateKeyPair()));
  auto r = LoadSecretKeyFile(path + ".pub");
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kInvalidArgument));
  CHECK(r.error().context.find(".pub") != std::string::npos);
}

TEST_CASE("Loading key files rejects missing, malformed and mismatched files") {
  testsupport::TempDir dir;
  CHECK(LoadSecretKeyFile(dir.Sub("none")).error().Is(Errc::kNotFound));
  CHECK(LoadPublicKeyFile(dir.Sub("none")).error().Is(Errc::kNotFound));

  WriteAll(dir.Sub("garbage"), "not json");
  CHECK(LoadPublicKeyFile(dir.Sub("garbage")).error().Is(Errc::kInvalidArgument));

  KeyPair a = GenerateKeyPair();
  KeyPair b = GenerateKeyPair();
  WriteAll(dir.Sub("mixed"), std::string("{\"type\":\"ed25519\",\"public\":\"") + Base64Encode(b.public_key) +
                                 "\",\"secret\":\"" + Base64Encode(a.secret_key) + "\"}");
  CHECK(LoadSecretKeyFile(dir.Sub("mixed")).error().Is(Errc::kInvalidArgument));

  WriteAll(dir.Sub("badid"), std::string("{\"type\":\"ed25519\",\"keyid\":\"") + std::string(64, '0') +
                                 "\",\"public\":\"" + Base64Encode(a.public_key) + "\"}");
  CHECK(LoadPublicKeyFile(dir.Sub("badid")).error().Is(Errc::kInvalidArgument));

  WriteAll(dir.Sub("rsa"), "{\"type\":\"rsa\",\"public\":\"AAAA\"}");
  CHECK(LoadPublicKeyFile(dir.Sub("rsa")).error().Is(Errc::kUnsupported));
}
