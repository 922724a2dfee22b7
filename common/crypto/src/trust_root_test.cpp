#include "crypto/trust_root.hpp"

#include <catch2/catch.hpp>

#include "crypto/encoding.hpp"

using namespace tug;
using namespace tug::crypto;
using std::chrono::hours;

namespace {
const core::TimePoint kNow = core::ParseRfc3339("2026-11-22T10:00:00Z").value();
const core::TimePoint kNextYear = kNow + hours(24 * 365);

std::vector<std::string> Pubs(const std::vector<KeyPair>& ks) {
  std::vector<std::string> out;
  for (const auto& k : ks) out.push_back(k.public_key);
  return out;
}
}  // namespace

TEST_CASE("A root self-signed by its threshold loads with its keys") {
  std::vector<KeyPair> ks = {GenerateKeyPair(), GenerateKeyPair(), GenerateKeyPair()};
  auto json = MakeTrustRoot(Pubs(ks), 2, 1, kNextYear, {ks[0], ks[2]});
  REQUIRE(json);
  auto root = LoadTrustRoot(*json, kNow);
  REQUIRE(root);
  CHECK(root->version == 1);
  CHECK(root->threshold == 2);
  CHECK(root->keys.size() == 3);
  CHECK(root->keys.at(KeyId(ks[1].public_key)) == ks[1].public_key);
  CHECK(core::FormatRfc3339(root->expires) == core::FormatRfc3339(kNextYear));
}

TEST_CASE("Making a root that its own keys do not sign to threshold fails") {
  std::vector<KeyPair> ks = {GenerateKeyPair(), GenerateKeyPair()};
  KeyPair outsider = GenerateKeyPair();
  auto json = MakeTrustRoot(Pubs(ks), 2, 1, kNextYear, {ks[0], outsider});
  REQUIRE_FALSE(json);
  CHECK(json.error().Is(Errc::kSignature));
  CHECK(json.error().context.find("signed by 1 trusted key(s), 2 required") != std::string::npos);
}

TEST_CASE("Making a root rejects impossible thresholds, duplicate keys and version zero") {
  std::vector<KeyPair> ks = {GenerateKeyPair(), GenerateKeyPair()};
  CHECK(MakeTrustRoot(Pubs(ks), 3, 1, kNextYear, ks).error().Is(Errc::kInvalidArgument));
  CHECK(MakeTrustRoot(Pubs(ks), 0, 1, kNextYear, ks).error().Is(Errc::kInvalidArgument));
  CHECK(MakeTrustRoot({ks[0].public_key, ks[0].public_key}, 1, 1, kNextYear, ks).error().Is(Errc::kInvalidArgument));
  CHECK(MakeTrustRoot({}, 1, 1, kNextYear, ks).error().Is(Errc::kInvalidArgument));
  CHECK(MakeTrustRoot(Pubs(ks), 1, 0, kNextYear, ks).error().Is(Errc::kInvalidArgument));
}

TEST_CASE("A root whose self-signature does not verify is rejected") {
  KeyPair k = GenerateKeyPair();
  auto json = MakeTrustRoot({k.public_key}, 1, 1, kNextYear, {k});
  REQUIRE(json);
  auto env = Envelope::Parse(*json);
  REQUIRE(env);
  // Raise the threshold-free payload's expiry without re-signing.
  std::string tampered = env->payload;
  auto pos = tampered.find("2027");
  REQUIRE(pos != std::string::npos);
  tampered.replace(pos, 4, "2099");
  env->payload = tampered;
  auto root = LoadTrustRoot(env->ToJson(), kNow);
  REQUIRE_FALSE(root);
  CHECK(root.error().Is(Errc::kSignature));
}

TEST_CASE("An expired root is rejected") {
  KeyPair k = GenerateKeyPair();
  auto json = MakeTrustRoot({k.public_key}, 1, 1, kNow + hours(1), {k});
  REQUIRE(json);
  REQUIRE(LoadTrustRoot(*json, kNow));
  auto later = LoadTrustRoot(*json, kNow + hours(2));
  REQUIRE_FALSE(later);
  CHECK(later.error().Is(Errc::kExpired));
  CHECK(later.error().context.find("expired at 2026-11-22T11:00:00Z") != std::string::npos);
}

TEST_CASE("A root with the wrong payload type or a keyid not matching its key is rejected") {
  KeyPair k = GenerateKeyPair();
  Envelope env = SignEnvelope("application/x-other", "{}", {k});
  CHECK(LoadTrustRoot(env.ToJson(), kNow).error().Is(Errc::kInvalidArgument));

  const std::string payload = std::string(R"({"expires":"2030-01-01T00:00:00Z","keys":{")") + std::string(64, 'a') +
                              R"(":{"public":")" + Base64Encode(k.public_key) +
                              R"(","type":"ed25519"}},"threshold":1,"version":1})";
  Envelope lying = SignEnvelope(kRootPayloadType, payload, {k});
  CHECK(LoadTrustRoot(lying.ToJson(), kNow).error().Is(Errc::kInvalidArgument));
}

TEST_CASE("A new root signed by the old root's threshold replaces it") {
  std::vector<KeyPair> old_keys = {GenerateKeyPair(), GenerateKeyPair()};
  auto old_json = MakeTrustRoot(Pubs(old_keys), 2, 1, kNextYear, old_keys);
  REQUIRE(old_json);
  auto current = LoadTrustRoot(*old_json, kNow);
  REQUIRE(current);

  KeyPair fresh = GenerateKeyPair();
  auto new_json = MakeTrustRoot({fresh.public_key}, 1, 2, kNextYear, {old_keys[0], old_keys[1], fresh});
  REQUIRE(new_json);
  auto next = VerifyRootUpdate(*current, *new_json, kNow);
  REQUIRE(next);
  CHECK(next->version == 2);
  CHECK(next->keys.size() == 1);
  CHECK(next->keys.count(KeyId(fresh.public_key)) == 1);
}

TEST_CASE("A new root not signed by the old root's threshold is rejected") {
  std::vector<KeyPair> old_keys = {GenerateKeyPair(), GenerateKeyPair()};
  auto current = LoadTrustRoot(MakeTrustRoot(Pubs(old_keys), 2, 1, kNextYear, old_keys).value(), kNow);
  REQUIRE(current);

  KeyPair fresh = GenerateKeyPair();
  // Only one of the two old keys vouches for it: not enough.
  auto new_json = MakeTrustRoot({fresh.public_key}, 1, 2, kNextYear, {old_keys[0], fresh});
  REQUIRE(new_json);
  auto next = VerifyRootUpdate(*current, *new_json, kNow);
  REQUIRE_FALSE(next);
  CHECK(next.error().Is(Errc::kSignature));
  CHECK(next.error().context.find("signed by 1 trusted key(s), 2 required") != std::string::npos);
}

TEST_CASE("A new root that is not self-signed is rejected even when the old root vouches for it") {
  KeyPair old_key = GenerateKeyPair();
  auto current = LoadTrustRoot(MakeTrustRoot({old_key.public_key}, 1, 1, kNextYear, {old_key}).value(), kNow);
  REQUIRE(current);
  KeyPair fresh = GenerateKeyPair();
  const std::string payload = std::string(R"({"expires":"2030-01-01T00:00:00Z","keys":{")") +
                              KeyId(fresh.public_key) + R"(":{"public":")" + Base64Encode(fresh.public_key) +
                              R"(","type":"ed25519"}},"threshold":1,"version":2})";
  Envelope env = SignEnvelope(kRootPayloadType, payload, {old_key});
  auto next = VerifyRootUpdate(*current, env.ToJson(), kNow);
  REQUIRE_FALSE(next);
  CHECK(next.error().Is(Errc::kSignature));
}

TEST_CASE("A new root with a version not above the current one is rejected") {
  KeyPair k = GenerateKeyPair();
  auto current = LoadTrustRoot(MakeTrustRoot({k.public_key}, 1, 3, kNextYear, {k}).value(), kNow);
  REQUIRE(current);
  for (uint64_t v : {uint64_t{2}, uint64_t{3}}) {
    auto candidate = MakeTrustRoot({k.public_key}, 1, v, kNextYear, {k});
    REQUIRE(candidate);
    auto next = VerifyRootUpdate(*current, *candidate, kNow);
    REQUIRE_FALSE(next);
    CHECK(next.error().Is(Errc::kRollbackRejected));
  }
}

TEST_CASE("Threshold counting ignores duplicate signatures by the same key and reports untrusted ones") {
  KeyPair a = GenerateKeyPair();
  KeyPair b = GenerateKeyPair();
  KeyPair stranger = GenerateKeyPair();
  std::map<std::string, std::string> keys = {{KeyId(a.public_key), a.public_key}, {KeyId(b.public_key), b.public_key}};
  Envelope env = SignEnvelope("t", "p", {a, a, stranger});
  auto st = VerifyThreshold(env, keys, 2);
  REQUIRE_FALSE(st);
  CHECK(st.error().context == "signed by 1 trusted key(s), 2 required (3 signature(s), 1 by untrusted key(s))");
  CHECK(VerifyThreshold(SignEnvelope("t", "p", {a, b}), keys, 2));

  // Without keyids each signature is tried against every trusted key.
  Envelope anon = SignEnvelope("t", "p", {a, b});
  for (auto& s : anon.signatures) s.keyid.clear();
  CHECK(VerifyThreshold(anon, keys, 2));
}
