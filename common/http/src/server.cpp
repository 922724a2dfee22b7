#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <deque>
#include <list>
#include <nlohmann/json.hpp>

namespace tug::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto kIoTimeout = 30s;

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

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, Handler h, std::string name)
      : io(io), acceptor(io), handler(std::move(h)), server_name(std::move(name)) {}

  asio::awaitable<void> AcceptLoop() {
    auto self = shared_from_this();
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        spdlog::warn("http accept: {}", ec.message());
        continue;
      }
      asio::co_spawn(io, Session(std::move(sock)), [](std::exception_ptr e) { LogException("http session", e); });
    }
  }

  asio::awaitable<void> Session(tcp::socket sock) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    std::string peer;
    {
      boost::system::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(4 * 1024 * 1024);
      boost::system::error_code ec;
      stream.expires_after(kIoTimeout);
      co_await bhttp::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == bhttp::error::body_limit) {
          bhttp::response<bhttp::string_body> res{bhttp::status::payload_too_large, 11};
          res.set(bhttp::field::content_type, "application/json");
          res.body() = R"({"error":"request body too large","field":"body"})";
          res.prepare_payload();
          stream.expires_after(kIoTimeout);
          co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
        }
        break;  // eof, timeout or garbage: nothing to answer
      }
      auto& req = parser.get();
      Request r{.method = std::string(req.method_string()),
                .target = std::string(req.target()),
                .headers = {},
                .body = std::move(req.body()),
                .peer = peer};
      for (const auto& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      Response out;
      try {
        out = handler(r);
      } catch (const std::exception& e) {
        spdlog::error("http handler for {} {} threw: {}", r.method, r.target, e.what());
        out = JsonError(500, std::string("internal error: ") + e.what());
      }
      if (out.stream) {
        co_await Streamed(stream, req.version(), std::move(out));
        break;  // a streamed response ends the connection
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.status), req.version()};
      res.set(bhttp::field::server, server_name);
      res.set(bhttp::field::content_type, out.content_type);
      for (const auto& [k, v] : out.headers) res.set(k, v);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(out.body);
      res.prepare_payload();
      stream.expires_after(kIoTimeout);
      co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }

  asio::awaitable<void> Streamed(beast::tcp_stream& stream, unsigned version, Response out) {
    auto st = std::static_pointer_cast<StreamImpl>(out.stream);
    auto it = streams.insert(streams.end(), st);
    boost::system::error_code ec;
    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(out.status), version};
    res.set(bhttp::field::server, server_name);
    res.set(bhttp::field::content_type, out.content_type);
    res.set(bhttp::field::cache_control, "no-cache");
    for (const auto& [k, v] : out.headers) res.set(k, v);
    res.chunked(true);
    res.keep_alive(false);
    bhttp::response_serializer<bhttp::empty_body> sr{res};
    stream.expires_after(kIoTimeout);
    co_await bhttp::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      // A peer that closes its end (or sends anything: clients do not on a stream) ends the stream at once,
      // rather than at the next write.
      auto watch_buf = std::make_shared<std::array<char, 256>>();
      stream.socket().async_read_some(asio::buffer(*watch_buf), [st, watch_buf](boost::system::error_code, size_t) {
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
          stream.expires_after(kIoTimeout);
          co_await asio::async_write(stream, bhttp::make_chunk(asio::buffer(chunk)),
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        if (ec) break;
        if (st->close_requested_) {
          stream.expires_after(kIoTimeout);
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
    for (auto& s : streams) s->Abort();
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  Handler handler;
  std::string server_name;
  std::list<std::shared_ptr<StreamImpl>> streams;
};

Result<std::unique_ptr<Server>> Server::Start(asio::io_context& io, const std::string& host, uint16_t port,
                                              Handler handler, std::string server_name) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return MakeError(Errc::kInvalidArgument, "listen address '" + host + "': " + ec.message());
  auto impl = std::make_shared<Impl>(io, std::move(handler), std::move(server_name));
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

void Server::Stop() { impl_->StopAll(); }

}  // namespace tug::http
