#include <catch2/catch.hpp>

#include "core/subprocess.hpp"
#include "testsupport/mosquitto_server.hpp"

namespace tug::testsupport {
namespace {

std::vector<std::string> TlsArgs(MosquittoServer& s, const std::string& id) {
  auto c = s.Cert(id);
  REQUIRE(c);
  return {"-h", "127.0.0.1", "-p", std::to_string(s.tls_port()), "--cafile", s.ca_file(), "--cert", c->cert,
          "--key", c->key, "-V", "mqttv5"};
}

std::vector<std::string> Cmd(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

TEST_CASE("The Mosquitto fixture serves TLS with device certificates and keeps retained messages across Restart") {
  auto s = MosquittoServer::Start({.device_ids = {"dev-1"}});
  REQUIRE(s);
  auto& srv = **s;
  const uint16_t port = srv.tls_port();
  auto pub = core::Run(Cmd({"mosquitto_pub"}, Cmd(TlsArgs(srv, "dev-1"),
                                                  {"-t", "tug/v1/d/dev-1/state", "-m", "hello", "-q", "1", "-r"})));
  REQUIRE(pub);
  INFO(pub->Describe() << "\n" << srv.LogTail());
  REQUIRE(pub->ok());

  REQUIRE(srv.Restart());
  CHECK(srv.tls_port() == port);
  // A certificate made after the broker started is trusted too: the broker trusts the CA.
  auto sub = core::Run(Cmd({"mosquitto_sub"}, Cmd(TlsArgs(srv, "controller"),
                                                  {"-t", "tug/v1/d/+/state", "-C", "1", "-W", "5"})));
  REQUIRE(sub);
  INFO(sub->Describe() << "\n" << srv.LogTail());
  CHECK(sub->out == "hello\n");
}

TEST_CASE("The plain loopback listener of the fixture needs no certificate") {
  MosquittoServerOptions o;
  o.plain_listener = true;
  auto s = MosquittoServer::Start(o);
  REQUIRE(s);
  REQUIRE((*s)->plain_port() != 0);
  auto pub = core::Run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string((*s)->plain_port()), "-t", "x/y",
                        "-m", "v", "-r", "-q", "1"});
  REQUIRE(pub);
  CHECK(pub->ok());
}

TEST_CASE("Without plain_listener the fixture has no anonymous listener") {
  auto s = MosquittoServer::Start();
  REQUIRE(s);
  CHECK((*s)->plain_port() == 0);
  auto conf = core::Run({"cat", (*s)->config_file()});
  REQUIRE(conf);
  CHECK(conf->out.find("allow_anonymous true") == std::string::npos);
}

}  // namespace
}  // namespace tug::testsupport
