// Drives the CLI in-process through Run, so exit codes and output are checked without spawning processes.
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "cli/tug.hpp"
#include "crypto/sha256.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;

namespace {

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

Outcome Tug(std::vector<std::string> args, const std::string& stdin_text = "") {
  std::ostringstream out, err;
  std::istringstream in(stdin_text);
  const cli::Io io{out, err, in, *core::SystemClock()};
  const int code = cli::Run(args, io);
  return {code, out.str(), err.str()};
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteAll(const std::string& path, const std::string& data) { std::ofstream(path, std::ios::binary) << data; }

const std::string kDigest = crypto::Sha256Digest("index");
const std::string kImage = "127.0.0.1:5000/acme/sensor@" + kDigest;

}  // namespace

TEST_CASE("keygen, trust init, release sign and release verify work end to end") {
  testsupport::TempDir dir;
  const std::string key = dir.Sub("release-key");
  auto kg = Tug({"keygen", "--out", key});
  REQUIRE(kg.code == 0);
  struct stat st {};
  REQUIRE(::stat(key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto init = Tug({"trust", "init", "--key", key + ".pub", "--threshold", "1", "--out", dir.Sub("root.json")});
  INFO(init.err);
  REQUIRE(init.code == 0);

  auto sign = Tug({"release", "sign", "--key", key, "--image", kImage, "--version", "42", "--name", "sensor 2.0.1",
                   "--platform-digest", "linux/arm64/v8=" + crypto::Sha256Digest("arm64")});
  INFO(sign.err);
  REQUIRE(sign.code == 0);
  WriteAll(dir.Sub("release.json"), sign.out);

  auto verify = Tug({"release", "verify", "--root", dir.Sub("root.json"), dir.Sub("release.json")});
  INFO(verify.err);
  REQUIRE(verify.code == 0);
  CHECK(verify.out.rfind("ok name=\"sensor 2.0.1\" version=42 repository=127.0.0.1:5000/acme/sensor digest=" +
                             kDigest + " expires=",
                         0) == 0);
  CHECK(verify.out.find('\n') == verify.out.size() - 1);

  // The same release from stdin, with a ratchet it clears and the repository it names.
  auto piped = Tug({"release", "verify", "--root", dir.Sub("root.json"), "-", "--ratchet", "41", "--repository",
                    "127.0.0.1:5000/acme/sensor"},
                   sign.out);
  CHECK(piped.code == 0);
}

TEST_CASE("release verify fails with exit 1 for a release signed by an untrusted key") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("trusted")}).code == 0);
  REQUIRE(Tug({"keygen", "--out", dir.Sub("rogue")}).code == 0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("trusted.pub"), "--threshold", "1", "--out", dir.Sub("root.json")})
              .code == 0);
  auto sign = Tug({"release", "sign", "--key", dir.Sub("rogue"), "--image", kImage, "--version", "1"});
  REQUIRE(sign.code == 0);
  WriteAll(dir.Sub("release.json"), sign.out);
  auto verify = Tug({"release", "verify", "--root", dir.Sub("root.json"), dir.Sub("release.json")});
  CHECK(verify.code == 1);
  CHECK(verify.out.empty());
  CHECK(verify.err.rfind("tug: ", 0) == 0);
  CHECK(verify.err.find("signed by 0 trusted key(s), 1 required") != std::string::npos);
}

TEST_CASE("release verify enforces the ratchet and the repository") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("k")}).code == 0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("k.pub"), "--threshold", "1", "--out", dir.Sub("root.json")}).code ==
          0);
  auto sign = Tug({"release", "sign", "--key", dir.Sub("k"), "--image", kImage, "--version", "3"});
  REQUIRE(sign.code == 0);
  auto low = Tug({"release", "verify", "--root", dir.Sub("root.json"), "-", "--ratchet", "5"}, sign.out);
  CHECK(low.code == 1);
  CHECK(low.err.find("release version 3 is not above committed version 5") != std::string::npos);
  auto repo = Tug({"release", "verify", "--root", dir.Sub("root.json"), "-", "--repository", "other/repo"}, sign.out);
  CHECK(repo.code == 1);
  CHECK(repo.err.find("expected other/repo") != std::string::npos);
}

TEST_CASE("Usage errors exit with code 2") {
  CHECK(Tug({}).code == 2);
  CHECK(Tug({"frobnicate"}).code == 2);
  CHECK(Tug({"keygen"}).code == 2);
  CHECK(Tug({"release", "sign", "--key", "k", "--image", kImage}).code == 2);
  CHECK(Tug({"release", "sign", "--key", "k", "--image", kImage, "--version", "0"}).code == 2);
  CHECK(Tug({"trust", "init", "--key", "k.pub", "--threshold", "1"}).code == 2);
  CHECK(Tug({"release", "verify", "--root", "root.json"}).code == 2);
}

TEST_CASE("Main maps a usage error on the real process streams to exit code 2") {
  std::string prog = "tug", bad = "--no-such-flag";
  char* argv[] = {prog.data(), bad.data(), nullptr};
  CHECK(cli::Main(2, argv) == 2);
}

TEST_CASE("Help exits 0 and shows an example for each command") {
  auto top = Tug({"--help"});
  CHECK(top.code == 0);
  CHECK(top.out.find("release sign") != std::string::npos);
  for (std::vector<std::string> cmd : {std::vector<std::string>{"keygen"}, {"trust", "init"}, {"trust", "verify"},
                                       {"release", "sign"}, {"release", "verify"}}) {
    cmd.push_back("--help");
    auto h = Tug(cmd);
    INFO(cmd[0]);
    CHECK(h.code == 0);
    CHECK(h.out.find("Example") != std::string::npos);
  }
}

TEST_CASE("keygen refuses to overwrite an existing key") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("k")}).code == 0);
  const std::string before = ReadAll(dir.Sub("k"));
  auto again = Tug({"keygen", "--out", dir.Sub("k")});
  CHECK(again.code == 1);
  CHECK(again.err.find("refusing to overwrite") != std::string::npos);
  CHECK(ReadAll(dir.Sub("k")) == before);
}

TEST_CASE("release sign rejects images without a valid digest") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("k")}).code == 0);
  for (const std::string& image : {std::string("127.0.0.1:5000/acme/sensor:v1"),
                                   std::string("127.0.0.1:5000/acme/sensor@sha256:abc"),
                                   std::string("@") + kDigest, std::string("a b/c@") + kDigest}) {
    INFO(image);
    auto r = Tug({"release", "sign", "--key", dir.Sub("k"), "--image", image, "--version", "1"});
    CHECK(r.code == 1);
    CHECK(r.out.empty());
  }
}

TEST_CASE("release sign drops a tag and signs the repository and digest") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("k")}).code == 0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("k.pub"), "--threshold", "1", "--out", dir.Sub("root.json")}).code ==
          0);
  auto sign = Tug({"release", "sign", "--key", dir.Sub("k"), "--image", "127.0.0.1:5000/acme/sensor:v2@" + kDigest,
                   "--version", "7"});
  REQUIRE(sign.code == 0);
  auto v = Tug({"release", "verify", "--root", dir.Sub("root.json"), "-", "--repository", "127.0.0.1:5000/acme/sensor"},
               sign.out);
  CHECK(v.code == 0);
  CHECK(v.out.find("name=\"sensor v7\"") != std::string::npos);
}

TEST_CASE("trust init needs a threshold of secret keys and says which are missing") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("a")}).code == 0);
  REQUIRE(Tug({"keygen", "--out", dir.Sub("b")}).code == 0);
  ::unlink(dir.Sub("b").c_str());
  auto r = Tug({"trust", "init", "--key", dir.Sub("a.pub"), "--key", dir.Sub("b.pub"), "--threshold", "2", "--out",
                dir.Sub("root.json")});
  CHECK(r.code == 1);
  CHECK(r.err.find("no secret key beside " + dir.Sub("b.pub")) != std::string::npos);
  CHECK(r.err.find("signed by 1 trusted key(s), 2 required") != std::string::npos);
  // With threshold 1 the one secret found is enough.
  CHECK(Tug({"trust", "init", "--key", dir.Sub("a.pub"), "--key", dir.Sub("b.pub"), "--threshold", "1", "--out",
             dir.Sub("root.json")})
            .code == 0);
}

TEST_CASE("A rotated root is accepted only when the old root's keys sign it") {
  testsupport::TempDir dir;
  REQUIRE(Tug({"keygen", "--out", dir.Sub("old")}).code == 0);
  REQUIRE(Tug({"keygen", "--out", dir.Sub("new")}).code == 0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("old.pub"), "--threshold", "1", "--out", dir.Sub("v1.json")}).code ==
          0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("new.pub"), "--threshold", "1", "--version", "2", "--sign-key",
               dir.Sub("old"), "--sign-key", dir.Sub("new"), "--out", dir.Sub("v2.json")})
              .code == 0);
  REQUIRE(Tug({"trust", "init", "--key", dir.Sub("new.pub"), "--threshold", "1", "--version", "2", "--out",
               dir.Sub("v2-unvouched.json")})
              .code == 0);
  CHECK(Tug({"trust", "verify", dir.Sub("v2.json"), "--current", dir.Sub("v1.json")}).code == 0);
  auto bad = Tug({"trust", "verify", dir.Sub("v2-unvouched.json"), "--current", dir.Sub("v1.json")});
  CHECK(bad.code == 1);
  CHECK(bad.err.find("not vouched for") != std::string::npos);
  CHECK(Tug({"trust", "verify", dir.Sub("v1.json"), "--current", dir.Sub("v2.json")}).code == 1);
}
