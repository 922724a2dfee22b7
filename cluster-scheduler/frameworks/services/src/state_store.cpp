#include "services/state_store.hpp"

namespace tug::cluster::services {

using json = nlohmann::json;

FileStateStore::FileStateStore(std::string dir, core::Env* env) : dir_(std::move(dir)), env_(env) {}

std::string FileStateStore::path() const { return core::JoinPath(dir_, "state.json"); }

Result<std::optional<json>> FileStateStore::Load() {
  if (!env_->Exists(path())) return std::optional<json>();
  auto text = env_->ReadFile(path());
  if (!text) return tl::unexpected(Wrap(text.error(), "reading " + path()));
  auto j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return MakeError(Errc::kIntegrity, path() + " is not a JSON object");
  return std::optional<json>(std::move(j));
}

Status FileStateStore::Save(const json& state) {
  if (auto st = env_->CreateDirs(dir_); !st) return tl::unexpected(Wrap(st.error(), "creating " + dir_));
  if (auto st = core::WriteFileDurable(*env_, path(), state.dump(1)); !st)
    return tl::unexpected(Wrap(st.error(), "writing " + path()));
  return {};
}

Result<std::optional<json>> MemoryStateStore::Load() {
  std::lock_guard lock(mu_);
  return doc_;
}

Status MemoryStateStore::Save(const json& state) {
  std::lock_guard lock(mu_);
  if (fail_) return MakeError(Errc::kIo, "memory store: saves fail (test)");
  doc_ = state;
  ++saves_;
  return {};
}

void MemoryStateStore::set_fail_saves(bool on) {
  std::lock_guard lock(mu_);
  fail_ = on;
}

size_t MemoryStateStore::saves() const {
  std::lock_guard lock(mu_);
  return saves_;
}

}  // namespace tug::cluster::services
