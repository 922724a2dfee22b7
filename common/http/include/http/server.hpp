// http::Server: a small HTTP/1.1 server (Beast) on the caller's io_context, for REST APIs, /metrics and long-lived
// streamed responses (the cluster scheduler's RecordIO event streams, Server-Sent Events).
//
// Threading: Start, port and Stop on the io_context thread (or before it runs); the handler runs there too and may
// block briefly. Each connection is a coroutine. Keep-alive is honoured. Stop closes the listener and every open
// stream.
//
// Hostile peers (ServerOptions, counted in Server::stats()):
//   - connections are capped in total (beyond it the server stops accepting until one ends: the kernel's backlog
//     holds the rest) and per peer address (beyond it: 429 and close);
//   - running out of file descriptors (EMFILE/ENFILE on accept) pauses accepting for `accept_backoff` instead of
//     retrying at once, so the loop cannot spin; it is logged at most once per backoff;
//   - the request head must arrive within `header_timeout` and is limited to `header_limit` bytes (431), the body
//     within `body_timeout` and `body_limit` bytes (413); an idle keep-alive connection is closed after
//     `idle_timeout`; every write has `write_timeout` (a stalled reader of a stream is dropped).
//
//   auto server = http::Server::Start(io, "127.0.0.1", 8080, handler, {.max_connections = 256});
//
// Streaming: a handler that wants to keep the response open returns a Response with `stream` set (MakeStream()).
// The server sends the status and headers with chunked transfer encoding, then each Stream::Write as one chunk, in
// order, until Stream::Close (last chunk, connection closed) or the peer goes away (OnClose callbacks run, once).
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // "/api/v1/apps?embed=tasks" (percent-encoded as sent)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer;  // "127.0.0.1:40312"
  // Over mutual TLS: the verified client certificate's subject CN (the principal) and OU (its kind); "" otherwise.
  std::string peer_cn{}, peer_ou{};

  // First header with this name (case-insensitive), or "".
  std::string Header(std::string_view name) const;
  // target without the query.
  std::string Path() const;
  // Decoded query parameters (last one wins).
  std::map<std::string, std::string> Query() const;
};

// A response body written piece by piece. Write/Close may be called from any thread; they are posted to the
// io_context. Writes after Close or after the peer left are dropped (closed() says so).
class Stream {
 public:
  virtual ~Stream() = default;
  virtual void Write(std::string chunk) = 0;
  virtual void Close() = 0;
  virtual bool closed() const = 0;
  // Runs once, on the io_context thread, when the stream ends for any reason (Close, peer gone, write timeout,
  // server stopped). Set before returning the response.
  virtual void OnClose(std::function<void()> fn) = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                 // ignored when streaming
  std::shared_ptr<Stream> stream;   // set: stream the body (see above)
};

struct ServerOptions {
  std::string server_name = "tugboat";  // the Server header
  size_t max_connections = 512;
  size_t max_connections_per_peer = 64;  // by IP address
  size_t header_limit = 16 * 1024;
  size_t body_limit = 4 * 1024 * 1024;
  std::chrono::milliseconds header_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds body_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds accept_backoff{std::chrono::milliseconds(200)};
  // TLS: serve https. With client_ca_file, client certificates from that CA are verified and their subject CN/OU
  // handed to the handler (Request::peer_cn/peer_ou); require_client_cert refuses a handshake without one.
  struct Tls {
    std::string cert_file, key_file;
    std::string client_ca_file;
    bool require_client_cert = false;
  };
  std::optional<Tls> tls;
  // Names the Host header (and a browser's Origin) may carry; other requests get 403 (CSRF, DNS rebinding). Empty:
  // loopback names when bound to a loopback address, otherwise unchecked. check_host = false turns it off.
  std::vector<std::string> allowed_hosts;
  bool check_host = true;
};

// What the server refused, for /metrics. Read on the io_context thread.
struct ServerStats {
  uint64_t accepted = 0;
  uint64_t open = 0;                 // connections now
  uint64_t paused_at_capacity = 0;   // times accepting stopped at max_connections
  uint64_t refused_per_peer = 0;     // 429s
  uint64_t accept_errors = 0;        // EMFILE/ENFILE/ENOBUFS/... (each followed by accept_backoff)
  uint64_t header_too_large = 0;     // 431s
  uint64_t body_too_large = 0;       // 413s
  uint64_t timeouts = 0;             // slow heads/bodies and idle keep-alives closed
  uint64_t bad_requests = 0;         // unparsable heads closed (400)
  uint64_t tls_failures = 0;         // handshakes that failed (no or untrusted client certificate, not TLS)
  uint64_t host_refused = 0;         // 403 for a Host/Origin that is not this server
};

class Server {
 public:
  using Handler = std::function<Response(const Request&)>;
  // Makes a Stream for a handler to return; bound to `io`.
  static std::shared_ptr<Stream> MakeStream(boost::asio::io_context& io);

  // Binds host:port (port 0 picks a free one) and starts accepting. kInvalidArgument for a bad address,
  // kUnavailable when the bind fails (in use). `server_name` goes in the Server header.
  static Result<std::unique_ptr<Server>> Start(boost::asio::io_context& io, const std::string& host, uint16_t port,
                                               Handler handler, ServerOptions options);
  static Result<std::unique_ptr<Server>> Start(boost::asio::io_context& io, const std::string& host, uint16_t port,
                                               Handler handler, std::string server_name = "tugboat");
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  const ServerStats& stats() const;
  void Stop();

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// %XX and '+' decoding of a URL path segment or query value.
std::string PercentDecode(std::string_view s);

// "{\"error\":msg}" (+ "field") JSON helpers used by every API built on the server.
Response JsonError(int status, const std::string& message, const std::string& field = "");

}  // namespace tug::http
