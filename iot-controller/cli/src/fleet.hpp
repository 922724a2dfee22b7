// Shared by the fleet command groups (devices, releases, rollout): connecting to the controller with the global
// options, and the pieces of human output (aligned tables, "12s ago", label lists). The commands keep the API's
// JSON as nlohmann::json and read it leniently: a field the controller leaves out prints as "-", never crashes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "http_client.hpp"

namespace tug::cli {

using Json = nlohmann::json;

// Per-request deadline; `rollout watch` shortens it near its own --timeout.
inline constexpr std::chrono::seconds kRequestTimeout{30};

// Resolves --controller/--token/--token-file against the environment and builds a client.
Result<ApiClient> Connect(const Context& ctx);

// Parses an API answer; a body that is not JSON is a protocol error naming the request.
Result<Json> ParseBody(const std::string& body, const std::string& what);

// --json output: the API's answer as received, one document per line.
void PrintRaw(const Io& io, const std::string& body);

// "KEY=VALUE" split at the first '='; throws CLI::ValidationError (usage, exit 2) naming the flag otherwise.
std::pair<std::string, std::string> ParseLabelArg(const std::string& flag, const std::string& arg);

// Lenient accessors: "-" (or the fallback) when the field is missing, null or of another type.
std::string Str(const Json& j, const char* key, const std::string& fallback = "-");
// Numbers as integers when whole ("3", "2.5" otherwise), strings as they are.
std::string Num(const Json& j, const char* key, const std::string& fallback = "-");
int64_t Int(const Json& j, const char* key, int64_t fallback = 0);
// "-" for an empty string: the API sends "" for "no job" and a blank cell reads as a rendering bug.
inline std::string NonEmpty(std::string s) { return s.empty() ? "-" : s; }

// "12s ago", "5m ago", "in 29d"; "-" when empty or unparsable (shown verbatim then, so nothing is hidden).
std::string HumanTime(const std::string& rfc3339, core::TimePoint now);
// "site=berlin,tier=canary" in key order.
std::string LabelList(const Json& labels);
// "sha256:0123456789ab" — enough to tell digests apart in a table.
std::string ShortDigest(const std::string& digest);

// Rows of cells printed with columns padded to the widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// The action shared by commands that call the API once and either pass the JSON through or render it.
Status CallAndRender(const Context& ctx, const std::string& method, const std::string& path,
                     const std::string& body, const std::function<void(const Json&)>& render);

}  // namespace tug::cli
