#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "controller/api.hpp"
#include "controller/config.hpp"
#include "controller/engine.hpp"
#include "controller/main.hpp"
#include "controller/mqtt_bridge.hpp"
#include "controller/store.hpp"
#include "core/log.hpp"
#include "crypto/trust_root.hpp"
#include "http/server.hpp"
#include "http/tokens.hpp"

namespace tug::controller {

namespace asio = boost::asio;
using nlohmann::json;

// "controller-" + 16 hex digits of FNV-1a over "<hostname>:<absolute database path>": the same controller (same
// machine, same database) gets the same id after every restart, so it resumes its own persistent session and the
// reports the broker queued meanwhile; two controllers splitting the load (different machines or databases) get
// different ids. A random id would leave the dead predecessor's session in $share/ctrl, swallowing its share of
// every report until the session expired.
std::string DefaultClientId(const std::string& db_path) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  std::error_code ec;
  std::string db = std::filesystem::absolute(db_path, ec).lexically_normal().string();
  if (ec) db = db_path;
  uint64_t h = 1469598103934665603ull;
  for (char ch : std::string(host) + ":" + db) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string("controller-") + buf;
}

namespace {

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(Errc::kNotFound, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Resolve(const std::string& base, const std::string& p) {
  if (p.empty() || p[0] == '/' || base.empty()) return p;
  return base + "/" + p;
}

Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return MakeError(Errc::kInvalidArgument, "--listen: want HOST:PORT, got '" + s + "'");
  int port = -1;
  try {
    port = std::stoi(s.substr(colon + 1));
  } catch (...) {
  }
  if (port < 0 || port > 65535) return MakeError(Errc::kInvalidArgument, "--listen: bad port in '" + s + "'");
  return std::make_pair(s.substr(0, colon), static_cast<uint16_t>(port));
}

// Reads the JSON file into the same strings the flags fill, so a flag given explicitly simply overwrites.
Status ApplyFile(const std::string& path, std::map<std::string, std::string>& v) {
  TUG_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return MakeError(Errc::kInvalidArgument, path + ": not a JSON object");
  const std::string base = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  auto take = [&](const json& o, const char* key, const std::string& name, bool is_path) -> Status {
    if (!o.contains(key)) return {};
    const auto& x = o[key];
    std::string s;
    if (x.is_string()) s = x.get<std::string>();
    else if (x.is_number_integer()) s = std::to_string(x.get<int64_t>());
    else return MakeError(Errc::kInvalidArgument, path + ": field " + name + " must be a string or integer");
    v[name] = is_path ? Resolve(base, s) : s;
    return {};
  };
  TUG_TRY(take(j, "db", "db", true));
  TUG_TRY(take(j, "listen", "listen", false));
  TUG_TRY(take(j, "token", "token", false));
  TUG_TRY(take(j, "token_file", "token_file", true));
  TUG_TRY(take(j, "api_tokens", "api_tokens", true));
  TUG_TRY(take(j, "tls_cert", "tls_cert", true));
  TUG_TRY(take(j, "tls_key", "tls_key", true));
  TUG_TRY(take(j, "root", "root", true));
  TUG_TRY(take(j, "tick", "tick", false));
  TUG_TRY(take(j, "log_level", "log_level", false));
  if (j.contains("mqtt")) {
    const auto& m = j["mqtt"];
    if (!m.is_object()) return MakeError(Errc::kInvalidArgument, path + ": field mqtt must be an object");
    TUG_TRY(take(m, "host", "mqtt_host", false));
    TUG_TRY(take(m, "port", "mqtt_port", false));
    TUG_TRY(take(m, "ca", "mqtt_ca", true));
    TUG_TRY(take(m, "cert", "mqtt_cert", true));
    TUG_TRY(take(m, "key", "mqtt_key", true));
    TUG_TRY(take(m, "client_id", "mqtt_client_id", false));
    TUG_TRY(take(m, "keepalive", "mqtt_keepalive", false));
  }
  return {};
}

}  // namespace

Result<Config> ParseConfig(int argc, char** argv) {
  CLI::App app{"Tugboat fleet controller: REST API, rollout engine, MQTT bridge", "iot-controller"};
  std::string config_file;
  std::map<std::string, std::string> flags;
  const char* names[][2] = {
      {"db", "SQLite database file (created if missing)"},
      {"listen", "HTTP listen address HOST:PORT (port 0 picks one; printed as 'listening on ...')"},
      {"token", "bearer token the API requires"},
      {"token-file", "file whose first line is the bearer token"},
      {"api-tokens", "named, scoped bearer tokens (tug-token add --file F --name N --scope viewer|operator|admin); "
                     "reloaded on change"},
      {"tls-cert", "serve the API over HTTPS with this certificate (PEM; needs --tls-key)"},
      {"tls-key", "the HTTPS private key (PEM)"},
      {"root", "fleet trust root (root.json) releases are verified against"},
      {"mqtt-host", "MQTT broker host (without it the controller runs without MQTT)"},
      {"mqtt-port", "MQTT broker port (8883)"},
      {"mqtt-ca", "CA certificate of the broker (no TLS when empty)"},
      {"mqtt-cert", "controller client certificate (CN controller)"},
      {"mqtt-key", "controller client key"},
      {"mqtt-client-id", "MQTT client id (default controller-<hash of host name and --db>, stable across restarts)"},
      {"mqtt-keepalive", "MQTT keepalive seconds (30)"},
      {"tick", "rollout engine period, e.g. 1s, 500ms (1s)"},
      {"log-level", "debug, info, warn, error"},
  };
  std::map<std::string, std::string> cli_values;
  app.add_option("--config", config_file, "JSON config file (flags override it)");
  for (auto& n : names) app.add_option(std::string("--") + n[0], cli_values[n[0]], n[1]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return MakeError(Errc::kCancelled, "help");
  } catch (const CLI::ParseError& e) {
    return MakeError(Errc::kInvalidArgument, e.what());
  }
  // File first, then flags given on the command line on top (key names: underscores).
  if (!config_file.empty()) TUG_TRY(ApplyFile(config_file, flags));
  for (auto& n : names) {
    std::string key = n[0];
    std::replace(key.begin(), key.end(), '-', '_');
    if (app.count(std::string("--") + n[0])) flags[key] = cli_values[n[0]];
  }
  auto get = [&](const std::string& k) { return flags.count(k) ? flags[k] : std::string(); };

  Config c;
  if (!get("db").empty()) c.db = get("db");
  if (!get("listen").empty()) {
    TUG_ASSIGN_OR_RETURN(auto hp, ParseHostPort(get("listen")));
    c.listen_host = hp.first;
    c.listen_port = hp.second;
  }
  c.token = get("token");
  if (c.token.empty() && !get("token_file").empty()) {
    TUG_ASSIGN_OR_RETURN(std::string t, ReadFile(get("token_file")));
    c.token = t.substr(0, t.find_first_of("\r\n"));
  }
  c.api_tokens_file = get("api_tokens");
  if (c.token.empty() && c.api_tokens_file.empty())
    return MakeError(Errc::kInvalidArgument, "--api-tokens, --token or --token-file is required");
  c.tls_cert = get("tls_cert");
  c.tls_key = get("tls_key");
  if (c.tls_cert.empty() != c.tls_key.empty())
    return MakeError(Errc::kInvalidArgument, "--tls-cert and --tls-key go together");
  c.root_file = get("root");
  if (c.root_file.empty()) return MakeError(Errc::kInvalidArgument, "--root is required (the fleet trust root)");
  if (!get("log_level").empty()) c.log_level = get("log_level");
  if (!get("tick").empty()) {
    const std::string t = get("tick");
    if (t.size() > 2 && t.substr(t.size() - 2) == "ms") {
      try {
        c.tick = std::chrono::milliseconds(std::stoll(t.substr(0, t.size() - 2)));
      } catch (...) {
        return MakeError(Errc::kInvalidArgument, "--tick: bad duration '" + t + "'");
      }
    } else {
      auto d = core::ParseDuration(t);
      if (!d) return MakeError(Errc::kInvalidArgument, "--tick: " + d.error().context);
      c.tick = *d;
    }
    if (c.tick.count() <= 0) return MakeError(Errc::kInvalidArgument, "--tick must be above 0");
  }
  if (!get("mqtt_host").empty()) {
    c.mqtt_enabled = true;
    c.mqtt.host = get("mqtt_host");
    if (!get("mqtt_port").empty()) {
      int p = -1;
      try {
        p = std::stoi(get("mqtt_port"));
      } catch (...) {
      }
      if (p <= 0 || p > 65535) return MakeError(Errc::kInvalidArgument, "--mqtt-port: bad port");
      c.mqtt.port = static_cast<uint16_t>(p);
    }
    c.mqtt.ca_file = get("mqtt_ca");
    c.mqtt.cert_file = get("mqtt_cert");
    c.mqtt.key_file = get("mqtt_key");
    c.mqtt.client_id = get("mqtt_client_id");
    if (c.mqtt.client_id.empty()) c.mqtt.client_id = DefaultClientId(c.db);
    if (!get("mqtt_keepalive").empty()) {
      try {
        c.mqtt.keepalive = std::chrono::seconds(std::stoi(get("mqtt_keepalive")));
      } catch (...) {
        return MakeError(Errc::kInvalidArgument, "--mqtt-keepalive: bad number");
      }
    }
  }
  return c;
}

namespace {

// Without --mqtt-host: the engine still records its decisions; nothing leaves the process.
class NullPublisher : public Publisher {
 public:
  Status Publish(const std::string& topic, const std::string&, bool) override {
    spdlog::debug("no MQTT configured: not publishing {}", topic);
    return {};
  }
};

}  // namespace

int Main(int argc, char** argv) {
  auto cfg = ParseConfig(argc, argv);
  if (!cfg) {
    if (cfg.error().Is(Errc::kCancelled)) return 0;
    std::cerr << "iot-controller: " << cfg.error().context << "\n";
    return 2;
  }
  core::InitLogging(cfg->log_level, "iot-controller");
  auto root_text = ReadFile(cfg->root_file);
  if (!root_text) {
    std::cerr << "iot-controller: " << root_text.error().Message() << "\n";
    return 1;
  }
  auto root = crypto::LoadTrustRoot(*root_text, core::SystemClock()->Now());
  if (!root) {
    std::cerr << "iot-controller: trust root " << cfg->root_file << ": " << root.error().Message() << "\n";
    return 1;
  }
  auto store = Store::Open(cfg->db);
  if (!store) {
    std::cerr << "iot-controller: " << store.error().Message() << "\n";
    return 1;
  }

  asio::io_context io;
  Metrics metrics;
  NullPublisher null_publisher;
  std::unique_ptr<MqttBridge> bridge;
  if (cfg->mqtt_enabled) bridge = std::make_unique<MqttBridge>(io, cfg->mqtt, metrics);
  Publisher& publisher = bridge ? static_cast<Publisher&>(*bridge) : null_publisher;
  Engine engine(**store, publisher, *core::SystemClock());
  Api api(**store, engine, metrics, *root, cfg->token, *core::SystemClock());
  if (!cfg->api_tokens_file.empty()) {
    auto tokens = http::TokenTable::Load(cfg->api_tokens_file);
    if (!tokens) {
      std::cerr << "iot-controller: " << tokens.error().Message() << "\n";
      return 2;
    }
    api.set_tokens(std::shared_ptr<http::TokenTable>(std::move(*tokens)));
  }
  http::ServerOptions server_opts;
  server_opts.server_name = "tugboat-controller";
  if (!cfg->tls_cert.empty()) {
    server_opts.tls = http::ServerOptions::Tls{cfg->tls_cert, cfg->tls_key, "", false};
  } else if (cfg->listen_host != "127.0.0.1" && cfg->listen_host != "::1" && cfg->listen_host != "localhost") {
    spdlog::warn("the API is plain HTTP on {}: tokens cross the network in clear text (--tls-cert/--tls-key)",
                 cfg->listen_host);
  }
  auto server = http::Server::Start(io, cfg->listen_host, cfg->listen_port,
                                    [&api](const http::Request& r) { return api.Serve(r); }, server_opts);
  if (!server) {
    std::cerr << "iot-controller: " << server.error().Message() << "\n";
    return 1;
  }
  metrics.http_server = &(*server)->stats();
  if (bridge) {
    bridge->Attach(&engine);
    if (auto st = bridge->Start(); !st) {
      std::cerr << "iot-controller: mqtt: " << st.error().Message() << "\n";
      return 1;
    }
  }
  // Tests and scripts read the port from this line.
  std::cout << "listening on " << cfg->listen_host << ":" << (*server)->port() << std::endl;
  spdlog::info("controller up: db {}, mqtt {}", cfg->db,
               bridge ? cfg->mqtt.host + ":" + std::to_string(cfg->mqtt.port) + " as " + bridge->client_id()
                      : std::string("off"));

  // The tick catches what no report triggers: timeouts, soak ends, devices missed by a lost message.
  asio::steady_timer ticker(io);
  std::function<void()> schedule = [&] {
    ticker.expires_after(cfg->tick);
    ticker.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto st = engine.Tick(); !st) spdlog::error("rollout tick: {}", st.error().Message());
      schedule();
    });
  };
  schedule();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", sig);
    ticker.cancel();
    (*server)->Stop();
    if (bridge) bridge->Stop();
    // Give the MQTT DISCONNECT a moment to leave, then stop whatever is still pending.
    auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(200));
    t->async_wait([&io, t](const boost::system::error_code&) { io.stop(); });
  });
  io.run();
  return 0;
}

}  // namespace tug::controller
