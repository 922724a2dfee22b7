// Where the leading master keeps its state (DESIGN §7): frameworks, agents and tasks as JSON documents under one
// key prefix. MemoryStateStore for a single master (and tests); the etcd store (master/etcd_state_store.hpp) makes
// it survive a master failover. Writes are batched by the master (one Commit per tick), so a store need not be fast
// per key, only per batch.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::cluster::master {

struct StoreOp {
  std::string key;
  std::optional<std::string> value;  // nullopt = delete
};

class StateStore {
 public:
  virtual ~StateStore() = default;
  // Applies all ops atomically, or none. kPolicy when this master is no longer allowed to write (deposed leader).
  virtual Status Commit(const std::vector<StoreOp>& ops) = 0;
  // Every key under prefix -> value.
  virtual Result<std::map<std::string, std::string>> Load(const std::string& prefix) = 0;
};

class MemoryStateStore : public StateStore {
 public:
  Status Commit(const std::vector<StoreOp>& ops) override {
    std::lock_guard lock(mu_);
    for (const auto& op : ops) {
      if (op.value) {
        data_[op.key] = *op.value;
      } else {
        data_.erase(op.key);
      }
    }
    return {};
  }
  Result<std::map<std::string, std::string>> Load(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    std::map<std::string, std::string> out;
    for (auto it = data_.lower_bound(prefix); it != data_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it)
      out.insert(*it);
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> data_;
};

}  // namespace tug::cluster::master
