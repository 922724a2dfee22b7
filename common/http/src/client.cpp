// Beast stays in this one file: it is slow to compile and nothing else in the client needs it.
#include <utility>  // before any Asio header: Debian's Boost 1.74 awaitable.hpp uses std::exchange without it

#include "http/client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

namespace tug::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// ---- URLs ----

Result<Url> Url::Parse(std::string_view s) {
  Url u;
  std::string_view rest;
  if (s.substr(0, 7) == "http://") {
    rest = s.substr(7);
  } else if (s.substr(0, 8) == "https://") {
    u.https = true;
    rest = s.substr(8);
  } else {
    return MakeError(Errc::kProtocol, "not an http(s) URL: " + std::string(s));
  }
  size_t slash = rest.find_first_of("/?");
  std::string_view auth = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (auth.empty()) return MakeError(Errc::kProtocol, "URL without host: " + std::string(s));
  if (auth.front() == '[') {
    size_t close = auth.find(']');
    if (close == std::string_view::npos) return MakeError(Errc::kProtocol, "bad IPv6 host in URL: " + std::string(s));
    u.host = std::string(auth.substr(1, close - 1));
    if (close + 1 < auth.size() && auth[close + 1] == ':') u.port = std::string(auth.substr(close + 2));
  } else {
    size_t colon = auth.rfind(':');
    u.host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(auth.substr(colon + 1));
  }
  if (u.port.empty()) u.port = u.https ? "443" : "80";
  for (char c : u.port)
    if (!std::isdigit(static_cast<unsigned char>(c))) return MakeError(Errc::kProtocol, "bad port in URL: " + std::string(s));
  return u;
}

Result<Url> Url::Resolve(std::string_view loc) const {
  if (loc.substr(0, 7) == "http://" || loc.substr(0, 8) == "https://") return Parse(loc);
  if (loc.substr(0, 2) == "//") return Parse(std::string(https ? "https:" : "http:") + std::string(loc));
  Url u = *this;
  if (!loc.empty() && loc[0] == '/') {
    u.target = std::string(loc);
  } else {
    std::string path = target.substr(0, target.find('?'));
    u.target = path.substr(0, path.rfind('/') + 1) + std::string(loc);
  }
  return u;
}

std::string Url::Authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  bool default_port = (https && port == "443") || (!https && port == "80");
  return default_port ? h : h + ":" + port;
}

std::string Url::Origin() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(https ? "https://" : "http://") + h + ":" + port;
}

std::string Url::ToString() const { return std::string(https ? "https://" : "http://") + Authority() + target; }

std::string ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < k.size() && eq; ++i)
      eq = std::tolower(static_cast<unsigned char>(k[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    if (eq) return v;
  }
  return "";
}

// ---- transport ----

namespace {

struct Conn {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  beast::tcp_stream& Lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

struct ExchangeOut {
  Result<ClientResponse> result = MakeError(Errc::kInternal, "exchange did not run");
  bool header_received = false;
  bool reusable = false;
};

bool IsHttpCategory(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category();
}

// Maps a transport error to the module's codes: timeouts are kTimeout, malformed HTTP is kProtocol, and every
// other network failure is kUnavailable (transient, worth a retry with back-off).
tl::unexpected<Error> NetError(const beast::error_code& ec, const std::string& what) {
  if (ec == beast::error::timeout) return MakeError(Errc::kTimeout, what + ": timed out");
  if (IsHttpCategory(ec) && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message)
    return MakeError(Errc::kProtocol, what + ": " + ec.message());
  return MakeError(Errc::kUnavailable, what + ": " + ec.message());
}

}  // namespace

struct Client::Impl {
  explicit Impl(ClientOptions o) : opts(std::move(o)) {}

  ClientOptions opts;
  asio::io_context ioc;
  std::optional<ssl::context> ssl_ctx;
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Conn>> idle;  // one idle keep-alive connection per origin

  Status EnsureSslContext() {
    if (ssl_ctx) return {};
    ssl::context ctx(ssl::context::tls_client);
    beast::error_code ec;
    ctx.set_default_verify_paths(ec);
    if (!opts.ca_file.empty()) {
      ctx.load_verify_file(opts.ca_file, ec);
      if (ec) return MakeError(Errc::kInvalidArgument, "loading CA file " + opts.ca_file + ": " + ec.message());
    }
    ctx.set_verify_mode(ssl::verify_peer);
    if (!opts.cert_file.empty() || !opts.key_file.empty()) {
      if (opts.cert_file.empty() || opts.key_file.empty())
        return MakeError(Errc::kInvalidArgument, "a client certificate needs both cert_file and key_file");
      ctx.use_certificate_chain_file(opts.cert_file, ec);
      if (ec) return MakeError(Errc::kInvalidArgument, "loading client certificate " + opts.cert_file + ": " + ec.message());
      ctx.use_private_key_file(opts.key_file, ssl::context::pem, ec);
      if (ec) return MakeError(Errc::kInvalidArgument, "loading client key " + opts.key_file + ": " + ec.message());
    }
    ssl_ctx.emplace(std::move(ctx));
    return {};
  }

  // Runs one coroutine on the private io_context until it finishes; the coroutine reports through out-params so
  // nothing needs to be default-constructible, and an escaped exception becomes kInternal.
  Status RunToCompletion(asio::awaitable<void> aw) {
    std::optional<Status> done;
    asio::co_spawn(ioc, std::move(aw), [&](std::exception_ptr ep) {
      done = Status{};
      if (!ep) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        done = MakeError(Errc::kInternal, std::string("http transport: ") + e.what());
      } catch (...) {
        done = MakeError(Errc::kInternal, "http transport: unknown exception");
      }
    });
    ioc.restart();
    ioc.run();
    return done ? *done : MakeError(Errc::kInternal, "http transport: coroutine did not complete");
  }

  asio::awaitable<void> Connect(const Url& u, std::unique_ptr<Conn>* out, Status* st) {
    std::string what = "connecting to " + u.host + ":" + u.port;
    beast::error_code ec;
    std::vector<tcp::endpoint> eps;
    auto addr = asio::ip::make_address(u.host, ec);
    if (!ec) {
      eps.emplace_back(addr, static_cast<unsigned short>(std::stoi(u.port)));
    } else {
      // The resolver has no deadline of its own: a timer cancels it. Shared state because the timer's handler
      // may run after this frame is gone.
      auto resolver = std::make_shared<tcp::resolver>(ioc);
      auto timer = std::make_shared<asio::steady_timer>(ioc);
      auto expired = std::make_shared<bool>(false);
      timer->expires_after(opts.timeout);
      timer->async_wait([resolver, expired](const beast::error_code& tec) {
        if (!tec) {
          *expired = true;
          resolver->cancel();
        }
      });
      ec = {};
      auto results = co_await resolver->async_resolve(u.host, u.port, asio::redirect_error(asio::use_awaitable, ec));
      timer->cancel();
      if (*expired) {
        *st = MakeError(Errc::kTimeout, "resolving " + u.host + ": timed out");
        co_return;
      }
      if (ec) {
        *st = MakeError(Errc::kUnavailable, "resolving " + u.host + ": " + ec.message());
        co_return;
      }
      for (const auto& r : results) eps.push_back(r.endpoint());
    }
    auto conn = std::make_unique<Conn>();
    if (u.https) {
      if (auto s = EnsureSslContext(); !s) {
        *st = s;
        co_return;
      }
      conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, *ssl_ctx);
    } else {
      conn->plain = std::make_unique<beast::tcp_stream>(ioc);
    }
    conn->Lowest().expires_after(opts.timeout);
    ec = {};
    co_await conn->Lowest().async_connect(eps, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      *st = NetError(ec, what);
      co_return;
    }
    if (u.https) {
      SSL* h = conn->tls->native_handle();
      beast::error_code aec;
      asio::ip::make_address(u.host, aec);
      if (aec) {
        // A name: send SNI and check it against the certificate's names.
        SSL_set_tlsext_host_name(h, u.host.c_str());
        SSL_set1_host(h, u.host.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h), u.host.c_str());
      }
      conn->Lowest().expires_after(opts.timeout);
      co_await conn->tls->async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        long vr = SSL_get_verify_result(h);
        if (vr != X509_V_OK) {
          *st = MakeError(Errc::kProtocol, "TLS with " + u.host + ":" + u.port + ": certificate verification failed: " +
                                               X509_verify_cert_error_string(vr));
        } else {
          *st = NetError(ec, "TLS handshake with " + u.host + ":" + u.port);
        }
        co_return;
      }
    }
    *out = std::move(conn);
    *st = Status{};
  }

  template <class Stream>
  asio::awaitable<void> Exchange(Stream& s, Conn& c, const ClientRequest& req, const BodySink* sink,
                                 std::atomic<uint64_t>* received, ExchangeOut* out) {
    beast::error_code ec;
    bhttp::request<bhttp::span_body<const char>> r;
    r.method_string(req.method);
    r.target(req.url.target);
    r.version(11);
    r.set(bhttp::field::host, req.url.Authority());
    r.set(bhttp::field::user_agent, "tugboat/0.1");
    for (const auto& [k, v] : req.headers) r.set(k, v);
    r.body() = beast::span<const char>(req.body.data(), req.body.size());
    r.prepare_payload();
    r.keep_alive(true);

    // Written piece by piece so the deadline applies to each wait, not to a whole multi-megabyte body.
    bhttp::request_serializer<bhttp::span_body<const char>> sr{r};
    while (!sr.is_done()) {
      c.Lowest().expires_after(opts.timeout);
      co_await bhttp::async_write_some(s, sr, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        out->result = NetError(ec, "sending request");
        co_return;
      }
    }

    bhttp::response_parser<bhttp::buffer_body> p;
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (req.method == "HEAD") p.skip(true);
    // Beast sizes each socket read by the dynamic buffer's free capacity (512 bytes by default): give it room so a
    // 100 MB layer is read in 64 KiB gulps, not 200,000 tiny ones.
    c.buffer.reserve(64 << 10);
    c.Lowest().expires_after(opts.timeout);
    co_await bhttp::async_read_header(s, c.buffer, p, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      out->result = NetError(ec, "reading response header");
      co_return;
    }
    out->header_received = true;
    ClientResponse resp;
    resp.status = static_cast<int>(p.get().result_int());
    resp.reason = std::string(p.get().reason());
    for (const auto& f : p.get()) resp.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    bool to_sink = sink != nullptr && resp.status >= 200 && resp.status < 300;

    std::vector<char> buf(64 * 1024);
    while (!p.is_done()) {
      p.get().body().data = buf.data();
      p.get().body().size = buf.size();
      c.Lowest().expires_after(opts.timeout);
      co_await bhttp::async_read_some(s, c.buffer, p, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec && !to_sink && (resp.status < 200 || resp.status >= 300)) {
        // An error body is only informational, and some servers get its length wrong (Go's http.Error after a
        // Content-Length was set, e.g. on 416): keep the status, drop the connection.
        out->reusable = false;
        out->result = std::move(resp);
        co_return;
      }
      if (ec) {
        out->result = NetError(ec, "reading response body");
        co_return;
      }
      size_t n = buf.size() - p.get().body().size;
      if (n == 0) continue;
      if (received != nullptr) *received += n;
      if (to_sink) {
        Status st = (*sink)(resp, std::string_view(buf.data(), n));
        if (!st) {
          out->result = tl::unexpected(st.error());
          co_return;
        }
      } else {
        if (resp.body.size() + n > opts.max_collected_body) {
          out->result = MakeError(Errc::kProtocol, "response body larger than " +
                                                       std::to_string(opts.max_collected_body) + " bytes");
          co_return;
        }
        resp.body.append(buf.data(), n);
      }
    }
    out->reusable = p.get().keep_alive();
    out->result = std::move(resp);
  }
};

Client::Client(ClientOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}
Client::~Client() = default;

Result<ClientResponse> Client::Call(std::string_view method, std::string_view url, std::string_view body,
                                    Headers headers, const BodySink* sink) {
  auto u = Url::Parse(url);
  if (!u) return MakeError(Errc::kInvalidArgument, u.error().Message());
  ClientRequest req;
  req.method = std::string(method);
  req.url = std::move(*u);
  req.headers = std::move(headers);
  req.body = body;
  return Send(req, sink);
}

Result<ClientResponse> Client::Send(const ClientRequest& req, const BodySink* sink,
                                         std::atomic<uint64_t>* received) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const std::string what = req.method + " " + req.url.ToString();
  const std::string origin = req.url.Origin();
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Conn> conn;
    bool reused = false;
    if (auto it = impl_->idle.find(origin); it != impl_->idle.end()) {
      conn = std::move(it->second);
      impl_->idle.erase(it);
      reused = true;
    } else {
      Status st = MakeError(Errc::kInternal, "connect did not run");
      TUG_TRY(impl_->RunToCompletion(impl_->Connect(req.url, &conn, &st)));
      if (!st) return tl::unexpected(Wrap(st.error(), what));
    }
    ExchangeOut out;
    Status ran = conn->tls ? impl_->RunToCompletion(impl_->Exchange(*conn->tls, *conn, req, sink, received, &out))
                           : impl_->RunToCompletion(impl_->Exchange(*conn->plain, *conn, req, sink, received, &out));
    if (!ran) return tl::unexpected(Wrap(ran.error(), what));
    if (!out.result) {
      // A pooled connection the server closed while idle fails before any response byte: retry on a fresh one.
      if (reused && !out.header_received && attempt == 0) continue;
      return tl::unexpected(Wrap(out.result.error(), what));
    }
    if (out.reusable) impl_->idle[origin] = std::move(conn);
    return std::move(out.result);
  }
}

}  // namespace tug::http
