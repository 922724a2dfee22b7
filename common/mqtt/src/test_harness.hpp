// Test-only helpers for the MQTT client tests: a real broker, an io_context and a bounded run loop.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/client.hpp"
#include "testsupport/mosquitto_server.hpp"
#include "testsupport/net.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::mqtt::test {

using namespace std::chrono_literals;

struct Harness {
  boost::asio::io_context io;
  std::unique_ptr<testsupport::MosquittoServer> broker;

  explicit Harness(testsupport::MosquittoServerOptions o = {}) {
    auto b = testsupport::MosquittoServer::Start(o);
    if (!b) FAIL(b.error().Message());
    broker = std::move(*b);
  }

  // TLS options for a client whose certificate CN is `cert_id`; client id defaults to the same.
  ClientOptions Opts(const std::string& cert_id, const std::string& client_id = "") {
    auto c = broker->Cert(cert_id);
    if (!c) FAIL(c.error().Message());
    ClientOptions o;
    o.host = "127.0.0.1";
    o.port = broker->tls_port();
    o.client_id = client_id.empty() ? cert_id : client_id;
    o.tls = TlsOptions{broker->ca_file(), c->cert, c->key};
    o.keepalive = 10s;
    o.reconnect_min = 100ms;
    o.reconnect_max = 1s;
    return o;
  }

  // Runs the io_context on this thread until `cond` holds or `timeout` passes.
  bool RunUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.restart();
      io.run_for(10ms);
    }
    return true;
  }
  // Runs for a fixed time (to show that something does NOT happen).
  void RunFor(std::chrono::milliseconds d) {
    RunUntil([] { return false; }, d);
  }
};

// A client plus everything it saw.
struct Probe {
  std::unique_ptr<Client> client;
  std::vector<Message> messages;
  std::vector<std::vector<int>> subacks;
  std::vector<std::pair<int, int>> pubacks;
  int connects = 0;
  int disconnects = 0;
  bool last_session_present = false;

  Probe(Harness& h, ClientOptions o) : client(std::make_unique<Client>(h.io, std::move(o))) {
    client->on_message([this](const Message& m) { messages.push_back(m); });
    client->on_subscribe([this](int, const std::vector<int>& g) { subacks.push_back(g); });
    client->on_publish([this](int mid, int rc) { pubacks.emplace_back(mid, rc); });
    client->on_connect([this](bool sp) {
      ++connects;
      last_session_present = sp;
    });
    client->on_disconnect([this](const Error&) { ++disconnects; });
  }
  // Starts, connects, subscribes to `filters` and waits for their SUBACKs.
  void Up(Harness& h, const std::vector<std::string>& filters = {}) {
    REQUIRE(client->Start());
    REQUIRE(h.RunUntil([&] { return client->connected(); }));
    const size_t before = subacks.size();
    for (const auto& f : filters) REQUIRE(client->Subscribe(f, 1));
    REQUIRE(h.RunUntil([&] { return subacks.size() == before + filters.size(); }));
  }
  size_t Count(const std::string& topic) const {
    size_t n = 0;
    for (const auto& m : messages) n += m.topic == topic;
    return n;
  }
};

}  // namespace tug::mqtt::test
