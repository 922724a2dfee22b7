// device-agent's daemon mode (`device-agent --config FILE run`): keeps the device on the release the controller
// wants, over MQTT (DESIGN.md §5).
//
// Threads: one io_context thread runs MQTT (tug::mqtt::Client) and timers; one worker thread runs the Updater's
// blocking work (downloads, unpacking, runc) one job at a time. The worker never touches MQTT directly: it posts
// publications to the io_context. The installed app keeps running whatever MQTT does: a dead broker or controller
// only delays new jobs.
//
// Protocol (common/fleet has the topics, messages and their validation), per device id D (prefix tug/v1/d/D/).
// Every desired and cmd message is validated before anything is queued or persisted; a malformed one is logged
// (rate-limited), counted in the state's "rejected" (per reason) and, for a command, answered with ok:false.
//
//   desired   (retained, controller -> device) {"v","job","release":<envelope JSON object or string>,"policy"}:
//             applied once when v > the persisted applied_v; the same retained message after a reconnect is ignored.
//             applied_v is persisted when the release verified (the job reached ACCEPTED), never before: a
//             desired that fails verification does not advance it.
//             {"v","job","action":"rollback"} switches to the previous committed release (fleet rollback: retained,
//             so devices offline at the time roll back when they return; a release can't do it, the ratchet forbids
//             lower versions).
//   state     (retained) {"boot_id","seq","applied_v","active","previous","job","arch","agent_version","free_bytes",
//             "labels"}: on connect, after every job transition and on "report".
//   presence  (retained) {"online","boot_id","ts"}; the Last Will says online:false.
//   jobs/J/status   each transition {"state","seq","boot_id","error"} QoS 1.
//   jobs/J/progress {"phase","bytes","total"} QoS 0, at most once a second.
//   cmd/req -> cmd/res (or the request's MQTT 5 response topic if it lies below the device's prefix, the only place
//             the ACL lets a device write), with the request's correlation data:
//             {"cmd":"cancel"|"rollback"|"restart"|"report"|"logs"} -> {"ok":bool,"error":"...","result":...}
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "agent/updater.hpp"
#include "core/error.hpp"

namespace tug::agent {

struct DaemonConfig {
  std::string device_id;
  std::string state_dir = "/var/lib/tugboat";
  std::string platform;  // empty: the machine's own
  std::map<std::string, std::string> labels;
  std::string repository;  // HOST/REPO: accept releases only for it (as `device-agent --repository`); empty: any
  struct {
    std::string host = "127.0.0.1";
    uint16_t port = 8883;
    std::string ca_file, cert_file, key_file;  // TLS unless ca_file is empty (plain MQTT: loopback tests only)
    std::chrono::seconds keepalive{30};
    std::chrono::seconds session_expiry{std::chrono::hours(24 * 7)};
  } mqtt;
  std::vector<std::string> insecure_registries;
  std::string registry_username, registry_password;
  std::chrono::milliseconds commit_window{std::chrono::seconds(10)};
  std::chrono::milliseconds healthcheck_timeout{std::chrono::seconds(120)};
  std::chrono::seconds supervise_interval{15};  // how often the active app is checked and restarted if it died
};

// Reads a JSON config file:
//   {"device_id":"dev-1","state_dir":"/var/lib/tugboat","platform":"linux/arm64/v8","labels":{"site":"x"},
//    "repository":"registry.example/acme/sensor",
//    "mqtt":{"host":"broker","port":8883,"ca":"ca.crt","cert":"dev-1.crt","key":"dev-1.key","keepalive":30},
//    "registry":{"insecure":["127.0.0.1:5000"],"username":"","password":""},
//    "commit_window":10,"healthcheck_timeout":120,"supervise_interval":15}
// Relative file paths are taken relative to the config file's directory. kInvalidArgument names the bad field.
Result<DaemonConfig> LoadDaemonConfig(const std::string& path);

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int RunDaemon(const DaemonConfig& cfg);

}  // namespace tug::agent
