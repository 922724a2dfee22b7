// Durable state of the services framework: its framework id, the app definitions with their versions and
// deployments, and which task belongs to which app (with the agent, host and ports it got). One JSON document,
// replaced whole: FileStateStore writes <dir>/state.json through core::WriteFileDurable (temp + fsync + rename +
// fsync of the directory), so after a crash the file holds either the old or the new document, never a mix.
//
// Blocking (fsync); called from the scheduler's thread only.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/env.hpp"
#include "core/error.hpp"

namespace tug::cluster::services {

class StateStore {
 public:
  virtual ~StateStore() = default;
  // nullopt when nothing was ever saved; kIntegrity when the document is not JSON.
  virtual Result<std::optional<nlohmann::json>> Load() = 0;
  virtual Status Save(const nlohmann::json& state) = 0;
};

class FileStateStore : public StateStore {
 public:
  // Creates `dir` if needed on the first Save.
  explicit FileStateStore(std::string dir, core::Env* env = core::DefaultEnv());
  Result<std::optional<nlohmann::json>> Load() override;
  Status Save(const nlohmann::json& state) override;
  std::string path() const;

 private:
  std::string dir_;
  core::Env* env_;
};

// In memory, for tests; fail_saves makes every Save fail with kIo (a full disk).
class MemoryStateStore : public StateStore {
 public:
  Result<std::optional<nlohmann::json>> Load() override;
  Status Save(const nlohmann::json& state) override;
  void set_fail_saves(bool on);
  size_t saves() const;

 private:
  mutable std::mutex mu_;
  std::optional<nlohmann::json> doc_;
  bool fail_ = false;
  size_t saves_ = 0;
};

}  // namespace tug::cluster::services
