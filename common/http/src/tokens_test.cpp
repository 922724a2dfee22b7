// TokenTable: the file format, 401/403 decisions, reload on change (rotation without restart), a broken edit that
// keeps the last good table; and the tug-token CLI that writes the file.
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <thread>

#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "http/tokens.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace std::chrono_literals;

namespace {

http::Request WithBearer(const std::string& token) {
  http::Request r;
  r.method = "GET";
  r.target = "/v2/apps";
  if (!token.empty()) r.headers.emplace_back("Authorization", "Bearer " + token);
  return r;
}

}  // namespace

TEST_CASE("token file: lines parse into named scoped hashes; a bad line is named") {
  const std::string ok = "# ops\nci operator sha256:" + http::Sha256Hex("t1") + "\n\nreader viewer sha256:" +
                         http::Sha256Hex("t2") + "\n";
  auto e = http::ParseTokenFile(ok);
  REQUIRE(e);
  REQUIRE(e->size() == 2);
  CHECK((*e)[0].name == "ci");
  CHECK((*e)[0].scope == http::Scope::kOperator);
  CHECK((*e)[1].scope == http::Scope::kViewer);
  auto bad_scope = http::ParseTokenFile("x root sha256:" + http::Sha256Hex("t") + "\n");
  REQUIRE_FALSE(bad_scope);
  CHECK(bad_scope.error().Message().find("line 1") != std::string::npos);
  CHECK_FALSE(http::ParseTokenFile("x viewer plaintext-token\n"));
  CHECK_FALSE(http::ParseTokenFile("a/b viewer sha256:" + http::Sha256Hex("t") + "\n"));
  auto dup = http::ParseTokenFile(ok + "ci admin sha256:" + http::Sha256Hex("t3") + "\n");
  REQUIRE_FALSE(dup);
  CHECK(dup.error().Message().find("twice") != std::string::npos);
  CHECK(http::NewToken() != http::NewToken());
  CHECK(http::NewToken().size() == 4 + 64);
}

TEST_CASE("TokenTable: 401 without or with an unknown token, 403 below the scope, the principal otherwise") {
  testsupport::TempDir dir("tug-tokens");
  const std::string path = dir.Sub("t");
  const std::string op = http::NewToken(), view = http::NewToken();
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path,
                                 http::TokenLine("ci", http::Scope::kOperator, op) +
                                     http::TokenLine("dash", http::Scope::kViewer, view)));
  auto t = http::TokenTable::Load(path);
  REQUIRE(t);
  auto none = (*t)->Authorize(WithBearer(""), http::Scope::kViewer);
  CHECK_FALSE(none);
  CHECK(none.error_response.status == 401);
  CHECK((*t)->Authorize(WithBearer("tug_wrong"), http::Scope::kViewer).error_response.status == 401);
  auto low = (*t)->Authorize(WithBearer(view), http::Scope::kOperator);
  CHECK(low.error_response.status == 403);
  CHECK(low.error_response.body.find("viewer") != std::string::npos);
  auto yes = (*t)->Authorize(WithBearer(op), http::Scope::kOperator);
  REQUIRE(yes);
  CHECK(yes.principal->name == "ci");
  CHECK_FALSE((*t)->Authorize(WithBearer(op), http::Scope::kAdmin));
  CHECK(http::ScopeForMethod("GET") == http::Scope::kViewer);
  CHECK(http::ScopeForMethod("DELETE") == http::Scope::kOperator);

  // An empty file grants nothing and is refused at load.
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), dir.Sub("empty"), "# nothing\n"));
  CHECK_FALSE(http::TokenTable::Load(dir.Sub("empty")));
}

TEST_CASE("TokenTable: a rotated file takes effect within seconds, a broken edit keeps the last good table") {
  testsupport::TempDir dir("tug-tokens");
  const std::string path = dir.Sub("t");
  const std::string old_token = http::NewToken(), new_token = http::NewToken();
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, http::TokenLine("ci", http::Scope::kOperator, old_token)));
  auto t = http::TokenTable::Load(path);
  REQUIRE(t);
  REQUIRE((*t)->Authorize(WithBearer(old_token), http::Scope::kViewer));
  std::this_thread::sleep_for(20ms);  // a later mtime
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, http::TokenLine("ci", http::Scope::kOperator, new_token)));
  bool rotated = false;
  for (int i = 0; i < 40 && !rotated; ++i) {
    rotated = (*t)->Authorize(WithBearer(new_token), http::Scope::kViewer) &&
              !(*t)->Authorize(WithBearer(old_token), http::Scope::kViewer);
    if (!rotated) std::this_thread::sleep_for(100ms);
  }
  CHECK(rotated);
  std::this_thread::sleep_for(20ms);
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, "garbage line\n"));
  std::this_thread::sleep_for(1200ms);
  CHECK((*t)->Authorize(WithBearer(new_token), http::Scope::kViewer));
}

TEST_CASE("tug-token add prints a token once and stores only its hash; revoke removes it") {
  const char* b = std::getenv("TUG_BUILD_DIR");
  const std::string bin = std::string(b ? b : "build") + "/common/http/tug-token";
  if (!core::DefaultEnv()->Exists(bin)) FAIL("tug-token not built at " << bin << " (set TUG_BUILD_DIR)");
  testsupport::TempDir dir("tug-tokens");
  const std::string path = dir.Sub("svc.tokens");
  auto add = core::Run({bin, "add", "--file", path, "--name", "ci", "--scope", "operator"});
  REQUIRE(add);
  INFO(add->Describe());
  REQUIRE(add->ok());
  std::string token = add->out;
  while (!token.empty() && token.back() == '\n') token.pop_back();
  auto text = core::DefaultEnv()->ReadFile(path);
  REQUIRE(text);
  CHECK(text->find(token) == std::string::npos);
  CHECK(text->find(http::Sha256Hex(token)) != std::string::npos);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto t = http::TokenTable::Load(path);
  REQUIRE(t);
  CHECK((*t)->Authorize(WithBearer(token), http::Scope::kOperator));
  auto again = core::Run({bin, "add", "--file", path, "--name", "ci"});
  REQUIRE(again);
  CHECK_FALSE(again->ok());
  auto rv = core::Run({bin, "revoke", "--file", path, "--name", "ci"});
  REQUIRE(rv);
  CHECK(rv->ok());
  CHECK(http::ParseTokenFile(*core::DefaultEnv()->ReadFile(path))->empty());
}
