// iot-controller configuration: command-line flags over an optional JSON file (--config).
//
// JSON keys (all optional; flags win):
//   {"db":"/var/lib/tugboat/controller.db","listen":"127.0.0.1:8080","token":"...","token_file":"/etc/tugboat/token",
//    "api_tokens":"/etc/tugboat/api.tokens","tls_cert":"api.crt","tls_key":"api.key",
//    "root":"/etc/tugboat/root.json","tick":"1s","log_level":"info",
//    "mqtt":{"host":"broker","port":8883,"ca":"ca.crt","cert":"controller.crt","key":"controller.key",
//            "client_id":"controller-1","keepalive":30}}
// Relative paths in the file are taken relative to the file's directory.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "controller/mqtt_bridge.hpp"
#include "core/error.hpp"

namespace tug::controller {

struct Config {
  std::string db = "controller.db";
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  std::string token;       // resolved: --token, or the first line of --token-file (one shared admin token)
  // Named, scoped, hashed tokens (http::TokenTable, made with tug-token): viewer reads, operator changes. Either
  // this or token is required; both may be given.
  std::string api_tokens_file;
  // HTTPS: the API's certificate and key (PEM). Without them the API is plain HTTP (a warning unless loopback).
  std::string tls_cert, tls_key;
  std::string root_file;   // fleet trust root envelope (required)
  bool mqtt_enabled = false;  // --mqtt-host given (without MQTT the controller serves the API only)
  MqttConfig mqtt;
  std::chrono::milliseconds tick{1000};
  std::string log_level = "info";
};

// Parses argv (argv[0] ignored). kInvalidArgument naming the flag or JSON field; "--help" output goes to stdout
// and yields kCancelled (exit 0).
// Without mqtt.client_id, the id is DefaultClientId(db).
Result<Config> ParseConfig(int argc, char** argv);

// The default MQTT client id: stable for one controller (host name and database path), distinct for two.
std::string DefaultClientId(const std::string& db_path);

}  // namespace tug::controller
