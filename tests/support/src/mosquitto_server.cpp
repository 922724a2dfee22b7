#include "testsupport/mosquitto_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <csignal>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "testsupport/net.hpp"

namespace tug::testsupport {
namespace {

bool Accepts(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Mosquitto started as root drops to its `user`; the temp dir is 0700 root, so tests running as root keep root.
std::string RunAsUser() {
  if (::geteuid() == 0) return "root";
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "mosquitto";
}

}  // namespace

Result<std::unique_ptr<MosquittoServer>> MosquittoServer::Start(const MosquittoServerOptions& opts) {
  if (core::FindInPath("mosquitto").empty() && ::access("/usr/sbin/mosquitto", X_OK) != 0)
    return MakeError(Errc::kNotFound, "mosquitto is not installed (scripts/setup.sh installs it)");
  std::unique_ptr<MosquittoServer> s(new MosquittoServer(opts));

  // The ports can be taken between FreeLoopbackPort() and the broker's bind; a few attempts cover that.
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->tls_port_ = FreeLoopbackPort();
    s->plain_port_ = opts.plain_listener ? FreeLoopbackPort() : 0;
    if (s->plain_port_ == s->tls_port_) continue;
    broker::BrokerConfigOptions b;
    b.out_dir = s->dir_.Sub("broker");
    b.device_ids = opts.device_ids;
    b.controller_id = opts.controller_id;
    b.more_controller_ids = opts.more_controller_ids;
    b.max_packet_size = opts.max_packet_size;
    b.tls_port = s->tls_port_;
    if (opts.plain_listener) b.plain_port = s->plain_port_;
    b.max_queued_messages = opts.max_queued_messages;
    b.max_inflight_messages = opts.max_inflight_messages;
    b.run_as_user = RunAsUser();
    b.validity_days = 2;
    TUG_ASSIGN_OR_RETURN(s->layout_, broker::Generate(b));
    last = s->Launch();
    if (last) return s;
  }
  return tl::unexpected(last.error());
}

Status MosquittoServer::Launch() {
  std::string bin = core::FindInPath("mosquitto");
  if (bin.empty()) bin = "/usr/sbin/mosquitto";
  TUG_ASSIGN_OR_RETURN(process_, core::Spawn({bin, "-c", layout_.config_file}, log_path()));
  bool exited = false;
  const uint16_t tls = tls_port_, plain = plain_port_;
  bool up = WaitFor(
      [&] {
        if (!process_.Running()) {
          exited = true;
          return true;
        }
        return Accepts(tls) && (plain == 0 || Accepts(plain));
      },
      opts_.start_timeout);
  if (up && !exited) return {};
  process_.Stop(std::chrono::seconds(2));
  return MakeError(Errc::kUnavailable,
                   std::string(exited ? "mosquitto exited" : "mosquitto did not accept in time") + "; log tail:\n" +
                       LogTail());
}

MosquittoServer::~MosquittoServer() { process_.Stop(std::chrono::seconds(3)); }

Result<broker::CertPair> MosquittoServer::Cert(const std::string& client_id) {
  return broker::IssueClientCert(layout_.dir, client_id, 2);
}

Status MosquittoServer::Revoke(const std::string& client_id) { return broker::Revoke(layout_.dir, client_id); }

Status MosquittoServer::Restart() {
  process_.Stop(std::chrono::seconds(5));
  // Mosquitto sets SO_REUSEADDR, so the same ports bind again at once despite TIME_WAIT connections.
  return Launch();
}

void MosquittoServer::Stop() { process_.Stop(std::chrono::seconds(5)); }

void MosquittoServer::Kill() {
  process_.Kill(SIGKILL);
  process_.Wait(std::chrono::seconds(5));
  process_ = core::Process();
}

std::string MosquittoServer::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

}  // namespace tug::testsupport
