#include "agent/slots.hpp"

#include <nlohmann/json.hpp>

namespace tug::agent {

const char* ToString(SlotStatus s) {
  switch (s) {
    case SlotStatus::kEmpty: return "empty";
    case SlotStatus::kInstalling: return "installing";
    case SlotStatus::kInstalled: return "installed";
    case SlotStatus::kCommitted: return "committed";
    case SlotStatus::kFailed: return "failed";
  }
  return "?";
}

namespace {
SlotStatus ParseSlotStatus(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(SlotStatus::kFailed); ++i)
    if (s == ToString(static_cast<SlotStatus>(i))) return static_cast<SlotStatus>(i);
  return SlotStatus::kEmpty;
}
}  // namespace

Result<std::optional<std::string>> Slots::Active() {
  auto link = env_.ReadLink(dir_.active_link());
  if (!link) {
    if (link.error().Is(Errc::kNotFound)) return std::optional<std::string>{};
    return tl::unexpected(link.error());
  }
  if (*link == "slots/a") return std::optional<std::string>("a");
  if (*link == "slots/b") return std::optional<std::string>("b");
  return MakeError(Errc::kInvalidArgument, "active symlink points at unexpected '" + *link + "'");
}

Result<std::string> Slots::Idle() {
  TUG_ASSIGN_OR_RETURN(auto active, Active());
  return active ? Other(*active) : std::string("a");
}

Result<SlotRecord> Slots::Read(const std::string& slot) {
  auto text = env_.ReadFile(dir_.slot(slot) + "/slot.json");
  SlotRecord r;
  r.slot = slot;
  if (!text) {
    if (text.error().Is(Errc::kNotFound)) return r;
    return tl::unexpected(text.error());
  }
  try {
    auto o = nlohmann::json::parse(*text);
    r.status = ParseSlotStatus(o.value("status", "empty"));
    r.digest = o.value("digest", "");
    r.manifest = o.value("manifest", "");
    r.version = o.value("version", uint64_t{0});
    r.name = o.value("name", "");
    r.repository = o.value("repository", "");
    r.release_envelope = o.value("release", "");
  } catch (const std::exception& e) {
    // A torn slot.json cannot happen with durable writes; if it does, the slot holds nothing we can trust.
    r.status = SlotStatus::kFailed;
  }
  return r;
}

Status Slots::Write(const SlotRecord& r) {
  nlohmann::json o{{"slot", r.slot},       {"status", ToString(r.status)}, {"digest", r.digest},
                   {"manifest", r.manifest}, {"version", r.version},       {"name", r.name},
                   {"repository", r.repository}, {"release", r.release_envelope}};
  return core::WriteFileDurable(env_, dir_.slot(r.slot) + "/slot.json",
                                o.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

Status Slots::SwitchActive(const std::string& slot) {
  return core::ReplaceSymlinkDurable(env_, "slots/" + slot, dir_.active_link());
}

Status Slots::Reset(const std::string& slot) {
  SlotRecord r;
  r.slot = slot;
  r.status = SlotStatus::kInstalling;
  // Mark first: if we die while deleting, the slot is known to hold nothing usable.
  TUG_TRY(env_.CreateDirs(dir_.slot(slot)));
  TUG_TRY(Write(r));
  TUG_TRY(env_.RemoveAll(dir_.slot(slot) + "/rootfs"));
  TUG_TRY(env_.RemoveFile(dir_.slot(slot) + "/config.json"));
  TUG_TRY(env_.CreateDirs(dir_.slot(slot) + "/rootfs"));
  return {};
}

}  // namespace tug::agent
