// WWW-Authenticate parsing (RFC 7235) for the registry client's 401 handling. Private to the module.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tug::registry::internal {

struct Challenge {
  std::string scheme;                         // lower-cased: "basic", "bearer"
  std::map<std::string, std::string> params;  // keys lower-cased; values unquoted
};

// Every challenge in the header, in order; malformed trailing parts are dropped, never thrown.
std::vector<Challenge> ParseWwwAuthenticate(std::string_view header);

// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
std::string QueryEscape(std::string_view s);

// base64 of "user:password" for Basic auth.
std::string BasicCredentials(const std::string& user, const std::string& password);

}  // namespace tug::registry::internal
