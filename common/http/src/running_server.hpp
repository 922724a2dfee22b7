// Test support for common/http: an http::Server with its own io_context thread, stopped (on that thread) and joined
// by the destructor; stats read on the io thread.
//
//   RunningServer s([](const http::Request&) { return http::Response{}; }, http::ServerOptions{});
//   http::Client c;  c.Call("GET", s.Base() + "/x");
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "http/server.hpp"

namespace tug::http::testing {

class RunningServer {
 public:
  RunningServer(Server::Handler handler, ServerOptions options) {
    auto s = Server::Start(io_, "127.0.0.1", 0, std::move(handler), std::move(options));
    REQUIRE(s);
    server_ = std::move(*s);
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }
  ~RunningServer() {
    boost::asio::post(io_, [this] { server_->Stop(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  uint16_t port() const { return server_->port(); }
  // "http://127.0.0.1:<port>" (or https).
  std::string Base(const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port());
  }
  ServerStats Stats() {
    std::promise<ServerStats> p;
    boost::asio::post(io_, [&] { p.set_value(server_->stats()); });
    return p.get_future().get();
  }

 private:
  boost::asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

}  // namespace tug::http::testing
