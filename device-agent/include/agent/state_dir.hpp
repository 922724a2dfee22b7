// The device state directory (DESIGN.md §4):
//   blobs/sha256/<hex>   partial/<hex>(+.ckpt)   slots/{a,b}/{rootfs,config.json,slot.json}
//   active -> slots/a    journal.json    trust/root.json    trust/ratchet    runc/ (runc's own state)
#pragma once

#include <string>
#include <utility>

#include "core/env.hpp"
#include "core/error.hpp"

namespace tug::agent {

class StateDir {
 public:
  explicit StateDir(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }
  std::string blobs() const { return root_ + "/blobs/sha256"; }
  std::string partial() const { return root_ + "/partial"; }
  std::string slots() const { return root_ + "/slots"; }
  std::string slot(const std::string& name) const { return root_ + "/slots/" + name; }
  std::string active_link() const { return root_ + "/active"; }
  std::string journal() const { return root_ + "/journal.json"; }
  std::string trust_root() const { return root_ + "/trust/root.json"; }
  std::string ratchet() const { return root_ + "/trust/ratchet"; }
  std::string runc_root() const { return root_ + "/runc"; }
  std::string lock_file() const { return root_ + "/agent.lock"; }

  // Creates the directory tree (idempotent).
  Status Create(core::Env& env) const;
  bool Initialized(core::Env& env) const;

 private:
  std::string root_;
};

// Reads the committed version ratchet (0 when absent); writes it durably.
Result<uint64_t> ReadRatchet(core::Env& env, const StateDir& dir);
Status WriteRatchet(core::Env& env, const StateDir& dir, uint64_t version);

}  // namespace tug::agent
