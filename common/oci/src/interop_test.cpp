#include <catch2/catch.hpp>

#include <glob.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/subprocess.hpp"
#include "oci/layer.hpp"
#include "oci/layout.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::oci;
using namespace tug::oci::testing;

namespace {

void RunOk(const std::vector<std::string>& argv) {
  auto r = tug::core::Run(argv);
  REQUIRE(r);
  INFO(argv[0] << " " << argv[1] << ": " << r->Describe() << "\n" << r->err);
  REQUIRE(r->ok());
}

}  // namespace

TEST_CASE("an image layout we write is unpacked by umoci and inspected by skopeo") {
  TempDir t;
  auto layout = ImageLayout::Create(t / "image");
  REQUIRE(layout);
  TarEntry dir;
  dir.type = TarEntry::Type::kDir;
  dir.path = "srv";
  TarEntry file;
  file.path = "srv/hello.txt";
  file.content = "hello from tugboat\n";
  LayerBlob blob = LayerFromEntries({dir, file});
  auto layer = layout->WriteBlob(blob.data, blob.media_type);
  REQUIRE(layer);

  ImageConfig config;
  config.architecture = "amd64";
  config.config.cmd = {"/bin/sh"};
  config.diff_ids = {blob.diff_id};
  auto cfg = layout->WriteBlob(Serialize(config), media::kOciConfig);
  REQUIRE(cfg);
  Manifest m;
  m.config = *cfg;
  m.layers = {*layer};
  auto man = layout->WriteBlob(Serialize(m), media::kOciManifest);
  REQUIRE(man);
  REQUIRE(layout->AddToIndex(*man, "v1"));
  REQUIRE(layout->AddToIndex(*man, "v1"));  // replacing by ref name keeps one entry
  CHECK(layout->ReadIndex()->manifests.size() == 1);

  RunOk({"umoci", "unpack", "--image", t / "image:v1", t / "bundle"});
  CHECK(ReadAll(t / "bundle/rootfs/srv/hello.txt") == "hello from tugboat\n");

  auto inspect = tug::core::Run({"skopeo", "inspect", "--raw", "oci:" + t / "image:v1"});
  REQUIRE(inspect);
  CHECK(inspect->ok());
  CHECK(inspect->out == Serialize(m));
}

TEST_CASE("an image layout written by umoci is opened and its layers extracted by us") {
  TempDir t;
  RunOk({"umoci", "init", "--layout", t / "image"});
  RunOk({"umoci", "new", "--image", t / "image:t"});
  // unpack + repack rather than `umoci insert`: umoci 0.4.7's insert writes a tar cut short after the last file's
  // data (no padding, no end marker), which GNU tar and libarchive both reject as truncated.
  RunOk({"umoci", "unpack", "--image", t / "image:t", t / "bundle"});
  std::filesystem::create_directories(t / "bundle/rootfs/opt");
  WriteAll(t / "bundle/rootfs/opt/payload.txt", "from umoci\n");
  RunOk({"umoci", "repack", "--image", t / "image:t", t / "bundle"});

  auto layout = ImageLayout::Open(t / "image");
  REQUIRE(layout);
  auto index = layout->ReadIndex();
  REQUIRE(index);
  std::optional<Descriptor> desc;
  for (const auto& d : index->manifests) {
    auto it = d.annotations.find("org.opencontainers.image.ref.name");
    if (it != d.annotations.end() && it->second == "t") desc = d;
  }
  REQUIRE(desc);
  auto manifest = ParseManifest(layout->ReadBlob(desc->digest).value());
  REQUIRE(manifest);
  auto config = ParseImageConfig(layout->ReadBlob(manifest->config.digest).value());
  REQUIRE(config);
  REQUIRE(manifest->layers.size() == config->diff_ids.size());
  REQUIRE_FALSE(manifest->layers.empty());
  std::filesystem::create_directories(t / "rootfs");
  for (size_t i = 0; i < manifest->layers.size(); ++i) {
    const auto& l = manifest->layers[i];
    ExtractOptions opts;
    opts.compression = LayerCompression(l.media_type).value();
    opts.expected_digest = l.digest;
    opts.expected_diff_id = config->diff_ids[i];
    auto src = FileSource::Open(layout->BlobPath(l.digest));
    REQUIRE(src);
    auto stats = ExtractLayer(**src, t / "rootfs", opts);
    INFO((stats ? std::string() : stats.error().Message()));
    REQUIRE(stats);
    CHECK(static_cast<int64_t>(stats->compressed_bytes) == l.size);
  }
  CHECK(ReadAll(t / "rootfs/opt/payload.txt") == "from umoci\n");
}

TEST_CASE("opening a directory that is not a layout fails with kNotFound") {
  TempDir t;
  auto r = ImageLayout::Open(t.path);
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kNotFound));
}

TEST_CASE("blobs are content addressed and an imported file must match its expected digest") {
  TempDir t;
  auto layout = ImageLayout::Create(t / "l");
  REQUIRE(layout);
  auto d = layout->WriteBlob("abc", "application/octet-stream");
  REQUIRE(d);
  CHECK(d->digest == ToolSha256("abc"));
  CHECK(layout->ReadBlob(d->digest).value() == "abc");
  CHECK(layout->HasBlob(d->digest));
  CHECK_FALSE(layout->HasBlob("sha256:../../etc/passwd"));
  CHECK(layout->ReadBlob("sha256:../../etc/passwd").error().Is(Errc::kInvalidArgument));

  WriteAll(t / "big", "payload");
  auto bad = layout->ImportBlobFile(t / "big", "x", d->digest);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().Is(Errc::kIntegrity));
  CHECK(Exists(t / "big"));
  auto good = layout->ImportBlobFile(t / "big", "x", ToolSha256("payload"));
  REQUIRE(good);
  CHECK_FALSE(Exists(t / "big"));
  CHECK(layout->ReadBlob(good->digest).value() == "payload");
}

TEST_CASE("the data of a Debian package unpacks safely and yields bin/busybox") {
  glob_t g{};
  REQUIRE(::glob("/var/cache/tugboat/debs/busybox-static_*_arm64.deb", 0, nullptr, &g) == 0);
  const std::string deb = g.gl_pathv[0];
  ::globfree(&g);
  TempDir t;
  REQUIRE(ExtractDebData(deb, t / "root"));
  struct stat st;
  REQUIRE(::stat((t / "root/bin/busybox").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 0111) != 0);
  CHECK(st.st_size > 100'000);
  CHECK(ReadAll(t / "root/bin/busybox").substr(1, 3) == "ELF");
}

TEST_CASE("a .deb whose data tar escapes is refused") {
  TempDir t;
  TarEntry evil;
  evil.path = "../escape";
  evil.content = "x";
  WriteAll(t / "debian-binary", "2.0\n");
  WriteAll(t / "data.tar.gz", Gzip(BuildTar({evil})));
  auto r = tug::core::Run({"ar", "rc", t / "evil.deb", t / "debian-binary", t / "data.tar.gz"});
  REQUIRE(r);
  REQUIRE(r->ok());
  auto s = ExtractDebData(t / "evil.deb", t / "root");
  REQUIRE_FALSE(s);
  CHECK(s.error().Is(Errc::kUnsafeArchive));
  CHECK_FALSE(Exists(t / "escape"));
}
