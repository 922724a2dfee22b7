#include "fleet.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <sstream>

#include "core/env.hpp"

namespace tug::cli {
namespace {

const char* GetEnv(const Io& io, const char* name) { return io.getenv ? io.getenv(name) : std::getenv(name); }

std::string Trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Span(int64_t secs) {
  if (secs < 60) return std::to_string(secs) + "s";
  if (secs < 3600) return std::to_string(secs / 60) + "m";
  if (secs < 86400) return std::to_string(secs / 3600) + "h";
  return std::to_string(secs / 86400) + "d";
}

}  // namespace

void AddFleetOptions(CLI::App& app, Context& ctx) {
  FleetOptions& f = ctx.fleet;
  app.add_option("--controller", f.controller,
                 "Controller base URL for fleet commands (default $TUG_CONTROLLER, else http://127.0.0.1:8080)")
      ->type_name("URL");
  auto* token = app.add_option("--token", f.token, "API bearer token (default $TUG_TOKEN)")->type_name("TOKEN");
  app.add_option("--token-file", f.token_file, "Read the API bearer token from a file")
      ->type_name("PATH")
      ->excludes(token);
  app.add_option("--ca", f.ca_file,
                 "CA certificate (PEM) to trust for an https:// controller, e.g. its own CA (default $TUG_CA)")
      ->type_name("PATH");
  app.add_flag("--json", f.json, "Print the controller's JSON answers instead of tables");
}

Result<ApiClient> Connect(const Context& ctx) {
  const FleetOptions& f = ctx.fleet;
  std::string url = f.controller;
  if (url.empty()) {
    const char* env = GetEnv(ctx.io, "TUG_CONTROLLER");
    url = env && *env ? env : "http://127.0.0.1:8080";
  }
  std::string token = f.token;
  if (token.empty() && !f.token_file.empty()) {
    auto text = core::DefaultEnv()->ReadFile(f.token_file);
    if (!text) return tl::unexpected(Wrap(text.error(), "--token-file " + f.token_file));
    // Files written by `echo` end in a newline that is not part of the token.
    token = Trim(*text);
    if (token.empty()) return MakeError(Errc::kInvalidArgument, "--token-file " + f.token_file + " is empty");
  }
  if (token.empty() && f.token_file.empty()) {
    const char* env = GetEnv(ctx.io, "TUG_TOKEN");
    if (env) token = env;
  }
  std::string ca = f.ca_file;
  if (ca.empty()) {
    const char* env = GetEnv(ctx.io, "TUG_CA");
    if (env) ca = env;
  }
  return ApiClient::Create(url, std::move(token), kRequestTimeout, std::move(ca));
}

Result<Json> ParseBody(const std::string& body, const std::string& what) {
  if (body.empty()) return Json();  // 204-style answers to actions: nothing to show beyond success
  auto j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return MakeError(Errc::kProtocol, what + ": the controller's answer is not JSON");
  return j;
}

void PrintRaw(const Io& io, const std::string& body) {
  if (body.empty()) return;
  io.out << body;
  if (body.empty() || body.back() != '\n') io.out << "\n";
}

std::pair<std::string, std::string> ParseLabelArg(const std::string& flag, const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size())
    throw CLI::ValidationError(flag, "'" + arg + "' is not of the form KEY=VALUE");
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

std::string Str(const Json& j, const char* key, const std::string& fallback) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const Json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return Num(j, key, fallback);
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return fallback;
}

std::string Num(const Json& j, const char* key, const std::string& fallback) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const Json& v = j[key];
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == std::floor(d) && std::abs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
    std::ostringstream s;
    s << d;
    return s.str();
  }
  if (v.is_string()) return v.get<std::string>();
  return fallback;
}

int64_t Int(const Json& j, const char* key, int64_t fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return fallback;
  return j[key].is_number_float() ? static_cast<int64_t>(j[key].get<double>()) : j[key].get<int64_t>();
}

std::string HumanTime(const std::string& rfc3339, core::TimePoint now) {
  if (rfc3339.empty() || rfc3339 == "-") return "-";
  auto t = core::ParseRfc3339(rfc3339);
  if (!t) return rfc3339;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - *t).count();
  // Clocks of controller and operator differ by a little; a second in the future is "now", not "in 1s".
  if (secs >= -2 && secs <= 0) return "just now";
  return secs > 0 ? Span(secs) + " ago" : "in " + Span(-secs);
}

std::string LabelList(const Json& labels) {
  if (!labels.is_object() || labels.empty()) return "-";
  std::string s;
  for (const auto& [k, v] : labels.items()) {  // nlohmann::json objects iterate in key order
    if (!s.empty()) s += ",";
    s += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return s;
}

std::string ShortDigest(const std::string& digest) {
  const auto colon = digest.find(':');
  if (colon == std::string::npos) return digest;
  return digest.substr(0, std::min(digest.size(), colon + 1 + 12));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    // An empty last cell (no error, say) must not leave trailing blanks behind.
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << "\n";
  }
}

Status CallAndRender(const Context& ctx, const std::string& method, const std::string& path,
                     const std::string& body, const std::function<void(const Json&)>& render) {
  TUG_ASSIGN_OR_RETURN(ApiClient client, Connect(ctx));
  Result<std::string> answer = method == "GET"    ? client.Get(path)
                               : method == "PUT" ? client.Put(path, body)
                                                 : client.Post(path, body);
  if (!answer) return tl::unexpected(std::move(answer.error()));
  if (ctx.fleet.json) {
    PrintRaw(ctx.io, *answer);
    return {};
  }
  TUG_ASSIGN_OR_RETURN(Json j, ParseBody(*answer, method + " " + path));
  render(j);
  return {};
}

}  // namespace tug::cli
