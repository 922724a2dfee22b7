// Private helpers for reading the small JSON documents of this module (key files, envelopes, payloads) without
// letting nlohmann exceptions escape: every lookup returns a Result with a message naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace tug::crypto::internal {

// Parses a JSON object; kInvalidArgument naming `what` if it is not valid JSON or not an object.
Result<nlohmann::json> ParseObject(std::string_view text, const std::string& what);
// Required string member.
Result<std::string> GetString(const nlohmann::json& obj, const char* key, const std::string& what);
// Required non-negative integer member.
Result<uint64_t> GetUint(const nlohmann::json& obj, const char* key, const std::string& what);
// Required base64 string member, decoded.
Result<std::string> GetBase64(const nlohmann::json& obj, const char* key, const std::string& what);
// Compact dump with sorted keys; invalid UTF-8 is replaced rather than thrown.
std::string Dump(const nlohmann::json& j);

}  // namespace tug::crypto::internal
