#include "core/clock.hpp"

#include <cstdio>
#include <ctime>

namespace tug::core {
namespace {
class RealClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};
}  // namespace

Clock* SystemClock() {
  static RealClock clock;
  return &clock;
}

std::string FormatRfc3339(TimePoint t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<TimePoint> ParseRfc3339(const std::string& s) {
  int y, mo, d, h, mi, sec;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) != 6)
    return MakeError(Errc::kInvalidArgument, "not an RFC 3339 time: '" + s + "'");
  size_t pos = static_cast<size_t>(consumed);
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
  }
  long offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (std::sscanf(s.c_str() + pos + 1, "%2d:%2d", &oh, &om) != 2)
      return MakeError(Errc::kInvalidArgument, "bad time zone in '" + s + "'");
    offset = (s[pos] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
    pos += 6;
  } else {
    return MakeError(Errc::kInvalidArgument, "time without zone: '" + s + "'");
  }
  if (pos != s.size()) return MakeError(Errc::kInvalidArgument, "trailing text in time '" + s + "'");
  // Years outside 1900..2200 do not fit system_clock's int64 nanoseconds (2262 is the end) or mean nothing here:
  // "9082-01-01T00:00:00Z" in a release payload overflowed (found by crypto_fuzz).
  if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return MakeError(Errc::kInvalidArgument, "time out of range: '" + s + "'");
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  std::time_t tt = timegm(&tm) - offset;
  return std::chrono::system_clock::from_time_t(tt);
}

Result<std::chrono::seconds> ParseDuration(const std::string& s) {
  if (s.size() < 2) return MakeError(Errc::kInvalidArgument, "bad duration '" + s + "' (use e.g. 30d, 12h, 15m, 45s)");
  long long n = 0;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9')
      return MakeError(Errc::kInvalidArgument, "bad duration '" + s + "' (use e.g. 30d, 12h, 15m, 45s)");
    n = n * 10 + (s[i] - '0');
    if (n > 100LL * 365 * 86400) return MakeError(Errc::kInvalidArgument, "duration too long: '" + s + "'");
  }
  switch (s.back()) {
    case 's': return std::chrono::seconds(n);
    case 'm': return std::chrono::seconds(n * 60);
    case 'h': return std::chrono::seconds(n * 3600);
    case 'd': return std::chrono::seconds(n * 86400);
    default: return MakeError(Errc::kInvalidArgument, "bad duration unit in '" + s + "' (s, m, h or d)");
  }
}

}  // namespace tug::core
