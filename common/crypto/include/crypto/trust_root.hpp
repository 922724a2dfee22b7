// Device trust root (TUF-style): a DSSE envelope with payloadType application/vnd.tugboat.root.v1+json and payload
//   {"version":1,"expires":"2027-11-22T00:00:00Z","threshold":1,
//    "keys":{"<keyid>":{"type":"ed25519","public":"<b64>"}}}
// A root is signed by a threshold of its own keys. A new root replaces the current one only if it is also signed
// by a threshold of the current root's keys and its version is higher (key rotation).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "crypto/dsse.hpp"
#include "crypto/ed25519.hpp"

namespace tug::crypto {

inline constexpr std::string_view kRootPayloadType = "application/vnd.tugboat.root.v1+json";

struct TrustRoot {
  uint64_t version = 0;
  core::TimePoint expires;
  int threshold = 1;
  std::map<std::string, std::string> keys;  // keyid -> raw 32-byte public key
};

// Builds and signs a root envelope (JSON) over `public_keys` with the given secret `signers`.
Result<std::string> MakeTrustRoot(const std::vector<std::string>& public_keys, int threshold, uint64_t version,
                                  core::TimePoint expires, const std::vector<KeyPair>& signers);

// Parses a root envelope and checks it is self-signed by its threshold and not expired at `now`.
// Errors: kInvalidArgument (malformed), kSignature, kExpired.
Result<TrustRoot> LoadTrustRoot(std::string_view envelope_json, core::TimePoint now);

// Verifies `candidate` as a successor of `current`: signed by threshold of both, higher version, not expired.
Result<TrustRoot> VerifyRootUpdate(const TrustRoot& current, std::string_view candidate_json, core::TimePoint now);

// Counts distinct trusted keyids whose signature over PAE verifies; kSignature if below threshold
// (the message says how many valid of how many needed).
Status VerifyThreshold(const Envelope& env, const std::map<std::string, std::string>& keys, int threshold);

}  // namespace tug::crypto
