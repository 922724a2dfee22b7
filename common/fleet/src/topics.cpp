#include "fleet/topics.hpp"

#include "fleet/messages.hpp"

namespace tug::fleet {

namespace {
constexpr std::string_view kPrefix = "tug/v1/d/";

bool IdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

std::string Join(std::string_view id, std::string_view leaf) {
  std::string t;
  t.reserve(kPrefix.size() + id.size() + 1 + leaf.size());
  t.append(kPrefix).append(id).push_back('/');
  t.append(leaf);
  return t;
}

std::string JobTopic(std::string_view id, std::string_view job, std::string_view what) {
  std::string leaf = "jobs/";
  leaf.append(job).push_back('/');
  leaf.append(what);
  return Join(id, leaf);
}

tl::unexpected<Error> BadTopic(std::string_view topic, const char* why) {
  // The topic is shown cut short: it comes from the peer.
  std::string shown(topic.substr(0, 120));
  if (!ValidUtf8(shown)) shown = "(not UTF-8)";
  return tl::unexpected(Error{make_error_code(Reason::kBadTopic), "topic '" + shown + "': " + why});
}
}  // namespace

const char* ToString(Leaf leaf) {
  switch (leaf) {
    case Leaf::kPresence: return "presence";
    case Leaf::kState: return "state";
    case Leaf::kJobStatus: return "jobs/+/status";
    case Leaf::kJobProgress: return "jobs/+/progress";
    case Leaf::kDesired: return "desired";
    case Leaf::kCmdReq: return "cmd/req";
    case Leaf::kCmdRes: return "cmd/res";
  }
  return "?";
}

bool ValidDeviceId(std::string_view id) {
  if (id.empty() || id.size() > kMaxDeviceId) return false;
  for (char c : id)
    if (!IdChar(c)) return false;
  return true;
}

bool ValidJobId(std::string_view job) {
  if (job.empty() || job.size() > kMaxJobId) return false;
  for (char c : job)
    if (c < 0x21 || c > 0x7e || c == '/' || c == '+' || c == '#') return false;
  return true;
}

std::string DevicePrefix(std::string_view device_id) { return Join(device_id, ""); }
std::string PresenceTopic(std::string_view device_id) { return Join(device_id, "presence"); }
std::string StateTopic(std::string_view device_id) { return Join(device_id, "state"); }
std::string JobStatusTopic(std::string_view device_id, std::string_view job) {
  return JobTopic(device_id, job, "status");
}
std::string JobProgressTopic(std::string_view device_id, std::string_view job) {
  return JobTopic(device_id, job, "progress");
}
std::string DesiredTopic(std::string_view device_id) { return Join(device_id, "desired"); }
std::string CmdReqTopic(std::string_view device_id) { return Join(device_id, "cmd/req"); }
std::string CmdResTopic(std::string_view device_id) { return Join(device_id, "cmd/res"); }

Result<Topic> ParseTopic(std::string_view topic) {
  if (topic.substr(0, kPrefix.size()) != kPrefix) return BadTopic(topic, "not below tug/v1/d/");
  std::string_view rest = topic.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return BadTopic(topic, "no leaf after the device id");
  Topic t;
  const std::string_view id = rest.substr(0, slash);
  if (!ValidDeviceId(id)) return BadTopic(topic, "bad device id");
  t.device_id = std::string(id);
  const std::string_view leaf = rest.substr(slash + 1);
  if (leaf == "presence") {
    t.leaf = Leaf::kPresence;
  } else if (leaf == "state") {
    t.leaf = Leaf::kState;
  } else if (leaf == "desired") {
    t.leaf = Leaf::kDesired;
  } else if (leaf == "cmd/req") {
    t.leaf = Leaf::kCmdReq;
  } else if (leaf == "cmd/res") {
    t.leaf = Leaf::kCmdRes;
  } else if (leaf.substr(0, 5) == "jobs/") {
    const std::string_view job_and_kind = leaf.substr(5);
    const size_t s = job_and_kind.rfind('/');
    if (s == std::string_view::npos) return BadTopic(topic, "no status or progress after the job id");
    const std::string_view job = job_and_kind.substr(0, s), kind = job_and_kind.substr(s + 1);
    if (!ValidJobId(job)) return BadTopic(topic, "bad job id");
    if (kind == "status") {
      t.leaf = Leaf::kJobStatus;
    } else if (kind == "progress") {
      t.leaf = Leaf::kJobProgress;
    } else {
      return BadTopic(topic, "unknown job topic");
    }
    t.job = std::string(job);
  } else {
    return BadTopic(topic, "unknown leaf");
  }
  return t;
}

const std::vector<std::string>& ControllerSharedFilters() {
  static const std::vector<std::string> f = [] {
    const std::string share = "$share/" + std::string(kShareGroup) + "/";
    return std::vector<std::string>{share + PresenceTopic("+"), share + StateTopic("+"),
                                    share + JobStatusTopic("+", "+")};
  }();
  return f;
}

const std::vector<std::string>& ControllerSnapshotFilters() {
  static const std::vector<std::string> f{PresenceTopic("+"), StateTopic("+")};
  return f;
}

}  // namespace tug::fleet
