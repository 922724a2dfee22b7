#include "agent/journal.hpp"

#include <nlohmann/json.hpp>

namespace tug::agent {

const char* ToString(UpdateState s) {
  switch (s) {
    case UpdateState::kIdle: return "IDLE";
    case UpdateState::kAccepted: return "ACCEPTED";
    case UpdateState::kDownloading: return "DOWNLOADING";
    case UpdateState::kVerified: return "VERIFIED";
    case UpdateState::kInstalling: return "INSTALLING";
    case UpdateState::kActivating: return "ACTIVATING";
    case UpdateState::kHealthCheck: return "HEALTHCHECK";
    case UpdateState::kSucceeded: return "SUCCEEDED";
    case UpdateState::kFailed: return "FAILED";
    case UpdateState::kRolledBack: return "ROLLED_BACK";
  }
  return "?";
}

Result<UpdateState> ParseUpdateState(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(UpdateState::kRolledBack); ++i) {
    auto st = static_cast<UpdateState>(i);
    if (s == ToString(st)) return st;
  }
  return MakeError(Errc::kInvalidArgument, "unknown update state '" + s + "'");
}

bool IsTerminal(UpdateState s) {
  return s == UpdateState::kIdle || s == UpdateState::kSucceeded || s == UpdateState::kFailed ||
         s == UpdateState::kRolledBack;
}

std::string SerializeJournal(const Journal& j) {
  nlohmann::json o;
  o["state"] = ToString(j.state);
  o["job"] = j.job_id;
  o["release"] = j.release_envelope;
  o["version"] = j.version;
  o["repository"] = j.repository;
  o["digest"] = j.digest;
  o["manifest"] = j.manifest;
  o["target_slot"] = j.target_slot;
  o["from_slot"] = j.from_slot;
  o["attempt"] = j.attempt;
  o["seq"] = j.seq;
  o["entered_at"] = core::FormatRfc3339(j.entered_at);
  o["deadline"] = core::FormatRfc3339(j.deadline);
  if (j.error) o["error"] = {{"code", j.error->code}, {"retryable", j.error->retryable}, {"message", j.error->message}};
  return o.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<Journal> ParseJournal(const std::string& json) {
  try {
    auto o = nlohmann::json::parse(json);
    Journal j;
    TUG_ASSIGN_OR_RETURN(j.state, ParseUpdateState(o.at("state").get<std::string>()));
    j.job_id = o.value("job", "");
    j.release_envelope = o.value("release", "");
    j.version = o.value("version", uint64_t{0});
    j.repository = o.value("repository", "");
    j.digest = o.value("digest", "");
    j.manifest = o.value("manifest", "");
    j.target_slot = o.value("target_slot", "");
    j.from_slot = o.value("from_slot", "");
    j.attempt = o.value("attempt", 0);
    j.seq = o.value("seq", uint64_t{0});
    TUG_ASSIGN_OR_RETURN(j.entered_at, core::ParseRfc3339(o.value("entered_at", "1970-01-01T00:00:00Z")));
    TUG_ASSIGN_OR_RETURN(j.deadline, core::ParseRfc3339(o.value("deadline", "1970-01-01T00:00:00Z")));
    if (o.contains("error")) {
      auto& e = o["error"];
      j.error = JobError{e.value("code", ""), e.value("retryable", false), e.value("message", "")};
    }
    return j;
  } catch (const std::exception& e) {
    return MakeError(Errc::kInvalidArgument, std::string("journal.json is corrupt: ") + e.what());
  }
}

Result<Journal> LoadJournal(core::Env& env, const std::string& path) {
  auto text = env.ReadFile(path);
  if (!text) {
    if (text.error().Is(Errc::kNotFound)) return Journal{};
    return tl::unexpected(text.error());
  }
  return ParseJournal(*text);
}

Status SaveJournal(core::Env& env, const std::string& path, const Journal& j) {
  return core::WriteFileDurable(env, path, SerializeJournal(j));
}

}  // namespace tug::agent
