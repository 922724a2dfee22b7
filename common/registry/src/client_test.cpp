// The client against a real docker-registry 2.8 on loopback (tests/support RegistryServer).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/subprocess.hpp"
#include "crypto/sha256.hpp"
#include "registry/client.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

using tug::Errc;
using tug::registry::Client;
using tug::registry::ClientOptions;
using tug::registry::Reference;
using tug::crypto::Sha256Digest;
using tug::testsupport::RegistryServer;
using tug::testsupport::RegistryServerOptions;
namespace media = tug::oci::media;

namespace {

std::unique_ptr<RegistryServer> StartRegistry(const RegistryServerOptions& o = {}) {
  auto r = RegistryServer::Start(o);
  if (!r) FAIL(r.error().Message());
  return std::move(*r);
}

ClientOptions Insecure(const RegistryServer& reg) {
  ClientOptions o;
  o.insecure_registries.insert(reg.host_port());
  o.timeout = std::chrono::seconds(10);
  return o;
}

Reference Repo(const RegistryServer& reg, const std::string& name) {
  auto r = Reference::Parse(reg.host_port() + "/" + name);
  REQUIRE(r.has_value());
  return *r;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Fetch(Client& c, const Reference& repo, const std::string& digest, uint64_t offset, size_t* chunks = nullptr) {
  std::string got;
  auto st = c.FetchBlob(repo, digest, offset, [&](std::string_view chunk) {
    got.append(chunk);
    if (chunks) ++*chunks;
    return tug::Status{};
  });
  if (!st) FAIL(st.error().Message());
  return got;
}

// A minimal image: config + one uncompressed (empty) tar layer + OCI manifest.
struct TinyImage {
  std::string config, layer, manifest;
  std::string config_digest, layer_digest, manifest_digest;
};

TinyImage MakeImage(const std::string& label) {
  TinyImage im;
  im.layer = std::string(1024, '\0');  // two zero blocks: an empty tar archive
  im.layer_digest = Sha256Digest(im.layer);
  nlohmann::json cfg = {{"architecture", "amd64"},
                        {"os", "linux"},
                        {"config", {{"Labels", {{"test", label}}}}},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", {im.layer_digest}}}}};
  im.config = cfg.dump();
  im.config_digest = Sha256Digest(im.config);
  nlohmann::json m = {
      {"schemaVersion", 2},
      {"mediaType", media::kOciManifest},
      {"config", {{"mediaType", media::kOciConfig}, {"digest", im.config_digest}, {"size", im.config.size()}}},
      {"layers", {{{"mediaType", media::kOciLayerTar}, {"digest", im.layer_digest}, {"size", im.layer.size()}}}}};
  im.manifest = m.dump();
  im.manifest_digest = Sha256Digest(im.manifest);
  return im;
}

void PushImage(Client& c, const Reference& repo, const TinyImage& im, const std::string& tag) {
  REQUIRE(c.PushBlob(repo, im.layer_digest, im.layer).has_value());
  REQUIRE(c.PushBlob(repo, im.config_digest, im.config).has_value());
  auto d = c.PushManifest(repo, tag, im.manifest, media::kOciManifest);
  if (!d) FAIL(d.error().Message());
  REQUIRE(*d == im.manifest_digest);
}

}  // namespace

TEST_CASE("Ping answers against a real registry") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto st = c.Ping(reg->host_port());
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
}

TEST_CASE("A small blob is pushed, found by HEAD and fetched whole and from an offset") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/small");
  std::string data = Pattern(5000, 1);
  std::string digest = Sha256Digest(data);

  auto missing = c.HeadBlob(repo, digest);
  REQUIRE(missing.has_value());
  CHECK_FALSE(missing->has_value());

  auto st = c.PushBlob(repo, digest, data);
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  auto head = c.HeadBlob(repo, digest);
  REQUIRE(head.has_value());
  REQUIRE(head->has_value());
  CHECK((*head)->size == 5000);
  CHECK((*head)->digest == digest);

  uint64_t before = c.bytes_received();
  CHECK(Fetch(c, repo, digest, 0) == data);
  CHECK(c.bytes_received() - before == data.size());
  CHECK(Fetch(c, repo, digest, 1234) == data.substr(1234));
  CHECK(Fetch(c, repo, digest, 4999) == data.substr(4999));
  // At the end already: nothing more to send, and no error (the caller's digest check decides).
  CHECK(Fetch(c, repo, digest, 5000).empty());
  // Pushing again is a no-op.
  REQUIRE(c.PushBlob(repo, digest, data).has_value());
}

TEST_CASE("A multi-megabyte blob is pushed in chunks and streamed back in pieces") {
  auto reg = StartRegistry();
  ClientOptions o = Insecure(*reg);
  o.upload_chunk_size = 1 << 20;
  Client c(o);
  auto repo = Repo(*reg, "acme/large");
  std::string data = Pattern((3 << 20) + 12345, 2);
  std::string digest = Sha256Digest(data);
  auto st = c.PushBlob(repo, digest, data);
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  CHECK(std::filesystem::file_size(reg->BlobDataPath(digest)) == data.size());

  size_t chunks = 0;
  std::string whole = Fetch(c, repo, digest, 0, &chunks);
  CHECK(whole.size() == data.size());
  CHECK(whole == data);
  CHECK(chunks > 1);
  uint64_t off = (2 << 20) + 7;
  CHECK(Fetch(c, repo, digest, off) == data.substr(off));
}

TEST_CASE("A blob file larger than one chunk is uploaded from disk") {
  auto reg = StartRegistry();
  ClientOptions o = Insecure(*reg);
  o.upload_chunk_size = 256 << 10;
  Client c(o);
  auto repo = Repo(*reg, "acme/file");
  tug::testsupport::TempDir dir;
  std::string data = Pattern(1'000'003, 3);
  std::string path = dir.Sub("blob");
  std::ofstream(path, std::ios::binary) << data;
  std::string digest = Sha256Digest(data);
  auto st = c.PushBlobFile(repo, digest, path);
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  CHECK(Fetch(c, repo, digest, 0) == data);
  auto missing = c.PushBlobFile(repo, Sha256Digest("other"), dir.Sub("nope"));
  CHECK_FALSE(missing.has_value());
}

TEST_CASE("A blob is mounted from another repository of the same registry") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto a = Repo(*reg, "acme/a");
  auto b = Repo(*reg, "acme/b");
  std::string data = Pattern(20000, 4);
  std::string digest = Sha256Digest(data);
  REQUIRE(c.PushBlob(a, digest, data).has_value());
  auto before = c.HeadBlob(b, digest);
  REQUIRE(before.has_value());
  CHECK_FALSE(before->has_value());
  // Mounting needs no bytes: pass an empty view so an upload (instead of a mount) would fail the digest check.
  auto st = c.PushBlob(b, digest, std::string_view(), "acme/a");
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  CHECK(std::filesystem::exists(reg->root_dir() + "/docker/registry/v2/repositories/acme/b/_layers/sha256/" +
                                digest.substr(7) + "/link"));
  CHECK(Fetch(c, b, digest, 0) == data);
}

TEST_CASE("A manifest pushed by tag and by digest comes back verified with its media type") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/app");
  auto im = MakeImage("one");
  PushImage(c, repo, im, "v1");

  auto by_tag = c.GetManifest(repo, "v1");
  REQUIRE(by_tag.has_value());
  CHECK(by_tag->bytes == im.manifest);
  CHECK(by_tag->digest == im.manifest_digest);
  CHECK(by_tag->media_type == media::kOciManifest);

  auto im2 = MakeImage("two");
  REQUIRE(c.PushBlob(repo, im2.config_digest, im2.config).has_value());
  auto d = c.PushManifest(repo, im2.manifest_digest, im2.manifest, media::kOciManifest);
  INFO((d ? "" : d.error().Message()));
  REQUIRE(d.has_value());
  auto by_digest = c.GetManifest(repo, im2.manifest_digest);
  REQUIRE(by_digest.has_value());
  CHECK(by_digest->bytes == im2.manifest);

  auto wrong_ref = c.PushManifest(repo, im.manifest_digest, im2.manifest, media::kOciManifest);
  REQUIRE_FALSE(wrong_ref.has_value());
  CHECK(wrong_ref.error().Is(Errc::kIntegrity));

  auto unknown = c.GetManifest(repo, "nope");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().Is(Errc::kNotFound));
  CHECK(unknown.error().context.find("/v2/acme/app/manifests/nope") != std::string::npos);
  CHECK(unknown.error().context.find("404") != std::string::npos);
}

TEST_CASE("A manifest whose stored bytes were altered fails the digest check when fetched by digest") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/tampered");
  auto im = MakeImage("original");
  PushImage(c, repo, im, "v1");
  // Same length, still valid JSON: the registry serves it as the manifest for the old digest.
  std::string altered = im.manifest;
  auto pos = altered.find(media::kOciLayerTar);
  REQUIRE(pos != std::string::npos);
  altered[pos + std::string(media::kOciLayerTar).size() - 1] = 'x';  // ...layer.v1.tax
  std::ofstream(reg->BlobDataPath(im.manifest_digest), std::ios::binary | std::ios::trunc) << altered;

  auto got = c.GetManifest(repo, im.manifest_digest);
  REQUIRE_FALSE(got.has_value());
  INFO(got.error().Message());
  CHECK(got.error().Is(Errc::kIntegrity));
}

TEST_CASE("Tags of a repository are listed") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/tags");
  auto im = MakeImage("t");
  PushImage(c, repo, im, "a");
  PushImage(c, repo, im, "b");
  PushImage(c, repo, im, "c");
  auto tags = c.ListTags(repo);
  REQUIRE(tags.has_value());
  std::sort(tags->begin(), tags->end());
  CHECK(*tags == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("Referrers are added and read back through the sha256- tag fallback") {
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/signed");
  auto im = MakeImage("subject");
  PushImage(c, repo, im, "v1");

  auto none = c.Referrers(repo, im.manifest_digest);
  INFO((none ? "" : none.error().Message()));
  REQUIRE(none.has_value());
  CHECK(none->manifests.empty());

  // The referrer artifact itself: an OCI manifest with subject.
  for (int i = 0; i < 2; ++i) {
    std::string blob = "{\"release\":" + std::to_string(i) + "}";
    REQUIRE(c.PushBlob(repo, Sha256Digest(blob), blob).has_value());
    REQUIRE(c.PushBlob(repo, Sha256Digest("{}"), "{}").has_value());
    nlohmann::json art = {
        {"schemaVersion", 2},
        {"mediaType", media::kOciManifest},
        {"artifactType", "application/vnd.tugboat.release.v1+json"},
        {"config", {{"mediaType", media::kOciEmpty}, {"digest", Sha256Digest("{}")}, {"size", 2}}},
        {"layers", {{{"mediaType", "application/vnd.tugboat.release.v1+json"}, {"digest", Sha256Digest(blob)}, {"size", blob.size()}}}},
        {"subject", {{"mediaType", media::kOciManifest}, {"digest", im.manifest_digest}, {"size", im.manifest.size()}}}};
    std::string bytes = art.dump();
    auto d = c.PushManifest(repo, Sha256Digest(bytes), bytes, media::kOciManifest);
    REQUIRE(d.has_value());
    tug::oci::Descriptor desc;
    desc.media_type = media::kOciManifest;
    desc.digest = *d;
    desc.size = static_cast<int64_t>(bytes.size());
    desc.artifact_type = "application/vnd.tugboat.release.v1+json";
    auto st = c.AddReferrer(repo, im.manifest_digest, desc);
    INFO((st ? "" : st.error().Message()));
    REQUIRE(st.has_value());
    REQUIRE(c.AddReferrer(repo, im.manifest_digest, desc).has_value());  // idempotent
  }
  auto refs = c.Referrers(repo, im.manifest_digest);
  REQUIRE(refs.has_value());
  REQUIRE(refs->manifests.size() == 2);
  CHECK(refs->manifests[0].artifact_type == std::optional<std::string>("application/vnd.tugboat.release.v1+json"));
  auto tags = c.ListTags(repo);
  REQUIRE(tags.has_value());
  CHECK(std::find(tags->begin(), tags->end(), "sha256-" + im.manifest_digest.substr(7)) != tags->end());
}

TEST_CASE("Basic auth with htpasswd accepts the right credentials and refuses wrong or missing ones") {
  RegistryServerOptions ro;
  ro.username = "alice";
  ro.password = "s3cret";
  auto reg = StartRegistry(ro);
  auto repo = Repo(*reg, "acme/private");

  ClientOptions good = Insecure(*reg);
  good.username = "alice";
  good.password = "s3cret";
  Client ok(good);
  auto im = MakeImage("auth");
  PushImage(ok, repo, im, "v1");
  auto m = ok.GetManifest(repo, "v1");
  REQUIRE(m.has_value());
  CHECK(m->digest == im.manifest_digest);

  ClientOptions bad = good;
  bad.password = "wrong";
  Client nope(bad);
  auto r = nope.GetManifest(repo, "v1");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().Is(Errc::kUnauthorized));

  Client anon(Insecure(*reg));
  auto a = anon.GetManifest(repo, "v1");
  REQUIRE_FALSE(a.has_value());
  CHECK(a.error().Is(Errc::kUnauthorized));
}

TEST_CASE("skopeo reads an image pushed by the client") {
  if (tug::core::FindInPath("skopeo").empty()) FAIL("skopeo is not installed (scripts/setup.sh)");
  auto reg = StartRegistry();
  Client c(Insecure(*reg));
  auto repo = Repo(*reg, "acme/interop");
  auto im = MakeImage("skopeo");
  PushImage(c, repo, im, "1.0");
  auto res = tug::core::Run({"skopeo", "inspect", "--tls-verify=false", "docker://" + reg->host_port() + "/acme/interop:1.0"});
  REQUIRE(res.has_value());
  INFO(res->Describe() << "\n" << res->out << res->err);
  REQUIRE(res->ok());
  auto j = nlohmann::json::parse(res->out);
  CHECK(j.at("Digest") == im.manifest_digest);
  CHECK(j.at("Architecture") == "amd64");
}

TEST_CASE("HTTPS registries are verified against the configured CA and the certificate's address") {
  RegistryServerOptions ro;
  ro.tls = true;
  auto reg = StartRegistry(ro);
  ClientOptions trusted;
  trusted.ca_file = reg->ca_file();
  trusted.timeout = std::chrono::seconds(10);
  Client c(trusted);
  auto repo = Repo(*reg, "acme/tls");
  auto st = c.Ping(reg->host_port());
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st.has_value());
  auto im = MakeImage("tls");
  PushImage(c, repo, im, "v1");
  auto m = c.GetManifest(repo, im.manifest_digest);
  REQUIRE(m.has_value());

  // Without the CA the self-signed certificate is refused.
  ClientOptions untrusted;
  untrusted.timeout = std::chrono::seconds(10);
  Client u(untrusted);
  auto refused = u.Ping(reg->host_port());
  REQUIRE_FALSE(refused.has_value());
  INFO(refused.error().Message());
  CHECK(refused.error().context.find("certificate") != std::string::npos);

  // The certificate names IP 127.0.0.1 only: "localhost" must not match it.
  auto by_name = c.Ping("localhost:" + std::to_string(reg->port()));
  REQUIRE_FALSE(by_name.has_value());
  INFO(by_name.error().Message());
  CHECK(by_name.error().context.find("certificate") != std::string::npos);

  // Asking for plain HTTP to a TLS port is not a hang: Go answers 400.
  Client plain(Insecure(*reg));
  CHECK_FALSE(plain.Ping(reg->host_port()).has_value());
}
