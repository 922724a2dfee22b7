#include "probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/subprocess.hpp"
#include "http/client.hpp"

namespace tug::cluster::node {

ProbeResult ProbeHttp(uint16_t port, const std::string& path, std::chrono::milliseconds timeout) {
  http::ClientOptions o;
  o.timeout = timeout;
  o.max_collected_body = 64 << 10;
  http::Client client(o);  // fresh each time: a probe must not ride on a connection the task has forgotten
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  auto r = client.Call("GET", url);
  if (!r) return {false, r.error().Message()};
  if (r->status >= 200 && r->status < 400) return {true, "HTTP " + std::to_string(r->status)};
  return {false, "GET " + url + ": HTTP " + std::to_string(r->status)};
}

ProbeResult ProbeTcp(uint16_t port, std::chrono::milliseconds timeout) {
  const std::string what = "connect 127.0.0.1:" + std::to_string(port);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {false, what + ": socket: " + std::strerror(errno)};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ProbeResult res{false, ""};
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc == 0) {
    res = {true, "connected"};
  } else if (errno != EINPROGRESS) {
    res.detail = what + ": " + std::strerror(errno);
  } else {
    pollfd p{fd, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n == 0) {
      res.detail = what + ": timed out";
    } else {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) res = {true, "connected"};
      else res.detail = what + ": " + std::strerror(err);
    }
  }
  ::close(fd);
  return res;
}

ProbeResult ProbeCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         const std::string& cwd, std::chrono::milliseconds timeout) {
  core::RunOptions o;
  o.timeout = timeout;
  o.extra_env = env;
  if (!cwd.empty()) o.cwd = cwd;
  auto r = core::Run(argv, o);
  if (!r) return {false, r.error().Message()};
  if (r->ok()) return {true, "exit code 0"};
  return {false, "command " + r->Describe()};
}

}  // namespace tug::cluster::node
