#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "core/env.hpp"
#include "core/fault_env.hpp"

using namespace tug;
using namespace tug::core;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tug-env-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};
}  // namespace

TEST_CASE("a durable write replaces the whole file and leaves no temp file") {
  TempDir d;
  Env& env = *DefaultEnv();
  const auto p = d.path + "/state.json";
  REQUIRE(WriteFileDurable(env, p, "one"));
  REQUIRE(WriteFileDurable(env, p, "two"));
  CHECK(env.ReadFile(p).value() == "two");
  CHECK_FALSE(env.Exists(p + ".tmp"));
}

TEST_CASE("a power cut before the directory sync brings back the old file") {
  TempDir d;
  FaultInjectionEnv env(DefaultEnv());
  const auto p = d.path + "/journal.json";
  REQUIRE(WriteFileDurable(env, p, "old"));
  // Crash after the rename but before SyncDir: write tmp(1) append(2) sync(3) rename(4) | syncdir(5)
  env.CrashAfterOps(4);
  auto st = WriteFileDurable(env, p, "new");
  CHECK_FALSE(st);
  REQUIRE(env.ReadFile(p).value() == "new");  // visible in the page cache...
  REQUIRE(env.DropUnsyncedData());
  CHECK(env.ReadFile(p).value() == "old");  // ...but gone after the power cut
  CHECK_FALSE(env.Exists(p + ".tmp"));
}

TEST_CASE("unsynced appends are truncated by a power cut") {
  TempDir d;
  FaultInjectionEnv env(DefaultEnv());
  const auto p = d.path + "/blob";
  auto f = env.NewWritableFile(p, false).value();
  REQUIRE(env.SyncDir(d.path));
  REQUIRE(f->Append("durable-"));
  REQUIRE(f->Sync());
  REQUIRE(f->Append("lost"));
  REQUIRE(f->Close());
  REQUIRE(env.DropUnsyncedData());
  CHECK(env.ReadFile(p).value() == "durable-");
}

TEST_CASE("a file whose directory entry was never synced disappears in a power cut") {
  TempDir d;
  FaultInjectionEnv env(DefaultEnv());
  const auto p = d.path + "/new";
  auto f = env.NewWritableFile(p, false).value();
  REQUIRE(f->Append("x"));
  REQUIRE(f->Sync());
  REQUIRE(env.DropUnsyncedData());
  CHECK_FALSE(env.Exists(p));
}

TEST_CASE("injected ENOSPC surfaces as kNoSpace") {
  TempDir d;
  FaultInjectionEnv env(DefaultEnv());
  env.FailWritesAfterBytes(4, ENOSPC);
  auto f = env.NewWritableFile(d.path + "/f", false).value();
  REQUIRE(f->Append("1234"));
  auto st = f->Append("5");
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kNoSpace));
}

TEST_CASE("a symlink switch is atomic and durable") {
  TempDir d;
  Env& env = *DefaultEnv();
  const auto link = d.path + "/active";
  REQUIRE(ReplaceSymlinkDurable(env, "slots/a", link));
  REQUIRE(ReplaceSymlinkDurable(env, "slots/b", link));
  CHECK(env.ReadLink(link).value() == "slots/b");
}

TEST_CASE("errors say what failed and whether to retry") {
  auto e = ErrnoError(ENOSPC, "writing blob").value();
  CHECK(e.Is(Errc::kNoSpace));
  CHECK(e.Message() == "writing blob: not enough disk space");
  CHECK_FALSE(IsRetryable(e));
  CHECK(IsRetryable(MakeError(Errc::kUnavailable, "registry").value()));
  CHECK_FALSE(IsRetryable(MakeError(Errc::kSignature, "release").value()));
}
