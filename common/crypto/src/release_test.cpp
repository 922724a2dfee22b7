#include "crypto/release.hpp"

#include <catch2/catch.hpp>

#include "crypto/encoding.hpp"

using namespace tug;
using namespace tug::crypto;
using std::chrono::hours;

namespace {
const core::TimePoint kReleaseNow = core::ParseRfc3339("2026-11-22T10:00:00Z").value();
const std::string kDigest = "sha256:" + std::string(64, 'b');

Release SampleRelease() {
  Release r;
  r.repository = "127.0.0.1:5000/acme/sensor";
  r.digest = kDigest;
  r.platforms = {{"linux/arm64/v8", "sha256:" + std::string(64, 'c')}};
  r.version = 42;
  r.name = "sensor 2.0.1";
  r.issued_at = kReleaseNow;
  r.expires_at = kReleaseNow + hours(24 * 30);
  return r;
}

TrustRoot RootOf(const std::vector<KeyPair>& ks, int threshold) {
  TrustRoot root;
  root.version = 1;
  root.expires = kReleaseNow + hours(24 * 365);
  root.threshold = threshold;
  for (const auto& k : ks) root.keys.emplace(KeyId(k.public_key), k.public_key);
  return root;
}

ReleasePolicy PolicyAt(core::TimePoint now) { return ReleasePolicy{now, 0, ""}; }
}  // namespace

TEST_CASE("Release payload is canonical JSON with sorted keys and no whitespace") {
  CHECK(SerializeReleasePayload(SampleRelease()) ==
        R"({"annotations":{},"channel":"stable","digest":")" + kDigest +
            R"(","expires_at":"2026-12-22T10:00:00Z","issued_at":"2026-11-22T10:00:00Z","name":"sensor 2.0.1",)"
            R"("platforms":{"linux/arm64/v8":"sha256:)" + std::string(64, 'c') +
            R"("},"repository":"127.0.0.1:5000/acme/sensor","version":42})");
}

TEST_CASE("Release payload parses back to the same release") {
  Release r = SampleRelease();
  r.annotations = {{"git", "abc123"}};
  auto back = ParseReleasePayload(SerializeReleasePayload(r));
  REQUIRE(back);
  CHECK(back->repository == r.repository);
  CHECK(back->digest == r.digest);
  CHECK(back->platforms == r.platforms);
  CHECK(back->version == 42);
  CHECK(back->channel == "stable");
  CHECK(back->name == r.name);
  CHECK(back->issued_at == r.issued_at);
  CHECK(back->expires_at == r.expires_at);
  CHECK(back->annotations == r.annotations);
}

TEST_CASE("Release payload parsing rejects missing fields, bad digests and negative versions") {
  const std::string good = SerializeReleasePayload(SampleRelease());
  auto without = [&](const std::string& field) {
    auto j = good;
    auto pos = j.find("\"" + field + "\"");
    j.replace(pos, field.size() + 2, "\"x" + field + "\"");
    return j;
  };
  for (const char* f : {"repository", "digest", "version", "expires_at", "issued_at"}) {
    INFO(f);
    CHECK(ParseReleasePayload(without(f)).error().Is(Errc::kInvalidArgument));
  }
  std::string bad_digest = good;
  bad_digest.replace(bad_digest.find(kDigest), 10, "sha256:XYZ");
  CHECK(ParseReleasePayload(bad_digest).error().Is(Errc::kInvalidArgument));
  std::string negative = good;
  negative.replace(negative.find("42"), 2, "-4");
  CHECK(ParseReleasePayload(negative).error().Is(Errc::kInvalidArgument));
  CHECK(ParseReleasePayload("nope").error().Is(Errc::kInvalidArgument));
}

TEST_CASE("A release signed by a trusted key verifies and keeps the envelope as given") {
  KeyPair k = GenerateKeyPair();
  const std::string json = SignRelease(SampleRelease(), {k});
  auto v = VerifyRelease(json, RootOf({k}, 1), PolicyAt(kReleaseNow));
  REQUIRE(v);
  CHECK(v->release.version == 42);
  CHECK(v->release.repository == "127.0.0.1:5000/acme/sensor");
  CHECK(v->envelope_json == json);
}

TEST_CASE("A release signed by an untrusted key is rejected") {
  KeyPair trusted = GenerateKeyPair();
  KeyPair other = GenerateKeyPair();
  auto v = VerifyRelease(SignRelease(SampleRelease(), {other}), RootOf({trusted}, 1), PolicyAt(kReleaseNow));
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kSignature));
  CHECK(v.error().context.rfind("release signed by 0 trusted key(s), 1 required", 0) == 0);
}

TEST_CASE("A release below a 2-of-3 threshold is rejected with how many signed") {
  std::vector<KeyPair> ks = {GenerateKeyPair(), GenerateKeyPair(), GenerateKeyPair()};
  TrustRoot root = RootOf(ks, 2);
  auto one = VerifyRelease(SignRelease(SampleRelease(), {ks[1]}), root, PolicyAt(kReleaseNow));
  REQUIRE_FALSE(one);
  CHECK(one.error().Is(Errc::kSignature));
  CHECK(one.error().context.rfind("release signed by 1 trusted key(s), 2 required", 0) == 0);
  CHECK(VerifyRelease(SignRelease(SampleRelease(), {ks[0], ks[2]}), root, PolicyAt(kReleaseNow)));
}

TEST_CASE("An expired release is rejected") {
  KeyPair k = GenerateKeyPair();
  auto v = VerifyRelease(SignRelease(SampleRelease(), {k}), RootOf({k}, 1), PolicyAt(kReleaseNow + hours(24 * 31)));
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kExpired));
  CHECK(v.error().context.rfind("release expired at 2026-12-22T10:00:00Z", 0) == 0);
}

TEST_CASE("A release for another repository is rejected") {
  KeyPair k = GenerateKeyPair();
  ReleasePolicy policy = PolicyAt(kReleaseNow);
  policy.expected_repository = "127.0.0.1:5000/acme/other";
  auto v = VerifyRelease(SignRelease(SampleRelease(), {k}), RootOf({k}, 1), policy);
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kPolicy));
  CHECK(v.error().context ==
        "release is for repository 127.0.0.1:5000/acme/sensor, expected 127.0.0.1:5000/acme/other");
}

TEST_CASE("A release whose version is not above the ratchet is rejected") {
  KeyPair k = GenerateKeyPair();
  Release r = SampleRelease();
  r.version = 3;
  ReleasePolicy policy = PolicyAt(kReleaseNow);
  policy.ratchet = 5;
  auto v = VerifyRelease(SignRelease(r, {k}), RootOf({k}, 1), policy);
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kRollbackRejected));
  CHECK(v.error().context == "release version 3 is not above committed version 5");
  policy.ratchet = 3;
  CHECK(VerifyRelease(SignRelease(r, {k}), RootOf({k}, 1), policy).error().Is(Errc::kRollbackRejected));
  policy.ratchet = 2;
  CHECK(VerifyRelease(SignRelease(r, {k}), RootOf({k}, 1), policy));
}

TEST_CASE("A release with a tampered payload is rejected") {
  KeyPair k = GenerateKeyPair();
  auto env = Envelope::Parse(SignRelease(SampleRelease(), {k}));
  REQUIRE(env);
  env->payload.replace(env->payload.find("\"version\":42"), 12, "\"version\":99");
  auto v = VerifyRelease(env->ToJson(), RootOf({k}, 1), PolicyAt(kReleaseNow));
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kSignature));
}

TEST_CASE("A release is verified over its payload bytes, not a re-serialisation") {
  // Same meaning, different bytes (whitespace, key order): signed as-is, it must verify as-is.
  KeyPair k = GenerateKeyPair();
  const std::string payload = R"({ "version": 7, "repository": "r/x", "digest": ")" + kDigest +
                              R"(", "issued_at": "2026-11-22T10:00:00Z", "expires_at": "2026-12-01T00:00:00Z" })";
  Envelope env = SignEnvelope(kReleasePayloadType, payload, {k});
  auto v = VerifyRelease(env.ToJson(), RootOf({k}, 1), PolicyAt(kReleaseNow));
  REQUIRE(v);
  CHECK(v->release.version == 7);
}

TEST_CASE("A release with the wrong payload type is rejected even when well signed") {
  KeyPair k = GenerateKeyPair();
  Envelope env = SignEnvelope("application/vnd.tugboat.root.v1+json", SerializeReleasePayload(SampleRelease()), {k});
  auto v = VerifyRelease(env.ToJson(), RootOf({k}, 1), PolicyAt(kReleaseNow));
  REQUIRE_FALSE(v);
  CHECK(v.error().Is(Errc::kInvalidArgument));
  CHECK(v.error().context.find("payloadType") != std::string::npos);
}

TEST_CASE("A release envelope that is not JSON is rejected as invalid") {
  KeyPair k = GenerateKeyPair();
  CHECK(VerifyRelease("{{", RootOf({k}, 1), PolicyAt(kReleaseNow)).error().Is(Errc::kInvalidArgument));
}
