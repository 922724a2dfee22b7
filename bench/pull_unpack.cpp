// pull_unpack: pull a ~100 MB multi-layer amd64 image from a loopback registry and unpack it into a rootfs.
//
//   ours       the device agent's path: registry::Client + agent::BlobStore::Fetch (hash while streaming to
//              partial/, fsync checkpoints every MiB, rename into blobs/) for manifest, config and every layer, then
//              oci::ExtractLayer of each stored layer with its expected digest and diff_id.
//   streaming  an experiment, not what the agent does: each layer is extracted straight from the HTTP stream
//              (FetchBlob on one thread feeding ExtractLayer on another through a bounded queue); nothing is stored.
//   peer       `skopeo copy docker://... oci:DIR:TAG` followed by `umoci unpack --image DIR:TAG BUNDLE`.
//
// Every repetition uses fresh directories and a fresh client (new connections); the order of the variants rotates
// between repetitions so no variant always runs first. Page caches stay warm (we do not drop them).
//
// Usage: bench_pull_unpack [REPS=3] [PAYLOAD_MIB=20] [EXTRA_LAYERS=4]
#include <sys/stat.h>

#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/blob_store.hpp"
#include "agent/state_dir.hpp"
#include "bench_util.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "core/subprocess.hpp"
#include "fixtures/app_image.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "registry/client.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::bench {
namespace {

const oci::Platform kAmd64{"linux", "amd64", ""};

struct Image {
  oci::Manifest manifest;
  oci::ImageConfig config;
};

// Manifest (through the index) and config, fetched with `client`; stored in `blobs` when given.
Image FetchMetadata(registry::Client& client, const registry::Reference& ref, agent::BlobStore* blobs) {
  auto top = Must(client.GetManifest(ref, ref.Ref()), "get " + ref.ToString());
  if (blobs) Must(blobs->Put(top.digest, top.bytes), "store index");
  std::string manifest_bytes = top.bytes;
  if (oci::IsIndexMediaType(top.media_type)) {
    auto index = Must(oci::ParseIndex(top.bytes), "parse index");
    auto desc = Must(oci::SelectPlatform(index, kAmd64), "select amd64");
    auto m = Must(client.GetManifest(ref, desc.digest), "get manifest");
    if (blobs) Must(blobs->Put(m.digest, m.bytes), "store manifest");
    manifest_bytes = m.bytes;
  }
  Image img;
  img.manifest = Must(oci::ParseManifest(manifest_bytes), "parse manifest");
  const auto& c = img.manifest.config;
  std::string config_bytes;
  if (blobs) {
    Must(blobs->Fetch(client, ref, c.digest, static_cast<uint64_t>(c.size), agent::FetchPolicy{}, {}), "fetch config");
    config_bytes = Must(blobs->Read(c.digest), "read config");
  } else {
    Must(client.FetchBlob(ref, c.digest, 0, [&](std::string_view chunk) -> Status {
      config_bytes.append(chunk);
      return {};
    }), "fetch config");
  }
  img.config = Must(oci::ParseImageConfig(config_bytes), "parse config");
  if (img.config.diff_ids.size() != img.manifest.layers.size()) Die("config diff_ids do not match the layers");
  return img;
}

oci::ExtractOptions OptionsFor(const Image& img, size_t i) {
  oci::ExtractOptions o;
  o.compression = Must(oci::LayerCompression(img.manifest.layers[i].media_type), "layer media type");
  o.expected_digest = img.manifest.layers[i].digest;
  o.expected_diff_id = img.config.diff_ids[i];
  return o;
}

struct OursTimes {
  double fetch = 0, unpack = 0;
  uint64_t layer_bytes = 0;
};

OursTimes RunOurs(const registry::Reference& ref, const registry::ClientOptions& copts) {
  testsupport::TempDir tmp("tug-bench-ours");
  core::Env& env = *core::DefaultEnv();
  agent::StateDir dir(tmp.Sub("state"));
  Must(dir.Create(env), "create state dir");
  agent::BlobStore blobs(env, dir);
  OursTimes t;

  Stopwatch fetch;
  registry::Client client(copts);
  Image img = FetchMetadata(client, ref, &blobs);
  for (const auto& l : img.manifest.layers) {
    Must(blobs.Fetch(client, ref, l.digest, static_cast<uint64_t>(l.size), agent::FetchPolicy{}, {}),
         "fetch " + l.digest);
    t.layer_bytes += static_cast<uint64_t>(l.size);
  }
  t.fetch = fetch.Elapsed();

  Stopwatch unpack;
  const std::string rootfs = tmp.Sub("rootfs");
  Must(env.CreateDirs(rootfs), "mkdir rootfs");
  for (size_t i = 0; i < img.manifest.layers.size(); ++i) {
    auto src = Must(oci::FileSource::Open(blobs.Path(img.manifest.layers[i].digest)), "open layer");
    Must(oci::ExtractLayer(*src, rootfs, OptionsFor(img, i)), "extract layer " + std::to_string(i));
  }
  t.unpack = unpack.Elapsed();
  return t;
}

// A bounded single-producer single-consumer byte pipe: FetchBlob's sink pushes, ExtractLayer pulls.
class PipeSource : public oci::ByteSource {
 public:
  static constexpr size_t kMaxQueued = 4 << 20;

  Status Push(std::string_view chunk) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return queued_ < kMaxQueued || aborted_; });
    if (aborted_) return MakeError(Errc::kCancelled, "extraction stopped");
    q_.emplace_back(chunk);
    queued_ += chunk.size();
    cv_.notify_all();
    return {};
  }
  // Producer is done; `err` when the download failed.
  void Close(std::optional<Error> err) {
    std::lock_guard lk(mu_);
    closed_ = true;
    err_ = std::move(err);
    cv_.notify_all();
  }
  // Consumer gives up: unblocks the producer.
  void Abort() {
    std::lock_guard lk(mu_);
    aborted_ = true;
    cv_.notify_all();
  }
  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ == cur_.size()) {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return !q_.empty() || closed_; });
      if (q_.empty()) {
        if (err_) return tl::unexpected(*err_);
        return size_t{0};
      }
      cur_ = std::move(q_.front());
      q_.pop_front();
      queued_ -= cur_.size();
      pos_ = 0;
      cv_.notify_all();
    }
    const size_t k = std::min(n, cur_.size() - pos_);
    std::memcpy(buf, cur_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  size_t queued_ = 0;
  bool closed_ = false, aborted_ = false;
  std::optional<Error> err_;
  std::string cur_;  // consumer-owned
  size_t pos_ = 0;
};

// Sink calls and bytes seen by the streaming variant: how finely Client::FetchBlob chops the stream.
uint64_t g_sink_calls = 0, g_sink_bytes = 0;

double RunStreaming(const registry::Reference& ref, const registry::ClientOptions& copts) {
  testsupport::TempDir tmp("tug-bench-stream");
  const std::string rootfs = tmp.Sub("rootfs");
  Must(core::DefaultEnv()->CreateDirs(rootfs), "mkdir rootfs");
  Stopwatch sw;
  registry::Client client(copts);
  Image img = FetchMetadata(client, ref, nullptr);
  for (size_t i = 0; i < img.manifest.layers.size(); ++i) {
    PipeSource pipe;
    const std::string digest = img.manifest.layers[i].digest;
    std::thread producer([&] {
      auto st = client.FetchBlob(ref, digest, 0, [&](std::string_view c) {
        ++g_sink_calls;
        g_sink_bytes += c.size();
        return pipe.Push(c);
      });
      pipe.Close(st ? std::nullopt : std::optional<Error>(st.error()));
    });
    auto stats = oci::ExtractLayer(pipe, rootfs, OptionsFor(img, i));
    if (!stats) pipe.Abort();
    producer.join();
    Must(stats, "stream-extract layer " + std::to_string(i));
  }
  return sw.Elapsed();
}

struct PeerTimes {
  double copy = 0, unpack = 0;
};

PeerTimes RunPeer(const registry::Reference& ref) {
  testsupport::TempDir tmp("tug-bench-peer");
  const std::string layout = tmp.Sub("oci") + ":" + ref.tag;
  core::RunOptions o;
  o.timeout = std::chrono::minutes(5);
  PeerTimes t;
  Stopwatch copy;
  auto r = Must(core::Run({"skopeo", "copy", "--quiet", "--src-tls-verify=false",
                           "docker://" + ref.Repo() + ":" + ref.tag, "oci:" + layout},
                          o),
                "start skopeo");
  if (!r.ok()) Die("skopeo copy: " + r.Describe());
  t.copy = copy.Elapsed();
  Stopwatch unpack;
  r = Must(core::Run({"umoci", "unpack", "--image", layout, tmp.Sub("bundle")}, o), "start umoci");
  if (!r.ok()) Die("umoci unpack: " + r.Describe());
  t.unpack = unpack.Elapsed();
  return t;
}

int Main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  const size_t payload_mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 20;
  const size_t extra_layers = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 4;
  core::InitLogging("warn", "bench");

  auto registry = Must(testsupport::RegistryServer::Start(), "start registry");
  registry::ClientOptions copts;
  copts.insecure_registries.insert(registry->host_port());
  auto ref = Must(registry::Reference::Parse(registry->host_port() + "/bench/app:v1"), "reference");
  {
    registry::Client pusher(copts);
    fixtures::AppImageSpec spec;
    spec.archs = {"amd64"};
    spec.payload_bytes = payload_mib << 20;
    spec.extra_layers = extra_layers;
    std::fprintf(stderr, "pull_unpack: pushing image (%zu x %zu MiB payload layers)...\n", extra_layers + 1,
                 payload_mib);
    Must(fixtures::PushAppImage(pusher, ref, spec), "push image");
  }

  std::vector<double> ours_fetch, ours_unpack, ours_total, stream_total, peer_copy, peer_unpack, peer_total;
  uint64_t layer_bytes = 0;
  size_t layers = 0;
  for (int rep = 0; rep < reps; ++rep) {
    // Rotate the order: ours, streaming, peer / streaming, peer, ours / peer, ours, streaming.
    for (int k = 0; k < 3; ++k) {
      switch ((rep + k) % 3) {
        case 0: {
          auto t = RunOurs(ref, copts);
          ours_fetch.push_back(t.fetch);
          ours_unpack.push_back(t.unpack);
          ours_total.push_back(t.fetch + t.unpack);
          layer_bytes = t.layer_bytes;
          std::fprintf(stderr, "  rep %d ours: fetch %.2fs unpack %.2fs\n", rep + 1, t.fetch, t.unpack);
          break;
        }
        case 1: {
          double s = RunStreaming(ref, copts);
          stream_total.push_back(s);
          std::fprintf(stderr, "  rep %d streaming: %.2fs\n", rep + 1, s);
          break;
        }
        case 2: {
          auto t = RunPeer(ref);
          peer_copy.push_back(t.copy);
          peer_unpack.push_back(t.unpack);
          peer_total.push_back(t.copy + t.unpack);
          std::fprintf(stderr, "  rep %d peer: skopeo %.2fs umoci %.2fs\n", rep + 1, t.copy, t.unpack);
          break;
        }
      }
    }
  }
  {
    registry::Client c(copts);
    layers = FetchMetadata(c, ref, nullptr).manifest.layers.size();
  }

  const double mb = static_cast<double>(layer_bytes) / 1e6;
  std::printf("Image: linux/amd64, %zu gzip layers, %.1f MB compressed (busybox base + %zu x %zu MiB incompressible "
              "payload), registry on 127.0.0.1. %d repetitions per variant, median reported.\n\n",
              layers, mb, extra_layers + 1, payload_mib, reps);
  Header({"variant", "step", "runs (s)", "median (s)", "MB/s (compressed)"});
  auto row = [&](const std::string& v, const std::string& step, const std::vector<double>& xs) {
    const double m = Median(xs);
    Row({v, step, Join(xs, 2), Fmt(2, m), Fmt(0, mb / m)});
  };
  row("ours (agent path)", "fetch: manifest+config+layers into blob store", ours_fetch);
  row("ours (agent path)", "unpack: ExtractLayer of each stored layer", ours_unpack);
  row("ours (agent path)", "**total**", ours_total);
  row("ours (streaming experiment)", "**total** (extract straight from HTTP)", stream_total);
  row("peer", "skopeo copy docker:// -> oci:", peer_copy);
  row("peer", "umoci unpack", peer_unpack);
  row("peer", "**total**", peer_total);
  std::printf("\n");
  Header({"ratio (peer / ours; > 1 means ours is faster)", "value"});
  Row({"total: (skopeo + umoci) / ours", Fmt(2, Median(peer_total) / Median(ours_total))});
  Row({"fetch: skopeo copy / ours fetch", Fmt(2, Median(peer_copy) / Median(ours_fetch))});
  Row({"unpack: umoci unpack / ours unpack", Fmt(2, Median(peer_unpack) / Median(ours_unpack))});
  Row({"total: (skopeo + umoci) / ours streaming", Fmt(2, Median(peer_total) / Median(stream_total))});
  std::printf("\nClient::FetchBlob delivered the streaming runs' layer bytes in %llu sink calls, %.0f bytes per call on "
              "average (each call is one read from the socket).\n",
              static_cast<unsigned long long>(g_sink_calls),
              g_sink_calls ? static_cast<double>(g_sink_bytes) / static_cast<double>(g_sink_calls) : 0.0);
  return 0;
}

}  // namespace
}  // namespace tug::bench

int main(int argc, char** argv) { return tug::bench::Main(argc, argv); }
