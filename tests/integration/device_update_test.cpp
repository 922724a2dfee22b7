// The device updates itself from signed images in a real registry, runs them in real runc (arm64 under QEMU), and
// rolls back on its own. Bad input is rejected with a clear error and leaves the running version untouched.
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto/sha256.hpp"
#include "harness.hpp"
#include "oci/image.hpp"

using namespace tug;
using namespace tug::itest;
using fixtures::AppBehaviour;

namespace {

nlohmann::json CliStatus(const std::string& state) {
  auto r = RunAgent({"--state-dir", state, "status", "--json"});
  REQUIRE(r.ok());
  return nlohmann::json::parse(r.out);
}

std::string Exec(agent::Runtime& rt, const std::string& id, const std::string& cmd) {
  auto r = rt.Exec(id, {"/bin/sh", "-c", cmd}, std::chrono::seconds(30));
  REQUIRE(r);
  return r->out;
}

struct Device {
  Harness& h;
  std::string state;
  agent::RuncRuntime runtime;
  agent::Updater updater;
  Device(Harness& harness, const std::string& name, agent::UpdaterOptions opts)
      : h(harness),
        state(harness.InitDevice(name)),
        runtime(state + "/runc"),
        updater(*core::DefaultEnv(), agent::StateDir(state), runtime, *core::SystemClock(), std::move(opts)) {}
  tug::Status Install(const std::string& envelope) { return updater.Install(envelope); }
  uint64_t ActiveVersion() {
    auto s = updater.GetStatus();
    REQUIRE(s);
    return s->active ? s->active->record.version : 0;
  }
  bool ActiveRunning() {
    auto s = updater.GetStatus();
    REQUIRE(s);
    return s->active && s->active->running;
  }
};

}  // namespace

TEST_CASE("an arm64 device installs v1, updates to v2 fetching only the changed layer, and rolls back a broken v3") {
  Harness h;
  auto v1 = h.Push(1, AppBehaviour::kHealthy, {"arm64"});
  auto v2 = h.Push(2, AppBehaviour::kHealthy, {"arm64"});
  auto v3 = h.Push(3, AppBehaviour::kFailsHealthCheck, {"arm64"});
  Device dev(h, "arm-device", h.Options("linux/arm64/v8"));

  REQUIRE(dev.Install(h.Sign(v1, 1)));
  CHECK(dev.ActiveVersion() == 1);
  CHECK(dev.ActiveRunning());
  const auto id1 = dev.updater.ContainerId("a");
  CHECK(Exec(dev.runtime, id1, "cat /app/VERSION") == "1\n");
  // The container really runs the arm64 busybox (under QEMU here).
  CHECK(Exec(dev.runtime, id1, "uname -m || busybox uname -m").find("aarch64") != std::string::npos);

  // Restarting the agent (boot-time recovery) leaves a healthy app alone: same container process.
  auto pid_of = [&](const std::string& id) {
    auto r = core::Run({"runc", "--root", dev.state + "/runc", "state", id});
    REQUIRE(r);
    return nlohmann::json::parse(r->out).value("pid", 0);
  };
  const int pid = pid_of(id1);
  auto rec = RunAgent({"--state-dir", dev.state, "--platform", "linux/arm64/v8", "recover"});
  REQUIRE(rec.ok());
  CHECK(pid_of(id1) == pid);

  const uint64_t before = dev.updater.bytes_downloaded();
  REQUIRE(dev.Install(h.Sign(v2, 2)));
  const uint64_t fetched = dev.updater.bytes_downloaded() - before;
  INFO("v2 fetched " << fetched << " bytes; base layer " << v2.base_layer_bytes["arm64"] << ", app layer "
                     << v2.app_layer_bytes["arm64"]);
  CHECK(fetched >= v2.app_layer_bytes["arm64"]);
  CHECK(fetched < v2.app_layer_bytes["arm64"] + 16 * 1024);  // app layer + manifests + config, never the base
  CHECK(dev.ActiveVersion() == 2);
  CHECK(Exec(dev.runtime, dev.updater.ContainerId("b"), "cat /app/VERSION") == "2\n");

  auto st = dev.Install(h.Sign(v3, 3));
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kHealthCheckFailed));
  CHECK(st.error().Message().find("rolled back") != std::string::npos);
  CHECK(dev.ActiveVersion() == 2);
  CHECK(dev.ActiveRunning());
  CHECK(Exec(dev.runtime, dev.updater.ContainerId("b"), "cat /app/VERSION") == "2\n");

  // The CLI tells the same story.
  auto s = CliStatus(dev.state);
  CHECK(s["active"]["version"] == 2);
  CHECK(s["active"]["running"] == true);
  CHECK(s["job"]["phase"] == "ROLLED_BACK");
  CHECK(s["ratchet"] == 2);
}

TEST_CASE("an app that exits inside the commit window is rolled back, and operator rollback returns to v1") {
  Harness h;
  auto v1 = h.Push(1);
  auto v2 = h.Push(2, AppBehaviour::kNoHealthCheck);
  auto v3 = h.Push(3, AppBehaviour::kExits);
  Device dev(h, "dev", h.Options());
  REQUIRE(dev.Install(h.Sign(v1, 1)));
  REQUIRE(dev.Install(h.Sign(v2, 2)));
  auto st = dev.Install(h.Sign(v3, 3));
  REQUIRE_FALSE(st);
  CHECK(st.error().Message().find("exited") != std::string::npos);
  CHECK(dev.ActiveVersion() == 2);
  CHECK(dev.ActiveRunning());

  // v3 overwrote v1's slot, so there is nothing to roll back to now.
  auto r = RunAgent({"--state-dir", dev.state, "rollback"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no previous committed release") != std::string::npos);

  auto v4 = h.Push(4);
  REQUIRE(dev.Install(h.Sign(v4, 4)));
  r = RunAgent({"--state-dir", dev.state, "rollback"});
  INFO(r.err);
  REQUIRE(r.ok());
  CHECK(dev.ActiveVersion() == 2);
  CHECK(dev.ActiveRunning());
}

TEST_CASE("bad releases and bad content are rejected with a clear error and the running version stays") {
  Harness h;
  auto v1 = h.Push(1);
  Device dev(h, "dev", h.Options());
  REQUIRE(dev.Install(h.Sign(v1, 5)));
  auto v2 = h.Push(2);

  auto expect_rejected = [&](const std::string& envelope, Errc code, const std::string& words) {
    auto st = dev.Install(envelope);
    REQUIRE_FALSE(st);
    INFO(st.error().Message());
    CHECK(st.error().Is(code));
    CHECK(st.error().Message().find(words) != std::string::npos);
    CHECK(dev.ActiveVersion() == 5);
    CHECK(dev.ActiveRunning());
  };

  SECTION("wrong key") { expect_rejected(h.Sign(v2, 6, crypto::GenerateKeyPair()), Errc::kSignature, "trusted"); }
  SECTION("expired") {
    expect_rejected(h.Sign(v2, 6, std::nullopt, std::chrono::seconds(-60)), Errc::kExpired, "expired");
  }
  SECTION("version not above the ratchet") {
    expect_rejected(h.Sign(v2, 5), Errc::kRollbackRejected, "not above");
  }
  SECTION("repository mismatch") {
    auto opts = h.Options();
    opts.expected_repository = h.Repo().Repo();
    Device strict(h, "strict", opts);
    auto st = strict.Install(h.Sign(v2, 6, std::nullopt, std::chrono::hours(1), h.registry->host_port() + "/evil/x"));
    REQUIRE_FALSE(st);
    CHECK(st.error().Is(Errc::kPolicy));
  }
  SECTION("the registry serves a different manifest than the one signed") {
    // Sign v2's index but claim v1's platform manifest: the device must notice the mismatch.
    auto forged = v2;
    forged.manifests = v1.manifests;
    expect_rejected(h.Sign(forged, 6), Errc::kPolicy, "signs");
  }
  SECTION("the registry's stored index was swapped") {
    auto v3 = h.Push(3);
    // Overwrite v3's index in the registry storage with v2's bytes: content no longer matches the signed digest.
    auto v2_index = h.client->GetManifest(h.Repo(), v2.index_digest);
    REQUIRE(v2_index);
    std::ofstream(h.registry->BlobDataPath(v3.index_digest), std::ios::trunc) << v2_index->bytes;
    expect_rejected(h.Sign(v3, 6), Errc::kIntegrity, "");
  }
  SECTION("a corrupted layer blob") {
    auto v3 = h.Push(3);
    auto m = h.client->GetManifest(h.Repo(), v3.manifests.at("linux/amd64"));
    REQUIRE(m);
    auto manifest = oci::ParseManifest(m->bytes);
    REQUIRE(manifest);
    auto path = h.registry->BlobDataPath(manifest->layers.back().digest);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x5a');
    f.close();
    expect_rejected(h.Sign(v3, 6), Errc::kIntegrity, "hashed to");
    // Nothing unverified was kept.
    CHECK_FALSE(core::DefaultEnv()->Exists(dev.state + "/blobs/sha256/" + manifest->layers.back().digest.substr(7)));
  }
  SECTION("a truncated layer blob") {
    auto v3 = h.Push(3);
    auto m = h.client->GetManifest(h.Repo(), v3.manifests.at("linux/amd64"));
    auto manifest = oci::ParseManifest(m->bytes);
    auto path = h.registry->BlobDataPath(manifest->layers.back().digest);
    REQUIRE(core::DefaultEnv()->Truncate(path, 100));
    auto st = dev.Install(h.Sign(v3, 6));
    REQUIRE_FALSE(st);
    INFO(st.error().Message());
    CHECK(dev.ActiveVersion() == 5);
    CHECK(dev.ActiveRunning());
  }
  SECTION("a layer that escapes the rootfs") {
    for (auto entries : std::vector<std::vector<oci::TarEntry>>{
             {{oci::TarEntry::Type::kFile, "../../escaped", "x", "", 0644}},
             {{oci::TarEntry::Type::kSymlink, "evil", "", "/", 0777},
              {oci::TarEntry::Type::kFile, "evil/tmp/escaped", "x", "", 0644}},
             {{oci::TarEntry::Type::kHardlink, "pw", "", "/etc/passwd", 0644}},
             {{oci::TarEntry::Type::kCharDevice, "dev/mem", "", "", 0600}}}) {
      // A valid image around one hostile layer, signed by the trusted key: signatures do not make tars safe.
      auto img = h.PushWithExtraLayer(v2, oci::LayerFromEntries(entries));
      auto st = dev.Install(h.Sign(img, 6));
      REQUIRE_FALSE(st);
      INFO(st.error().Message());
      CHECK(st.error().Is(Errc::kUnsafeArchive));
      CHECK(dev.ActiveVersion() == 5);
      CHECK(dev.ActiveRunning());
      CHECK_FALSE(core::DefaultEnv()->Exists(dev.state + "/escaped"));
      CHECK_FALSE(core::DefaultEnv()->Exists("/tmp/escaped"));
    }
  }
  SECTION("the disk fills up while unpacking") {
    // A state dir on a small real tmpfs; a highly compressible layer passes the download check but not the unpack.
    testsupport::TempDir small("tug-enospc");
    REQUIRE(::mount("tmpfs", small.path().c_str(), "tmpfs", 0, "size=24m") == 0);
    struct Unmount {
      std::string p;
      ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{small.path()};
    auto opts = h.Options();
    opts.unpack_margin_percent = 0;
    agent::RuncRuntime rt(small.Sub("state/runc"));
    agent::Updater up(*core::DefaultEnv(), agent::StateDir(small.Sub("state")), rt, *core::SystemClock(), opts);
    REQUIRE(up.Init(h.root_json));
    REQUIRE(up.Install(h.Sign(v1, 1)));
    auto img = h.PushWithExtraLayer(
        v2, oci::LayerFromEntries({{oci::TarEntry::Type::kFile, "app/zeros", std::string(40 << 20, '\0'), "", 0644}}));
    auto st = up.Install(h.Sign(img, 2));
    REQUIRE_FALSE(st);
    INFO(st.error().Message());
    CHECK(st.error().Is(Errc::kNoSpace));
    auto s = up.GetStatus();
    REQUIRE(s);
    CHECK(s->active->record.version == 1);
    CHECK(s->active->running);
    h.StopContainers(small.Sub("state"));
  }
}

TEST_CASE("a release below the root's threshold is refused") {
  Harness h;
  auto k2 = crypto::GenerateKeyPair();
  auto root = crypto::MakeTrustRoot({h.key.public_key, k2.public_key}, 2, 1,
                                    core::SystemClock()->Now() + std::chrono::hours(24), {h.key, k2});
  REQUIRE(root);
  h.root_json = *root;
  auto v1 = h.Push(1);
  Device dev(h, "dev", h.Options());
  auto st = dev.Install(h.Sign(v1, 1));  // one signature of two needed
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kSignature));
  CHECK(dev.ActiveVersion() == 0);
}
