// http::Server over mutual TLS with certificates made by the openssl CLI, and its Host/Origin check: the handler
// sees the client certificate's CN/OU; no certificate, a foreign CA's or plain HTTP gets no answer; a Host or Origin
// naming another site gets 403.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "running_server.hpp"  // beside this file
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace std::chrono_literals;

namespace {

void Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  auto r = core::Run(args);
  REQUIRE(r);
  INFO(r->Describe());
  REQUIRE(r->ok());
}

// A CA in `dir`/name.{crt,key}.
void MakeCa(const std::string& dir, const std::string& name) {
  Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           dir + "/" + name + ".key", "-out", dir + "/" + name + ".crt", "-days", "2", "-subj", "/CN=" + name,
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"});
}

// `dir`/name.{crt,key} signed by `ca`, subject `subj`, extensions `ext`.
void Issue(const std::string& dir, const std::string& ca, const std::string& name, const std::string& subj,
           const std::string& ext) {
  const std::string base = dir + "/" + name;
  Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           base + ".key", "-out", base + ".csr", "-subj", subj});
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), base + ".ext", ext));
  Openssl({"x509", "-req", "-in", base + ".csr", "-CA", dir + "/" + ca + ".crt", "-CAkey", dir + "/" + ca + ".key",
           "-CAcreateserial", "-days", "2", "-extfile", base + ".ext", "-out", base + ".crt"});
}

struct Pki {
  testsupport::TempDir dir{"tug-http-tls"};
  Pki() {
    MakeCa(dir.path(), "ca");
    MakeCa(dir.path(), "other-ca");
    Issue(dir.path(), "ca", "server", "/CN=server",
          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
    Issue(dir.path(), "ca", "batch", "/OU=framework/CN=batch", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    Issue(dir.path(), "other-ca", "alien", "/OU=framework/CN=batch",
          "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  }
  std::string Path(const std::string& f) const { return dir.Sub(f); }
};

// Records the client certificate identity of every request.
struct TlsFixture {
  explicit TlsFixture(http::ServerOptions o)
      : running([this](const http::Request& r) {
          std::lock_guard<std::mutex> lock(mu);
          seen.emplace_back(r.peer_cn, r.peer_ou);
          http::Response res;
          res.content_type = "text/plain";
          res.body = "hello " + r.peer_cn;
          return res;
        }, std::move(o)) {}
  http::ServerStats Stats() { return running.Stats(); }
  std::string Url(const std::string& scheme = "https") const { return running.Base(scheme) + "/x"; }

  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> seen;  // peer_cn, peer_ou per request
  http::testing::RunningServer running;  // last: stopped before what its handler uses
};

http::ServerOptions MutualTls(const Pki& pki) {
  http::ServerOptions o;
  o.tls = http::ServerOptions::Tls{pki.Path("server.crt"), pki.Path("server.key"), pki.Path("ca.crt"), true};
  o.header_timeout = 2s;
  return o;
}

}  // namespace

TEST_CASE("http server over mutual TLS hands the client certificate's CN and OU to the handler") {
  Pki pki;
  TlsFixture f(MutualTls(pki));
  http::ClientOptions co;
  co.ca_file = pki.Path("ca.crt");
  co.cert_file = pki.Path("batch.crt");
  co.key_file = pki.Path("batch.key");
  http::Client c(co);
  auto r = c.Call("GET", f.Url());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "hello batch");
  std::lock_guard<std::mutex> lock(f.mu);
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0] == std::pair<std::string, std::string>{"batch", "framework"});
}

TEST_CASE("http server over mutual TLS answers nothing without a certificate, with a foreign CA's, or in plain HTTP") {
  Pki pki;
  TlsFixture f(MutualTls(pki));
  http::ClientOptions none;
  none.ca_file = pki.Path("ca.crt");
  none.timeout = 3s;
  http::Client anonymous(none);
  CHECK_FALSE(anonymous.Call("GET", f.Url()));

  http::ClientOptions alien = none;
  alien.cert_file = pki.Path("alien.crt");
  alien.key_file = pki.Path("alien.key");
  http::Client foreign(alien);
  CHECK_FALSE(foreign.Call("GET", f.Url()));

  http::Client plain(none);
  CHECK_FALSE(plain.Call("GET", f.Url("http")));
  {
    std::lock_guard<std::mutex> lock(f.mu);
    CHECK(f.seen.empty());  // the handler never ran
  }
  CHECK(f.Stats().tls_failures >= 3);

  // And the server still serves a proper client.
  http::ClientOptions good = none;
  good.cert_file = pki.Path("batch.crt");
  good.key_file = pki.Path("batch.key");
  http::Client ok(good);
  auto r = ok.Call("GET", f.Url());
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http server on loopback refuses a Host or Origin of another site (403), not a missing Host") {
  http::testing::RunningServer s([](const http::Request&) {
    http::Response res;
    res.body = "{}";
    return res;
  }, http::ServerOptions{});
  const std::string base = s.Base();
  http::Client c;
  auto call = [&](http::Headers h) {
    auto r = c.Call("POST", base + "/api", "{}", std::move(h));
    REQUIRE(r);
    return *r;
  };
  CHECK(call({}).status == 200);  // the client's own Host: 127.0.0.1:port
  CHECK(call({{"Host", "localhost:1234"}}).status == 200);
  auto rebound = call({{"Host", "attacker.example:8080"}});
  CHECK(rebound.status == 403);
  CHECK(rebound.body.find("\"field\":\"host\"") != std::string::npos);
  CHECK(call({{"Origin", "http://attacker.example"}}).status == 403);
  CHECK(call({{"Origin", "http://127.0.0.1:9999"}}).status == 200);
  CHECK(s.Stats().host_refused == 2);
}
