// LogLimiter: at most N log lines per second for one kind of event (hostile input must not fill the disk or burn
// the CPU on logging). Thread-safe.
//
// Example:
//   static fleet::LogLimiter limit(5);
//   if (auto skipped = limit.Admit())
//     spdlog::warn("dropping state from {}: {} ({} similar lines suppressed)", id, e.Message(), *skipped);
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace tug::fleet {

class LogLimiter {
 public:
  explicit LogLimiter(int per_second = 5) : per_second_(per_second) {}
  // A value when this line may be logged: the number of lines refused since the last admitted one.
  [[nodiscard]] std::optional<uint64_t> Admit() {
    std::lock_guard lk(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= std::chrono::seconds(1)) {
      window_start_ = now;
      in_window_ = 0;
    }
    if (in_window_ >= per_second_) {
      ++suppressed_;
      return std::nullopt;
    }
    ++in_window_;
    const uint64_t s = suppressed_;
    suppressed_ = 0;
    return s;
  }

 private:
  std::mutex mu_;
  const int per_second_;
  int in_window_ = 0;
  uint64_t suppressed_ = 0;
  std::chrono::steady_clock::time_point window_start_{};
};

}  // namespace tug::fleet
