// A/B slots. Each slot is an OCI runtime bundle (rootfs/, config.json) plus slot.json describing what it holds.
// `active` is a relative symlink ("slots/a") switched atomically by rename(2) + directory fsync.
#pragma once

#include <optional>
#include <string>

#include "agent/state_dir.hpp"
#include "core/env.hpp"
#include "core/error.hpp"

namespace tug::agent {

enum class SlotStatus { kEmpty, kInstalling, kInstalled, kCommitted, kFailed };
const char* ToString(SlotStatus s);

struct SlotRecord {
  std::string slot;  // "a" | "b"
  SlotStatus status = SlotStatus::kEmpty;
  std::string digest;    // signed digest
  std::string manifest;  // platform manifest digest
  uint64_t version = 0;
  std::string name;
  std::string repository;
  std::string release_envelope;
};

class Slots {
 public:
  Slots(core::Env& env, StateDir dir) : env_(env), dir_(std::move(dir)) {}

  static std::string Other(const std::string& slot) { return slot == "a" ? "b" : "a"; }

  // The slot `active` points to, or nullopt on a fresh device.
  Result<std::optional<std::string>> Active();
  // The slot an update installs into: the one that is not active ("a" on a fresh device).
  Result<std::string> Idle();
  Result<SlotRecord> Read(const std::string& slot);  // kEmpty record when slot.json is absent
  Status Write(const SlotRecord& rec);
  // Points `active` at `slot` durably.
  Status SwitchActive(const std::string& slot);
  // Empties a slot (rootfs and all) and marks it installing; creates rootfs/.
  Status Reset(const std::string& slot);

  std::string BundleDir(const std::string& slot) const { return dir_.slot(slot); }
  std::string RootfsDir(const std::string& slot) const { return dir_.slot(slot) + "/rootfs"; }

 private:
  core::Env& env_;
  StateDir dir_;
};

}  // namespace tug::agent
