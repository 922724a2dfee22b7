#include "gateway/config.hpp"

#include <arpa/inet.h>

#include <map>

namespace tug::cluster::gateway {
namespace {

bool IsIpv6(const std::string& host) {
  in6_addr a6{};
  return ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

bool IsNumericAddress(const std::string& host) {
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || IsIpv6(host);
}

// The name ends up in HAProxy section names and runtime API commands ("set server be_<name>/s1 ..."), where
// spaces, slashes and '#' would break parsing.
bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  for (char c : name)
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

// Written unquoted into "option httpchk GET <path>": no spaces, no comment or quote characters.
bool ValidHealthPath(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.size() > 1024) return false;
  for (char c : path)
    if (c <= 0x20 || c >= 0x7f || c == '#' || c == '"' || c == '\'' || c == '\\') return false;
  return true;
}

}  // namespace

std::string Backend::ToString() const {
  return (IsIpv6(host) ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Status Validate(const GatewayConfig& config) {
  if (!IsNumericAddress(config.bind_host))
    return MakeError(Errc::kInvalidArgument,
                     "bind_host: \"" + config.bind_host + "\" is not a numeric IPv4 or IPv6 address");
  std::map<std::string, size_t> names;
  std::map<uint16_t, size_t> ports;
  for (size_t i = 0; i < config.services.size(); ++i) {
    const Service& s = config.services[i];
    const std::string field = "services[" + std::to_string(i) + "]";
    if (!ValidName(s.name))
      return MakeError(Errc::kInvalidArgument, field + ".name: \"" + s.name +
                                                   "\" is not 1-64 characters of [A-Za-z0-9_.-] starting with a "
                                                   "letter or digit");
    if (auto [it, fresh] = names.emplace(s.name, i); !fresh)
      return MakeError(Errc::kInvalidArgument, field + ".name: duplicate service name \"" + s.name +
                                                   "\" (also services[" + std::to_string(it->second) + "])");
    if (s.frontend_port == 0) return MakeError(Errc::kInvalidArgument, field + ".frontend_port: 0 is not a port");
    if (auto [it, fresh] = ports.emplace(s.frontend_port, i); !fresh)
      return MakeError(Errc::kInvalidArgument, field + ".frontend_port: " + std::to_string(s.frontend_port) +
                                                   " is also services[" + std::to_string(it->second) +
                                                   "].frontend_port");
    if (s.mode != "http" && s.mode != "tcp")
      return MakeError(Errc::kInvalidArgument, field + ".mode: \"" + s.mode + "\" is neither \"http\" nor \"tcp\"");
    if (!s.health_path.empty() && !ValidHealthPath(s.health_path))
      return MakeError(Errc::kInvalidArgument,
                       field + ".health_path: \"" + s.health_path +
                           "\" must start with '/' and hold printable ASCII without spaces, quotes or '#'");
    for (size_t k = 0; k < s.backends.size(); ++k) {
      const Backend& b = s.backends[k];
      const std::string bfield = field + ".backends[" + std::to_string(k) + "]";
      if (!IsNumericAddress(b.host))
        return MakeError(Errc::kInvalidArgument,
                         bfield + ".host: \"" + b.host + "\" is not a numeric IPv4 or IPv6 address");
      if (b.port == 0) return MakeError(Errc::kInvalidArgument, bfield + ".port: 0 is not a port");
      for (size_t j = 0; j < k; ++j)
        if (s.backends[j] == b)
          return MakeError(Errc::kInvalidArgument, bfield + ": duplicate backend " + b.ToString() + " (also " +
                                                       field + ".backends[" + std::to_string(j) + "])");
    }
  }
  return {};
}

}  // namespace tug::cluster::gateway
