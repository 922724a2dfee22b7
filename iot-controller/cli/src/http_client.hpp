// Blocking client for the controller's REST API over common/http's http::Client: http:// or https://, the latter
// verified against the system's CAs plus a pinned CA file (--ca / $TUG_CA: the controller's own CA). The commands
// see only strings.
#pragma once

#include <chrono>
#include <string>
#include <system_error>

#include "core/error.hpp"
#include "http/client.hpp"

namespace tug::cli {

// Errors the API answered with: the value is the HTTP status, the context the API's {"error"} text (and field).
// A separate category so "tug: <why>: HTTP 404 Not Found" reads as the controller said it, not as a local failure.
const std::error_category& ApiCategory();
// HTTP status of an API error, or 0 for transport and local errors.
int ApiStatus(const Error& e);

class ApiClient {
 public:
  // `controller` is "http://host[:port][/prefix]"; requests go to <prefix>/api/v1/<path>.
  static Result<ApiClient> Create(const std::string& controller, std::string token,
                                  std::chrono::milliseconds timeout, std::string ca_file = "");

  // `path` is relative to /api/v1 and already escaped (see EscapePathSegment, EscapeQueryValue), e.g.
  // "/devices?online=true". Returns the body of a 2xx answer; any other status becomes an ApiCategory error.
  Result<std::string> Get(const std::string& path) const { return Send("GET", path, ""); }
  Result<std::string> Post(const std::string& path, const std::string& body) const {
    return Send("POST", path, body);
  }
  Result<std::string> Put(const std::string& path, const std::string& body) const { return Send("PUT", path, body); }

  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  Result<std::string> Send(const std::string& method, const std::string& path, const std::string& body) const;

  tug::http::Url base_;
  std::string prefix_, token_, ca_file_;
  std::chrono::milliseconds timeout_{};
};

// Percent-encodes everything but RFC 3986 unreserved characters (IDs become one path segment).
std::string EscapePathSegment(const std::string& s);
// As above but keeps '=' and ':' readable: "label=site=berlin" is what the API documents and both are legal there.
std::string EscapeQueryValue(const std::string& s);

}  // namespace tug::cli
