// A flaky link: the connection is cut every N KiB. The download completes, resumes where it was, and re-fetches at
// most one chunk per cut (here: nothing at all, since bytes already written are kept within the process).
#include <catch2/catch.hpp>

#include "agent/blob_store.hpp"
#include "fixtures/cutting_proxy.hpp"
#include "harness.hpp"
#include "oci/image.hpp"

using namespace tug;
using namespace tug::itest;

TEST_CASE("an update over a link that drops every 256 KiB completes and re-fetches no more than one chunk per cut") {
  Harness h;
  auto v1 = h.Push(1, fixtures::AppBehaviour::kHealthy, {"amd64"}, 4 << 20);
  fixtures::CuttingProxy proxy(h.registry->port(), 256 * 1024);
  const std::string via = "127.0.0.1:" + std::to_string(proxy.port());
  auto opts = h.Options();
  opts.registry.insecure_registries.insert(via);
  opts.fetch.max_attempts = 100;
  opts.fetch.initial_backoff = std::chrono::milliseconds(10);
  const std::string state = h.InitDevice("dev");
  agent::RuncRuntime rt(state + "/runc");
  agent::Updater up(*core::DefaultEnv(), agent::StateDir(state), rt, *core::SystemClock(), opts);
  REQUIRE(up.Install(h.Sign(v1, 1, std::nullopt, std::chrono::hours(1), via + "/acme/sensor")));

  const uint64_t needed = v1.base_layer_bytes["amd64"] + v1.app_layer_bytes["amd64"];
  const uint64_t received = up.bytes_downloaded();
  const uint64_t cuts = proxy.cuts();
  WARN("layers " << needed << " bytes, received " << received << " bytes over " << cuts << " cuts; re-fetched "
                 << (received > needed ? received - needed : 0) << " bytes");
  CHECK(cuts >= 15);
  CHECK(received >= needed);
  CHECK(received - needed <= cuts * 64 * 1024);  // far below one 1 MiB checkpoint chunk per cut
}

TEST_CASE("a download stopped midway resumes from its checkpoint in a new process") {
  Harness h;
  auto v1 = h.Push(1, fixtures::AppBehaviour::kHealthy, {"amd64"}, 6 << 20);
  auto m = oci::ParseManifest(h.client->GetManifest(h.Repo(), v1.manifests.at("linux/amd64"))->bytes);
  REQUIRE(m);
  const auto& layer = m->layers.back();
  fixtures::CuttingProxy proxy(h.registry->port(), 3 << 20);
  const std::string via = "127.0.0.1:" + std::to_string(proxy.port());
  auto repo = *registry::Reference::Parse(via + "/acme/sensor");
  testsupport::TempDir state("tug-resume");
  agent::StateDir dir(state.path());
  REQUIRE(dir.Create(*core::DefaultEnv()));
  agent::FetchPolicy once;
  once.max_attempts = 1;
  once.checkpoint_bytes = 64 << 10;
  uint64_t partial = 0;
  {
    registry::Client c(registry::ClientOptions{{via}, "", "", "", std::chrono::seconds(10), 8 << 20});
    agent::BlobStore store(*core::DefaultEnv(), dir);
    auto st = store.Fetch(c, repo, layer.digest, static_cast<uint64_t>(layer.size), once, {});
    REQUIRE_FALSE(st);  // cut at 3 MiB, no retries allowed: the "process" gives up here
    // The RST discards what was still in the socket buffer, so less than 3 MiB arrived; all of it was kept.
    partial = store.PartialBytes(layer.digest);
    CHECK(partial > 0);
  }
  proxy.set_cut_after(0);
  registry::Client c(registry::ClientOptions{{via}, "", "", "", std::chrono::seconds(10), 8 << 20});
  agent::BlobStore store(*core::DefaultEnv(), dir);  // a new store, as after a restart
  REQUIRE(store.Fetch(c, repo, layer.digest, static_cast<uint64_t>(layer.size), once, {}));
  CHECK(store.Has(layer.digest));
  INFO("second attempt received " << c.bytes_received() << " of " << layer.size);
  // The new process trusts only the checkpointed prefix, so it fetches the rest plus at most one checkpoint chunk.
  CHECK(c.bytes_received() <= static_cast<uint64_t>(layer.size) - partial + (64 << 10));
  CHECK(c.bytes_received() >= static_cast<uint64_t>(layer.size) - partial);
}
