#include "crypto/release.hpp"

#include "crypto/sha256.hpp"
#include "json_util.hpp"

namespace tug::crypto {
namespace {

Result<std::map<std::string, std::string>> GetStringMap(const nlohmann::json& j, const char* key,
                                                        const std::string& what) {
  std::map<std::string, std::string> out;
  auto it = j.find(key);
  if (it == j.end()) return out;
  if (!it->is_object()) return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\" is not an object");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string())
      return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\"." + k + " is not a string");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

Result<core::TimePoint> GetTime(const nlohmann::json& j, const char* key, const std::string& what) {
  TUG_ASSIGN_OR_RETURN(std::string s, internal::GetString(j, key, what));
  auto t = core::ParseRfc3339(s);
  if (!t) return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\": " + t.error().context);
  return *t;
}

Status CheckDigest(const std::string& d, const std::string& what) {
  auto parsed = Digest::Parse(d);
  if (!parsed) return tl::unexpected(Wrap(parsed.error(), what));
  return {};
}

}  // namespace

std::string SerializeReleasePayload(const Release& r) {
  nlohmann::json j = {{"repository", r.repository},
                      {"digest", r.digest},
                      {"platforms", nlohmann::json(r.platforms)},
                      {"version", r.version},
                      {"channel", r.channel},
                      {"name", r.name},
                      {"issued_at", core::FormatRfc3339(r.issued_at)},
                      {"expires_at", core::FormatRfc3339(r.expires_at)},
                      {"annotations", nlohmann::json(r.annotations)}};
  // An empty std::map converts to null, not {}; the payload format promises objects.
  if (r.platforms.empty()) j["platforms"] = nlohmann::json::object();
  if (r.annotations.empty()) j["annotations"] = nlohmann::json::object();
  return internal::Dump(j);
}

Result<Release> ParseReleasePayload(std::string_view payload) {
  const std::string what = "release payload";
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, internal::ParseObject(payload, what));
  Release r;
  TUG_ASSIGN_OR_RETURN(r.repository, internal::GetString(j, "repository", what));
  if (r.repository.empty()) return MakeError(Errc::kInvalidArgument, what + ": \"repository\" is empty");
  TUG_ASSIGN_OR_RETURN(r.digest, internal::GetString(j, "digest", what));
  TUG_TRY(CheckDigest(r.digest, what + ": \"digest\""));
  TUG_ASSIGN_OR_RETURN(r.platforms, GetStringMap(j, "platforms", what));
  for (const auto& [platform, digest] : r.platforms) TUG_TRY(CheckDigest(digest, what + ": platform " + platform));
  TUG_ASSIGN_OR_RETURN(r.version, internal::GetUint(j, "version", what));
  // channel, name and annotations are descriptive; tolerate their absence so older signers stay readable.
  if (j.contains("channel")) {
    TUG_ASSIGN_OR_RETURN(r.channel, internal::GetString(j, "channel", what));
  }
  if (j.contains("name")) {
    TUG_ASSIGN_OR_RETURN(r.name, internal::GetString(j, "name", what));
  }
  TUG_ASSIGN_OR_RETURN(r.issued_at, GetTime(j, "issued_at", what));
  TUG_ASSIGN_OR_RETURN(r.expires_at, GetTime(j, "expires_at", what));
  TUG_ASSIGN_OR_RETURN(r.annotations, GetStringMap(j, "annotations", what));
  return r;
}

std::string SignRelease(const Release& r, const std::vector<KeyPair>& keys) {
  return SignEnvelope(kReleasePayloadType, SerializeReleasePayload(r), keys).ToJson();
}

Result<VerifiedRelease> VerifyRelease(std::string_view envelope_json, const TrustRoot& root,
                                      const ReleasePolicy& policy) {
  auto env = Envelope::Parse(envelope_json);
  if (!env) return MakeError(Errc::kInvalidArgument, "release: " + env.error().context);
  if (env->payload_type != kReleasePayloadType)
    return MakeError(Errc::kInvalidArgument, "release envelope has payloadType '" + env->payload_type +
                                                 "', expected '" + std::string(kReleasePayloadType) + "'");
  // Signatures are checked over the payload bytes as received, before the payload is even parsed: what we parse
  // afterwards is then exactly what the signers saw.
  if (auto st = VerifyThreshold(*env, root.keys, root.threshold); !st) {
    Error e = st.error();
    e.context = "release " + e.context;
    return tl::unexpected(std::move(e));
  }
  TUG_ASSIGN_OR_RETURN(Release r, ParseReleasePayload(env->payload));
  if (policy.now >= r.expires_at)
    return MakeError(Errc::kExpired, "release expired at " + core::FormatRfc3339(r.expires_at) + " (now " +
                                         core::FormatRfc3339(policy.now) + ")");
  if (!policy.expected_repository.empty() && r.repository != policy.expected_repository)
    return MakeError(Errc::kPolicy,
                     "release is for repository " + r.repository + ", expected " + policy.expected_repository);
  if (r.version <= policy.ratchet)
    return MakeError(Errc::kRollbackRejected, "release version " + std::to_string(r.version) +
                                                  " is not above committed version " + std::to_string(policy.ratchet));
  return VerifiedRelease{std::move(r), std::string(envelope_json)};
}

}  // namespace tug::crypto
