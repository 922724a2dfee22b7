#include "crypto/dsse.hpp"

#include "crypto/encoding.hpp"
#include "json_util.hpp"

namespace tug::crypto {

std::string Pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 ";
  out += std::to_string(payload_type.size());
  out += ' ';
  out += payload_type;
  out += ' ';
  out += std::to_string(payload.size());
  out += ' ';
  out += payload;
  return out;
}

std::string Envelope::ToJson() const {
  nlohmann::json sigs = nlohmann::json::array();
  for (const auto& s : signatures) sigs.push_back({{"keyid", s.keyid}, {"sig", Base64Encode(s.sig)}});
  nlohmann::json j = {{"payloadType", payload_type}, {"payload", Base64Encode(payload)}, {"signatures", sigs}};
  return internal::Dump(j);
}

Result<Envelope> Envelope::Parse(std::string_view json) {
  const std::string what = "DSSE envelope";
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, internal::ParseObject(json, what));
  Envelope env;
  TUG_ASSIGN_OR_RETURN(env.payload_type, internal::GetString(j, "payloadType", what));
  TUG_ASSIGN_OR_RETURN(env.payload, internal::GetBase64(j, "payload", what));
  auto sigs = j.find("signatures");
  if (sigs == j.end() || !sigs->is_array())
    return MakeError(Errc::kInvalidArgument, what + " has no \"signatures\" array");
  for (size_t i = 0; i < sigs->size(); ++i) {
    const auto& s = (*sigs)[i];
    const std::string swhat = what + " signature " + std::to_string(i);
    if (!s.is_object()) return MakeError(Errc::kInvalidArgument, swhat + " is not an object");
    DsseSignature sig;
    // keyid is optional in DSSE; an absent one means "try every trusted key".
    if (s.contains("keyid")) {
      TUG_ASSIGN_OR_RETURN(sig.keyid, internal::GetString(s, "keyid", swhat));
    }
    TUG_ASSIGN_OR_RETURN(sig.sig, internal::GetBase64(s, "sig", swhat));
    env.signatures.push_back(std::move(sig));
  }
  return env;
}

Envelope SignEnvelope(std::string_view payload_type, std::string_view payload, const std::vector<KeyPair>& keys) {
  Envelope env{std::string(payload_type), std::string(payload), {}};
  const std::string pae = Pae(payload_type, payload);
  for (const auto& k : keys) env.signatures.push_back({KeyId(k.public_key), Sign(k, pae)});
  return env;
}

}  // namespace tug::crypto
