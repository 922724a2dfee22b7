#include "crypto/dsse.hpp"

#include <catch2/catch.hpp>

using namespace tug;
using namespace tug::crypto;

TEST_CASE("PAE produces the exact bytes from the DSSE specification") {
  CHECK(Pae("http://example.com/HelloWorld", "hello world") ==
        "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  CHECK(Pae("", "") == "DSSEv1 0  0 ");
}

TEST_CASE("PAE counts bytes, not characters, and keeps binary payloads intact") {
  std::string payload("a\0b", 3);
  CHECK(Pae("t", payload) == std::string("DSSEv1 1 t 3 a\0b", 16));
}

TEST_CASE("A signed envelope round-trips through JSON and its signature covers the PAE") {
  KeyPair k = GenerateKeyPair();
  Envelope env = SignEnvelope("application/x-test", "{\"a\":1}", {k});
  REQUIRE(env.signatures.size() == 1);
  CHECK(env.signatures[0].keyid == KeyId(k.public_key));
  CHECK(Verify(k.public_key, Pae("application/x-test", "{\"a\":1}"), env.signatures[0].sig));

  auto parsed = Envelope::Parse(env.ToJson());
  REQUIRE(parsed);
  CHECK(parsed->payload_type == env.payload_type);
  CHECK(parsed->payload == env.payload);
  REQUIRE(parsed->signatures.size() == 1);
  CHECK(parsed->signatures[0].keyid == env.signatures[0].keyid);
  CHECK(parsed->signatures[0].sig == env.signatures[0].sig);
}

TEST_CASE("Envelope JSON uses the DSSE field names with a base64 payload") {
  Envelope env{"t", "hi", {{"id", "sig"}}};
  CHECK(env.ToJson() == R"({"payload":"aGk=","payloadType":"t","signatures":[{"keyid":"id","sig":"c2ln"}]})");
}

TEST_CASE("Envelope parsing rejects malformed documents") {
  for (const char* bad : {"", "[]", "{", R"({"payload":"aGk=","signatures":[]})",
                          R"({"payloadType":"t","payload":"a","signatures":[]})",
                          R"({"payloadType":"t","payload":"aGk="})",
                          R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"x"}]})",
                          R"({"payloadType":"t","payload":"aGk=","signatures":[{"keyid":1,"sig":"c2ln"}]})",
                          R"({"payloadType":"t","payload":"aGk=","signatures":[7]})"}) {
    INFO(bad);
    auto r = Envelope::Parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kInvalidArgument));
  }
}

TEST_CASE("A signature without a keyid is accepted by the parser") {
  auto r = Envelope::Parse(R"({"payloadType":"t","payload":"aGk=","signatures":[{"sig":"c2ln"}]})");
  REQUIRE(r);
  CHECK(r->signatures[0].keyid.empty());
}
