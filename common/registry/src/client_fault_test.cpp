// The client against fake peers (tests/support FakeHttpServer): auth flows, redirects, misbehaving servers.
#include <catch2/catch.hpp>

#include <chrono>

#include "crypto/sha256.hpp"
#include "registry/client.hpp"
#include "testsupport/fake_http_server.hpp"
#include "testsupport/net.hpp"

using tug::Errc;
using tug::registry::Client;
using tug::registry::ClientOptions;
using tug::registry::Reference;
using tug::crypto::Sha256Digest;
using tug::testsupport::FakeHttpServer;
using tug::testsupport::FakeRequest;
using tug::testsupport::FakeResponse;
namespace media = tug::oci::media;

namespace {

ClientOptions InsecureFor(const std::string& host_port, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  ClientOptions o;
  o.insecure_registries.insert(host_port);
  o.timeout = timeout;
  return o;
}

Reference Repo(const std::string& host_port, const std::string& name) {
  auto r = Reference::Parse(host_port + "/" + name);
  REQUIRE(r.has_value());
  return *r;
}

const std::string kManifest = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";

}  // namespace

TEST_CASE("A refused connection is reported as unavailable quickly") {
  uint16_t port = tug::testsupport::FreeLoopbackPort();
  std::string hp = "127.0.0.1:" + std::to_string(port);
  Client c(InsecureFor(hp, std::chrono::seconds(10)));
  auto t0 = std::chrono::steady_clock::now();
  auto st = c.Ping(hp);
  REQUIRE_FALSE(st.has_value());
  INFO(st.error().Message());
  CHECK(st.error().Is(Errc::kUnavailable));
  CHECK(st.error().context.find(hp) != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE("A server that accepts but never answers times out within the configured timeout") {
  tug::testsupport::SilentListener silent;
  Client c(InsecureFor(silent.host_port(), std::chrono::milliseconds(400)));
  auto t0 = std::chrono::steady_clock::now();
  auto st = c.Ping(silent.host_port());
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(st.has_value());
  INFO(st.error().Message());
  CHECK(st.error().Is(Errc::kTimeout));
  CHECK(took >= std::chrono::milliseconds(350));
  CHECK(took < std::chrono::seconds(3));
}

TEST_CASE("A server that stalls in the middle of a blob body times out") {
  FakeHttpServer srv([](const FakeRequest&) {
    FakeResponse r;
    r.hang = true;
    return r;
  });
  Client c(InsecureFor(srv.host_port(), std::chrono::milliseconds(300)));
  auto st = c.FetchBlob(Repo(srv.host_port(), "a"), Sha256Digest("x"), 0, [](std::string_view) { return tug::Status{}; });
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().Is(Errc::kTimeout));
}

TEST_CASE("Server errors and rate limits are unavailable, other statuses keep their meaning") {
  int status = 503;
  FakeHttpServer srv([&](const FakeRequest&) {
    FakeResponse r;
    r.status = status;
    r.body = R"({"errors":[{"code":"UNAVAILABLE","message":"try later"}]})";
    return r;
  });
  Client c(InsecureFor(srv.host_port()));
  auto repo = Repo(srv.host_port(), "a");
  auto m = c.GetManifest(repo, "v1");
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().Is(Errc::kUnavailable));
  CHECK(m.error().context.find("503") != std::string::npos);
  CHECK(m.error().context.find("try later") != std::string::npos);
  status = 429;
  CHECK(c.GetManifest(repo, "v1").error().Is(Errc::kUnavailable));
  status = 403;
  CHECK(c.GetManifest(repo, "v1").error().Is(Errc::kUnauthorized));
  status = 400;
  CHECK(c.GetManifest(repo, "v1").error().Is(Errc::kProtocol));
}

TEST_CASE("A manifest served for a different digest than requested is an integrity error") {
  FakeHttpServer srv([](const FakeRequest&) {
    FakeResponse r;
    r.headers["Content-Type"] = std::string(media::kOciManifest);
    r.body = kManifest;
    return r;
  });
  Client c(InsecureFor(srv.host_port()));
  auto repo = Repo(srv.host_port(), "a");
  auto other = Sha256Digest("something else");
  auto m = c.GetManifest(repo, other);
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().Is(Errc::kIntegrity));
  CHECK_FALSE(tug::IsRetryable(m.error()));
  auto ok = c.GetManifest(repo, Sha256Digest(kManifest));
  REQUIRE(ok.has_value());
  CHECK(ok->media_type == media::kOciManifest);
}

TEST_CASE("Bearer challenges are answered with a token fetched with credentials and cached per scope") {
  std::string hp;
  FakeHttpServer srv([&](const FakeRequest& req) {
    FakeResponse r;
    if (req.target.rfind("/token", 0) == 0) {
      if (req.Header("authorization") != "Basic " + std::string("Ym9iOnB3")) {  // bob:pw
        r.status = 401;
        return r;
      }
      r.body = R"({"token":"tok-)" + std::to_string(req.target.find("push") != std::string::npos) + R"("})";
      return r;
    }
    std::string authz = req.Header("authorization");
    if (authz.rfind("Bearer tok-", 0) != 0) {
      r.status = 401;
      r.headers["WWW-Authenticate"] = "Bearer realm=\"http://" + hp + "/token\",service=\"fake\",scope=\"x\"";
      return r;
    }
    r.headers["Content-Type"] = std::string(media::kOciManifest);
    r.body = kManifest;
    return r;
  });
  hp = srv.host_port();
  ClientOptions o = InsecureFor(hp);
  o.username = "bob";
  o.password = "pw";
  Client c(o);
  auto repo = Repo(hp, "acme/x");
  for (int i = 0; i < 3; ++i) {
    auto m = c.GetManifest(repo, "v1");
    INFO((m ? "" : m.error().Message()));
    REQUIRE(m.has_value());
    CHECK(m->bytes == kManifest);
  }
  int token_requests = 0;
  for (const auto& r : srv.requests()) {
    if (r.target.rfind("/token", 0) != 0) continue;
    ++token_requests;
    CHECK(r.target.find("service=fake") != std::string::npos);
    CHECK(r.target.find("scope=repository%3Aacme%2Fx%3Apull") != std::string::npos);
  }
  CHECK(token_requests == 1);
  // Keep-alive: the manifest requests shared connections instead of opening one each.
  CHECK(srv.connections() <= 3);

  ClientOptions wrong = o;
  wrong.password = "nope";
  Client bad(wrong);
  auto m = bad.GetManifest(repo, "v1");
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().Is(Errc::kUnauthorized));
}

TEST_CASE("Blob redirects to another host are followed without the registry's credentials") {
  std::string blob = "hello from the blob store";
  std::string digest = Sha256Digest(blob);
  FakeHttpServer store([&](const FakeRequest& req) {
    FakeResponse r;
    if (req.Header("range") == "bytes=6-") {
      r.status = 206;
      r.headers["Content-Range"] = "bytes 6-" + std::to_string(blob.size() - 1) + "/" + std::to_string(blob.size());
      r.body = blob.substr(6);
    } else {
      r.body = blob;
    }
    return r;
  });
  FakeHttpServer reg([&](const FakeRequest& req) {
    FakeResponse r;
    if (req.Header("authorization").empty()) {
      r.status = 401;
      r.headers["WWW-Authenticate"] = "Basic realm=\"fake\"";
      return r;
    }
    r.status = 307;
    r.headers["Location"] = "http://" + store.host_port() + "/store/" + req.target.substr(req.target.rfind('/') + 1);
    return r;
  });
  ClientOptions o = InsecureFor(reg.host_port());
  o.username = "u";
  o.password = "p";
  Client c(o);
  auto repo = Repo(reg.host_port(), "a");
  std::string got;
  auto sink = [&](std::string_view chunk) {
    got.append(chunk);
    return tug::Status{};
  };
  auto st = c.FetchBlob(repo, digest, 0, sink);
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  CHECK(got == blob);
  got.clear();
  REQUIRE(c.FetchBlob(repo, digest, 6, sink).has_value());
  CHECK(got == blob.substr(6));
  for (const auto& r : store.requests()) CHECK(r.Header("authorization").empty());
  CHECK(store.requests().size() == 2);
}

TEST_CASE("A blob server that ignores Range still yields only the bytes after the offset") {
  std::string blob(100000, 'a');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>('a' + i % 26);
  FakeHttpServer srv([&](const FakeRequest&) {
    FakeResponse r;
    r.body = blob;
    return r;
  });
  Client c(InsecureFor(srv.host_port()));
  std::string got;
  auto st = c.FetchBlob(Repo(srv.host_port(), "a"), Sha256Digest(blob), 70001, [&](std::string_view chunk) {
    got.append(chunk);
    return tug::Status{};
  });
  REQUIRE(st.has_value());
  CHECK(got == blob.substr(70001));
}

TEST_CASE("A sink error aborts the blob transfer with that error") {
  std::string blob(1 << 20, 'z');
  FakeHttpServer srv([&](const FakeRequest&) {
    FakeResponse r;
    r.body = blob;
    return r;
  });
  Client c(InsecureFor(srv.host_port()));
  auto st = c.FetchBlob(Repo(srv.host_port(), "a"), Sha256Digest(blob), 0,
                        [](std::string_view) -> tug::Status { return tug::MakeError(Errc::kNoSpace, "disk full"); });
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().Is(Errc::kNoSpace));
}

TEST_CASE("Tag listing follows Link pagination") {
  FakeHttpServer srv([](const FakeRequest& req) {
    FakeResponse r;
    if (req.target.find("last=b") == std::string::npos) {
      r.body = R"({"name":"a","tags":["a","b"]})";
      r.headers["Link"] = "</v2/a/tags/list?last=b&n=2>; rel=\"next\"";
    } else {
      r.body = R"({"name":"a","tags":["c"]})";
    }
    return r;
  });
  Client c(InsecureFor(srv.host_port()));
  auto tags = c.ListTags(Repo(srv.host_port(), "a"));
  REQUIRE(tags.has_value());
  CHECK(*tags == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("Upload locations may be relative or absolute") {
  std::string data(3000, 'q');
  std::string digest = Sha256Digest(data);
  std::string hp;
  std::string received;
  FakeHttpServer srv([&](const FakeRequest& req) {
    FakeResponse r;
    if (req.method == "HEAD") {
      r.status = 404;
    } else if (req.method == "POST") {
      r.status = 202;
      r.headers["Location"] = "/v2/a/blobs/uploads/u1?_state=s1";  // relative
    } else if (req.method == "PATCH") {
      received += req.body;
      r.status = 202;
      r.headers["Location"] = "http://" + hp + "/v2/a/blobs/uploads/u1?_state=s" + std::to_string(received.size());
    } else if (req.method == "PUT") {
      r.status = received == data && req.target.find("digest=sha256%3A") != std::string::npos ? 201 : 400;
    }
    return r;
  });
  hp = srv.host_port();
  ClientOptions o = InsecureFor(hp);
  o.upload_chunk_size = 1000;
  Client c(o);
  auto st = c.PushBlob(Repo(hp, "a"), digest, data);
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  std::vector<std::string> ranges;
  for (const auto& r : srv.requests())
    if (r.method == "PATCH") ranges.push_back(r.Header("content-range"));
  CHECK(ranges == std::vector<std::string>{"0-999", "1000-1999", "2000-2999"});
}
