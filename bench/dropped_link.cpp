// dropped_link: download one ~8 MiB blob (the layer of a single-layer image) through a TCP proxy that cuts every
// connection after 256 KiB of downstream bytes (HTTP headers included), like a 4G link that keeps dropping.
//
//   ours   agent::BlobStore::Fetch with FetchPolicy{max_attempts=1000, initial_backoff=10ms, max_backoff=100ms}:
//          each retry resumes with Range from the bytes already written.
//   naive  the baseline a resume-less downloader gives: registry::Client::FetchBlob from offset 0 again after every
//          cut, until one attempt delivers the whole blob or 200 attempts were spent.
//
// Reported: cuts, body bytes received by the client (Client::bytes_received), the blob size, and bytes received
// beyond the blob size (re-downloaded), per cut.
//
// Usage: bench_dropped_link [BLOB_MIB=8] [CUT_KIB=256]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/blob_store.hpp"
#include "agent/state_dir.hpp"
#include "bench_util.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "crypto/sha256.hpp"
#include "fixtures/cutting_proxy.hpp"
#include "registry/client.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::bench {
namespace {

struct Outcome {
  bool completed = false;
  uint64_t attempts = 0;  // HTTP GETs of the blob
  uint64_t cuts = 0;
  uint64_t received = 0;
  double seconds = 0;
};

std::string MiB(uint64_t b) { return Fmt(2, static_cast<double>(b) / 1048576.0) + " MiB"; }

int Main(int argc, char** argv) {
  const uint64_t blob_mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 8;
  const uint64_t cut_kib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 256;
  const int kNaiveCap = 200;
  ::signal(SIGPIPE, SIG_IGN);
  core::InitLogging(std::getenv("TUG_BENCH_LOG") ? std::getenv("TUG_BENCH_LOG") : "error", "bench");

  auto registry = Must(testsupport::RegistryServer::Start(), "start registry");
  std::string blob(blob_mib << 20, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(blob.data() + i, &r, 8);
  }
  const std::string digest = crypto::Sha256Digest(blob);
  const uint64_t size = blob.size();
  {
    registry::ClientOptions o;
    o.insecure_registries.insert(registry->host_port());
    registry::Client pusher(o);
    auto ref = Must(registry::Reference::Parse(registry->host_port() + "/bench/link"), "reference");
    Must(pusher.PushBlob(ref, digest, blob), "push blob");
  }

  auto through = [&](fixtures::CuttingProxy& proxy, registry::ClientOptions& o) {
    const std::string hp = "127.0.0.1:" + std::to_string(proxy.port());
    o.insecure_registries.insert(hp);
    o.timeout = std::chrono::seconds(10);
    return Must(registry::Reference::Parse(hp + "/bench/link"), "reference");
  };

  // Ours: the agent's resuming blob store.
  Outcome ours;
  {
    fixtures::CuttingProxy proxy(registry->port(), cut_kib << 10, fixtures::CuttingProxy::CutStyle::kFin);
    registry::ClientOptions o;
    auto ref = through(proxy, o);
    registry::Client client(o);
    testsupport::TempDir tmp("tug-bench-link");
    agent::StateDir dir(tmp.Sub("state"));
    Must(dir.Create(*core::DefaultEnv()), "create state dir");
    agent::BlobStore blobs(*core::DefaultEnv(), dir);
    agent::FetchPolicy policy;
    policy.max_attempts = 1000;
    policy.initial_backoff = std::chrono::milliseconds(10);
    policy.max_backoff = std::chrono::milliseconds(100);
    Stopwatch sw;
    auto st = blobs.Fetch(client, ref, digest, size, policy, {});
    ours.seconds = sw.Elapsed();
    if (!st) std::fprintf(stderr, "dropped_link: ours failed: %s\n", st.error().Message().c_str());
    ours.completed = st && blobs.Has(digest);
    ours.cuts = proxy.cuts();
    ours.attempts = proxy.connections();
    ours.received = client.bytes_received();
  }

  // Naive: restart from byte 0 after every cut.
  Outcome naive;
  {
    fixtures::CuttingProxy proxy(registry->port(), cut_kib << 10, fixtures::CuttingProxy::CutStyle::kFin);
    registry::ClientOptions o;
    auto ref = through(proxy, o);
    registry::Client client(o);
    Stopwatch sw;
    for (int attempt = 1; attempt <= kNaiveCap && !naive.completed; ++attempt) {
      crypto::Sha256 h;
      uint64_t got = 0;
      auto st = client.FetchBlob(ref, digest, 0, [&](std::string_view c) -> Status {
        h.Update(c);
        got += c.size();
        return {};
      });
      naive.attempts = static_cast<uint64_t>(attempt);
      naive.completed = st && got == size && "sha256:" + h.FinishHex() == digest;
      if (!naive.completed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    naive.seconds = sw.Elapsed();
    naive.cuts = proxy.cuts();
    naive.received = client.bytes_received();
  }

  std::printf("One %llu MiB blob (%s), registry on 127.0.0.1 behind a proxy that cuts each connection after %llu KiB "
              "sent to the client (response headers included).\n\n",
              static_cast<unsigned long long>(blob_mib), digest.substr(0, 19).c_str(),
              static_cast<unsigned long long>(cut_kib));
  Header({"variant", "completed", "GET attempts", "cuts", "bytes received", "blob size", "re-downloaded bytes",
          "re-downloaded per cut", "wall (s)"});
  auto row = [&](const std::string& name, const Outcome& r) {
    const uint64_t extra = r.received > size ? r.received - size : 0;
    const uint64_t redl = r.completed ? extra : r.received;  // an unfinished download wasted everything it got
    Row({name, r.completed ? "yes" : "**no** (gave up after " + std::to_string(r.attempts) + ")",
         std::to_string(r.attempts), std::to_string(r.cuts), std::to_string(r.received) + " (" + MiB(r.received) + ")",
         std::to_string(size), r.completed ? std::to_string(extra) : std::to_string(redl) + " (all of it)",
         r.cuts ? Fmt(0, static_cast<double>(redl) / static_cast<double>(r.cuts)) : "-",
         Fmt(2, r.seconds)});
  };
  row("ours: BlobStore::Fetch (Range resume)", ours);
  row("naive: restart from 0 after each cut", naive);
  std::printf("\n");
  Header({"ratio", "value"});
  Row({"bytes received: naive / ours", Fmt(1, static_cast<double>(naive.received) / ours.received) +
                                           (naive.completed ? "" : " (naive never finished; a lower bound)")});
  Row({"bytes received by ours / blob size", Fmt(4, static_cast<double>(ours.received) / size)});
  return ours.completed ? 0 : 1;
}

}  // namespace
}  // namespace tug::bench

int main(int argc, char** argv) { return tug::bench::Main(argc, argv); }
