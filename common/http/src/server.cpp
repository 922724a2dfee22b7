#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <algorithm>
#include <optional>
#include <cctype>
#include <deque>
#include <list>
#include <map>
#include <nlohmann/json.hpp>

namespace tug::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;
using namespace std::chrono_literals;

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}


void LogException(const char* what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::warn("{}: {}", what, ex.what());
  }
}

}  // namespace

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (IEquals(k, name)) return v;
  return "";
}

std::string Request::Path() const { return target.substr(0, target.find('?')); }

std::map<std::string, std::string> Request::Query() const {
  std::map<std::string, std::string> out;
  size_t q = target.find('?');
  if (q == std::string::npos) return out;
  std::string_view rest = std::string_view(target).substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    size_t eq = kv.find('=');
    if (!kv.empty())
      out[PercentDecode(kv.substr(0, eq))] = eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

Response JsonError(int status, const std::string& message, const std::string& field) {
  nlohmann::json j{{"error", message}};
  if (!field.empty()) j["field"] = field;
  Response r;
  r.status = status;
  r.body = j.dump();
  return r;
}

// ---- streams ----

namespace {

class StreamImpl : public Stream, public std::enable_shared_from_this<StreamImpl> {
 public:
  explicit StreamImpl(asio::io_context& io) : io_(io), wake_(io) { wake_.expires_at(asio::steady_timer::time_point::max()); }

  void Write(std::string chunk) override {
    if (closed_) return;
    asio::post(io_, [self = shared_from_this(), c = std::move(chunk)]() mutable {
      if (self->closed_) return;
      self->queue_.push_back(std::move(c));
      self->wake_.cancel();
    });
  }
  void Close() override {
    asio::post(io_, [self = shared_from_this()] {
      self->close_requested_ = true;
      self->wake_.cancel();
    });
  }
  bool closed() const override { return closed_; }
  void OnClose(std::function<void()> fn) override { on_close_.push_back(std::move(fn)); }

  // Session side (io thread).
  void Finish() {
    if (closed_.exchange(true)) return;
    queue_.clear();
    auto fns = std::move(on_close_);
    for (auto& fn : fns)
      if (fn) fn();
  }
  void Abort() {  // peer gone or server stopping
    aborted_ = true;
    wake_.cancel();
  }

  asio::io_context& io_;
  asio::steady_timer wake_;
  std::deque<std::string> queue_;
  bool close_requested_ = false;
  bool aborted_ = false;
  std::atomic<bool> closed_{false};
  std::vector<std::function<void()>> on_close_;
};

}  // namespace

std::shared_ptr<Stream> Server::MakeStream(asio::io_context& io) { return std::make_shared<StreamImpl>(io); }

// ---- server ----

namespace {

struct PeerIdentity {
  std::string cn, ou;
};

// "name" of "name:port", "[v6]:port", "v6" (unbracketed, as a bare IPv6 literal has no port), lower-cased.
std::string HostPart(std::string_view authority) {
  std::string a(authority);
  for (char& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!a.empty() && a[0] == '[') {
    auto close = a.find(']');
    return close == std::string::npos ? a : a.substr(1, close - 1);
  }
  if (std::count(a.begin(), a.end(), ':') > 1) return a;
  return a.substr(0, a.find(':'));
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, Handler h, ServerOptions o)
      : io(io), acceptor(io), handler(std::move(h)), opts(std::move(o)), slot_free(io), backoff(io) {
    slot_free.expires_at(asio::steady_timer::time_point::max());
  }

  asio::awaitable<void> AcceptLoop() {
    auto self = shared_from_this();
    for (;;) {
      if (stats.open >= opts.max_connections) {
        // At capacity: stop accepting (the kernel's backlog holds newcomers) until a connection ends.
        ++stats.paused_at_capacity;
        boost::system::error_code wait_ec;
        co_await slot_free.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
        slot_free.expires_at(asio::steady_timer::time_point::max());
        if (!acceptor.is_open()) co_return;
        continue;
      }
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        // EMFILE/ENFILE (out of descriptors), ENOBUFS, ...: retrying at once fails again at once and spins the
        // loop (and the log). Back off; whatever freed a descriptor by then lets the next accept through.
        ++stats.accept_errors;
        spdlog::warn("http accept: {} (pausing accepts for {} ms; {} open connections)", ec.message(),
                     opts.accept_backoff.count(), stats.open);
        backoff.expires_after(opts.accept_backoff);
        boost::system::error_code wait_ec;
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
        if (!acceptor.is_open()) co_return;
        continue;
      }
      boost::system::error_code peer_ec;
      auto ep = sock.remote_endpoint(peer_ec);
      const std::string ip = peer_ec ? "" : ep.address().to_string();
      std::string peer = peer_ec ? "" : ip + ":" + std::to_string(ep.port());
      if (per_peer[ip] >= opts.max_connections_per_peer) {
        ++stats.refused_per_peer;
        RefuseAtOnce(sock, "429 Too Many Requests", "too many connections from " + ip);
        if (per_peer[ip] == 0) per_peer.erase(ip);
        continue;
      }
      ++stats.accepted;
      ++stats.open;
      ++per_peer[ip];
      asio::co_spawn(io, Session(std::move(sock), std::move(peer)), [self, ip](std::exception_ptr e) {
        LogException("http session", e);
        --self->stats.open;
        if (auto it = self->per_peer.find(ip); it != self->per_peer.end() && --it->second == 0) self->per_peer.erase(it);
        self->slot_free.cancel();
      });
    }
  }

  // One non-blocking send of a canned answer, then close: a refused peer holds no descriptor and no coroutine.
  static void RefuseAtOnce(tcp::socket& sock, const std::string& status, const std::string& message) {
    const std::string body = nlohmann::json{{"error", message}}.dump();
    const std::string text = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    boost::system::error_code ec;
    sock.non_blocking(true, ec);
    if (!ec) sock.send(asio::buffer(text), 0, ec);
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  // Writes a small error answer (bounded by write_timeout) and ends the session.
  template <class S>
  asio::awaitable<void> Reject(S& stream, bhttp::status status, const std::string& message, const std::string& field) {
    bhttp::response<bhttp::string_body> res{status, 11};
    res.set(bhttp::field::server, opts.server_name);
    res.set(bhttp::field::content_type, "application/json");
    nlohmann::json j{{"error", message}};
    if (!field.empty()) j["field"] = field;
    res.body() = j.dump();
    res.keep_alive(false);
    res.prepare_payload();
    boost::system::error_code ec;
    beast::get_lowest_layer(stream).expires_after(opts.write_timeout);
    co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<void> Session(tcp::socket sock, std::string peer) {
    auto self = shared_from_this();
    if (!ssl_ctx) {
      beast::tcp_stream stream(std::move(sock));
      const PeerIdentity anonymous;
      co_await Serve(stream, peer, anonymous);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(sock), *ssl_ctx);
    boost::system::error_code ec;
    beast::get_lowest_layer(stream).expires_after(opts.header_timeout);
    co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      // No certificate, one from another CA, plain HTTP on the TLS port, a scanner: nothing to answer.
      ++stats.tls_failures;
      spdlog::debug("http tls handshake with {}: {}", peer, ec.message());
      beast::get_lowest_layer(stream).socket().close(ec);
      co_return;
    }
    const PeerIdentity identity = IdentityOf(stream.native_handle());
    co_await Serve(stream, peer, identity);
  }

  // The verified client certificate's subject CN and OU ("" without one).
  static PeerIdentity IdentityOf(SSL* ssl) {
    PeerIdentity id;
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) return id;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
      X509_NAME* name = X509_get_subject_name(cert);
      auto field = [&](int nid) {
        char buf[256];
        int n = X509_NAME_get_text_by_NID(name, nid, buf, sizeof buf);
        return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
      };
      id.cn = field(NID_commonName);
      id.ou = field(NID_organizationalUnitName);
    }
    X509_free(cert);
    return id;
  }

  // Host (and Origin, when a browser sent one) must name this server: a page on another site cannot post to it
  // (CSRF), and a name rebound to 127.0.0.1 (DNS rebinding) does not reach it.
  std::string HostRefusal(const Request& r) const {
    if (allowed_hosts.empty()) return "";
    // No Host at all (HTTP/1.0 health checkers, e.g. HAProxy's httpchk) is no browser: nothing to rebind.
    const std::string host = HostPart(r.Header("host"));
    if (!host.empty() && std::find(allowed_hosts.begin(), allowed_hosts.end(), host) == allowed_hosts.end())
      return "Host '" + r.Header("host") + "' is not a name this server answers to";
    const std::string origin = r.Header("origin");
    if (!origin.empty()) {
      auto scheme = origin.find("://");
      const std::string o = HostPart(scheme == std::string::npos ? origin : origin.substr(scheme + 3));
      if (std::find(allowed_hosts.begin(), allowed_hosts.end(), o) == allowed_hosts.end())
        return "Origin '" + origin + "' may not call this server";
    }
    return "";
  }

  // By reference: GCC 12 destroys a temporary passed by value to a coroutine twice. The caller co_awaits at once,
  // so its locals outlive this frame.
  template <class S>
  asio::awaitable<void> Serve(S& stream, const std::string& peer, const PeerIdentity& identity) {
    auto& tcp_stream = beast::get_lowest_layer(stream);
    beast::flat_buffer buf;
    for (bool first = true;; first = false) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(opts.header_limit));
      parser.body_limit(opts.body_limit);
      boost::system::error_code ec;
      // The whole head within header_timeout (a slow-loris peer sending a byte now and then is cut off); between
      // keep-alive requests the same clock also bounds the idle time.
      tcp_stream.expires_after(first ? opts.header_timeout : opts.idle_timeout);
      co_await bhttp::async_read_header(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && !parser.is_done()) {
        tcp_stream.expires_after(opts.body_timeout);
        co_await bhttp::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (ec == bhttp::error::header_limit) {
          ++stats.header_too_large;
          co_await Reject(stream, bhttp::status::request_header_fields_too_large, "request head too large", "headers");
        } else if (ec == bhttp::error::body_limit) {
          ++stats.body_too_large;
          co_await Reject(stream, bhttp::status::payload_too_large, "request body too large", "body");
        } else if (ec == beast::error::timeout) {
          ++stats.timeouts;
        } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
                   ec != bhttp::error::end_of_stream &&
                   ec != bhttp::error::partial_message) {
          ++stats.bad_requests;
          co_await Reject(stream, bhttp::status::bad_request, "malformed request: " + ec.message(), "");
        }
        break;  // eof, timeout or garbage: the connection ends
      }
      auto& req = parser.get();
      Request r{.method = std::string(req.method_string()),
                .target = std::string(req.target()),
                .headers = {},
                .body = std::move(req.body()),
                .peer = peer,
                .peer_cn = identity.cn,
                .peer_ou = identity.ou};
      for (const auto& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      Response out;
      if (std::string refusal = HostRefusal(r); !refusal.empty()) {
        ++stats.host_refused;
        out = JsonError(403, refusal, "host");
      } else {
        try {
          out = handler(r);
        } catch (const std::exception& e) {
          spdlog::error("http handler for {} {} threw: {}", r.method, r.target, e.what());
          out = JsonError(500, std::string("internal error: ") + e.what());
        }
      }
      if (out.stream) {
        co_await Streamed(stream, req.version(), std::move(out));
        break;  // a streamed response ends the connection
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.status), req.version()};
      res.set(bhttp::field::server, opts.server_name);
      res.set(bhttp::field::content_type, out.content_type);
      for (const auto& [k, v] : out.headers) res.set(k, v);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(out.body);
      res.prepare_payload();
      tcp_stream.expires_after(opts.write_timeout);
      co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp_stream.socket().close(ignored);
  }

  template <class S>
  asio::awaitable<void> Streamed(S& stream, unsigned version, Response out) {
    auto& tcp_stream = beast::get_lowest_layer(stream);
    auto st = std::static_pointer_cast<StreamImpl>(out.stream);
    auto it = streams.insert(streams.end(), st);
    boost::system::error_code ec;
    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(out.status), version};
    res.set(bhttp::field::server, opts.server_name);
    res.set(bhttp::field::content_type, out.content_type);
    res.set(bhttp::field::cache_control, "no-cache");
    for (const auto& [k, v] : out.headers) res.set(k, v);
    res.chunked(true);
    res.keep_alive(false);
    bhttp::response_serializer<bhttp::empty_body> sr{res};
    tcp_stream.expires_after(opts.write_timeout);
    co_await bhttp::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      // A peer that closes its end (or sends anything: clients do not on a stream) ends the stream at once,
      // rather than at the next write.
      auto watch_buf = std::make_shared<std::array<char, 256>>();
      tcp_stream.socket().async_read_some(asio::buffer(*watch_buf), [st, watch_buf](boost::system::error_code, size_t) {
        st->Abort();
      });
      for (;;) {
        while (st->queue_.empty() && !st->close_requested_ && !st->aborted_) {
          boost::system::error_code wait_ec;
          co_await st->wake_.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
          st->wake_.expires_at(asio::steady_timer::time_point::max());
        }
        if (st->aborted_) break;
        while (!st->queue_.empty() && !ec) {
          std::string chunk = std::move(st->queue_.front());
          st->queue_.pop_front();
          if (chunk.empty()) continue;  // an empty chunk would end the body
          tcp_stream.expires_after(opts.write_timeout);
          co_await asio::async_write(stream, bhttp::make_chunk(asio::buffer(chunk)),
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        if (ec) break;
        if (st->close_requested_) {
          tcp_stream.expires_after(opts.write_timeout);
          co_await asio::async_write(stream, bhttp::make_chunk_last(), asio::redirect_error(asio::use_awaitable, ec));
          break;
        }
      }
    }
    streams.erase(it);
    st->Finish();
  }

  void StopAll() {
    boost::system::error_code ec;
    acceptor.close(ec);
    slot_free.cancel();
    backoff.cancel();
    for (auto& s : streams) s->Abort();
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  Handler handler;
  const ServerOptions opts;
  ServerStats stats;
  std::map<std::string, size_t> per_peer;  // open connections by peer IP
  asio::steady_timer slot_free;            // cancelled whenever a connection ends
  asio::steady_timer backoff;              // after an accept error
  std::list<std::shared_ptr<StreamImpl>> streams;
  std::optional<ssl::context> ssl_ctx;     // set: TLS (ServerOptions::tls)
  std::vector<std::string> allowed_hosts;  // host names Host/Origin may carry; empty: not checked
};

Result<std::unique_ptr<Server>> Server::Start(asio::io_context& io, const std::string& host, uint16_t port,
                                              Handler handler, std::string server_name) {
  ServerOptions o;
  o.server_name = std::move(server_name);
  return Start(io, host, port, std::move(handler), std::move(o));
}

Result<std::unique_ptr<Server>> Server::Start(asio::io_context& io, const std::string& host, uint16_t port,
                                              Handler handler, ServerOptions options) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return MakeError(Errc::kInvalidArgument, "listen address '" + host + "': " + ec.message());
  if (options.max_connections == 0 || options.max_connections_per_peer == 0)
    return MakeError(Errc::kInvalidArgument, "connection limits must be at least 1");
  std::optional<ssl::context> ssl_ctx;
  if (options.tls) {
    const auto& t = *options.tls;
    ssl_ctx.emplace(ssl::context::tls_server);
    ssl_ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ssl_ctx->use_certificate_chain_file(t.cert_file, ec);
    if (ec) return MakeError(Errc::kInvalidArgument, "tls certificate " + t.cert_file + ": " + ec.message());
    ssl_ctx->use_private_key_file(t.key_file, ssl::context::pem, ec);
    if (ec) return MakeError(Errc::kInvalidArgument, "tls key " + t.key_file + ": " + ec.message());
    if (!t.client_ca_file.empty()) {
      ssl_ctx->load_verify_file(t.client_ca_file, ec);
      if (ec) return MakeError(Errc::kInvalidArgument, "tls client CA " + t.client_ca_file + ": " + ec.message());
      ssl_ctx->set_verify_mode(t.require_client_cert ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert
                                                     : ssl::verify_peer);
    } else if (t.require_client_cert) {
      return MakeError(Errc::kInvalidArgument, "tls: require_client_cert needs client_ca_file");
    }
  }
  std::vector<std::string> hosts;
  for (const auto& h : options.allowed_hosts) hosts.push_back(HostPart(h));
  if (hosts.empty() && options.check_host && addr.is_loopback()) {
    // Bound to loopback: only loopback names reach it legitimately.
    hosts = {HostPart(addr.to_string()), "localhost", "127.0.0.1", "::1"};
  }
  if (!options.check_host) hosts.clear();
  auto impl = std::make_shared<Impl>(io, std::move(handler), std::move(options));
  impl->ssl_ctx = std::move(ssl_ctx);
  impl->allowed_hosts = std::move(hosts);
  const tcp::endpoint ep(addr, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return MakeError(Errc::kUnavailable, "listening on " + host + ":" + std::to_string(port) + ": " + ec.message());
  asio::co_spawn(io, impl->AcceptLoop(), [](std::exception_ptr e) { LogException("http accept loop ended", e); });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() { Stop(); }

uint16_t Server::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

const ServerStats& Server::stats() const { return impl_->stats; }

void Server::Stop() { impl_->StopAll(); }

}  // namespace tug::http
