// Signed releases (DESIGN.md §3): a DSSE envelope whose payload is canonical JSON
//   {"repository","digest","platforms":{platform:digest},"version","channel","name","issued_at","expires_at",
//    "annotations":{}}
// serialised with sorted keys and no whitespace. Verification works on the payload bytes exactly as signed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "crypto/dsse.hpp"
#include "crypto/trust_root.hpp"

namespace tug::crypto {

inline constexpr std::string_view kReleasePayloadType = "application/vnd.tugboat.release.v1+json";

struct Release {
  std::string repository;  // "127.0.0.1:5000/acme/sensor"
  std::string digest;      // index or manifest digest, "sha256:..."
  std::map<std::string, std::string> platforms;  // "linux/arm64/v8" -> manifest digest
  uint64_t version = 0;
  std::string channel = "stable";
  std::string name;
  core::TimePoint issued_at;
  core::TimePoint expires_at;
  std::map<std::string, std::string> annotations;
};

std::string SerializeReleasePayload(const Release& r);
Result<Release> ParseReleasePayload(std::string_view payload);

// Signs a release with one or more keys; returns the envelope JSON.
std::string SignRelease(const Release& r, const std::vector<KeyPair>& keys);

struct ReleasePolicy {
  core::TimePoint now;
  uint64_t ratchet = 0;                  // highest committed version; the release must be strictly above it
  std::string expected_repository;       // empty: any repository
};

struct VerifiedRelease {
  Release release;
  std::string envelope_json;  // as given, to store beside the slot
};

// Checks, in order: envelope well-formed and of the release payload type (kInvalidArgument), threshold of trusted
// signatures (kSignature), payload well-formed, not expired (kExpired), repository matches (kPolicy),
// version > ratchet (kRollbackRejected). The error context says exactly which check failed and why.
Result<VerifiedRelease> VerifyRelease(std::string_view envelope_json, const TrustRoot& root,
                                      const ReleasePolicy& policy);

}  // namespace tug::crypto
