// The controller's data model (DESIGN §6): devices as last reported, registered releases, rollouts and the
// per-device outcome of each rollout. Plain values; the Store persists them, the Engine moves them.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace tug::controller {

using Labels = std::map<std::string, std::string>;

// Milliseconds since the Unix epoch: how every time is stored (SQLite INTEGER) and compared.
using Millis = int64_t;

struct Device {
  std::string id;
  Labels reported_labels;   // from the device's state message
  Labels operator_labels;   // PUT /devices/{id}/labels; they win over reported ones
  bool online = false;
  Millis last_seen = 0;
  std::string boot_id;
  nlohmann::json active;    // {"version","digest","name",...} or null
  nlohmann::json previous;
  std::string job_id, job_phase;
  uint64_t applied_v = 0;
  std::string arch, agent_version;
  uint64_t state_seq = 0;   // last applied state seq for boot_id (state reports are idempotent on it)
  uint64_t desired_v = 0;   // highest desired v this controller issued (persisted before publishing)
  std::string desired;      // that desired payload, re-published on MQTT connect while applied_v < desired_v
  Millis created_at = 0;

  Labels EffectiveLabels() const;
};

struct Release {
  uint64_t version = 0;
  std::string name, repository, digest;
  std::string expires_at;  // RFC 3339
  std::string envelope;    // signed DSSE envelope JSON as registered
  Millis created_at = 0;
};

struct PhaseSpec {
  std::optional<int64_t> count;    // cumulative devices of the selected fleet
  std::optional<double> percent;   // or cumulative percent of it
  double success_threshold = 100;  // % of the phase's attempted devices that must succeed
  std::chrono::seconds soak{0};
};

struct RolloutSpec {
  uint64_t release = 0;
  Labels selector_labels;                 // all must match the effective labels, device claims included (empty: any)
  Labels selector_operator_labels;        // all must match labels an operator set (a device cannot claim these)
  std::vector<std::string> selector_devices;  // device must be listed (empty: any)
  std::vector<PhaseSpec> phases;
  double failure_percent = 20;
  int64_t min_devices = 1;
  std::chrono::seconds device_timeout{600};
  int64_t max_concurrency = 100;
  int64_t max_retries = 1;
  bool auto_rollback = true;
};

// Parses a POST /rollouts body. kInvalidArgument whose context is "<field>: <why>" (see FieldOf).
Result<RolloutSpec> ParseRolloutSpec(const nlohmann::json& j);
nlohmann::json RolloutSpecToJson(const RolloutSpec& s);
// The field name of a "<field>: <why>" validation error context ("" if none).
std::string FieldOf(const Error& e);

enum class RolloutState { kRunning, kPaused, kSucceeded, kAborted, kCancelled };
enum class PhaseState { kPending, kActive, kSoaking, kDone };
enum class DeviceJobState { kPending, kInProgress, kSucceeded, kFailed, kTimedOut, kUnreached, kCancelled, kRolledBack };

const char* ToString(RolloutState s);
const char* ToString(PhaseState s);
const char* ToString(DeviceJobState s);
Result<RolloutState> ParseRolloutState(const std::string& s);
Result<DeviceJobState> ParseDeviceJobState(const std::string& s);

struct Rollout {
  std::string id;  // "r-<n>"
  RolloutSpec spec;
  RolloutState state = RolloutState::kRunning;
  Millis created_at = 0;
  int current_phase = 0;
  PhaseState phase_state = PhaseState::kActive;  // state of current_phase; earlier ones are done
  Millis soak_until = 0;
  std::string abort_reason;
  bool rolled_back = false;  // the fleet rollback was sent (by auto_rollback or POST .../rollback)
};

struct RolloutDevice {
  std::string rollout_id, device_id;
  int phase = -1;  // phase it was assigned in; -1 while pending
  DeviceJobState state = DeviceJobState::kPending;
  int64_t attempts = 0;
  std::string job;        // current install job id "<rollout>.<device>.<attempt>"
  bool sent = false;      // the desired for `job` was published (retained: the device gets it when it connects)
  Millis sent_at = 0;     // when the timeout clock started (sent while online, or came back online)
  std::string error;
  std::string rollback_job;    // fleet rollback job id, empty if none
  std::string rollback_state;  // "", "sent", "succeeded", "failed"
};

}  // namespace tug::controller
