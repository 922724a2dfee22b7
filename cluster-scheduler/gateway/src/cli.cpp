#include "src/cli.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tug::cluster::gateway::detail {
namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<std::string> CliCommand(const std::string& socket_path, const std::string& command,
                               std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string what = "haproxy socket " + socket_path;
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path))
    return MakeError(Errc::kInvalidArgument, what + ": path too long for a unix socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return ErrnoError(errno, what + ": socket");
  // A unix connect either completes at once or fails with EAGAIN when the listener's backlog is full (a busy or
  // re-executing master): retry that until the deadline.
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    int err = errno;
    if (err == EAGAIN || err == EINTR) {
      if (RemainingMs(deadline) == 0) return MakeError(Errc::kTimeout, what + ": connect: backlog full");
      ::poll(nullptr, 0, 10);
      continue;
    }
    if (err == ENOENT || err == ECONNREFUSED)
      return MakeError(Errc::kUnavailable, what + ": connect: " + std::strerror(err) + " (is haproxy running?)");
    return ErrnoError(err, what + ": connect");
  }

  const std::string line = command + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n = ::send(fd.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, RemainingMs(deadline)) == 0) return MakeError(Errc::kTimeout, what + ": sending '" + command + "'");
      continue;
    }
    return MakeError(Errc::kUnavailable, what + ": sending '" + command + "': " + std::strerror(errno));
  }
  ::shutdown(fd.get(), SHUT_WR);

  std::string out;
  for (;;) {
    char buf[16384];
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return out;
    if (errno == EAGAIN || errno == EINTR) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, RemainingMs(deadline)) == 0)
        return MakeError(Errc::kTimeout, what + ": no complete answer to '" + command + "' within " +
                                             std::to_string(timeout.count()) + " ms");
      continue;
    }
    // The master closes CLI connections with a reset when it re-executes for a reload.
    if (errno == ECONNRESET) return out;
    return MakeError(Errc::kUnavailable, what + ": reading the answer to '" + command + "': " + std::strerror(errno));
  }
}

}  // namespace tug::cluster::gateway::detail
