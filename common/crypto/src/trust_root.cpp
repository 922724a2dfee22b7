#include "crypto/trust_root.hpp"

#include <set>

#include "crypto/encoding.hpp"
#include "json_util.hpp"

namespace tug::crypto {
namespace {

Result<TrustRoot> ParseRootPayload(std::string_view payload) {
  const std::string what = "trust root payload";
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, internal::ParseObject(payload, what));
  TrustRoot root;
  TUG_ASSIGN_OR_RETURN(root.version, internal::GetUint(j, "version", what));
  TUG_ASSIGN_OR_RETURN(uint64_t threshold, internal::GetUint(j, "threshold", what));
  TUG_ASSIGN_OR_RETURN(std::string expires, internal::GetString(j, "expires", what));
  auto t = core::ParseRfc3339(expires);
  if (!t) return MakeError(Errc::kInvalidArgument, what + ": \"expires\": " + t.error().context);
  root.expires = *t;
  auto keys = j.find("keys");
  if (keys == j.end() || !keys->is_object())
    return MakeError(Errc::kInvalidArgument, what + " has no \"keys\" object");
  for (const auto& [keyid, entry] : keys->items()) {
    const std::string kwhat = what + ": key " + keyid;
    if (!entry.is_object()) return MakeError(Errc::kInvalidArgument, kwhat + " is not an object");
    TUG_ASSIGN_OR_RETURN(std::string type, internal::GetString(entry, "type", kwhat));
    if (type != "ed25519") return MakeError(Errc::kUnsupported, kwhat + " has type '" + type + "' (expected ed25519)");
    TUG_ASSIGN_OR_RETURN(std::string pub, internal::GetBase64(entry, "public", kwhat));
    if (pub.size() != 32) return MakeError(Errc::kInvalidArgument, kwhat + ": public key is not 32 bytes");
    // Binding keyid to the key stops a root from listing one key under several ids to fake a threshold.
    if (KeyId(pub) != keyid) return MakeError(Errc::kInvalidArgument, kwhat + ": keyid is not sha256 of the key");
    root.keys.emplace(keyid, std::move(pub));
  }
  if (threshold < 1) return MakeError(Errc::kInvalidArgument, what + ": threshold must be at least 1");
  if (threshold > root.keys.size())
    return MakeError(Errc::kInvalidArgument, what + ": threshold " + std::to_string(threshold) + " exceeds its " +
                                                 std::to_string(root.keys.size()) + " key(s)");
  root.threshold = static_cast<int>(threshold);
  return root;
}

Result<Envelope> ParseRootEnvelope(std::string_view json) {
  TUG_ASSIGN_OR_RETURN(Envelope env, Envelope::Parse(json));
  if (env.payload_type != kRootPayloadType)
    return MakeError(Errc::kInvalidArgument, "trust root has payloadType '" + env.payload_type + "', expected '" +
                                                 std::string(kRootPayloadType) + "'");
  return env;
}

Status CheckNotExpired(const TrustRoot& root, core::TimePoint now) {
  if (now >= root.expires)
    return MakeError(Errc::kExpired, "trust root version " + std::to_string(root.version) + " expired at " +
                                         core::FormatRfc3339(root.expires));
  return {};
}

// Checks signatures against the root's own keys: a root that its own keys do not vouch for is not a root.
Result<TrustRoot> LoadSelfSigned(const Envelope& env) {
  TUG_ASSIGN_OR_RETURN(TrustRoot root, ParseRootPayload(env.payload));
  if (auto st = VerifyThreshold(env, root.keys, root.threshold); !st)
    return MakeError(Errc::kSignature, "trust root version " + std::to_string(root.version) + " " + st.error().context);
  return root;
}

}  // namespace

Status VerifyThreshold(const Envelope& env, const std::map<std::string, std::string>& keys, int threshold) {
  if (threshold < 1) return MakeError(Errc::kInvalidArgument, "threshold must be at least 1");
  const std::string pae = Pae(env.payload_type, env.payload);
  std::set<std::string> valid;
  int unknown = 0, bad = 0;
  for (const auto& s : env.signatures) {
    bool matched = false;
    if (!s.keyid.empty()) {
      auto it = keys.find(s.keyid);
      if (it == keys.end()) {
        ++unknown;
        continue;
      }
      matched = Verify(it->second, pae, s.sig);
      if (matched) valid.insert(it->first);
    } else {
      for (const auto& [id, pub] : keys) {
        if (!valid.count(id) && Verify(pub, pae, s.sig)) {
          valid.insert(id);
          matched = true;
          break;
        }
      }
    }
    if (!matched) ++bad;
  }
  if (static_cast<int>(valid.size()) >= threshold) return {};
  std::string msg = "signed by " + std::to_string(valid.size()) + " trusted key(s), " + std::to_string(threshold) +
                    " required";
  msg += " (" + std::to_string(env.signatures.size()) + " signature(s)";
  if (unknown > 0) msg += ", " + std::to_string(unknown) + " by untrusted key(s)";
  if (bad > 0) msg += ", " + std::to_string(bad) + " invalid";
  msg += ")";
  return MakeError(Errc::kSignature, msg);
}

Result<std::string> MakeTrustRoot(const std::vector<std::string>& public_keys, int threshold, uint64_t version,
                                  core::TimePoint expires, const std::vector<KeyPair>& signers) {
  nlohmann::json keys = nlohmann::json::object();
  std::map<std::string, std::string> key_map;
  for (const auto& pub : public_keys) {
    if (pub.size() != 32) return MakeError(Errc::kInvalidArgument, "public key is not 32 bytes");
    const std::string id = KeyId(pub);
    if (key_map.count(id)) return MakeError(Errc::kInvalidArgument, "key " + id + " listed twice");
    key_map.emplace(id, pub);
    keys[id] = {{"type", "ed25519"}, {"public", Base64Encode(pub)}};
  }
  if (key_map.empty()) return MakeError(Errc::kInvalidArgument, "a trust root needs at least one key");
  if (threshold < 1 || static_cast<size_t>(threshold) > key_map.size())
    return MakeError(Errc::kInvalidArgument, "threshold " + std::to_string(threshold) + " must be between 1 and " +
                                                 std::to_string(key_map.size()) + " (the number of keys)");
  if (version < 1) return MakeError(Errc::kInvalidArgument, "root version must be at least 1");
  nlohmann::json payload = {{"version", version},
                            {"expires", core::FormatRfc3339(expires)},
                            {"threshold", threshold},
                            {"keys", keys}};
  Envelope env = SignEnvelope(kRootPayloadType, internal::Dump(payload), signers);
  // Refuse to emit a root that LoadTrustRoot would reject; signers outside the key set are fine (they are the
  // previous root's keys during a rotation) but do not count here.
  if (auto st = VerifyThreshold(env, key_map, threshold); !st)
    return MakeError(Errc::kSignature, "a root must be signed by " + std::to_string(threshold) +
                                           " of its own keys; it is " + st.error().context);
  return env.ToJson();
}

Result<TrustRoot> LoadTrustRoot(std::string_view envelope_json, core::TimePoint now) {
  TUG_ASSIGN_OR_RETURN(Envelope env, ParseRootEnvelope(envelope_json));
  TUG_ASSIGN_OR_RETURN(TrustRoot root, LoadSelfSigned(env));
  TUG_TRY(CheckNotExpired(root, now));
  return root;
}

Result<TrustRoot> VerifyRootUpdate(const TrustRoot& current, std::string_view candidate_json, core::TimePoint now) {
  TUG_ASSIGN_OR_RETURN(Envelope env, ParseRootEnvelope(candidate_json));
  // The current root's keys decide first: nothing in an unvouched candidate is worth parsing further.
  if (auto st = VerifyThreshold(env, current.keys, current.threshold); !st)
    return MakeError(Errc::kSignature, "new trust root is not vouched for by current root version " +
                                           std::to_string(current.version) + ": " + st.error().context);
  TUG_ASSIGN_OR_RETURN(TrustRoot root, LoadSelfSigned(env));
  if (root.version <= current.version)
    return MakeError(Errc::kRollbackRejected, "trust root version " + std::to_string(root.version) +
                                                  " is not above current version " + std::to_string(current.version));
  TUG_TRY(CheckNotExpired(root, now));
  return root;
}

}  // namespace tug::crypto
