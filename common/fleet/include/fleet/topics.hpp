// MQTT topics of the fleet protocol (DESIGN §5): the only place that spells `tug/v1/d/...`.
//
// Per device id D, everything lives below the prefix tug/v1/d/D/:
//   presence, state, jobs/J/status, jobs/J/progress   device -> controller
//   desired, cmd/req                                  controller -> device
//   cmd/res                                           device -> requester
// The controller subscribes to the shared filters ($share/ctrl/tug/v1/d/+/...) so several controllers split the
// reports, and for a moment after each connect to the plain snapshot filters (shared subscriptions get no retained
// messages).
//
// Example:
//   const std::string t = fleet::JobStatusTopic("dev-1", "r-1.dev-1.1");  // "tug/v1/d/dev-1/jobs/r-1.dev-1.1/status"
//   auto parsed = fleet::ParseTopic(t);
//   if (parsed && parsed->leaf == fleet::Leaf::kJobStatus) Use(parsed->device_id, parsed->job);
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::fleet {

enum class Leaf { kPresence, kState, kJobStatus, kJobProgress, kDesired, kCmdReq, kCmdRes };
const char* ToString(Leaf leaf);  // "presence", "state", "jobs/+/status", ...

// Device ids: 1..64 of [A-Za-z0-9._-] (the broker's rule: they become a certificate CN and an ACL user).
inline constexpr size_t kMaxDeviceId = 64;
[[nodiscard]] bool ValidDeviceId(std::string_view id);
// Job ids: 1..200 printable ASCII bytes without '/', '+', '#' (one topic level, no wildcards).
inline constexpr size_t kMaxJobId = 200;
[[nodiscard]] bool ValidJobId(std::string_view job);

// Builders. They do not validate (the ids come from our own config or a validated message); ParseTopic does.
std::string DevicePrefix(std::string_view device_id);  // "tug/v1/d/<id>/"
std::string PresenceTopic(std::string_view device_id);
std::string StateTopic(std::string_view device_id);
std::string JobStatusTopic(std::string_view device_id, std::string_view job);
std::string JobProgressTopic(std::string_view device_id, std::string_view job);
std::string DesiredTopic(std::string_view device_id);
std::string CmdReqTopic(std::string_view device_id);
std::string CmdResTopic(std::string_view device_id);

struct Topic {
  std::string device_id;
  Leaf leaf = Leaf::kPresence;
  std::string job;  // kJobStatus and kJobProgress only
};
// A topic received from the broker. Error reason bad_topic (see fleet/messages.hpp) for anything that is not one of
// the topics above with a valid device id (and job id).
[[nodiscard]] Result<Topic> ParseTopic(std::string_view topic);

// The controller's subscriptions.
inline constexpr std::string_view kShareGroup = "ctrl";
const std::vector<std::string>& ControllerSharedFilters();    // $share/ctrl/.../presence, state, jobs/+/status
const std::vector<std::string>& ControllerSnapshotFilters();  // .../+/presence, .../+/state (retained replay)

}  // namespace tug::fleet
