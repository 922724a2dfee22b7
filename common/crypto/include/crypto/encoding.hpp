// Hex and base64 (standard alphabet, padded) encodings used by digests, key ids and DSSE.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::crypto {

std::string HexEncode(std::string_view bytes);
Result<std::string> HexDecode(std::string_view hex);  // kInvalidArgument on odd length or non-hex
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view b64);  // kInvalidArgument on bad input

}  // namespace tug::crypto
