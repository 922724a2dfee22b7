// Small helpers shared by the benchmarks: wall clock, medians, markdown tables, fatal errors.
// Benchmarks print their result tables (markdown) on stdout and progress on stderr, so bench/run.sh can paste stdout
// into BENCHMARKS.md as is.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tug::bench {

inline double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double Elapsed() const { return Seconds(std::chrono::steady_clock::now() - start_); }

 private:
  std::chrono::steady_clock::time_point start_;
};

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// v with `decimals` digits after the point.
inline std::string Fmt(int decimals, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

inline std::string Join(const std::vector<double>& v, int decimals) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + Fmt(decimals, x);
  return s;
}

// Prints one markdown table row.
inline void Row(const std::vector<std::string>& cells) {
  std::string line = "|";
  for (const auto& c : cells) line += " " + c + " |";
  std::printf("%s\n", line.c_str());
}

inline void Header(const std::vector<std::string>& cells) {
  Row(cells);
  std::vector<std::string> sep(cells.size(), "---");
  Row(sep);
}

[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r) Die(what + ": " + r.error().Message());
  return std::move(*r);
}

inline void Must(Status s, const std::string& what) {
  if (!s) Die(what + ": " + s.error().Message());
}

}  // namespace tug::bench
