// HaproxyGateway against the real HAProxy 2.6 (/usr/sbin/haproxy) and real HTTP backends on 127.0.0.1.
#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "core/env.hpp"
#include "gateway/haproxy.hpp"
#include "testsupport/fake_http_server.hpp"
#include "testsupport/net.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::cluster::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;

// An HTTP/1.1 instance answering "backend <name>" to every path (health checks included), keep-alive honoured,
// each answer but health checks after `delay` so requests are in flight while the gateway drains it. Kill() is the instance dying:
// the listener and every connection close at once.
class TestBackend {
 public:
  explicit TestBackend(std::string name, std::chrono::milliseconds delay = 0ms)
      : name_(std::move(name)), delay_(delay), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, Accept(), Check);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestBackend() { Kill(); }
  TestBackend(const TestBackend&) = delete;
  TestBackend& operator=(const TestBackend&) = delete;

  void Kill() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      for (auto& s : sockets_) s->close(ec);
      for (auto* t : timers_) t->cancel();
    });
    thread_.join();
  }
  Backend backend() const { return {"127.0.0.1", port_}; }
  const std::string& name() const { return name_; }
  // Requests other than health checks.
  size_t served() const { return served_; }

 private:
  static void Check(std::exception_ptr e) {
    if (e) std::terminate();  // every operation uses redirect_error: an exception here is a bug in the test
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      auto sock = std::make_shared<tcp::socket>(io_);
      co_await acceptor_.async_accept(*sock, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      sockets_.insert(sock);
      asio::co_spawn(io_, Serve(sock), Check);
    }
  }

  asio::awaitable<void> Serve(std::shared_ptr<tcp::socket> sock) {
    beast::flat_buffer buf;
    for (;;) {
      boost::system::error_code ec;
      http::request<http::string_body> req;
      co_await http::async_read(*sock, buf, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      const bool health = req.target() == "/health";
      if (!health) ++served_;
      if (delay_.count() > 0 && !health) {
        asio::steady_timer timer(io_, delay_);
        timers_.insert(&timer);
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        timers_.erase(&timer);
        if (!sock->is_open()) break;
      }
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "text/plain");
      res.body() = "backend " + name_;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      co_await http::async_write(*sock, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) break;
    }
    boost::system::error_code ignored;
    sock->close(ignored);
    sockets_.erase(sock);
  }

  std::string name_;
  std::chrono::milliseconds delay_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::set<std::shared_ptr<tcp::socket>> sockets_;  // io thread only
  std::set<asio::steady_timer*> timers_;            // io thread only
  std::atomic<size_t> served_{0};
  std::thread thread_;
};

// Joins on scope exit, so a failed REQUIRE does not leave a joinable thread behind (std::terminate).
struct Joiner {
  std::thread t;
  ~Joiner() {
    if (t.joinable()) t.join();
  }
};

// A blocking HTTP/1.1 client for one thread. No retries of any kind: every error is a failed request.
class Client {
 public:
  Client(uint16_t port, bool keep_alive) : port_(port), keep_alive_(keep_alive) {}
  ~Client() { Close(); }

  struct Reply {
    bool ok = false;
    std::string body;   // "backend <name>" when ok
    std::string error;  // why not
  };

  Reply Get(const std::string& target = "/") { return Request("GET", target, ""); }

  Reply Request(const std::string& method, const std::string& target, const std::string& body) {
    Reply r;
    if (fd_ < 0 && !Connect(r.error)) return r;
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: gateway\r\nConnection: " +
                      (keep_alive_ ? "keep-alive" : "close") + "\r\n";
    if (method != "GET") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      r.error = std::string("send: ") + std::strerror(errno);
      Close();
      return r;
    }
    std::string in;
    size_t head_end;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos)
      if (!Read(in, r.error)) return r;
    std::string head = in.substr(0, head_end);
    int status = head.size() > 12 ? std::atoi(head.c_str() + 9) : 0;
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto cl = lower.find("content-length:");
    size_t length = cl == std::string::npos ? 0 : std::strtoul(lower.c_str() + cl + 15, nullptr, 10);
    while (in.size() < head_end + 4 + length)
      if (!Read(in, r.error)) return r;
    r.body = in.substr(head_end + 4, length);
    if (!keep_alive_ || lower.find("connection: close") != std::string::npos) Close();
    r.ok = status == 200 && r.body.rfind("backend ", 0) == 0;
    if (!r.ok) r.error = "status " + std::to_string(status) + ": " + r.body;
    return r;
  }

 private:
  bool Connect(std::string& error) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return true;
    error = std::string("connect: ") + std::strerror(errno);
    Close();
    return false;
  }
  bool Read(std::string& in, std::string& error) {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      return true;
    }
    error = n == 0 ? "connection closed before a complete response (" + std::to_string(in.size()) + " bytes)"
                   : std::string("recv: ") + std::strerror(errno);
    Close();
    return false;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  uint16_t port_;
  bool keep_alive_;
  int fd_ = -1;
};

// Client threads sending GETs back to back through the gateway until Stop().
class Load {
 public:
  struct Totals {
    size_t sent = 0;
    size_t failed = 0;
    std::map<std::string, size_t> by_body;
    std::vector<std::string> errors;  // the first few
  };

  Load(uint16_t port, std::vector<bool> keep_alive) {
    for (bool ka : keep_alive)
      threads_.emplace_back([this, port, ka] {
        Client c(port, ka);
        while (!stop_) {
          auto r = c.Get();
          std::lock_guard<std::mutex> lock(mu_);
          ++totals_.sent;
          if (r.ok) {
            ++totals_.by_body[r.body];
          } else {
            ++totals_.failed;
            if (totals_.errors.size() < 10) totals_.errors.push_back((ka ? "keep-alive: " : "close: ") + r.error);
          }
        }
      });
  }
  ~Load() { Stop(); }

  Totals Stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    std::lock_guard<std::mutex> lock(mu_);
    return totals_;
  }
  size_t sent() {
    std::lock_guard<std::mutex> lock(mu_);
    return totals_.sent;
  }
  // Lets at least `n` more requests through.
  void Pass(size_t n) {
    size_t until = sent() + n;
    testsupport::WaitFor([&] { return sent() >= until; }, 20s);
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  Totals totals_;
  std::vector<std::thread> threads_;
};

std::string Describe(const Load::Totals& t) {
  std::string s = std::to_string(t.sent) + " sent, " + std::to_string(t.failed) + " failed;";
  for (const auto& [body, n] : t.by_body) s += " " + body + "=" + std::to_string(n);
  for (const auto& e : t.errors) s += "\n  " + e;
  return s;
}

// `n` sequential requests on fresh connections; the bodies seen.
std::map<std::string, size_t> Sample(uint16_t port, int n) {
  std::map<std::string, size_t> seen;
  for (int i = 0; i < n; ++i) {
    Client c(port, false);
    auto r = c.Get();
    ++seen[r.ok ? r.body : "error: " + r.error];
  }
  return seen;
}

std::set<std::string> Bodies(const std::map<std::string, size_t>& seen) {
  std::set<std::string> out;
  for (const auto& [body, n] : seen) out.insert(body);
  return out;
}

Service Web(uint16_t port, std::vector<const TestBackend*> backends, std::string name = "web") {
  Service s{std::move(name), port, "http", {}, "/health"};
  for (auto* b : backends) s.backends.push_back(b->backend());
  return s;
}

// Exited (and not merely a zombie nobody reaped yet).
bool Gone(pid_t pid) {
  auto stat = core::DefaultEnv()->ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  auto paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';
}

HaproxyOptions FastOptions() {
  HaproxyOptions o;
  o.check_interval = 500ms;  // fast/down interval 100 ms: an added instance is up ~200 ms after Apply
  return o;
}

TEST_CASE("Requests through the frontend reach only the configured backends") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1"), b2("b2"), b3("b3");
  GatewayConfig cfg;
  const uint16_t web_port = testsupport::FreeLoopbackPort(), raw_port = testsupport::FreeLoopbackPort();
  cfg.services.push_back(Web(web_port, {&b1, &b2}));
  cfg.services.push_back({"raw", raw_port, "tcp", {b3.backend()}, ""});
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());

  auto seen = Sample(web_port, 20);
  CHECK(Bodies(seen) == std::set<std::string>{"backend b1", "backend b2"});
  CHECK(seen["backend b1"] == 10);  // round robin
  // The tcp service forwards whole connections to its only instance.
  CHECK(Bodies(Sample(raw_port, 5)) == std::set<std::string>{"backend b3"});

  auto slots = (*gw)->Slots("web");
  REQUIRE(slots);
  REQUIRE(slots->size() == 8);
  CHECK((*slots)[0].backend == b1.backend());
  // Start waited for the first checks: both instances are checked and healthy, not HAProxy's unchecked "UP 1/2".
  CHECK((*slots)[0].status == "UP");
  CHECK((*slots)[0].check == "L7OK");
  CHECK((*slots)[1].status == "UP");
  CHECK((*slots)[1].check == "L7OK");
  for (size_t i = 2; i < slots->size(); ++i) {
    CHECK_FALSE((*slots)[i].backend);
    CHECK((*slots)[i].status == "MAINT");
  }
  CHECK((*gw)->current().services.size() == 2);
  CHECK_FALSE((*gw)->Slots("nope"));
}

TEST_CASE("Instances added and removed through Apply serve at once, without a reload") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1"), b2("b2"), b3("b3");
  const uint16_t port = testsupport::FreeLoopbackPort();
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  auto worker = (*gw)->WorkerPid();
  REQUIRE(worker);
  CHECK(Bodies(Sample(port, 4)) == std::set<std::string>{"backend b1"});

  cfg.services[0] = Web(port, {&b1, &b2, &b3});
  auto added = (*gw)->Apply(cfg);
  REQUIRE(added);
  CHECK_FALSE(added->reloaded);
  CHECK(added->added.size() == 2);
  CHECK(added->not_ready.empty());
  CHECK(Bodies(Sample(port, 12)) == std::set<std::string>{"backend b1", "backend b2", "backend b3"});

  cfg.services[0] = Web(port, {&b3});
  auto removed = (*gw)->Apply(cfg);
  REQUIRE(removed);
  CHECK_FALSE(removed->reloaded);
  CHECK(removed->removed == std::vector<std::string>{"web/" + b1.backend().ToString(), "web/" + b2.backend().ToString()});
  CHECK(removed->drain_timed_out.empty());
  CHECK(Bodies(Sample(port, 8)) == std::set<std::string>{"backend b3"});

  // Same worker, no reload at any point.
  CHECK(*(*gw)->WorkerPid() == *worker);
  auto proc = (*gw)->Processes();
  REQUIRE(proc);
  CHECK(proc->reloads == 0);
  CHECK((*gw)->reloads() == 0);
  // The config on disk follows, so that a later reload keeps the runtime state.
  auto text = core::DefaultEnv()->ReadFile((*gw)->config_path());
  REQUIRE(text);
  CHECK(text->find("server s3 " + b3.backend().ToString() + " check") != std::string::npos);
  CHECK(text->find(b1.backend().ToString()) == std::string::npos);

  // Applying the same state again changes nothing.
  auto again = (*gw)->Apply(cfg);
  REQUIRE(again);
  CHECK(again->added.empty());
  CHECK(again->removed.empty());
  CHECK_FALSE(again->reloaded);
}

TEST_CASE("An instance that fails its health check is added but gets no traffic until it passes") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1");
  const uint16_t port = testsupport::FreeLoopbackPort();
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));
  auto opts = FastOptions();
  opts.ready_timeout = 1s;
  auto gw = HaproxyGateway::Start(dir.path(), opts, cfg);
  REQUIRE(gw);
  // Nothing listens on this port.
  const Backend dead{"127.0.0.1", testsupport::FreeLoopbackPort()};
  cfg.services[0].backends.push_back(dead);
  auto r = (*gw)->Apply(cfg);
  REQUIRE(r);
  CHECK(r->not_ready == std::vector<std::string>{"web/" + dead.ToString()});
  CHECK(Sample(port, 10) == std::map<std::string, size_t>{{"backend b1", 10}});
}

TEST_CASE("Start and a new service wait for the first checks and name the instances that failed them") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1");
  const Backend dead{"127.0.0.1", testsupport::FreeLoopbackPort()};  // nothing listens here
  const uint16_t port = testsupport::FreeLoopbackPort();
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));
  cfg.services[0].backends.push_back(dead);
  const auto started = std::chrono::steady_clock::now();
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  // The first check comes within one interval (500 ms): Start does not sit out ready_timeout (10 s) for the dead one.
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  auto slots = (*gw)->Slots("web");
  REQUIRE(slots);
  CHECK((*slots)[0].status == "UP");
  CHECK((*slots)[0].check == "L7OK");
  CHECK((*slots)[1].status.rfind("DOWN", 0) == 0);
  CHECK((*slots)[1].check == "L4CON");
  CHECK(Sample(port, 6) == std::map<std::string, size_t>{{"backend b1", 6}});

  // A new service arrives by reload; its dead instance is reported, its live one serves.
  TestBackend b2("b2");
  const uint16_t api_port = testsupport::FreeLoopbackPort();
  cfg.services.push_back(Web(api_port, {&b2}, "api"));
  cfg.services[1].backends.push_back(dead);
  auto r = (*gw)->Apply(cfg);
  REQUIRE(r);
  CHECK(r->reloaded);
  CHECK(r->services_added == std::vector<std::string>{"api"});
  CHECK(r->not_ready == std::vector<std::string>{"api/" + dead.ToString()});
  auto api = (*gw)->Slots("api");
  REQUIRE(api);
  CHECK((*api)[0].status == "UP");
  CHECK((*api)[0].check == "L7OK");
  CHECK(Sample(api_port, 6) == std::map<std::string, size_t>{{"backend b2", 6}});
}

// Replaces 3 instances one by one (new one added and healthy, old one drained, removed and killed) while `clients`
// send requests back to back (true = keep-alive); every request must succeed and the worker must stay the same.
void RollingSwap(const std::string& mode, const std::vector<bool>& clients, const std::string& label) {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t port = testsupport::FreeLoopbackPort();
  // 2 ms per answer: requests are in flight on the instance being drained.
  std::vector<std::unique_ptr<TestBackend>> old_gen, new_gen;
  for (int i = 1; i <= 3; ++i) old_gen.push_back(std::make_unique<TestBackend>("v1-" + std::to_string(i), 2ms));
  std::vector<const TestBackend*> live;
  for (auto& b : old_gen) live.push_back(b.get());
  auto service = [&] {
    Service s = Web(port, live);
    s.mode = mode;
    return s;
  };
  GatewayConfig cfg;
  cfg.services.push_back(service());
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  auto worker = (*gw)->WorkerPid();
  REQUIRE(worker);

  using Ms = std::chrono::milliseconds;
  Ms add_max{0}, remove_max{0};
  Load load(port, clients);
  load.Pass(200);
  for (int i = 0; i < 3; ++i) {
    // Surge: the new instance joins and passes its checks before anything leaves.
    new_gen.push_back(std::make_unique<TestBackend>("v2-" + std::to_string(i + 1), 2ms));
    live.push_back(new_gen.back().get());
    cfg.services[0] = service();
    auto t0 = std::chrono::steady_clock::now();
    auto add = (*gw)->Apply(cfg);
    add_max = std::max(add_max, std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0));
    REQUIRE(add);
    CHECK(add->added.size() == 1);
    CHECK(add->not_ready.empty());
    CHECK_FALSE(add->reloaded);
    load.Pass(200);
    // Then the old one is drained, removed and killed.
    live.erase(std::find(live.begin(), live.end(), old_gen[static_cast<size_t>(i)].get()));
    cfg.services[0] = service();
    t0 = std::chrono::steady_clock::now();
    auto remove = (*gw)->Apply(cfg);
    remove_max = std::max(remove_max, std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0));
    REQUIRE(remove);
    CHECK(remove->removed.size() == 1);
    CHECK(remove->drain_timed_out.empty());
    CHECK_FALSE(remove->reloaded);
    old_gen[static_cast<size_t>(i)]->Kill();
    load.Pass(200);
  }
  auto totals = load.Stop();
  std::fprintf(stderr, "rolling swap, %s (3 of 3 instances; Apply add <= %lld ms, remove <= %lld ms): %s\n",
               label.c_str(), static_cast<long long>(add_max.count()), static_cast<long long>(remove_max.count()),
               Describe(totals).c_str());
  CHECK(totals.failed == 0);
  CHECK(totals.sent >= 1400);
  for (int i = 1; i <= 3; ++i) CHECK(totals.by_body["backend v2-" + std::to_string(i)] > 0);
  CHECK(*(*gw)->WorkerPid() == *worker);
  CHECK(Bodies(Sample(port, 9)) == std::set<std::string>{"backend v2-1", "backend v2-2", "backend v2-3"});
}

TEST_CASE("A rolling swap of every instance under load fails no request") {
  RollingSwap("http", {false, false, true, true}, "http, 2 close + 2 keep-alive clients");
}

// In tcp mode a connection stays on its instance, so clients here open one connection per request; a keep-alive
// connection would last until drain_timeout and then die with its instance (docs/gateway.md).
TEST_CASE("A rolling swap of a tcp service fails no connection") {
  RollingSwap("tcp", {false, false}, "tcp, 2 clients with a connection per request");
}

TEST_CASE("An instance that dies before the gateway hears of it costs no request: HAProxy retries elsewhere") {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t port = testsupport::FreeLoopbackPort();
  TestBackend b1("b1", 2ms), b2("b2", 2ms), b3("b3", 2ms);
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1, &b2, &b3}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  Load load(port, {false, false, true, true});
  load.Pass(200);
  b2.Kill();  // mid-request for some: those see their connection closed, the others a refused connect
  load.Pass(300);
  cfg.services[0] = Web(port, {&b1, &b3});
  REQUIRE((*gw)->Apply(cfg));
  load.Pass(200);
  auto totals = load.Stop();
  std::fprintf(stderr, "instance killed without drain: %s\n", Describe(totals).c_str());
  CHECK(totals.failed == 0);
}

TEST_CASE("A request in flight on a removed instance completes: Apply drains before it returns") {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t port = testsupport::FreeLoopbackPort();
  // Slow answers; POST is not idempotent, so HAProxy will not replay it elsewhere once sent: only the drain can
  // save it.
  TestBackend b1("b1", 800ms), b2("b2", 800ms), b3("b3");
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());

  SECTION("removed through Apply: drained, then killed") {
    Client::Reply reply;
    Joiner post{std::thread([&] { reply = Client(port, false).Request("POST", "/orders", "{\"n\":1}"); })};
    REQUIRE(testsupport::WaitFor([&] { return b1.served() == 1; }, 5s));
    cfg.services[0] = Web(port, {&b3});
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*gw)->Apply(cfg);
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(r);
    CHECK(r->removed == std::vector<std::string>{"web/" + b1.backend().ToString()});
    CHECK(r->drain_timed_out.empty());
    b1.Kill();
    post.t.join();
    std::fprintf(stderr, "drain of an instance with a POST in flight: Apply took %lld ms, POST -> %s%s\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
                 reply.ok ? reply.body.c_str() : "FAILED ", reply.error.c_str());
    CHECK(reply.ok);
    CHECK(reply.body == "backend b1");
    CHECK(took >= 300ms);
  }
  SECTION("control: killed without Apply, the in-flight POST fails (it is not replayed)") {
    cfg.services[0] = Web(port, {&b2});
    REQUIRE((*gw)->Apply(cfg));
    Client::Reply reply;
    Joiner post{std::thread([&] { reply = Client(port, false).Request("POST", "/orders", "{\"n\":1}"); })};
    REQUIRE(testsupport::WaitFor([&] { return b2.served() == 1; }, 5s));
    b2.Kill();
    post.t.join();
    CHECK_FALSE(reply.ok);
    CHECK(reply.error.rfind("status 502", 0) == 0);
  }
}

TEST_CASE("Adding and removing services reloads seamlessly without failing requests on the existing one") {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t web_port = testsupport::FreeLoopbackPort(), api_port = testsupport::FreeLoopbackPort();
  TestBackend b1("b1", 1ms), b2("b2", 1ms), b4("b4", 1ms), a1("a1");
  GatewayConfig cfg;
  cfg.services.push_back(Web(web_port, {&b1, &b2}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  // A runtime-only change first: the reload below must keep it.
  cfg.services[0] = Web(web_port, {&b1, &b4});
  REQUIRE((*gw)->Apply(cfg));
  auto first_worker = (*gw)->WorkerPid();
  REQUIRE(first_worker);

  Load load(web_port, {false, false, true, true});
  load.Pass(200);
  pid_t last = *first_worker;
  const int kReloads = 6;
  for (int i = 0; i < kReloads; ++i) {
    // Alternately add and remove the api service: each is one reload.
    GatewayConfig next = cfg;
    if (i % 2 == 0) next.services.push_back(Web(api_port, {&a1}, "api"));
    auto r = (*gw)->Apply(next);
    REQUIRE(r);
    CHECK(r->reloaded);
    CHECK(r->added.size() + r->removed.size() == 1);
    auto w = (*gw)->WorkerPid();
    REQUIRE(w);
    CHECK(*w != last);
    last = *w;
    if (i % 2 == 0) {
      CHECK(r->services_added == std::vector<std::string>{"api"});
      CHECK(Bodies(Sample(api_port, 3)) == std::set<std::string>{"backend a1"});
    } else {
      CHECK(r->services_removed == std::vector<std::string>{"api"});
      CHECK(r->drain_timed_out.empty());
      CHECK(testsupport::HttpGetStatus(api_port, "/", 1s) == 0);  // the removed frontend's port is closed
    }
    load.Pass(300);
  }
  auto totals = load.Stop();
  std::fprintf(stderr, "%d reloads (add/remove a service) under load on another service: %s\n", kReloads,
               Describe(totals).c_str());
  CHECK(totals.failed == 0);
  CHECK((*gw)->reloads() == kReloads);
  // The runtime change survived every reload: b2 never answered after it.
  CHECK(Bodies(totals.by_body) == std::set<std::string>{"backend b1", "backend b4"});
}

TEST_CASE("Changing a service's port and health path reloads it with its instances kept") {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t port = testsupport::FreeLoopbackPort(), moved = testsupport::FreeLoopbackPort();
  TestBackend b1("b1"), b2("b2");
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1, &b2}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  cfg.services[0].frontend_port = moved;
  cfg.services[0].health_path = "/ready";
  auto r = (*gw)->Apply(cfg);
  REQUIRE(r);
  CHECK(r->reloaded);
  CHECK(r->added.empty());
  CHECK(r->removed.empty());
  CHECK(Bodies(Sample(moved, 4)) == std::set<std::string>{"backend b1", "backend b2"});
  CHECK(testsupport::HttpGetStatus(port, "/", 1s) == 0);
  auto text = core::DefaultEnv()->ReadFile((*gw)->config_path());
  REQUIRE(text);
  CHECK(text->find("option httpchk GET /ready") != std::string::npos);
  CHECK((*gw)->current().services.at(0).frontend_port == moved);
}

TEST_CASE("A pool too small for the instances grows with one seamless reload") {
  testsupport::TempDir dir("tug-gateway");
  const uint16_t port = testsupport::FreeLoopbackPort();
  std::vector<std::unique_ptr<TestBackend>> bs;
  for (int i = 1; i <= 5; ++i) bs.push_back(std::make_unique<TestBackend>("b" + std::to_string(i), 1ms));
  auto opts = FastOptions();
  opts.min_slots = 2;
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {bs[0].get()}));
  auto gw = HaproxyGateway::Start(dir.path(), opts, cfg);
  REQUIRE(gw);
  INFO((*gw)->LogTail());
  REQUIRE((*gw)->Slots("web")->size() == 2);
  Load load(port, {false, true});
  load.Pass(100);
  std::vector<const TestBackend*> all;
  for (auto& b : bs) all.push_back(b.get());
  cfg.services[0] = Web(port, all);
  auto r = (*gw)->Apply(cfg);
  REQUIRE(r);
  CHECK(r->reloaded);
  CHECK(r->added.size() == 4);
  CHECK(r->not_ready.empty());
  load.Pass(200);
  auto totals = load.Stop();
  std::fprintf(stderr, "pool growth 2 -> %zu slots: %s\n", (*gw)->Slots("web")->size(), Describe(totals).c_str());
  CHECK(totals.failed == 0);
  CHECK((*gw)->Slots("web")->size() == 16);
  CHECK(Bodies(Sample(port, 10)).size() == 5);
}

TEST_CASE("Bad input and a broken environment give clear errors") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1");
  const uint16_t port = testsupport::FreeLoopbackPort();
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));

  SECTION("haproxy missing") {
    HaproxyOptions o;
    o.haproxy_binary = "/nonexistent/haproxy";
    auto gw = HaproxyGateway::Start(dir.path(), o, cfg);
    REQUIRE_FALSE(gw);
    CHECK(gw.error().Is(Errc::kNotFound));
    CHECK(gw.error().Message().find("haproxy is not installed") != std::string::npos);
  }
  SECTION("invalid desired state at Start and at Apply, naming the field; nothing changes") {
    GatewayConfig bad = cfg;
    bad.services.push_back(bad.services[0]);
    bad.services[1].frontend_port = testsupport::FreeLoopbackPort();
    auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), bad);
    REQUIRE_FALSE(gw);
    CHECK(gw.error().Is(Errc::kInvalidArgument));
    CHECK(gw.error().context.rfind("services[1].name: duplicate service name \"web\"", 0) == 0);

    gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
    REQUIRE(gw);
    bad = cfg;
    bad.services[0].frontend_port = 0;
    auto r = (*gw)->Apply(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kInvalidArgument));
    CHECK(r.error().context.rfind("services[0].frontend_port", 0) == 0);
    bad = cfg;
    bad.services[0].name = "we b";
    r = (*gw)->Apply(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().context.rfind("services[0].name", 0) == 0);
    CHECK(Bodies(Sample(port, 3)) == std::set<std::string>{"backend b1"});
    CHECK((*gw)->reloads() == 0);
  }
  SECTION("a frontend port in use: Start fails with haproxy's message") {
    testsupport::SilentListener taken;
    cfg.services[0].frontend_port = taken.port();
    auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
    REQUIRE_FALSE(gw);
    CHECK(gw.error().Is(Errc::kUnavailable));
    INFO(gw.error().Message());
    CHECK(gw.error().Message().find("cannot bind socket") != std::string::npos);
  }
  SECTION("a new service on a port in use: the reload fails, the old worker keeps serving, later Applies work") {
    auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
    REQUIRE(gw);
    auto worker = (*gw)->WorkerPid();
    REQUIRE(worker);
    testsupport::SilentListener taken;
    GatewayConfig next = cfg;
    next.services.push_back({"api", taken.port(), "http", {b1.backend()}, ""});
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*gw)->Apply(next);
    REQUIRE_FALSE(r);
    std::fprintf(stderr, "failed reload reported after %lld ms: %s\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - t0).count()),
                 r.error().Message().c_str());
    INFO(r.error().Message());
    CHECK(r.error().Is(Errc::kUnavailable));
    CHECK(r.error().Message().find("cannot bind socket") != std::string::npos);
    CHECK(Bodies(Sample(port, 3)) == std::set<std::string>{"backend b1"});
    CHECK(*(*gw)->WorkerPid() == *worker);
    // The config on disk is the one that runs.
    auto text = core::DefaultEnv()->ReadFile((*gw)->config_path());
    REQUIRE(text);
    CHECK(text->find("fe_api") == std::string::npos);

    next.services[1].frontend_port = testsupport::FreeLoopbackPort();
    auto ok = (*gw)->Apply(next);
    INFO((*gw)->LogTail());
    REQUIRE(ok);
    CHECK(ok->reloaded);
    CHECK(Bodies(Sample(next.services[1].frontend_port, 2)) == std::set<std::string>{"backend b1"});
  }
  SECTION("a second gateway on the same work dir") {
    auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
    REQUIRE(gw);
    GatewayConfig other;
    auto second = HaproxyGateway::Start(dir.path(), FastOptions(), other);
    REQUIRE_FALSE(second);
    CHECK(second.error().Is(Errc::kAlreadyExists));
  }
}

TEST_CASE("A crashed worker takes the master down and Apply reports the gateway unavailable") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1");
  GatewayConfig cfg;
  cfg.services.push_back(Web(testsupport::FreeLoopbackPort(), {&b1}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  auto worker = (*gw)->WorkerPid();
  REQUIRE(worker);
  ::kill(*worker, SIGKILL);
  REQUIRE(testsupport::WaitFor([&] { return Gone((*gw)->master_pid()); }, 5s));
  auto r = (*gw)->Apply(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kUnavailable));
  CHECK(r.error().Message().find("haproxy is not running") != std::string::npos);
}

TEST_CASE("Stop ends the master and every worker it started, and is idempotent") {
  testsupport::TempDir dir("tug-gateway");
  TestBackend b1("b1");
  const uint16_t port = testsupport::FreeLoopbackPort();
  GatewayConfig cfg;
  cfg.services.push_back(Web(port, {&b1}));
  auto gw = HaproxyGateway::Start(dir.path(), FastOptions(), cfg);
  REQUIRE(gw);
  pid_t master = (*gw)->master_pid();
  auto worker = (*gw)->WorkerPid();
  REQUIRE(worker);
  (*gw)->Stop();
  (*gw)->Stop();
  CHECK(Gone(master));
  CHECK(Gone(*worker));
  CHECK(testsupport::HttpGetStatus(port, "/", 1s) == 0);
  auto r = (*gw)->Apply(cfg);
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kUnavailable));
}

}  // namespace
}  // namespace tug::cluster::gateway
