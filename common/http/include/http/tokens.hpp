// http::TokenTable: named bearer tokens with a scope, stored hashed, for the REST APIs (cluster-services,
// cluster-batch; the operator's `Authorization: Bearer <token>`).
//
// The file holds one token per line, `<name> <scope> sha256:<64 hex>` (blank lines and `#` comments ignored); the
// token itself is never stored, only its SHA-256, so a leaked file grants nothing. Scopes are ordered:
// viewer (reads) < operator (changes: create, update, delete, restart) < admin. ScopeForMethod asks only for viewer
// or operator, so today an admin token can do what an operator token can; admin is for calls a server reserves.
// The file is re-read when its modification time changes (checked at most once a second), so tokens are added,
// rotated and revoked without a restart; a file that no longer parses keeps the last good table (logged).
//
//   auto table = http::TokenTable::Load("/etc/tugboat/services.tokens");   // kInvalidArgument names the line
//   auto who = (*table)->Authorize(request, http::Scope::kOperator);       // 401 / 403 as an http::Response
//   if (!who) return who.error_response;
//
// `tug-token add --file F --name ci --scope operator` appends a line and prints the token once.
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "http/server.hpp"

namespace tug::http {

enum class Scope { kViewer = 0, kOperator = 1, kAdmin = 2 };
const char* ScopeName(Scope s);
Result<Scope> ParseScope(std::string_view s);

struct TokenEntry {
  std::string name;
  Scope scope = Scope::kViewer;
  std::string sha256_hex;  // of the token's bytes
};

// Parses a token file's text; kInvalidArgument naming the line for a bad one, or for a duplicate name.
Result<std::vector<TokenEntry>> ParseTokenFile(std::string_view text);
// A new random token (32 bytes from the OS, hex) and the file line that grants it.
std::string NewToken();
std::string TokenLine(const std::string& name, Scope scope, const std::string& token);
std::string Sha256Hex(std::string_view data);

struct Principal {
  std::string name;
  Scope scope = Scope::kViewer;
};

class TokenTable {
 public:
  static Result<std::unique_ptr<TokenTable>> Load(const std::string& path);

  // The principal whose token the request's `Authorization: Bearer` carries, if its scope is at least `need`.
  // Otherwise a ready response: 401 (no or unknown token, with WWW-Authenticate) or 403 (scope too low).
  struct Decision {
    std::optional<Principal> principal;
    Response error_response;
    explicit operator bool() const { return principal.has_value(); }
  };
  Decision Authorize(const Request& req, Scope need);

  size_t size();

 private:
  explicit TokenTable(std::string path) : path_(std::move(path)) {}
  void MaybeReload();

  const std::string path_;
  std::mutex mu_;
  std::vector<TokenEntry> entries_;
  int64_t mtime_ns_ = -1;
  std::chrono::steady_clock::time_point checked_{};
};

// The scope a REST call needs by method: GET/HEAD read (viewer), anything else changes (operator).
Scope ScopeForMethod(std::string_view method);

// Secure by default, for a server's start-up: the table from `token_file`; with `insecure` and no file, nullptr
// (every call allowed) after a loud warning; with neither, kInvalidArgument telling how to make a token file.
Result<std::shared_ptr<TokenTable>> LoadApiTokens(const std::string& token_file, bool insecure,
                                                  const std::string& program);

// `inner` behind `tokens`: a request for any path but `open_paths` (exact, e.g. /healthz for health checkers)
// needs a token whose scope covers its method (ScopeForMethod), else 401/403 and `inner` never runs. A null table
// lets everything through (LoadApiTokens' insecure mode).
Server::Handler RequireToken(std::shared_ptr<TokenTable> tokens, Server::Handler inner,
                             std::vector<std::string> open_paths);

}  // namespace tug::http
