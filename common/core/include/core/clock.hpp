// Clock seam and RFC 3339 time helpers. Expiry checks and state-machine deadlines take a Clock so tests can move
// time without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/error.hpp"

namespace tug::core {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The wall clock. Never null.
Clock* SystemClock();

class FakeClock : public Clock {
 public:
  explicit FakeClock(TimePoint now) : now_(now) {}
  TimePoint Now() const override { return now_; }
  void Advance(std::chrono::seconds s) { now_ += s; }
  void Set(TimePoint t) { now_ = t; }

 private:
  TimePoint now_;
};

// "2026-11-22T10:00:00Z" (UTC, second precision).
std::string FormatRfc3339(TimePoint t);
// Accepts "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)".
Result<TimePoint> ParseRfc3339(const std::string& s);
// "30d", "12h", "15m", "45s", "365d" -> seconds.
Result<std::chrono::seconds> ParseDuration(const std::string& s);

}  // namespace tug::core
