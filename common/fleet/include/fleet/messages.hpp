// Typed messages of the fleet protocol (DESIGN §5), their serializers and their parsers.
//
// Every payload that crosses the broker is hostile until parsed here. A parser checks, in this order and before it
// builds a JSON tree: the total size (Limits, per message kind), UTF-8 validity of the whole payload, and the
// nesting depth of brackets outside strings (a cheap pre-scan: 100k nested '[' never reach the recursive parser).
// Then it parses without exceptions and checks every field it reads: type, integer range, string length, list and
// map sizes. Unknown fields are ignored (newer senders may add some).
//
// A parse error is an Error whose context names the field ("state.active.digest: expected string") and whose code
// is a fleet::Reason (ReasonOf(e), ToString gives the metric label: too_large, bad_json, too_deep, bad_utf8,
// bad_type, out_of_range, missing_field, bad_value, bad_topic).
//
// Serializers never throw: text that is not UTF-8 (an app's log line, a registry's error text) is written with
// U+FFFD in place of the bad bytes, and strings with a cap are cut (on a character boundary) to fit it, so what we
// send always passes the peer's parser.
//
// Example:
//   auto st = fleet::ParseState(m.payload, limits);
//   if (!st) { counts.Add(st.error()); return; }     // e.g. "state.seq: expected unsigned integer" / bad_type
//   Use(st->boot_id, st->seq, st->active);
//   std::string out = fleet::Serialize(fleet::Presence{.online = true, .boot_id = "b1", .ts = "2026-01-01T00:00:00Z"});
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "fleet/topics.hpp"

namespace tug::fleet {

// ---- why a message was refused ----

enum class Reason {
  kTooLarge = 1,
  kBadJson,
  kTooDeep,
  kBadUtf8,
  kBadType,
  kOutOfRange,
  kMissingField,
  kBadValue,  // a string outside its set (command, action) or an id with forbidden characters
  kBadTopic,  // from ParseTopic
};
inline constexpr size_t kReasonCount = 9;
const char* ToString(Reason r);  // the metric label
const std::error_category& ReasonCategory();
std::error_code make_error_code(Reason r);
// The reason of an error from this library; kBadValue for any other error.
Reason ReasonOf(const Error& e);

// Counters per reason (not thread-safe: one owner thread).
struct ReasonCounts {
  std::array<uint64_t, kReasonCount + 1> n{};
  void Add(const Error& e) { ++n[static_cast<size_t>(ReasonOf(e))]; }
  uint64_t operator[](Reason r) const { return n[static_cast<size_t>(r)]; }
  uint64_t Total() const;
};

// ---- limits ----

// Caps a parser enforces (bytes for strings). The defaults fit what the agent sends with room to spare; the
// controller may tighten them (they bound what one device can make it store).
struct Limits {
  size_t max_depth = 16;
  size_t presence_bytes = 1024;
  size_t state_bytes = 64 * 1024;
  size_t job_status_bytes = 8 * 1024;
  size_t progress_bytes = 1024;
  size_t desired_bytes = 1024 * 1024;  // carries the signed release envelope
  size_t cmd_request_bytes = 4 * 1024;
  size_t cmd_response_bytes = 1024 * 1024;
  size_t token_bytes = 128;    // boot_id, ts, arch, agent_version, slot, status, phase, error code
  size_t digest_bytes = 128;
  size_t name_bytes = 256;
  size_t text_bytes = 2048;    // error messages
  size_t labels = 32;          // entries in state.labels
  size_t label_key_bytes = 63;
  size_t label_value_bytes = 255;
};
const Limits& DefaultLimits();
// The payload cap for messages of a topic leaf.
size_t MaxPayload(Leaf leaf, const Limits& l = DefaultLimits());

// ---- messages ----

struct Presence {
  bool online = false;
  std::string boot_id;  // optional on the wire
  std::string ts;       // RFC 3339, optional
};

struct JobError {
  std::string code;
  bool retryable = false;
  std::string message;
};

struct SlotInfo {
  std::string slot, digest;
  uint64_t version = 0;
  std::string name, status;
  bool running = false;
};

struct JobSummary {
  std::string id, phase;  // "" when the device has no job
  uint64_t seq = 0;
  std::optional<JobError> error;
};

struct State {
  std::string boot_id;  // required
  uint64_t seq = 0;     // required
  uint64_t applied_v = 0;
  std::optional<SlotInfo> active, previous;
  JobSummary job;
  uint64_t ratchet = 0;
  std::string arch, agent_version;
  uint64_t free_bytes = 0;
  std::map<std::string, std::string> labels;  // the device's claims (docs/controller.md)
  std::map<std::string, uint64_t> rejected;   // messages the device refused, per reason (sent when non-empty)
};

struct JobStatus {
  std::string state;    // required: ACCEPTED .. SUCCEEDED, FAILED, ROLLED_BACK
  uint64_t seq = 0;     // required
  std::string boot_id;
  std::optional<JobError> error;
};

struct Progress {
  std::string phase;
  uint64_t bytes = 0, total = 0;
};

struct Desired {
  enum class Action { kInstall, kRollback };
  uint64_t v = 0;       // required, >= 1
  std::string job;      // optional on the wire; the agent names it job-v<v>
  Action action = Action::kInstall;
  std::string release;  // install: the signed envelope as JSON text (required); empty for a rollback
  std::string deadline; // policy.deadline, RFC 3339, optional
  std::string window;   // policy.window, optional
};

enum class Command { kCancel, kRollback, kRestart, kReport, kLogs };
const char* ToString(Command c);
struct CmdRequest {
  Command cmd = Command::kReport;
};

struct CmdResponse {
  bool ok = false;
  std::string error;                // when !ok
  nlohmann::json result = nullptr;  // command specific (report: the state; logs: the tail as a string)
};

// ---- serializers (never throw) ----

std::string Serialize(const Presence& m);
std::string Serialize(const State& m);
std::string Serialize(const JobStatus& m);
std::string Serialize(const Progress& m);
// `release` is embedded as it is: it must be JSON text (the controller registers only envelopes that parse).
std::string Serialize(const Desired& m);
std::string Serialize(const CmdRequest& m);
std::string Serialize(const CmdResponse& m);
// JSON values of the slot info, as the controller stores and the API shows them (null for nullopt).
nlohmann::json ToJson(const std::optional<SlotInfo>& s);
// Any JSON as text, invalid UTF-8 replaced (for JSON our own code builds from untrusted strings).
std::string SafeDump(const nlohmann::json& j);

// ---- parsers ----

[[nodiscard]] Result<Presence> ParsePresence(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<State> ParseState(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<JobStatus> ParseJobStatus(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<Progress> ParseProgress(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<Desired> ParseDesired(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<CmdRequest> ParseCmdRequest(std::string_view payload, const Limits& l = DefaultLimits());
[[nodiscard]] Result<CmdResponse> ParseCmdResponse(std::string_view payload, const Limits& l = DefaultLimits());

// The checks every parser runs before building a tree: size, UTF-8, depth. `what` names the message in the error.
[[nodiscard]] Status Prescan(std::string_view payload, size_t max_bytes, size_t max_depth, const char* what);
[[nodiscard]] bool ValidUtf8(std::string_view s);

}  // namespace tug::fleet

namespace std {
template <>
struct is_error_code_enum<tug::fleet::Reason> : true_type {};
}  // namespace std
