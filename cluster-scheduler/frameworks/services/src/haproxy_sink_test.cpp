// The production gateway sink against a real HAProxy: a service's frontend reaches the backends it was given (host
// names resolved), and an instance taken out gets no more requests.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <future>
#include <thread>

#include "haproxy_sink.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "testsupport/net.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::cluster::services;
using namespace std::chrono_literals;

namespace {

// Two tiny HTTP backends answering their own name.
struct Backends {
  boost::asio::io_context io;
  std::unique_ptr<http::Server> a, b;
  std::thread thread;
  Backends() {
    auto mk = [&](std::string name) {
      auto s = http::Server::Start(io, "127.0.0.1", 0, [name](const http::Request&) {
        http::Response r;
        r.content_type = "text/plain";
        r.body = name;
        return r;
      });
      REQUIRE(s);
      return std::move(*s);
    };
    a = mk("a");
    b = mk("b");
    thread = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  ~Backends() {
    std::promise<void> done;
    boost::asio::post(io, [&] {
      a->Stop();
      b->Stop();
      done.set_value();
    });
    done.get_future().wait_for(5s);
    io.stop();
    thread.join();
  }
};

}  // namespace

TEST_CASE("haproxy sink: a service's frontend reaches exactly the backends applied") {
  testsupport::TempDir dir("tug-haproxy-sink");
  Backends be;
  auto sink = StartHaproxySink(dir.Sub("haproxy"), "127.0.0.1");
  REQUIRE(sink);
  const uint16_t front = testsupport::FreeLoopbackPort();
  GatewayService svc;
  svc.name = "web";
  svc.frontend_port = front;
  svc.mode = "http";
  svc.backends = {{"localhost", be.a->port(), "web.1"}, {"127.0.0.1", be.b->port(), "web.2"}};
  REQUIRE((*sink)->Apply({svc}));

  http::ClientOptions o;
  o.timeout = 2s;
  http::Client client(o);
  auto hits = [&](int n) {
    std::map<std::string, int> seen;
    for (int i = 0; i < n; ++i) {
      auto r = client.Call("GET", "http://127.0.0.1:" + std::to_string(front) + "/", {}, {{"Connection", "close"}});
      if (r && r->status == 200) seen[r->body]++;
      else seen["error"]++;
    }
    return seen;
  };
  std::map<std::string, int> seen;
  REQUIRE(testsupport::WaitFor([&] {
    seen = hits(6);
    return seen["a"] > 0 && seen["b"] > 0;
  }, 10s));

  // Take "a" out: once Apply returns, no request reaches it.
  svc.backends = {{"127.0.0.1", be.b->port(), "web.2"}};
  REQUIRE((*sink)->Apply({svc}));
  seen = hits(10);
  CHECK(seen["a"] == 0);
  CHECK(seen["b"] == 10);

  // An unresolvable host is left out rather than failing the whole apply.
  svc.backends.push_back({"no-such-host.invalid", 1, "web.3"});
  CHECK((*sink)->Apply({svc}));
  CHECK(hits(4)["b"] == 4);
}
