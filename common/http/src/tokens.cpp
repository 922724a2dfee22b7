#include "http/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "core/env.hpp"

namespace tug::http {

const char* ScopeName(Scope s) {
  switch (s) {
    case Scope::kViewer: return "viewer";
    case Scope::kOperator: return "operator";
    case Scope::kAdmin: return "admin";
  }
  return "?";
}

Result<Scope> ParseScope(std::string_view s) {
  if (s == "viewer") return Scope::kViewer;
  if (s == "operator") return Scope::kOperator;
  if (s == "admin") return Scope::kAdmin;
  return MakeError(Errc::kInvalidArgument, "scope '" + std::string(s) + "': expected viewer, operator or admin");
}

Scope ScopeForMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" ? Scope::kViewer : Scope::kOperator;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string NewToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no entropy: nothing safe to hand out
  static const char* kHex = "0123456789abcdef";
  std::string out = "tug_";
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string TokenLine(const std::string& name, Scope scope, const std::string& token) {
  return name + " " + ScopeName(scope) + " sha256:" + Sha256Hex(token) + "\n";
}

namespace {

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.' || c == '@'))
      return false;
  return true;
}

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

Result<std::vector<TokenEntry>> ParseTokenFile(std::string_view text) {
  std::vector<TokenEntry> out;
  std::set<std::string> names;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto w = Words(line);
    if (w.empty() || w[0][0] == '#') continue;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (w.size() != 3) return MakeError(Errc::kInvalidArgument, where + "expected '<name> <scope> sha256:<hex>'");
    if (!ValidName(w[0])) return MakeError(Errc::kInvalidArgument, where + "name: 1..64 of [A-Za-z0-9._@-]");
    auto scope = ParseScope(w[1]);
    if (!scope) return MakeError(Errc::kInvalidArgument, where + scope.error().Message());
    std::string_view h = w[2];
    if (h.rfind("sha256:", 0) != 0 || h.size() != 7 + 64 ||
        h.substr(7).find_first_not_of("0123456789abcdef") != std::string_view::npos)
      return MakeError(Errc::kInvalidArgument, where + "hash: expected sha256:<64 lowercase hex>");
    if (!names.insert(std::string(w[0])).second)
      return MakeError(Errc::kInvalidArgument, where + "name '" + std::string(w[0]) + "' appears twice");
    out.push_back({std::string(w[0]), *scope, std::string(h.substr(7))});
  }
  return out;
}

Result<std::unique_ptr<TokenTable>> TokenTable::Load(const std::string& path) {
  std::unique_ptr<TokenTable> t(new TokenTable(path));
  TUG_ASSIGN_OR_RETURN(auto text, core::DefaultEnv()->ReadFile(path));
  auto entries = ParseTokenFile(text);
  if (!entries) return tl::unexpected(Wrap(entries.error(), "token file " + path));
  if (entries->empty())
    return MakeError(Errc::kInvalidArgument, "token file " + path + " grants nothing (add one with tug-token add)");
  t->entries_ = std::move(*entries);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) t->mtime_ns_ = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  t->checked_ = std::chrono::steady_clock::now();
  return t;
}

void TokenTable::MaybeReload() {
  const auto now = std::chrono::steady_clock::now();
  if (now - checked_ < std::chrono::seconds(1)) return;
  checked_ = now;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return;  // gone for a moment (an editor's rename): keep what we have
  const int64_t m = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  if (m == mtime_ns_) return;
  auto text = core::DefaultEnv()->ReadFile(path_);
  auto entries = text ? ParseTokenFile(*text) : Result<std::vector<TokenEntry>>(tl::unexpected(text.error()));
  if (!entries) {
    spdlog::error("token file {} changed but does not parse ({}); keeping the previous {} token(s)", path_,
                  entries.error().Message(), entries_.size());
    mtime_ns_ = m;
    return;
  }
  spdlog::info("token file {} reloaded: {} token(s)", path_, entries->size());
  entries_ = std::move(*entries);
  mtime_ns_ = m;
}

size_t TokenTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

TokenTable::Decision TokenTable::Authorize(const Request& req, Scope need) {
  Decision d;
  const std::string auth = req.Header("authorization");
  const std::string prefix = "Bearer ";
  if (auth.size() <= prefix.size() || auth.compare(0, prefix.size(), prefix) != 0) {
    d.error_response = JsonError(401, "missing bearer token (Authorization: Bearer <token>)", "authorization");
    d.error_response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return d;
  }
  const std::string hash = Sha256Hex(std::string_view(auth).substr(prefix.size()));
  std::lock_guard<std::mutex> lock(mu_);
  MaybeReload();
  const TokenEntry* found = nullptr;
  for (const auto& e : entries_)  // every entry compared, in constant time: no early exit to time
    if (CRYPTO_memcmp(e.sha256_hex.data(), hash.data(), hash.size()) == 0 && e.sha256_hex.size() == hash.size())
      found = &e;
  if (found == nullptr) {
    d.error_response = JsonError(401, "unknown bearer token", "authorization");
    d.error_response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
    return d;
  }
  if (found->scope < need) {
    d.error_response = JsonError(403, "token '" + found->name + "' has scope " + ScopeName(found->scope) +
                                          "; this call needs " + ScopeName(need));
    return d;
  }
  d.principal = Principal{found->name, found->scope};
  return d;
}

Result<std::shared_ptr<TokenTable>> LoadApiTokens(const std::string& token_file, bool insecure,
                                                  const std::string& program) {
  if (!token_file.empty()) {
    TUG_ASSIGN_OR_RETURN(auto t, TokenTable::Load(token_file));
    return std::shared_ptr<TokenTable>(std::move(t));
  }
  if (!insecure)
    return MakeError(Errc::kInvalidArgument,
                     "refusing to serve without credentials: pass --token-file FILE (make one with `tug-token add "
                     "--file FILE --name NAME --scope operator`), or --insecure-no-auth for a local try-out");
  for (int i = 0; i < 3; ++i)
    spdlog::warn("{}: INSECURE: --insecure-no-auth: anyone who reaches this API (every task on the cluster, any "
                 "local process) can change it. For a local try-out only.",
                 program);
  return std::shared_ptr<TokenTable>();
}

Server::Handler RequireToken(std::shared_ptr<TokenTable> tokens, Server::Handler inner,
                             std::vector<std::string> open_paths) {
  if (!tokens) return inner;
  return [tokens = std::move(tokens), inner = std::move(inner), open = std::move(open_paths)](const Request& r) {
    const std::string path = r.Path();
    if (std::find(open.begin(), open.end(), path) != open.end()) return inner(r);
    auto d = tokens->Authorize(r, ScopeForMethod(r.method));
    if (!d) return d.error_response;
    return inner(r);
  };
}

}  // namespace tug::http
