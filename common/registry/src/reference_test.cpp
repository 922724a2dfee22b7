#include <catch2/catch.hpp>

#include "challenge.hpp"
#include "registry/reference.hpp"

using tug::Errc;
using tug::registry::Reference;
namespace internal = tug::registry::internal;

static const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST_CASE("A reference with host, port, nested repository, tag and digest parses into its parts") {
  auto r = Reference::Parse("127.0.0.1:5000/acme/sensor:2.0.1@" + kDigest);
  REQUIRE(r.has_value());
  CHECK(r->registry == "127.0.0.1:5000");
  CHECK(r->repository == "acme/sensor");
  CHECK(r->tag == "2.0.1");
  CHECK(r->digest == kDigest);
  CHECK(r->Ref() == kDigest);
  CHECK(r->Repo() == "127.0.0.1:5000/acme/sensor");
  CHECK(r->ToString() == "127.0.0.1:5000/acme/sensor:2.0.1@" + kDigest);
}

TEST_CASE("A reference without tag or digest defaults its ref to latest") {
  auto r = Reference::Parse("registry.example.com/app");
  REQUIRE(r.has_value());
  CHECK(r->registry == "registry.example.com");
  CHECK(r->tag.empty());
  CHECK(r->Ref() == "latest");
  auto l = Reference::Parse("localhost/a/b/c:v1");
  REQUIRE(l.has_value());
  CHECK(l->repository == "a/b/c");
  CHECK(l->Ref() == "v1");
  auto sep = Reference::Parse("host.io:443/my_repo/with-dashes__x.y");
  REQUIRE(sep.has_value());
  CHECK(sep->repository == "my_repo/with-dashes__x.y");
}

TEST_CASE("Malformed references are rejected as invalid arguments") {
  for (const char* bad : {"", "sensor", "acme/sensor", "127.0.0.1:5000", "127.0.0.1:5000/", "127.0.0.1:5000/Acme",
                          "127.0.0.1:5000/acme//x", "127.0.0.1:5000/acme/", "127.0.0.1:5000/a:", "127.0.0.1:5000/a:-x",
                          "127.0.0.1:5000/a@sha256:abc", "127.0.0.1:5000/a@md5:" "0123", "127.0.0.1:x/a",
                          "127.0.0.1:5000/-a", "127.0.0.1:5000/a._b"}) {
    INFO(bad);
    auto r = Reference::Parse(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().Is(Errc::kInvalidArgument));
  }
}

TEST_CASE("Digest validation accepts only sha256 with 64 lowercase hex digits") {
  CHECK(tug::registry::IsValidDigest(kDigest));
  CHECK_FALSE(tug::registry::IsValidDigest("sha256:" + std::string(64, 'A')));
  CHECK_FALSE(tug::registry::IsValidDigest("sha256:" + std::string(63, 'a')));
  CHECK_FALSE(tug::registry::IsValidDigest("sha512:" + std::string(64, 'a')));
}

TEST_CASE("WWW-Authenticate headers with Bearer and Basic challenges are parsed") {
  auto ch = internal::ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push")");
  REQUIRE(ch.size() == 1);
  CHECK(ch[0].scheme == "bearer");
  CHECK(ch[0].params["realm"] == "https://auth.example.com/token");
  CHECK(ch[0].params["service"] == "registry.example.com");
  CHECK(ch[0].params["scope"] == "repository:a/b:pull,push");

  auto two = internal::ParseWwwAuthenticate(R"(Basic realm="x y", Bearer realm=http://t/token , error="a\"b")");
  REQUIRE(two.size() == 2);
  CHECK(two[0].scheme == "basic");
  CHECK(two[0].params["realm"] == "x y");
  CHECK(two[1].scheme == "bearer");
  CHECK(two[1].params["realm"] == "http://t/token");
  CHECK(two[1].params["error"] == "a\"b");

  CHECK(internal::ParseWwwAuthenticate("").empty());
  CHECK(internal::ParseWwwAuthenticate("Basic").size() == 1);
}

TEST_CASE("Basic credentials and query escaping follow the RFCs") {
  CHECK(internal::BasicCredentials("Aladdin", "open sesame") == "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  CHECK(internal::BasicCredentials("a", "") == "YTo=");
  CHECK(internal::QueryEscape("repository:a/b:pull,push") == "repository%3Aa%2Fb%3Apull%2Cpush");
}
