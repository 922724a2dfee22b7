// Runs a cleanup on scope exit unless Commit() was called: undoes partial staging when a step fails midway.
#pragma once

#include <utility>

namespace tug::core {

template <typename F>
class ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ~ScopeGuard() {
    if (active_) f_();
  }
  void Commit() { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace tug::core
