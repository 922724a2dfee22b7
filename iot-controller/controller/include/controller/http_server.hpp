// HttpServer: a small HTTP/1.1 server (Beast) on the caller's io_context, for the REST API and /metrics.
//
// Threading: Start, port and Stop on the io_context thread (or before it runs); the handler runs there too and may
// block briefly (SQLite). Each connection is a coroutine (co_spawn with a completion handler that logs, never a
// silent detached); every read and write has a 30 s timeout, request bodies are limited to 4 MiB, keep-alive is
// honoured. Stop closes the listener; connections in flight end when their peer or timeout does, or when the
// io_context stops.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "controller/api.hpp"
#include "core/error.hpp"

namespace tug::controller {

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Binds host:port (port 0 picks a free one) and starts accepting. kInvalidArgument for a bad address,
  // kUnavailable when the bind fails (in use).
  static Result<std::unique_ptr<HttpServer>> Start(boost::asio::io_context& io, const std::string& host,
                                                   uint16_t port, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace tug::controller
