#include "json_util.hpp"

#include "crypto/encoding.hpp"

namespace tug::crypto::internal {

Result<nlohmann::json> ParseObject(std::string_view text, const std::string& what) {
  // allow_exceptions=false: a parse failure yields a discarded value instead of throwing.
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return MakeError(Errc::kInvalidArgument, what + " is not valid JSON");
  if (!j.is_object()) return MakeError(Errc::kInvalidArgument, what + " is not a JSON object");
  return j;
}

Result<std::string> GetString(const nlohmann::json& obj, const char* key, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end()) return MakeError(Errc::kInvalidArgument, what + " has no \"" + key + "\"");
  if (!it->is_string()) return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\" is not a string");
  return it->get<std::string>();
}

Result<uint64_t> GetUint(const nlohmann::json& obj, const char* key, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end()) return MakeError(Errc::kInvalidArgument, what + " has no \"" + key + "\"");
  if (!it->is_number_unsigned())
    return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\" is not a non-negative integer");
  return it->get<uint64_t>();
}

Result<std::string> GetBase64(const nlohmann::json& obj, const char* key, const std::string& what) {
  TUG_ASSIGN_OR_RETURN(std::string b64, GetString(obj, key, what));
  auto raw = Base64Decode(b64);
  if (!raw) return MakeError(Errc::kInvalidArgument, what + ": \"" + key + "\": " + raw.error().context);
  return *raw;
}

std::string Dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace tug::crypto::internal
