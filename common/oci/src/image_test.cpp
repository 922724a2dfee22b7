#include <catch2/catch.hpp>

#include "oci/image.hpp"

using namespace tug;
using namespace tug::oci;

namespace {
constexpr const char* kDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr const char* kDigestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr const char* kDigestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

Descriptor ForPlatform(const char* digest, const char* p) {
  Descriptor d;
  d.media_type = std::string(media::kOciManifest);
  d.digest = digest;
  d.size = 100;
  d.platform = Platform::Parse(p).value();
  return d;
}
}  // namespace

TEST_CASE("a manifest survives a serialise and parse round trip unchanged") {
  Manifest m;
  m.config = Descriptor{std::string(media::kOciConfig), kDigestA, 123, {}, {}, {}};
  m.layers.push_back(Descriptor{std::string(media::kOciLayerGzip), kDigestB, 456, {}, {}, {{"k", "v"}}});
  m.subject = Descriptor{std::string(media::kOciManifest), kDigestC, 7, {}, {}, {}};
  m.artifact_type = "application/vnd.tugboat.release.v1+json";
  m.annotations["org.opencontainers.image.created"] = "2026-01-01T00:00:00Z";
  const std::string bytes = Serialize(m);
  auto back = ParseManifest(bytes);
  REQUIRE(back);
  CHECK(Serialize(*back) == bytes);
  CHECK(back->layers.at(0).annotations.at("k") == "v");
  CHECK(back->subject->digest == kDigestC);
  CHECK(bytes.find("\"schemaVersion\":2") != std::string::npos);
  CHECK(SniffMediaType(bytes) == media::kOciManifest);
}

TEST_CASE("serialisation sorts keys and omits empty optional fields") {
  Manifest m;
  m.config = Descriptor{std::string(media::kOciConfig), kDigestA, 2, {}, {}, {}};
  const std::string bytes = Serialize(m);
  CHECK(bytes.find("annotations") == std::string::npos);
  CHECK(bytes.find("subject") == std::string::npos);
  CHECK(bytes.find("artifactType") == std::string::npos);
  CHECK(bytes.rfind("{\"config\":{\"digest\":", 0) == 0);
  CHECK(bytes.find("},\"layers\":[],\"mediaType\":") != std::string::npos);
  CHECK(bytes.size() - bytes.find(",\"schemaVersion\":2}") == 19);
}

TEST_CASE("an index survives a round trip and keeps platforms") {
  Index idx;
  idx.manifests.push_back(ForPlatform(kDigestA, "linux/arm64/v8"));
  idx.manifests.push_back(ForPlatform(kDigestB, "linux/arm/v7"));
  idx.annotations["a"] = "b";
  auto back = ParseIndex(Serialize(idx));
  REQUIRE(back);
  CHECK(Serialize(*back) == Serialize(idx));
  CHECK(back->manifests.at(1).platform->variant == "v7");
}

TEST_CASE("an image config survives a round trip with Docker's config keys") {
  ImageConfig c;
  c.architecture = "arm64";
  c.variant = "v8";
  c.created = "2026-11-22T10:00:00Z";
  c.config.user = "1000:1000";
  c.config.env = {"PATH=/bin", "A=b"};
  c.config.entrypoint = {"/bin/app"};
  c.config.cmd = {"--serve"};
  c.config.working_dir = "/srv";
  c.config.labels = {{"team", "iot"}};
  c.config.exposed_ports = {"8080/tcp", "53/udp"};
  c.config.stop_signal = "SIGTERM";
  c.config.healthcheck = HealthCheck{{"CMD-SHELL", "true"}, 30'000'000'000, 5'000'000'000, 1'000'000'000, 3};
  c.diff_ids = {kDigestA, kDigestB};
  c.history.push_back(HistoryEntry{"2026-11-22T10:00:00Z", "COPY app /bin/app", "", false});
  c.history.push_back(HistoryEntry{"", "ENV A=b", "", true});
  const std::string bytes = Serialize(c);
  for (const char* key : {"\"User\"", "\"Env\"", "\"Entrypoint\"", "\"Cmd\"", "\"WorkingDir\"", "\"Labels\"",
                          "\"ExposedPorts\":{\"53/udp\":{},\"8080/tcp\":{}}", "\"StopSignal\"", "\"Healthcheck\"",
                          "\"Interval\":30000000000", "\"StartPeriod\":1000000000", "\"Retries\":3",
                          "\"rootfs\":{\"diff_ids\"", "\"type\":\"layers\"", "\"empty_layer\":true"}) {
    INFO(key);
    CHECK(bytes.find(key) != std::string::npos);
  }
  auto back = ParseImageConfig(bytes);
  REQUIRE(back);
  CHECK(Serialize(*back) == bytes);
  CHECK(back->config.healthcheck->timeout_ns == 5'000'000'000);
  CHECK(back->GetPlatform() == Platform{"linux", "arm64", "v8"});
}

TEST_CASE("Docker v2 schema 2 manifests, manifest lists and configs with nulls are accepted") {
  const std::string manifest = std::string(R"({"schemaVersion":2,"mediaType":")") +
                               std::string(media::kDockerManifest) + R"(","config":{"mediaType":")" +
                               std::string(media::kDockerConfig) + R"(","size":1469,"digest":")" + kDigestA +
                               R"("},"layers":[{"mediaType":")" + std::string(media::kDockerLayerGzip) +
                               R"(","size":2,"digest":")" + kDigestB + R"("}]})";
  auto m = ParseManifest(manifest);
  REQUIRE(m);
  CHECK(m->media_type == media::kDockerManifest);
  CHECK(LayerCompression(m->layers[0].media_type).value() == Compression::kGzip);

  const std::string list = std::string(R"({"schemaVersion":2,"mediaType":")") +
                           std::string(media::kDockerManifestList) + R"(","manifests":[{"mediaType":")" +
                           std::string(media::kDockerManifest) + R"(","size":5,"digest":")" + kDigestC +
                           R"(","platform":{"architecture":"arm","os":"linux","variant":"v7"}}]})";
  auto idx = ParseIndex(list);
  REQUIRE(idx);
  CHECK(IsIndexMediaType(SniffMediaType(list)));

  auto cfg = ParseImageConfig(
      R"({"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Cmd":null,"Entrypoint":null,"Labels":null,)"
      R"("ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]},"container_config":{}})");
  REQUIRE(cfg);
  CHECK(cfg->config.cmd.empty());
  CHECK(cfg->config.exposed_ports == std::vector<std::string>{"80/tcp"});
}

TEST_CASE("malformed JSON and wrong field types are rejected naming the field") {
  auto bad_json = ParseManifest("{not json");
  REQUIRE_FALSE(bad_json);
  CHECK(bad_json.error().Is(Errc::kInvalidArgument));

  auto bad_size = ParseManifest(std::string(R"({"schemaVersion":2,"config":{"mediaType":"x","digest":")") + kDigestA +
                                R"(","size":"big"},"layers":[]})");
  REQUIRE_FALSE(bad_size);
  CHECK(bad_size.error().Is(Errc::kInvalidArgument));
  CHECK(bad_size.error().context.find("config.size") != std::string::npos);

  auto bad_digest = ParseIndex(R"({"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"../../etc","size":1}]})");
  REQUIRE_FALSE(bad_digest);
  CHECK(bad_digest.error().context.find("manifests[0].digest") != std::string::npos);

  auto index_as_manifest = ParseManifest(std::string(R"({"schemaVersion":2,"mediaType":")") +
                                         std::string(media::kOciIndex) + R"(","manifests":[]})");
  REQUIRE_FALSE(index_as_manifest);
  CHECK(index_as_manifest.error().context.find("mediaType") != std::string::npos);

  auto bad_env = ParseImageConfig(R"({"architecture":"amd64","os":"linux","config":{"Env":[1]}})");
  REQUIRE_FALSE(bad_env);
  CHECK(bad_env.error().context.find("config.Env") != std::string::npos);
}

TEST_CASE("platform strings parse and arm64 matches arm64/v8 and arm matches arm/v7") {
  auto p = Platform::Parse("linux/arm64");
  REQUIRE(p);
  CHECK(p->ToString() == "linux/arm64");
  CHECK(p->Matches(Platform::Parse("linux/arm64/v8").value()));
  CHECK(Platform::Parse("linux/arm/v7")->Matches(Platform::Parse("linux/arm").value()));
  CHECK_FALSE(Platform::Parse("linux/arm/v6")->Matches(Platform::Parse("linux/arm").value()));
  CHECK_FALSE(Platform::Parse("linux/arm64")->Matches(Platform::Parse("linux/arm/v7").value()));
  CHECK(Platform::Parse("linux/amd64")->Matches(Platform::Parse("linux/amd64/v3").value()));
  CHECK_FALSE(Platform::Parse("arm64"));
  CHECK_FALSE(Platform::Parse("linux//v7"));
  CHECK(Platform::Parse("linux/arm/v7")->ToString() == "linux/arm/v7");
}

TEST_CASE("platform selection picks the matching manifest and lists the others when none match") {
  Index idx;
  idx.manifests.push_back(ForPlatform(kDigestA, "linux/amd64"));
  idx.manifests.push_back(ForPlatform(kDigestB, "linux/arm64/v8"));
  idx.manifests.push_back(ForPlatform(kDigestC, "linux/arm/v7"));
  CHECK(SelectPlatform(idx, Platform::Parse("linux/arm64").value())->digest == kDigestB);
  CHECK(SelectPlatform(idx, Platform::Parse("linux/arm64/v8").value())->digest == kDigestB);
  CHECK(SelectPlatform(idx, Platform::Parse("linux/arm").value())->digest == kDigestC);
  auto none = SelectPlatform(idx, Platform::Parse("linux/riscv64").value());
  REQUIRE_FALSE(none);
  CHECK(none.error().Is(Errc::kNotFound));
  CHECK(none.error().context.find("linux/amd64, linux/arm64/v8, linux/arm/v7") != std::string::npos);
}

TEST_CASE("layer media types map to their compression and others are unsupported") {
  CHECK(LayerCompression(media::kOciLayerTar).value() == Compression::kNone);
  CHECK(LayerCompression(media::kOciLayerGzip).value() == Compression::kGzip);
  CHECK(LayerCompression(media::kOciLayerZstd).value() == Compression::kZstd);
  CHECK(LayerCompression(media::kOciConfig).error().Is(Errc::kUnsupported));
  CHECK(IsManifestMediaType(media::kDockerManifest));
  CHECK_FALSE(IsManifestMediaType(media::kOciIndex));
}
