#include "controller/http_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace tug::controller {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct HttpServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, Handler h) : io(io), acceptor(io), handler(std::move(h)) {}

  asio::awaitable<void> AcceptLoop() {
    auto self = shared_from_this();  // the loop outlives a Stop() only until the acceptor's cancel arrives
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        spdlog::warn("http accept: {}", ec.message());
        continue;
      }
      asio::co_spawn(io, Session(std::move(sock)), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::warn("http session: {}", ex.what());
        }
      });
    }
  }

  asio::awaitable<void> Session(tcp::socket sock) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(4 * 1024 * 1024);
      boost::system::error_code ec;
      stream.expires_after(30s);
      co_await http::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == http::error::body_limit) {
          http::response<http::string_body> res{http::status::payload_too_large, 11};
          res.set(http::field::content_type, "application/json");
          res.body() = R"({"error":"request body too large","field":"body"})";
          res.prepare_payload();
          stream.expires_after(30s);
          co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
        }
        break;  // eof, timeout or garbage: nothing to answer
      }
      auto& req = parser.get();
      HttpRequest r{.method = std::string(req.method_string()),
                    .target = std::string(req.target()),
                    .authorization = std::string(req[http::field::authorization]),
                    .body = req.body()};
      HttpResponse out = handler(r);
      http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
      res.set(http::field::server, "tugboat-controller");
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(out.body);
      res.prepare_payload();
      stream.expires_after(30s);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  Handler handler;
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(asio::io_context& io, const std::string& host, uint16_t port,
                                                      Handler handler) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return MakeError(Errc::kInvalidArgument, "listen address '" + host + "': " + ec.message());
  auto impl = std::make_shared<Impl>(io, std::move(handler));
  const tcp::endpoint ep(addr, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return MakeError(Errc::kUnavailable, "listening on " + host + ":" + std::to_string(port) + ": " + ec.message());
  asio::co_spawn(io, impl->AcceptLoop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("http accept loop ended: {}", ex.what());
    }
  });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void HttpServer::Stop() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace tug::controller
