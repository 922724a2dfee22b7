#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "broker/broker_config.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::broker {
namespace {

int Mode(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

std::string Subject(const std::string& cert) {
  auto r = core::Run({"openssl", "x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253"});
  REQUIRE(r);
  return r->out;
}

TEST_CASE("The ACL gives devices exactly the topics they publish and the controllers every device") {
  const std::string acl = RenderAcl({"ctl", "ctl-2"});
  CHECK(acl.find("pattern read tug/v1/d/%u/desired\n") != std::string::npos);
  CHECK(acl.find("pattern read tug/v1/d/%u/cmd/req\n") != std::string::npos);
  for (const char* t : {"presence", "state", "jobs/+/status", "jobs/+/progress", "cmd/res"})
    CHECK(acl.find(std::string("pattern write tug/v1/d/%u/") + t + "\n") != std::string::npos);
  // No wildcard write: a device cannot publish (and retain) on topics nobody reads.
  CHECK(acl.find("pattern write tug/v1/d/%u/#") == std::string::npos);
  for (const char* id : {"ctl", "ctl-2"})
    CHECK(acl.find(std::string("user ") + id +
                   "\ntopic readwrite tug/v1/d/#\ntopic readwrite $share/ctrl/tug/v1/d/#\n") != std::string::npos);
  // Nothing grants devices readwrite on a shared prefix.
  CHECK(acl.find("pattern readwrite") == std::string::npos);
}

TEST_CASE("Only plain ids are accepted as certificate CNs and MQTT users") {
  CHECK(IsValidClientId("dev-1.a_b"));
  CHECK_FALSE(IsValidClientId(""));
  CHECK_FALSE(IsValidClientId("a/b"));
  CHECK_FALSE(IsValidClientId("a+b"));
  CHECK_FALSE(IsValidClientId("#"));
  CHECK_FALSE(IsValidClientId("-x"));
  CHECK_FALSE(IsValidClientId("CN=x,O=y"));
  CHECK_FALSE(IsValidClientId(std::string(65, 'a')));
}

TEST_CASE("Generate writes a CA, verifiable certificates with the right CNs, private keys and the config") {
  testsupport::TempDir dir("tug-broker-cfg");
  BrokerConfigOptions o;
  o.out_dir = dir.Sub("b");
  o.device_ids = {"dev-a", "dev-b"};
  o.tls_port = 18883;
  auto l = Generate(o);
  REQUIRE(l);
  REQUIRE(l->devices.size() == 2);

  for (const auto* pair : {&l->server, &l->controller, &l->devices[0], &l->devices[1]}) {
    auto v = core::Run({"openssl", "verify", "-CAfile", l->ca.cert, pair->cert});
    REQUIRE(v);
    CHECK(v->ok());
    CHECK(Mode(pair->key) == 0600);
  }
  CHECK(Mode(l->ca.key) == 0600);
  CHECK(Subject(l->devices[0].cert).find("CN=dev-a") != std::string::npos);
  CHECK(Subject(l->controller.cert).find("CN=controller") != std::string::npos);
  auto text = core::Run({"openssl", "x509", "-in", l->server.cert, "-noout", "-text"});
  REQUIRE(text);
  CHECK(text->out.find("IP Address:127.0.0.1") != std::string::npos);
  CHECK(text->out.find("DNS:localhost") != std::string::npos);
  CHECK(text->out.find("prime256v1") != std::string::npos);

  auto conf = core::DefaultEnv()->ReadFile(l->config_file);
  REQUIRE(conf);
  CHECK(conf->find("listener 18883 127.0.0.1\n") != std::string::npos);
  CHECK(conf->find("require_certificate true\n") != std::string::npos);
  CHECK(conf->find("use_identity_as_username true\n") != std::string::npos);
  CHECK(conf->find("use_username_as_clientid true\n") != std::string::npos);
  CHECK(conf->find("max_packet_size 262144\n") != std::string::npos);
  CHECK(conf->find("crlfile " + l->crl_file + "\n") != std::string::npos);
  auto crl = core::Run({"openssl", "crl", "-in", l->crl_file, "-noout", "-CAfile", l->ca.cert});
  REQUIRE(crl);
  CHECK(crl->ok());  // a CRL signed by the CA from the start: the broker refuses to start with a missing crlfile
  CHECK(conf->find("acl_file " + l->acl_file) != std::string::npos);
  CHECK(conf->find("allow_anonymous true") == std::string::npos);
  CHECK(conf->find("max_queued_messages 100000\n") != std::string::npos);
  CHECK(conf->find("persistent_client_expiration 7d\n") != std::string::npos);
}

TEST_CASE("Generating again keeps existing certificates and adds new devices") {
  testsupport::TempDir dir("tug-broker-cfg");
  BrokerConfigOptions o;
  o.out_dir = dir.Sub("b");
  o.device_ids = {"dev-a"};
  auto first = Generate(o);
  REQUIRE(first);
  auto ca_before = core::DefaultEnv()->ReadFile(first->ca.cert);
  auto a_before = core::DefaultEnv()->ReadFile(first->devices[0].cert);
  o.device_ids = {"dev-a", "dev-c"};
  o.plain_port = 11883;
  auto second = Generate(o);
  REQUIRE(second);
  CHECK(*core::DefaultEnv()->ReadFile(second->ca.cert) == *ca_before);
  CHECK(*core::DefaultEnv()->ReadFile(second->devices[0].cert) == *a_before);
  auto c = core::Run({"openssl", "verify", "-CAfile", second->ca.cert, second->devices[1].cert});
  REQUIRE(c);
  CHECK(c->ok());
  auto conf = core::DefaultEnv()->ReadFile(second->config_file);
  REQUIRE(conf);
  CHECK(conf->find("per_listener_settings true\n") != std::string::npos);
  CHECK(conf->find("listener 11883 127.0.0.1\nallow_anonymous true\n") != std::string::npos);
}

TEST_CASE("Revoke lists the certificate in the CRL and frees the id for a new certificate") {
  testsupport::TempDir dir("tug-broker-cfg");
  BrokerConfigOptions o;
  o.out_dir = dir.Sub("b");
  o.device_ids = {"dev-a", "dev-b"};
  auto l = Generate(o);
  REQUIRE(l);
  auto serial = core::Run({"openssl", "x509", "-in", l->devices[0].cert, "-noout", "-serial"});
  REQUIRE(serial);
  REQUIRE(Revoke(o.out_dir, "dev-a"));
  auto crl = core::Run({"openssl", "crl", "-in", l->crl_file, "-noout", "-text"});
  REQUIRE(crl);
  INFO(crl->out);
  const std::string hex = serial->out.substr(serial->out.find('=') + 1, 16);
  CHECK(crl->out.find(hex.substr(0, 8)) != std::string::npos);
  CHECK_FALSE(core::DefaultEnv()->Exists(l->devices[0].cert));
  // The id can get a new certificate (a replaced device), and revoking it again works (no unique-subject clash).
  auto again = IssueClientCert(o.out_dir, "dev-a", 2);
  REQUIRE(again);
  CHECK(Revoke(o.out_dir, "dev-a"));
  CHECK(Revoke(o.out_dir, "nobody").error().Is(Errc::kNotFound));
  auto verify_b = core::Run({"openssl", "verify", "-crl_check", "-CAfile", l->ca.cert, "-CRLfile", l->crl_file,
                             l->devices[1].cert});
  REQUIRE(verify_b);
  CHECK(verify_b->ok());
}

TEST_CASE("A device id that would break the ACL is refused") {
  testsupport::TempDir dir("tug-broker-cfg");
  BrokerConfigOptions o;
  o.out_dir = dir.Sub("b");
  o.device_ids = {"evil/#"};
  auto l = Generate(o);
  REQUIRE_FALSE(l);
  CHECK(l.error().Is(Errc::kInvalidArgument));
}

}  // namespace
}  // namespace tug::broker
