// RegistryServer: a real Docker Distribution registry (Debian's docker-registry, 2.8) on 127.0.0.1:<free port>
// for one test, with filesystem storage and its log in a private temp dir, deletes enabled and optional htpasswd
// Basic auth. Start() blocks until GET /v2/ answers (bounded); the destructor stops the process and removes
// everything.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::testsupport {

struct RegistryServerOptions {
  // When username is set the registry requires Basic auth (htpasswd, bcrypt via `htpasswd -Bbn`).
  std::string username;
  std::string password;
  std::chrono::milliseconds start_timeout{std::chrono::seconds(10)};
  // Serve HTTPS with a fresh self-signed certificate for IP 127.0.0.1 (openssl CLI); ca_file() names it.
  bool tls = false;
};

class RegistryServer {
 public:
  // kNotFound when docker-registry (or htpasswd, with auth) is not installed; kUnavailable with the log tail when
  // the registry did not come up in time.
  static Result<std::unique_ptr<RegistryServer>> Start(const RegistryServerOptions& opts = {});
  ~RegistryServer();
  RegistryServer(const RegistryServer&) = delete;
  RegistryServer& operator=(const RegistryServer&) = delete;

  // "127.0.0.1:NNNNN", the registry part of references to this server.
  std::string host_port() const { return "127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  // Storage root (docker/registry/v2/... below it), so tests can inspect or corrupt stored blobs.
  std::string root_dir() const { return dir_.Sub("data"); }
  // Path of the blob's data file in the storage ("sha256:<hex>" digest).
  std::string BlobDataPath(const std::string& digest) const;
  std::string log_path() const { return dir_.Sub("registry.log"); }
  // PEM certificate to trust when started with tls (self-signed, so it is its own CA).
  std::string ca_file() const { return dir_.Sub("cert.pem"); }
  // Last `max_bytes` of the registry's log, for failure messages.
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  RegistryServer() : dir_("tug-registry") {}

  TempDir dir_;
  uint16_t port_ = 0;
  core::Process process_;
};

}  // namespace tug::testsupport
