// tug-broker-config: writes the broker PKI and Mosquitto config (see broker/broker_config.hpp).
// Exit codes: 0 success, 1 generation failed, 2 usage error.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "broker/broker_config.hpp"

int main(int argc, char** argv) {
  tug::broker::BrokerConfigOptions o;
  int plain_port = 0;
  CLI::App app{"tug-broker-config: generate a CA, broker/device/controller certificates and a Mosquitto 2.0 config "
               "with the per-device ACL of the Tugboat MQTT protocol. Idempotent: existing certificates are kept.",
               "tug-broker-config"};
  app.add_option("--out", o.out_dir, "output directory")->required();
  app.add_option("--device", o.device_ids, "device id (certificate CN = MQTT user); repeatable");
  app.add_option("--controller", o.controller_id, "controller's MQTT user / certificate CN")->capture_default_str();
  app.add_option("--more-controller", o.more_controller_ids,
                 "another controller identity sharing the load (the broker binds client id = certificate CN, so "
                 "each controller process needs its own); repeatable");
  std::vector<std::string> revoke;
  app.add_option("--revoke", revoke,
                 "revoke this client's certificate (CRL in ca/crl.pem; restart the broker to apply); repeatable");
  app.add_option("--max-packet-size", o.max_packet_size, "largest MQTT packet a client may send, bytes")
      ->capture_default_str();
  app.add_option("--bind", o.bind_address, "address of the TLS listener")->capture_default_str();
  app.add_option("--tls-port", o.tls_port, "TLS listener port")->capture_default_str();
  app.add_option("--plain-port", plain_port, "also listen without TLS/ACL on 127.0.0.1:PORT (tests only)");
  app.add_option("--dns", o.server_dns_names, "server certificate DNS names (default localhost)");
  app.add_option("--ip", o.server_ips, "server certificate IP addresses (default 127.0.0.1)");
  app.add_option("--days", o.validity_days, "certificate validity in days")->capture_default_str();
  app.add_option("--max-queued", o.max_queued_messages, "per-client offline queue bound")->capture_default_str();
  app.add_option("--max-inflight", o.max_inflight_messages, "per-client in-flight bound")->capture_default_str();
  app.add_option("--session-expiry", o.persistent_client_expiration, "offline session lifetime (e.g. 7d)")
      ->capture_default_str();
  app.add_option("--user", o.run_as_user, "user Mosquitto drops to when started as root")->capture_default_str();
  app.add_option("--log-dest", o.log_dest, "Mosquitto log_dest")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (plain_port > 0) o.plain_port = static_cast<uint16_t>(plain_port);

  auto layout = tug::broker::Generate(o);
  if (!layout) {
    std::cerr << "tug-broker-config: " << layout.error().Message() << "\n";
    return 1;
  }
  for (const auto& id : revoke) {
    if (auto st = tug::broker::Revoke(o.out_dir, id); !st) {
      std::cerr << "tug-broker-config: revoking " << id << ": " << st.error().Message() << "\n";
      return 1;
    }
    std::cout << "revoked: " << id << " (restart mosquitto to refuse it; connected clients stay until then)\n";
  }
  std::cout << "config: " << layout->config_file << "\nca: " << layout->ca.cert << "\nrun: mosquitto -c "
            << layout->config_file << "\n";
  return 0;
}
