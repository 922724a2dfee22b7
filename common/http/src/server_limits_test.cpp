// http::Server against hostile peers on loopback, with raw sockets: oversized heads and bodies, a slow-loris head,
// idle keep-alives, connection floods (total and per peer address) and descriptor exhaustion (EMFILE), after each of
// which the server still answers.
#include <utility>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <cstring>
#include <future>
#include <thread>

#include "http/server.hpp"
#include "running_server.hpp"  // beside this file
#include "testsupport/net.hpp"

using namespace tug;
using namespace std::chrono_literals;

namespace {

// Answers "ok <path>" to everything.
struct LimitsFixture {
  explicit LimitsFixture(http::ServerOptions o)
      : running([](const http::Request& r) {
          http::Response res;
          res.content_type = "text/plain";
          res.body = "ok " + r.Path();
          return res;
        }, std::move(o)) {}
  http::ServerStats Stats() { return running.Stats(); }
  http::testing::RunningServer running;
};

// A blocking loopback TCP connection from `from` (any 127/8 address), 5 s timeouts.
class RawConn {
 public:
  explicit RawConn(int fd = -1) : fd_(fd) {}
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(RawConn&& o) noexcept : fd_(std::exchange(o.fd_, -1)), closed_(o.closed_) {}
  RawConn& operator=(RawConn&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
      closed_ = o.closed_;
    }
    return *this;
  }
  static int Socket() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
  }
  bool Connect(uint16_t port, const char* from = "127.0.0.1") {
    if (fd_ < 0) fd_ = Socket();
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  bool Send(const std::string& s) { return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // Everything until the peer closes or `timeout`; "" if nothing came.
  std::string ReadAll(std::chrono::milliseconds timeout = 5s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // The status line's code of one response read until the peer closes or a full head + body arrived.
  std::string Get(const std::string& path = "/") {
    if (!Send("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")) return "";
    return ReadAll();
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
};

int StatusOf(const std::string& response) { return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0; }

double CpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

TEST_CASE("http server: an oversized head gets 431, an oversized body 413, garbage 400; the server still answers") {
  http::ServerOptions o;
  o.header_limit = 4096;
  o.body_limit = 1000;
  LimitsFixture f(o);
  const uint16_t port = f.running.port();
  {
    RawConn c;
    REQUIRE(c.Connect(port));
    CHECK(StatusOf(c.Get("/" + std::string(8000, 'a'))) == 431);
  }
  {
    RawConn c;
    REQUIRE(c.Connect(port));
    REQUIRE(c.Send("POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b')));
    auto r = c.ReadAll();
    CHECK(StatusOf(r) == 413);
    CHECK(r.find("\"field\":\"body\"") != std::string::npos);
  }
  {
    RawConn c;
    REQUIRE(c.Connect(port));
    REQUIRE(c.Send("\x01\x02 garbage\r\n\r\n"));
    CHECK(StatusOf(c.ReadAll()) == 400);
  }
  RawConn ok;
  REQUIRE(ok.Connect(port));
  auto r = ok.Get("/fine");
  CHECK(StatusOf(r) == 200);
  CHECK(r.find("ok /fine") != std::string::npos);
  auto st = f.Stats();
  CHECK(st.header_too_large == 1);
  CHECK(st.body_too_large == 1);
  CHECK(st.bad_requests == 1);
}

TEST_CASE("http server: a slow-loris head and an idle keep-alive are cut off by their timeouts") {
  http::ServerOptions o;
  o.header_timeout = 400ms;
  o.idle_timeout = 400ms;
  LimitsFixture f(o);
  const uint16_t port = f.running.port();
  RawConn slow;
  REQUIRE(slow.Connect(port));
  const auto t0 = std::chrono::steady_clock::now();
  // One header byte every 100 ms: each read makes progress, only the deadline for the whole head stops it.
  std::string head = "GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  bool cut = false;
  for (char ch : head) {
    if (!slow.Send(std::string(1, ch))) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(100ms);
    if (std::chrono::steady_clock::now() - t0 > 3s) break;
  }
  slow.ReadAll(1s);
  CHECK((cut || slow.closed()));
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);

  // A keep-alive connection that goes quiet after its first request is closed after idle_timeout.
  RawConn idle;
  REQUIRE(idle.Connect(port));
  REQUIRE(idle.Send("GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  const auto t1 = std::chrono::steady_clock::now();
  auto r = idle.ReadAll(3s);
  CHECK(StatusOf(r) == 200);
  CHECK(idle.closed());
  CHECK(std::chrono::steady_clock::now() - t1 < 2500ms);
  CHECK(f.Stats().timeouts >= 2);
}

TEST_CASE("http server: connections are capped per peer address (429) and in total (accepting waits)") {
  http::ServerOptions o;
  o.max_connections_per_peer = 3;
  o.max_connections = 5;
  LimitsFixture f(o);
  const uint16_t port = f.running.port();
  std::vector<RawConn> held;
  for (int i = 0; i < 3; ++i) {
    held.emplace_back();
    REQUIRE(held.back().Connect(port, "127.0.0.2"));
  }
  REQUIRE(testsupport::WaitFor([&] { return f.Stats().open == 3; }, 5s));
  RawConn fourth;
  REQUIRE(fourth.Connect(port, "127.0.0.2"));
  auto refused = fourth.ReadAll(2s);
  CHECK(StatusOf(refused) == 429);
  CHECK(f.Stats().refused_per_peer == 1);

  // Another address still gets in, up to the total of 5.
  for (int i = 0; i < 2; ++i) {
    held.emplace_back();
    REQUIRE(held.back().Connect(port, "127.0.0.3"));
  }
  REQUIRE(testsupport::WaitFor([&] { return f.Stats().open == 5; }, 5s));
  // The sixth completes its TCP handshake in the backlog but is not served until a slot frees.
  RawConn sixth;
  REQUIRE(sixth.Connect(port, "127.0.0.4"));
  REQUIRE(sixth.Send("GET /late HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
  CHECK(sixth.ReadAll(500ms).empty());
  CHECK(f.Stats().paused_at_capacity >= 1);
  held.erase(held.begin());  // one connection ends
  auto late = sixth.ReadAll(3s);
  CHECK(StatusOf(late) == 200);
  CHECK(late.find("ok /late") != std::string::npos);
}

TEST_CASE("http server: out of file descriptors, accepting backs off instead of spinning, then recovers") {
  LimitsFixture f(http::ServerOptions{});
  const uint16_t port = f.running.port();
  // Client sockets made before the table fills; then every descriptor left is taken.
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(RawConn::Socket());
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  int highest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(highest >= 0);
  ::close(highest);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 64);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> filler;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
  REQUIRE(errno == EMFILE);

  std::vector<RawConn> conns;
  for (int fd : clients) {
    conns.emplace_back(fd);
    REQUIRE(conns.back().Connect(port));  // the kernel completes the handshake; accept() fails with EMFILE
    REQUIRE(conns.back().Send("GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
  }
  const double cpu0 = CpuSeconds();
  std::this_thread::sleep_for(1s);
  const double cpu = CpuSeconds() - cpu0;
  const auto errors = f.Stats().accept_errors;
  // Give the descriptors back before any REQUIRE can leave the process without them.
  for (int fd : filler) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  INFO("cpu in 1 s while out of descriptors: " << cpu << " s, accept errors: " << errors);
  CHECK(cpu < 0.3);  // a retry loop without backoff burns the whole second
  CHECK(errors >= 2);
  CHECK(errors <= 20);
  for (auto& c : conns) {
    auto r = c.ReadAll(3s);
    CHECK(StatusOf(r) == 200);
  }
}
