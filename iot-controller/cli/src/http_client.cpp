#include <utility>  // before any Asio header: Debian's Boost 1.74 awaitable.hpp uses std::exchange without it

#include "http_client.hpp"

#include "http/client.hpp"

#include <boost/beast/http/status.hpp>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

namespace tug::cli {

namespace bhttp = boost::beast::http;

namespace {

class ApiErrorCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "tug-api"; }
  std::string message(int status) const override {
    const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    std::string s = "HTTP " + std::to_string(status);
    if (!reason.empty() && reason != "<unknown-status>") s += " " + std::string(reason);
    return s;
  }
};

// {"error":"...","field":"..."} when the body has it; otherwise nothing, and the status alone speaks.
std::string ApiErrorText(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_string()) return "";
  std::string text = j["error"].get<std::string>();
  if (j.contains("field") && j["field"].is_string() && !j["field"].get<std::string>().empty()) {
    const std::string field = j["field"].get<std::string>();
    // The API may already name the field in its text; say it once.
    if (text.find(field) == std::string::npos) text += " (field " + field + ")";
  }
  return text;
}

std::string Escape(const std::string& s, const char* keep) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (c != 0 && std::strchr(keep, c))) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

const std::error_category& ApiCategory() {
  static const ApiErrorCategory category;
  return category;
}

int ApiStatus(const Error& e) { return e.code.category() == ApiCategory() ? e.code.value() : 0; }

std::string EscapePathSegment(const std::string& s) { return Escape(s, ""); }
std::string EscapeQueryValue(const std::string& s) { return Escape(s, "=:/"); }

Result<ApiClient> ApiClient::Create(const std::string& controller, std::string token,
                                    std::chrono::milliseconds timeout, std::string ca_file) {
  const bool https = controller.rfind("https://", 0) == 0;
  if (!https && controller.rfind("http://", 0) != 0)
    return MakeError(Errc::kInvalidArgument, "--controller " + controller + " is not an http:// or https:// URL");
  auto url = tug::http::Url::Parse(controller);
  if (!url || url->host.empty())
    return MakeError(Errc::kInvalidArgument, "--controller " + controller + ": bad host or port");
  ApiClient c;
  c.base_ = *url;
  c.prefix_ = url->target == "/" ? "" : url->target.substr(0, url->target.find('?'));
  while (!c.prefix_.empty() && c.prefix_.back() == '/') c.prefix_.pop_back();
  c.token_ = std::move(token);
  c.timeout_ = timeout;
  c.ca_file_ = std::move(ca_file);
  if (!c.ca_file_.empty() && !https)
    return MakeError(Errc::kInvalidArgument, "--ca " + c.ca_file_ + " is for an https:// controller, not " + controller);
  return c;
}

Result<std::string> ApiClient::Send(const std::string& method, const std::string& path,
                                    const std::string& body) const {
  const std::string where = method + " " + prefix_ + "/api/v1" + path;
  tug::http::ClientOptions o;
  o.timeout = timeout_;
  // The controller's CA, pinned: with it only that CA's certificates are trusted on top of the system's.
  o.ca_file = ca_file_;
  o.max_collected_body = 64u << 20;  // the largest answer is a device list; 64 MiB is far beyond any real fleet
  tug::http::Client client(o);
  tug::http::ClientRequest req;
  req.method = method;
  req.url = base_;
  req.url.target = prefix_ + "/api/v1" + path;
  req.headers = {{"User-Agent", "tug"}, {"Accept", "application/json"}};
  if (!token_.empty()) req.headers.emplace_back("Authorization", "Bearer " + token_);
  if (method != "GET") req.headers.emplace_back("Content-Type", "application/json");
  req.body = body;
  auto res = client.Send(req);
  const std::string peer = " (controller " + base_.host + ":" + base_.port + ")";
  if (!res) {
    const Error& e = res.error();
    if (e.Is(Errc::kTimeout)) return MakeError(Errc::kTimeout, where + ": no answer within the timeout" + peer);
    if (e.Is(Errc::kUnavailable))
      return MakeError(Errc::kUnavailable, where + ": cannot connect: " + e.Message() + peer);
    return tl::unexpected(Wrap(e, where + peer));
  }
  if (res->status >= 200 && res->status < 300) return std::move(res->body);
  return tl::unexpected(Error{std::error_code(res->status, ApiCategory()), ApiErrorText(res->body)});
}

}  // namespace tug::cli
