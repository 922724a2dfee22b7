// tug-token: makes and manages the hashed bearer-token files of http::TokenTable (cluster-services, cluster-batch).
//   tug-token add --file /etc/tugboat/services.tokens --name ci --scope operator   # prints the token once
//   tug-token revoke --file /etc/tugboat/services.tokens --name ci
//   tug-token list --file /etc/tugboat/services.tokens
// Running servers pick up changes within a second. Exit codes: 0 success, 1 failure, 2 usage.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "core/env.hpp"
#include "http/tokens.hpp"

using namespace tug;

namespace {

int Fail(const std::string& msg) {
  std::cerr << "tug-token: " << msg << "\n";
  return 1;
}

Result<std::string> ReadOrEmpty(const std::string& path) {
  auto& env = *core::DefaultEnv();
  if (!env.Exists(path)) return std::string();
  return env.ReadFile(path);
}

Status WritePrivate(const std::string& path, const std::string& text) {
  TUG_TRY(core::WriteFileDurable(*core::DefaultEnv(), path, text));
  if (::chmod(path.c_str(), 0600) != 0) return ErrnoError(errno, "chmod 0600 " + path);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tug-token: add, revoke and list the named, scoped bearer tokens of a token file (stored as SHA-256 "
               "only). Scopes: viewer (reads), operator (changes), admin (everything). Servers reload the file "
               "within a second.",
               "tug-token"};
  app.require_subcommand(1);
  std::string file, name, scope = "operator";
  auto* add = app.add_subcommand("add", "add a token; prints it on stdout (the only time it is shown)");
  add->add_option("--file", file, "token file (created 0600 if missing)")->required();
  add->add_option("--name", name, "who the token is for (1..64 of [A-Za-z0-9._@-])")->required();
  add->add_option("--scope", scope, "viewer, operator or admin")->capture_default_str();
  auto* revoke = app.add_subcommand("revoke", "remove a token by name");
  revoke->add_option("--file", file, "token file")->required();
  revoke->add_option("--name", name, "token name")->required();
  auto* list = app.add_subcommand("list", "names and scopes");
  list->add_option("--file", file, "token file")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto text = ReadOrEmpty(file);
  if (!text) return Fail(text.error().Message());
  auto entries = http::ParseTokenFile(*text);
  if (!entries) return Fail(file + ": " + entries.error().Message());

  if (add->parsed()) {
    auto s = http::ParseScope(scope);
    if (!s) return Fail(s.error().Message());
    for (const auto& e : *entries)
      if (e.name == name) return Fail("a token named '" + name + "' exists; revoke it first to rotate");
    const std::string token = http::NewToken();
    std::string next = *text;
    if (!next.empty() && next.back() != '\n') next += '\n';
    next += http::TokenLine(name, *s, token);
    if (!http::ParseTokenFile(next)) return Fail("invalid name '" + name + "' (1..64 of [A-Za-z0-9._@-])");
    if (auto st = WritePrivate(file, next); !st) return Fail(st.error().Message());
    std::cout << token << "\n";
    return 0;
  }
  if (revoke->parsed()) {
    std::string next;
    bool found = false;
    size_t start = 0;
    const std::string& t = *text;
    while (start < t.size()) {
      size_t end = t.find('\n', start);
      std::string line = t.substr(start, end == std::string::npos ? std::string::npos : end - start);
      start = end == std::string::npos ? t.size() : end + 1;
      if (line.rfind(name + " ", 0) == 0) {
        found = true;
        continue;
      }
      next += line + "\n";
    }
    if (!found) return Fail("no token named '" + name + "' in " + file);
    if (auto st = WritePrivate(file, next); !st) return Fail(st.error().Message());
    std::cout << "revoked " << name << "\n";
    return 0;
  }
  for (const auto& e : *entries) std::cout << e.name << " " << http::ScopeName(e.scope) << "\n";
  return 0;
}
