#include "haproxy_sink.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "gateway/haproxy.hpp"

namespace tug::cluster::services {

namespace {

bool IsNumeric(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// HAProxy's runtime API takes addresses, not names.
Result<std::string> Resolve(const std::string& host) {
  if (IsNumeric(host)) return host;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || !res)
    return MakeError(Errc::kUnavailable, "resolving backend host '" + host + "': " + gai_strerror(rc));
  std::string best;
  for (addrinfo* p = res; p; p = p->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (p->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr, buf, sizeof buf);
      best = buf;
      break;
    }
    if (p->ai_family == AF_INET6 && best.empty()) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(p->ai_addr)->sin6_addr, buf, sizeof buf);
      best = buf;
    }
  }
  freeaddrinfo(res);
  if (best.empty()) return MakeError(Errc::kUnavailable, "backend host '" + host + "' has no address");
  return best;
}

class HaproxySink : public GatewaySink {
 public:
  HaproxySink(std::unique_ptr<gateway::HaproxyGateway> gw, std::string bind) : gw_(std::move(gw)), bind_(std::move(bind)) {}

  Status Apply(const std::vector<GatewayService>& services) override {
    gateway::GatewayConfig cfg;
    cfg.bind_host = bind_;
    for (const auto& s : services) {
      gateway::Service out;
      out.name = s.name;
      out.frontend_port = s.frontend_port;
      out.mode = s.mode;
      out.health_path = s.health_path;
      for (const auto& b : s.backends) {
        auto addr = Resolve(b.host);
        if (!addr) {
          // One unresolvable node must not keep every other backend out: leave it out and say so.
          spdlog::warn("services: gateway: {} of {}: {}", b.task_id, s.name, addr.error().Message());
          continue;
        }
        gateway::Backend be{*addr, static_cast<uint16_t>(b.port)};
        bool dup = false;
        for (const auto& e : out.backends) dup = dup || e == be;
        if (!dup) out.backends.push_back(be);
      }
      cfg.services.push_back(std::move(out));
    }
    auto r = gw_->Apply(cfg);
    if (!r) return tl::unexpected(r.error());
    for (const auto& a : r->added) spdlog::info("services: gateway: + {}", a);
    for (const auto& a : r->removed) spdlog::info("services: gateway: - {}", a);
    for (const auto& a : r->not_ready) spdlog::warn("services: gateway: {} not passing HAProxy's checks yet", a);
    return {};
  }

 private:
  std::unique_ptr<gateway::HaproxyGateway> gw_;
  std::string bind_;
};

}  // namespace

Result<std::unique_ptr<GatewaySink>> StartHaproxySink(const std::string& work_dir, const std::string& bind_host) {
  gateway::GatewayConfig initial;
  initial.bind_host = bind_host;
  auto gw = gateway::HaproxyGateway::Start(work_dir, {}, initial);
  if (!gw) return tl::unexpected(Wrap(gw.error(), "starting HAProxy in " + work_dir));
  return std::unique_ptr<GatewaySink>(std::make_unique<HaproxySink>(std::move(*gw), bind_host));
}

}  // namespace tug::cluster::services
