// Helpers shared by the controller's REST and MQTT tests: a trust root with signed releases, an in-process
// controller (store, engine, API, HTTP server) on its own io_context thread, and a small blocking HTTP client.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <functional>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "controller/api.hpp"
#include "controller/engine.hpp"
#include "http/server.hpp"
#include "controller/store.hpp"
#include "crypto/release.hpp"
#include "crypto/trust_root.hpp"

namespace tug::controller::testutil {

// Runs `io` in 50 ms slices until `cond` holds or `limit` passes; the final answer of cond. For tests that drive a
// real broker connection on the test thread.
inline bool RunIoUntil(boost::asio::io_context& io, const std::function<bool()>& cond,
                       std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    io.restart();
    io.run_for(std::chrono::milliseconds(50));
  }
  return cond();
}

using nlohmann::json;

struct Signer {
  crypto::KeyPair key = crypto::GenerateKeyPair();
  std::string root_json;
  crypto::TrustRoot root;

  Signer() {
    auto r = crypto::MakeTrustRoot({key.public_key}, 1, 1, core::SystemClock()->Now() + std::chrono::hours(24 * 365),
                                   {key});
    root_json = *r;
    root = *crypto::LoadTrustRoot(root_json, core::SystemClock()->Now());
  }
  std::string Sign(uint64_t version, const std::string& digest = "sha256:" + std::string(64, 'a')) const {
    crypto::Release rel;
    rel.repository = "127.0.0.1:5000/acme/sensor";
    rel.digest = digest;
    rel.platforms = {{"linux/arm64/v8", digest}};
    rel.version = version;
    rel.name = "sensor " + std::to_string(version);
    rel.issued_at = core::SystemClock()->Now();
    rel.expires_at = core::SystemClock()->Now() + std::chrono::hours(24 * 30);
    return crypto::SignRelease(rel, {key});
  }
};

struct HttpResult {
  int status = 0;
  json body;
  std::string text;
};

inline HttpResult Call(uint16_t port, const std::string& method, const std::string& target,
                       const std::string& token = "", const std::string& body = "") {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  beast::tcp_stream s(io);
  s.expires_after(std::chrono::seconds(10));
  s.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.body() = body;
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  HttpResult r;
  r.status = static_cast<int>(res.result_int());
  r.text = res.body();
  r.body = json::parse(r.text, nullptr, false);
  return r;
}

// A controller in-process: Store (in memory unless a path is given), Engine, Api and an http::Server on a free port,
// all on one io_context thread. `publisher` receives what the engine sends.
class TestController {
 public:
  TestController(Publisher& publisher, const crypto::TrustRoot& root, std::string token = "s3cret")
      : store_(std::move(*Store::Open(":memory:"))),
        engine_(*store_, publisher, *core::SystemClock()),
        api_(*store_, engine_, metrics_, root, std::move(token), *core::SystemClock()) {
    server_ = std::move(*http::Server::Start(io_, "127.0.0.1", 0, [this](const http::Request& r) { return api_.Serve(r); }));
    metrics_.http_server = &server_->stats();
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }
  ~TestController() {
    std::promise<void> done;
    boost::asio::post(io_, [this, &done] {
      server_->Stop();
      done.set_value();
    });
    done.get_future().wait();
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return server_->port(); }
  // Runs f on the io thread and waits: the engine and store are single-threaded.
  template <typename F>
  auto OnIo(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return fut.get();
  }
  Engine& engine() { return engine_; }
  Api& api() { return api_; }
  Store& store() { return *store_; }
  boost::asio::io_context& io() { return io_; }
  Metrics& metrics() { return metrics_; }

 private:
  boost::asio::io_context io_;
  std::unique_ptr<Store> store_;
  Metrics metrics_;
  Engine engine_;
  Api api_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

}  // namespace tug::controller::testutil
