#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>

#include "oci/layer.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::oci;
using namespace tug::oci::testing;
using Type = TarEntry::Type;

namespace {

TarEntry File(std::string path, std::string content, uint32_t mode = 0644) {
  TarEntry e;
  e.path = std::move(path);
  e.content = std::move(content);
  e.mode = mode;
  return e;
}
TarEntry Dir(std::string path, uint32_t mode = 0755) {
  TarEntry e;
  e.type = Type::kDir;
  e.path = std::move(path);
  e.mode = mode;
  return e;
}
TarEntry Link(Type type, std::string path, std::string target) {
  TarEntry e;
  e.type = type;
  e.path = std::move(path);
  e.link = std::move(target);
  e.mode = 0777;
  return e;
}

ExtractOptions Plain() {
  ExtractOptions o;
  o.compression = Compression::kNone;
  return o;
}

Result<ExtractStats> Extract(const std::vector<TarEntry>& entries, const std::string& root,
                             ExtractOptions opts = Plain()) {
  StringSource src(opts.compression == Compression::kGzip ? Gzip(BuildTar(entries)) : BuildTar(entries));
  return ExtractLayer(src, root, opts);
}

// A sandbox: `root` is the rootfs, `outside` a sibling directory that must stay untouched.
struct Sandbox {
  TempDir tmp;
  std::string root = tmp / "rootfs";
  std::string outside = tmp / "outside";
  Sandbox() {
    std::filesystem::create_directories(root);
    std::filesystem::create_directories(outside);
    WriteAll(outside + "/passwd", "original");
    ::chmod(outside.c_str(), 0755);
  }
  // Nothing but rootfs/ and outside/ (with its one file, unchanged) exists in the sandbox.
  bool OutsideUntouched() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(tmp.path)) {
      (void)e;
      ++n;
    }
    size_t m = 0;
    for (const auto& e : std::filesystem::directory_iterator(outside)) {
      (void)e;
      ++m;
    }
    struct stat st;
    ::stat(outside.c_str(), &st);
    return n == 2 && m == 1 && ReadAll(outside + "/passwd") == "original" && (st.st_mode & 07777) == 0755;
  }
};

void RequireUnsafe(const Result<ExtractStats>& r, const std::string& entry_name) {
  REQUIRE_FALSE(r);
  INFO(r.error().Message());
  CHECK(r.error().Is(Errc::kUnsafeArchive));
  CHECK(r.error().context.find(entry_name) != std::string::npos);
}

}  // namespace

TEST_CASE("a layer with regular files, directories, symlinks and hardlinks extracts with modes and times") {
  Sandbox s;
  auto setuid = File("bin/su", "x", 04755);
  setuid.uid = 0;
  auto owned = File("home/user/f", "data", 0600);
  owned.uid = 1234;
  owned.gid = 5678;
  owned.mtime = 1'700'000'000;
  auto stats = Extract({Dir("bin"), setuid, Dir("home/user", 0700), owned, Link(Type::kSymlink, "bin/sh", "/bin/su"),
                        Link(Type::kHardlink, "bin/su2", "bin/su")},
                       s.root);
  REQUIRE(stats);
  CHECK(stats->entries == 6);
  struct stat st;
  REQUIRE(::stat((s.root + "/bin/su").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_nlink == 2);
  REQUIRE(::stat((s.root + "/home/user/f").c_str(), &st) == 0);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 5678);
  CHECK(st.st_mtime == 1'700'000'000);
  CHECK(ReadAll(s.root + "/home/user/f") == "data");
  REQUIRE(::stat((s.root + "/home/user").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(std::filesystem::read_symlink(s.root + "/bin/sh") == "/bin/su");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("a later layer replaces files and symlinks and keeps the contents of existing directories") {
  Sandbox s;
  REQUIRE(Extract({Dir("etc"), File("etc/a", "lower"), File("etc/keep", "k"), Link(Type::kSymlink, "etc/l", "a")},
                  s.root));
  REQUIRE(Extract({Dir("etc", 0700), File("etc/a", "upper"), File("etc/l", "now a file")}, s.root));
  CHECK(ReadAll(s.root + "/etc/a") == "upper");
  CHECK(ReadAll(s.root + "/etc/keep") == "k");
  CHECK_FALSE(std::filesystem::is_symlink(s.root + "/etc/l"));
  CHECK(ReadAll(s.root + "/etc/l") == "now a file");
  struct stat st;
  REQUIRE(::stat((s.root + "/etc").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("entries escaping with .. are refused and nothing is written outside") {
  for (const char* name : {"../escape", "a/../../x", "a/b/../../../x"}) {
    Sandbox s;
    RequireUnsafe(Extract({File(name, "pwned")}, s.root), name);
    CHECK(s.OutsideUntouched());
  }
}

TEST_CASE("absolute entry paths are refused") {
  Sandbox s;
  const std::string abs = s.tmp / "abs";
  RequireUnsafe(Extract({File(abs, "pwned")}, s.root), abs);
  CHECK_FALSE(Exists(abs));
  CHECK(s.OutsideUntouched());
}

TEST_CASE("a file written through a symlink to an absolute directory is refused") {
  Sandbox s;
  RequireUnsafe(Extract({Link(Type::kSymlink, "evil", s.outside), File("evil/passwd", "pwned")}, s.root),
                "evil/passwd");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("a file written through a relative symlink climbing out of the rootfs is refused") {
  Sandbox s;
  RequireUnsafe(Extract({Dir("a"), Link(Type::kSymlink, "a/up", "../../../../../../../" + s.outside),
                         File("a/up/passwd", "pwned")},
                        s.root),
                "a/up/passwd");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("a symlink from a lower layer is not followed by an upper layer's write") {
  Sandbox s;
  REQUIRE(Extract({Link(Type::kSymlink, "lib", s.outside)}, s.root));
  RequireUnsafe(Extract({File("lib/passwd", "pwned")}, s.root), "lib/passwd");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("hardlinks to absolute or escaping targets are refused") {
  {
    Sandbox s;
    RequireUnsafe(Extract({Link(Type::kHardlink, "pw", "/etc/passwd")}, s.root), "pw");
    CHECK_FALSE(Exists(s.root + "/pw"));
  }
  {
    Sandbox s;
    RequireUnsafe(Extract({Link(Type::kHardlink, "pw", "../outside/passwd")}, s.root), "pw");
    CHECK(s.OutsideUntouched());
  }
  {
    Sandbox s;  // through a symlinked parent
    RequireUnsafe(Extract({Link(Type::kSymlink, "o", s.outside), Link(Type::kHardlink, "pw", "o/passwd")}, s.root),
                  "pw");
    CHECK(s.OutsideUntouched());
  }
  {
    Sandbox s;  // to a symlink that points out
    RequireUnsafe(Extract({Link(Type::kSymlink, "o", "/etc/passwd"), Link(Type::kHardlink, "pw", "o")}, s.root),
                  "pw");
  }
  {
    Sandbox s;  // to something never extracted
    RequireUnsafe(Extract({Link(Type::kHardlink, "pw", "missing")}, s.root), "pw");
  }
}

TEST_CASE("device nodes and FIFOs are refused unless allowed") {
  TarEntry dev;
  dev.type = Type::kCharDevice;
  dev.path = "dev/null";
  dev.mode = 0666;
  dev.dev_major = 1;
  dev.dev_minor = 3;
  TarEntry fifo;
  fifo.type = Type::kFifo;
  fifo.path = "run/pipe";
  {
    Sandbox s;
    RequireUnsafe(Extract({dev}, s.root), "dev/null");
    CHECK_FALSE(Exists(s.root + "/dev/null"));
  }
  {
    Sandbox s;
    RequireUnsafe(Extract({fifo}, s.root), "run/pipe");
  }
  {
    Sandbox s;
    auto opts = Plain();
    opts.allow_device_nodes = true;
    REQUIRE(Extract({dev, fifo}, s.root, opts));
    struct stat st;
    REQUIRE(::lstat((s.root + "/dev/null").c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(major(st.st_rdev) == 1);
    CHECK(minor(st.st_rdev) == 3);
    REQUIRE(::lstat((s.root + "/run/pipe").c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
  }
}

TEST_CASE("an archive with more entries than allowed is refused") {
  Sandbox s;
  std::vector<TarEntry> many;
  for (int i = 0; i < 20; ++i) many.push_back(File("f" + std::to_string(i), "x"));
  auto opts = Plain();
  opts.max_entries = 10;
  RequireUnsafe(Extract(many, s.root, opts), "f10");
}

TEST_CASE("a layer that decompresses beyond the size limit is refused") {
  Sandbox s;
  ExtractOptions opts;
  opts.compression = Compression::kGzip;
  opts.max_uncompressed_bytes = 1 << 20;
  const std::string gz = Gzip(BuildTar({File("zeros", std::string(16 << 20, '\0'))}));
  CHECK(gz.size() < 100'000);
  StringSource src(gz);
  auto r = ExtractLayer(src, s.root, opts);
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kUnsafeArchive));
}

TEST_CASE("a symlink replaced by a later directory entry becomes a real directory and its target is untouched") {
  Sandbox s;
  // Replacement, not rejection: a layer may replace any path, but the old link must never be followed (no chmod of
  // the link target, no write into it).
  auto r = Extract({Link(Type::kSymlink, "evil", s.outside), Dir("evil", 0777), File("evil/passwd", "inside")},
                   s.root);
  REQUIRE(r);
  CHECK_FALSE(std::filesystem::is_symlink(s.root + "/evil"));
  CHECK(std::filesystem::is_directory(s.root + "/evil"));
  CHECK(ReadAll(s.root + "/evil/passwd") == "inside");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("whiteout files delete only the named lower-layer entry and never appear") {
  Sandbox s;
  REQUIRE(Extract({Dir("a"), File("a/x", "x"), File("a/y", "y"), Dir("a/sub"), File("a/sub/deep", "d")}, s.root));
  REQUIRE(Extract({Dir("a"), File("a/.wh.x", ""), File("a/.wh.sub", "")}, s.root));
  CHECK_FALSE(Exists(s.root + "/a/x"));
  CHECK_FALSE(Exists(s.root + "/a/sub"));
  CHECK(ReadAll(s.root + "/a/y") == "y");
  CHECK_FALSE(Exists(s.root + "/a/.wh.x"));
  CHECK_FALSE(Exists(s.root + "/a/.wh.sub"));
}

TEST_CASE("an opaque whiteout hides lower-layer children but keeps the same layer's entries in any order") {
  for (bool marker_first : {true, false}) {
    Sandbox s;
    REQUIRE(Extract({Dir("a"), File("a/x", "x"), File("a/y", "y"), Dir("a/d"), File("a/d/old", "o")}, s.root));
    std::vector<TarEntry> upper = {Dir("a")};
    if (marker_first) upper.push_back(File("a/.wh..wh..opq", ""));
    upper.push_back(File("a/z", "z"));
    upper.push_back(File("a/d/new", "n"));
    if (!marker_first) upper.push_back(File("a/.wh..wh..opq", ""));
    REQUIRE(Extract(upper, s.root));
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::recursive_directory_iterator(s.root + "/a")) {
      names.push_back(std::filesystem::relative(e.path(), s.root + "/a").string());
    }
    std::sort(names.begin(), names.end());
    INFO(marker_first);
    CHECK(names == std::vector<std::string>{"d", "d/new", "z"});
  }
}

TEST_CASE("whiteout names that escape are refused") {
  Sandbox s;
  RequireUnsafe(Extract({File("../.wh.outside", "")}, s.root), "../.wh.outside");
  RequireUnsafe(Extract({File("a/.wh..", "")}, s.root), "a/.wh..");
  CHECK(s.OutsideUntouched());
}

TEST_CASE("digest and diff_id match an independent sha256 of the gzip blob and of the tar") {
  Sandbox s;
  const std::vector<TarEntry> entries = {Dir("app"), File("app/bin", std::string(300'000, 'q')),
                                         File("app/conf", "k=v")};
  LayerBlob blob = LayerFromEntries(entries);
  CHECK(blob.media_type == media::kOciLayerGzip);
  CHECK(blob.digest == ToolSha256(blob.data));
  CHECK(blob.diff_id == ToolSha256(blob.data, "gzip -dc"));
  ExtractOptions opts;
  opts.expected_digest = blob.digest;
  opts.expected_diff_id = blob.diff_id;
  StringSource src(blob.data, 1000);
  auto stats = ExtractLayer(src, s.root, opts);
  REQUIRE(stats);
  CHECK(stats->digest == blob.digest);
  CHECK(stats->diff_id == blob.diff_id);
  CHECK(stats->compressed_bytes == blob.data.size());
  CHECK(ReadAll(s.root + "/app/conf") == "k=v");
}

TEST_CASE("a mismatching digest or diff_id fails with kIntegrity naming both digests") {
  LayerBlob blob = LayerFromEntries({File("f", "x")});
  const std::string wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  for (bool wrong_digest : {true, false}) {
    Sandbox s;
    ExtractOptions opts;
    (wrong_digest ? opts.expected_digest : opts.expected_diff_id) = wrong;
    StringSource src(blob.data);
    auto r = ExtractLayer(src, s.root, opts);
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kIntegrity));
    CHECK(r.error().context.find(wrong) != std::string::npos);
    CHECK(r.error().context.find(wrong_digest ? blob.digest : blob.diff_id) != std::string::npos);
  }
}

TEST_CASE("a truncated gzip layer is an error, not a success") {
  LayerBlob blob = LayerFromEntries({File("f", std::string(100'000, 'z')), File("g", "tail")});
  for (size_t cut : {blob.data.size() - 4, blob.data.size() / 2, size_t{5}, size_t{0}}) {
    Sandbox s;
    ExtractOptions opts;
    StringSource src(blob.data.substr(0, cut));
    auto r = ExtractLayer(src, s.root, opts);
    INFO(cut);
    CHECK_FALSE(r);
  }
}

TEST_CASE("multi-member gzip and zstd layers extract with the tar's diff_id") {
  const std::string tar = BuildTar({File("a", std::string(50'000, 'a')), File("b", "b")});
  {
    Sandbox s;
    const std::string two = Gzip(tar.substr(0, 10'000)) + Gzip(tar.substr(10'000));
    ExtractOptions opts;
    StringSource src(two);
    auto r = ExtractLayer(src, s.root, opts);
    REQUIRE(r);
    CHECK(r->diff_id == ToolSha256(tar));
    CHECK(r->digest == ToolSha256(two));
    CHECK(ReadAll(s.root + "/b") == "b");
  }
  {
    Sandbox s;
    const std::string zst_path = s.tmp / "layer.zst";
    tug::core::RunOptions ro;
    ro.stdin_data = tar;
    auto z = tug::core::Run({"zstd", "-q", "-c", "-o", zst_path}, ro);
    REQUIRE(z);
    REQUIRE(z->ok());
    ExtractOptions opts;
    opts.compression = Compression::kZstd;
    auto src = FileSource::Open(zst_path);
    REQUIRE(src);
    auto r = ExtractLayer(**src, s.root, opts);
    REQUIRE(r);
    CHECK(r->diff_id == ToolSha256(tar));
    CHECK(r->digest == ToolSha256(ReadAll(zst_path)));
    CHECK(ReadAll(s.root + "/a").size() == 50'000);
    auto truncated = ReadAll(zst_path);
    StringSource cut(truncated.substr(0, truncated.size() / 2));
    Sandbox s2;
    CHECK_FALSE(ExtractLayer(cut, s2.root, opts));
  }
}
