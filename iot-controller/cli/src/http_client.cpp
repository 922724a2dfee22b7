#include <utility>  // before any Asio header: Debian's Boost 1.74 awaitable.hpp uses std::exchange without it

#include "http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

namespace tug::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

class ApiErrorCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "tug-api"; }
  std::string message(int status) const override {
    const auto reason = http::obsolete_reason(static_cast<http::status>(status));
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
                                    std::chrono::milliseconds timeout) {
  const std::string scheme = "http://";
  if (controller.rfind("https://", 0) == 0)
    return MakeError(Errc::kUnsupported, "--controller " + controller + ": https is not supported, use http://");
  if (controller.rfind(scheme, 0) != 0)
    return MakeError(Errc::kInvalidArgument, "--controller " + controller + " is not an http:// URL");
  const std::string rest = controller.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  ApiClient c;
  c.prefix_ = slash == std::string::npos ? "" : rest.substr(slash);
  while (!c.prefix_.empty() && c.prefix_.back() == '/') c.prefix_.pop_back();
  if (authority.empty()) return MakeError(Errc::kInvalidArgument, "--controller " + controller + " has no host");
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos)
      return MakeError(Errc::kInvalidArgument, "--controller " + controller + ": bad IPv6 host");
    c.host_ = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') c.port_ = authority.substr(close + 2);
  } else {
    const auto colon = authority.rfind(':');
    c.host_ = authority.substr(0, colon);
    if (colon != std::string::npos) c.port_ = authority.substr(colon + 1);
  }
  if (c.port_.empty()) c.port_ = "80";
  if (c.port_.find_first_not_of("0123456789") != std::string::npos || c.host_.empty())
    return MakeError(Errc::kInvalidArgument, "--controller " + controller + ": bad host or port");
  c.token_ = std::move(token);
  c.timeout_ = timeout;
  return c;
}

Result<std::string> ApiClient::Send(const std::string& method, const std::string& path,
                                    const std::string& body) const {
  const std::string where = method + " " + prefix_ + "/api/v1" + path;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  tcp::resolver resolver(ioc);
  asio::steady_timer resolve_deadline(ioc);
  Result<std::string> result = MakeError(Errc::kInternal, where + ": request did not run");

  // One deadline for the whole exchange: the stream's expiry covers connect, write and read; the resolver has
  // none of its own, so a timer cancels it.
  auto exchange = [&]() -> asio::awaitable<void> {
    beast::error_code ec;
    auto fail = [&](Errc code, const std::string& what) {
      result = MakeError(code, where + ": " + what + " (controller " + host_ + ":" + port_ + ")");
    };
    resolve_deadline.expires_after(timeout_);
    resolve_deadline.async_wait([&](const beast::error_code& tec) {
      if (!tec) resolver.cancel();
    });
    auto endpoints = co_await resolver.async_resolve(host_, port_, asio::redirect_error(asio::use_awaitable, ec));
    resolve_deadline.cancel();
    if (ec) co_return fail(ec == asio::error::operation_aborted ? Errc::kTimeout : Errc::kUnavailable,
                           "resolving host: " + ec.message());

    stream.expires_after(timeout_);
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return fail(Errc::kTimeout, "connect timed out");
    if (ec) co_return fail(Errc::kUnavailable, "cannot connect: " + ec.message());

    http::request<http::string_body> req{http::string_to_verb(method), prefix_ + "/api/v1" + path, 11};
    req.set(http::field::host, host_ + ":" + port_);
    req.set(http::field::user_agent, "tug");
    req.set(http::field::accept, "application/json");
    if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
    if (method != "GET") {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    req.keep_alive(false);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return fail(Errc::kTimeout, "sending the request timed out");
    if (ec) co_return fail(Errc::kUnavailable, "sending the request: " + ec.message());

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);  // the largest answer is a device list; 64 MiB is far beyond any real fleet
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return fail(Errc::kTimeout, "no answer within the timeout");
    if (ec) co_return fail(Errc::kProtocol, "reading the answer: " + ec.message());

    auto& res = parser.get();
    const int status = static_cast<int>(res.result_int());
    if (status >= 200 && status < 300) {
      result = std::move(res.body());
    } else {
      result = tl::unexpected(Error{std::error_code(status, ApiCategory()), ApiErrorText(res.body())});
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  };
  asio::co_spawn(ioc, exchange(), asio::detached);
  ioc.run();
  return result;
}

}  // namespace tug::cli
