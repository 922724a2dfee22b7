#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

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
  CHECK(env.ListDir(d.path).value() == std::vector<std::string>{"state.json"});
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
  CHECK(env.ListDir(d.path).value() == std::vector<std::string>{"journal.json"});
}

namespace {
// An attacker who won the race for the temp name: a symlink to `victim` appears at the very path the writer is
// about to create.
class PlantingEnv : public FaultInjectionEnv {
 public:
  PlantingEnv(std::string victim) : FaultInjectionEnv(DefaultEnv()), victim_(std::move(victim)) {}
  Result<std::unique_ptr<WritableFile>> NewExclusiveFile(const std::string& path) override {
    planted.push_back(path);
    REQUIRE(::symlink(victim_.c_str(), path.c_str()) == 0);
    return FaultInjectionEnv::NewExclusiveFile(path);
  }
  std::vector<std::string> planted;

 private:
  std::string victim_;
};
}  // namespace

TEST_CASE("a durable write never writes through a symlink planted at its temp name, and its names are unguessable") {
  TempDir d;
  Env& env = *DefaultEnv();
  const auto victim = d.path + "/victim";
  REQUIRE(WriteFileDurable(env, victim, "host file"));
  const auto p = d.path + "/state.json";

  // The old fixed temp name is no longer used: a symlink there is left alone.
  REQUIRE(::symlink(victim.c_str(), (p + ".tmp").c_str()) == 0);
  REQUIRE(WriteFileDurable(env, p, "one"));
  CHECK(env.ReadFile(p).value() == "one");
  CHECK(env.ReadFile(victim).value() == "host file");

  // A symlink at the exact temp name (the race won): refused, nothing written through it, the planted link is not
  // ours to delete, and the target keeps its old content.
  PlantingEnv planting(victim);
  auto st = WriteFileDurable(planting, p, "two");
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kAlreadyExists));
  CHECK(env.ReadFile(victim).value() == "host file");
  CHECK(env.ReadFile(p).value() == "one");
  REQUIRE(planting.planted.size() == 1);
  CHECK(planting.planted[0].rfind(p + ".tmp-", 0) == 0);
  CHECK(planting.planted[0].size() == p.size() + 5 + 16);

  // NewExclusiveFile itself: an existing file or a dangling symlink is refused.
  CHECK(env.NewExclusiveFile(victim).error().Is(Errc::kAlreadyExists));
  REQUIRE(::symlink((d.path + "/nowhere").c_str(), (d.path + "/dangling").c_str()) == 0);
  CHECK(env.NewExclusiveFile(d.path + "/dangling").error().Is(Errc::kAlreadyExists));
  CHECK_FALSE(env.Exists(d.path + "/nowhere"));

  // Two writes use two different temp names (random, not a counter or the pid).
  PlantingEnv again(victim);
  (void)WriteFileDurable(again, p, "x");
  (void)WriteFileDurable(again, p, "y");
  REQUIRE(again.planted.size() == 2);
  CHECK(again.planted[0] != again.planted[1]);
}

TEST_CASE("a durable write that fails midway removes its temp file") {
  TempDir d;
  FaultInjectionEnv env(DefaultEnv());
  const auto p = d.path + "/state.json";
  REQUIRE(WriteFileDurable(env, p, "old"));
  env.FailWritesAfterBytes(0, ENOSPC);
  auto st = WriteFileDurable(env, p, "new");
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kNoSpace));
  CHECK(env.ReadFile(p).value() == "old");
  CHECK(env.ListDir(d.path).value() == std::vector<std::string>{"state.json"});
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
