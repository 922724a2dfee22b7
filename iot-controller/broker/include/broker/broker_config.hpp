// Broker provisioning: the PKI and the Mosquitto 2.0 configuration that enforce DESIGN §5 (device id = TLS
// certificate CN = MQTT username; per-device ACL; controller shares `$share/ctrl/...`).
//
// Everything is generated into one directory:
//   ca/ca.crt ca/ca.key            the fleet CA (EC P-256, self-signed)
//   server/server.crt server.key   the broker's certificate (SANs: the given DNS names and IPs)
//   clients/<id>.crt <id>.key      one certificate per device, and one per controller (CN = its user name)
//   ca/crl.pem                     the CA's certificate revocation list (Revoke() adds to it), checked by the broker
//   ca/openssl-ca.cnf index.txt    the CA database `openssl ca` keeps revocations in
//   mosquitto.conf acl             the broker config and its ACL file
//   data/                          persistence (sessions, retained messages, queued QoS 1 messages)
// Keys are mode 0600. Generation is idempotent: an existing CA, server or client certificate is kept, so adding a
// device later never invalidates the others; the config and ACL are rewritten every time.
//
// Blocking (runs the `openssl` CLI through core::Run); not meant for an io_context thread. Errors: kInvalidArgument
// for a device id that is not a safe MQTT user name, kNotFound when openssl is missing, kInternal when openssl
// fails (its stderr in the context), I/O errors from the filesystem.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::broker {

struct BrokerConfigOptions {
  std::string out_dir;
  std::vector<std::string> device_ids;
  // MQTT user (and certificate CN) of the controller; it may read and write every device's topics.
  std::string controller_id = "controller";
  // More controllers splitting `$share/ctrl`: the broker binds the client id to the certificate CN, so each
  // controller process needs an identity of its own (two processes with one certificate take turns kicking each
  // other off). Same rights as controller_id.
  std::vector<std::string> more_controller_ids;
  std::string bind_address = "127.0.0.1";
  uint16_t tls_port = 8883;
  // A second listener without TLS or ACL for quick local tests; bound to 127.0.0.1 only. Leave unset in production.
  std::optional<uint16_t> plain_port;
  std::vector<std::string> server_dns_names{"localhost"};
  std::vector<std::string> server_ips{"127.0.0.1"};
  int validity_days = 365;
  // Per client: messages queued while it is offline (QoS 1/2, persistent session) and in flight at once.
  // Per client. The controller's one session receives every device's reports; at 1,000 Mosquitto dropped reports to
  // a busy controller under a few hundred devices (bench/fleet_sim.cpp), and reports are sent once.
  int max_queued_messages = 100000;
  int max_inflight_messages = 20;
  // How long the broker keeps an offline persistent session (Mosquitto duration syntax: 1h, 7d, 2w ...).
  std::string persistent_client_expiration = "7d";
  // When started as root Mosquitto drops to this user; "root" keeps root (tests run as root with files in /tmp).
  std::string run_as_user = "mosquitto";
  // "stderr", "syslog" or "file /path".
  std::string log_dest = "stderr";
  // Largest MQTT packet any client may send (Mosquitto max_packet_size: the client is disconnected beyond it). The
  // largest legitimate packets are a desired message with its release envelope (a few KiB) and a logs answer
  // (16 KiB of log text); 256 KiB leaves room and stops a stolen device's 64 MiB "state" at the broker.
  int max_packet_size = 256 * 1024;
};

struct CertPair {
  std::string cert;
  std::string key;
};

struct BrokerLayout {
  std::string dir;
  CertPair ca;
  CertPair server;
  std::string config_file;
  std::string acl_file;
  std::string data_dir;
  CertPair controller;
  // In the order of BrokerConfigOptions::more_controller_ids.
  std::vector<CertPair> more_controllers;
  std::string crl_file;
  // In the order of BrokerConfigOptions::device_ids.
  std::vector<CertPair> devices;
};

// True for ids usable as a certificate CN and an MQTT user: 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'.
bool IsValidClientId(const std::string& id);

// Generates (or completes) the whole directory described above.
Result<BrokerLayout> Generate(const BrokerConfigOptions& opts);

// Issues (or returns the existing) certificate for one more client into `dir`/clients, signed by the CA in `dir`/ca.
// Used to add a device after Generate(); needs no broker restart (the broker trusts the CA, not each certificate).
Result<CertPair> IssueClientCert(const std::string& dir, const std::string& client_id, int validity_days = 365);

// Revokes `client_id`'s certificate: adds it to the CA database and rewrites ca/crl.pem, and moves the certificate
// and key to clients/revoked/ so that IssueClientCert can give the id a new certificate later (a replaced device).
// The broker reads the CRL when it starts: restart it (persistence keeps sessions and queued messages) to refuse the
// certificate; a connected client stays connected until then. kNotFound when the id has no certificate.
Status Revoke(const std::string& dir, const std::string& client_id);

// The texts Generate() writes, exposed for tests and for operators who template their own files.
std::string RenderAcl(const std::vector<std::string>& controller_ids);
std::string RenderMosquittoConf(const BrokerConfigOptions& opts, const BrokerLayout& layout);

}  // namespace tug::broker
