// MosquittoServer: a real Mosquitto 2.0 broker on 127.0.0.1 for one test, configured by tug-broker-config's library
// (iot-controller/broker): mutual-TLS listener with the ACL of docs/mqtt.md (client id bound to the certificate CN,
// packet size cap, CRL), plus a plain loopback listener without ACL only for a test that asks for one
// (plain_listener), persistence in its temp dir. Start() blocks until every listener accepts TCP (bounded); the
// destructor stops the broker by pid (SIGTERM, then SIGKILL) and removes the directory.
//
// Blocking; use from the test thread. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/broker_config.hpp"
#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::testsupport {

struct MosquittoServerOptions {
  // Certificates generated up front; Cert() makes others on demand.
  std::vector<std::string> device_ids;
  std::string controller_id = "controller";
  // Further controller identities with the controller's rights (each controller process needs its own CN).
  std::vector<std::string> more_controller_ids{};
  // An anonymous listener without TLS or ACL: only for tests that need one.
  bool plain_listener = false;
  int max_packet_size = 256 * 1024;
  int max_queued_messages = 1000;
  int max_inflight_messages = 20;
  std::chrono::milliseconds start_timeout{std::chrono::seconds(10)};
};

class MosquittoServer {
 public:
  // kNotFound when mosquitto or openssl is not installed; kUnavailable with the log tail when the broker did not
  // come up in time.
  static Result<std::unique_ptr<MosquittoServer>> Start(const MosquittoServerOptions& opts = {});
  ~MosquittoServer();
  MosquittoServer(const MosquittoServer&) = delete;
  MosquittoServer& operator=(const MosquittoServer&) = delete;

  std::string host() const { return "127.0.0.1"; }
  uint16_t tls_port() const { return tls_port_; }
  // 0 when started without the plain listener.
  uint16_t plain_port() const { return plain_port_; }
  std::string ca_file() const { return layout_.ca.cert; }
  // The broker's own certificate (SANs 127.0.0.1, localhost; from the fleet CA): usable by other loopback servers
  // of a test, e.g. the controller's HTTPS API, that clients then verify with ca_file().
  broker::CertPair server_cert() const { return layout_.server; }
  const std::string& controller_id() const { return opts_.controller_id; }
  // {cert, key} for a client whose certificate CN (hence MQTT user) is `client_id`; generated on first use.
  Result<broker::CertPair> Cert(const std::string& client_id);
  // broker::Revoke on this broker's PKI; takes effect at the next Restart().
  Status Revoke(const std::string& client_id);

  // Stops the broker (SIGTERM: it writes its persistence file) and starts it again on the same ports with the same
  // config; returns when it accepts again. For reconnect tests.
  Status Restart();
  // Stops only (the broker stays down until Restart()). For "broker unreachable" tests.
  void Stop();
  // SIGKILL without a persistence save, as in a crash.
  void Kill();
  bool running() { return process_.Running(); }
  pid_t pid() const { return process_.pid(); }

  std::string config_file() const { return layout_.config_file; }
  std::string log_path() const { return dir_.Sub("mosquitto.log"); }
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  explicit MosquittoServer(MosquittoServerOptions opts) : opts_(std::move(opts)), dir_("tug-mosquitto") {}
  Status Launch();

  MosquittoServerOptions opts_;
  TempDir dir_;
  broker::BrokerLayout layout_;
  uint16_t tls_port_ = 0;
  uint16_t plain_port_ = 0;
  core::Process process_;
};

}  // namespace tug::testsupport
