// FakeHttpServer: a tiny HTTP/1.1 server on 127.0.0.1:<free port> for tests that need a peer misbehaving on
// purpose (auth challenges, redirects, corrupted bodies, silence). One thread per connection; keep-alive is
// honoured; requests with Content-Length bodies are read whole. The destructor closes everything and joins.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tug::testsupport {

struct FakeRequest {
  std::string method;
  std::string target;                         // path + query
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

struct FakeResponse {
  int status = 200;
  std::map<std::string, std::string> headers;
  std::string body;
  // When true the server reads the request and then never answers (until the server is destroyed).
  bool hang = false;
};

class FakeHttpServer {
 public:
  using Handler = std::function<FakeResponse(const FakeRequest&)>;
  // Aborts if it cannot listen: nothing in the test could work without it.
  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  uint16_t port() const { return port_; }
  std::string host_port() const { return "127.0.0.1:" + std::to_string(port_); }
  // Copies of every request seen so far.
  std::vector<FakeRequest> requests() const;
  // TCP connections accepted so far (to check keep-alive reuse).
  size_t connections() const;

 private:
  void AcceptLoop();
  void Serve(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> conns_;
  std::vector<FakeRequest> requests_;
};

// A socket that listens on 127.0.0.1 (backlog only: the kernel completes connects) and never reads or answers.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  uint16_t port() const { return port_; }
  std::string host_port() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace tug::testsupport
