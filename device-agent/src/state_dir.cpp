#include "agent/state_dir.hpp"

#include <string>

namespace tug::agent {

Status StateDir::Create(core::Env& env) const {
  for (const std::string& d : {root_, blobs(), partial(), slot("a"), slot("b"), root_ + "/trust", runc_root()})
    TUG_TRY(env.CreateDirs(d));
  TUG_TRY(env.SyncDir(root_));
  return {};
}

bool StateDir::Initialized(core::Env& env) const { return env.Exists(trust_root()); }

Result<uint64_t> ReadRatchet(core::Env& env, const StateDir& dir) {
  auto text = env.ReadFile(dir.ratchet());
  if (!text) {
    if (text.error().Is(Errc::kNotFound)) return uint64_t{0};
    return tl::unexpected(text.error());
  }
  try {
    return static_cast<uint64_t>(std::stoull(*text));
  } catch (...) {
    return MakeError(Errc::kInvalidArgument, dir.ratchet() + " is corrupt");
  }
}

Status WriteRatchet(core::Env& env, const StateDir& dir, uint64_t version) {
  return core::WriteFileDurable(env, dir.ratchet(), std::to_string(version) + "\n");
}

}  // namespace tug::agent
