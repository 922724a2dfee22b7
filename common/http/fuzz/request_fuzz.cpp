// libFuzzer target for the HTTP server's request parsing: the bytes are what a peer sends, fed to Beast's request
// parser with the server's own header and body limits (ServerOptions defaults), in two pieces split where the
// first byte says (as reads split them); a complete request is then copied out field by field as the server does.
// (Request's accessors live in server.cpp, which clang 14 cannot build with the sanitizers: not covered here.)
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <string_view>

#include "http/server.hpp"

namespace bhttp = boost::beast::http;
using namespace tug::http;

namespace {
bool Feed(bhttp::request_parser<bhttp::string_body>& p, std::string_view& buf) {
  while (!buf.empty() && !p.is_done()) {
    boost::beast::error_code ec;
    size_t used = p.put(boost::asio::buffer(buf.data(), buf.size()), ec);
    if (ec == bhttp::error::need_more) return true;
    if (ec) return false;
    buf.remove_prefix(used);
    if (used == 0) return true;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ServerOptions opts;
  std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = all.empty() ? 0 : data[0] % (all.size() + 1);
  std::string_view first = all.substr(0, cut), second = all.substr(cut);
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<uint32_t>(opts.header_limit));
  parser.body_limit(opts.body_limit);
  parser.eager(true);
  if (!Feed(parser, first)) return 0;
  std::string joined(first);  // an unconsumed tail of the first piece comes before the second
  joined.append(second);
  std::string_view rest = joined;
  if (!Feed(parser, rest) || !parser.is_done()) return 0;
  auto& req = parser.get();
  Request r{.method = std::string(req.method_string()), .target = std::string(req.target()), .headers = {},
            .body = std::move(req.body()), .peer = "127.0.0.1:1"};
  for (const auto& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return 0;
}
