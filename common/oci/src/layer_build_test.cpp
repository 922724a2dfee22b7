#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "oci/layer.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::oci;
using namespace tug::oci::testing;

namespace {

void MakeTree(const std::string& d) {
  std::filesystem::create_directories(d + "/usr/bin");
  std::filesystem::create_directories(d + "/etc/empty");
  WriteAll(d + "/usr/bin/app", std::string(10'000, 'b'));
  ::chmod((d + "/usr/bin/app").c_str(), 04755);
  WriteAll(d + "/etc/conf", "x=1\n");
  ::symlink("../usr/bin/app", (d + "/etc/app-link").c_str());
  ::link((d + "/etc/conf").c_str(), (d + "/etc/conf.hard").c_str());
  ::chown((d + "/etc/conf").c_str(), 1000, 1000);
}

void SetMtimeEverywhere(const std::string& d, time_t t) {
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  for (const auto& e : std::filesystem::recursive_directory_iterator(d)) {
    ::utimensat(AT_FDCWD, e.path().c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }
  ::utimensat(AT_FDCWD, d.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

}  // namespace

TEST_CASE("BuildTar writes exactly the given entries, hostile names included") {
  TarEntry a;
  a.path = "../escape";
  a.content = "x";
  TarEntry b;
  b.path = "/abs";
  b.content = "y";
  const std::string tar = BuildTar({a, b});
  tug::core::RunOptions o;
  o.stdin_data = tar;
  auto r = tug::core::Run({"tar", "-tf", "-"}, o);
  REQUIRE(r);
  CHECK(r->out == "../escape\n/abs\n");
  CHECK(BuildTar({a, b}) == tar);
}

TEST_CASE("Gzip is deterministic and readable by gzip") {
  const std::string data(200'000, 'g');
  const std::string gz = Gzip(data);
  CHECK(gz == Gzip(data));
  CHECK(static_cast<unsigned char>(gz[0]) == 0x1f);
  CHECK(gz[4] == 0);  // mtime 0
  CHECK((gz[3] & 0x08) == 0);  // no name
  CHECK(ToolSha256(gz, "gzip -dc") == ToolSha256(data));
  CHECK(ToolSha256(Gzip(""), "gzip -dc") == ToolSha256(""));
}

TEST_CASE("LayerFromDirectory gives the same digest twice on the same tree") {
  TempDir t;
  MakeTree(t / "tree");
  auto one = LayerFromDirectory(t / "tree", {1'700'000'000, true});
  auto two = LayerFromDirectory(t / "tree", {1'700'000'000, true});
  REQUIRE(one);
  REQUIRE(two);
  CHECK(one->digest == two->digest);
  CHECK(one->diff_id == two->diff_id);
  CHECK(one->digest == ToolSha256(one->data));
  CHECK(one->diff_id == ToolSha256(one->data, "gzip -dc"));
}

TEST_CASE("LayerFromDirectory clamps different mtimes to the same bytes") {
  TempDir t;
  MakeTree(t / "a");
  MakeTree(t / "b");
  SetMtimeEverywhere(t / "a", 1'800'000'000);
  SetMtimeEverywhere(t / "b", 1'900'000'000);
  auto a = LayerFromDirectory(t / "a", {1'000'000'000, true});
  auto b = LayerFromDirectory(t / "b", {1'000'000'000, true});
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->digest == b->digest);
  auto unclamped_a = LayerFromDirectory(t / "a", {2'000'000'000, true});
  auto unclamped_b = LayerFromDirectory(t / "b", {2'000'000'000, true});
  CHECK(unclamped_a->digest != unclamped_b->digest);
}

TEST_CASE("LayerFromDirectory lists entries sorted with root owners and round-trips through extraction") {
  TempDir t;
  MakeTree(t / "tree");
  auto blob = LayerFromDirectory(t / "tree", {1'700'000'000, true});
  REQUIRE(blob);
  tug::core::RunOptions o;
  o.stdin_data = blob->data;
  auto list = tug::core::Run({"tar", "-tvzf", "-", "--numeric-owner"}, o);
  REQUIRE(list);
  REQUIRE(list->ok());
  CHECK(list->out.find("1000/1000") == std::string::npos);
  auto names = tug::core::Run({"tar", "-tzf", "-"}, o);
  CHECK(names->out == "etc/\netc/app-link\netc/conf\netc/conf.hard\netc/empty/\nusr/\nusr/bin/\nusr/bin/app\n");

  ExtractOptions eo;
  eo.expected_digest = blob->digest;
  eo.expected_diff_id = blob->diff_id;
  StringSource src(blob->data);
  std::filesystem::create_directories(t / "out");
  REQUIRE(ExtractLayer(src, t / "out", eo));
  struct stat st;
  REQUIRE(::stat((t / "out/usr/bin/app").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_mtime == 1'700'000'000);
  REQUIRE(::stat((t / "out/etc/conf").c_str(), &st) == 0);
  CHECK(st.st_nlink == 2);
  CHECK(st.st_uid == 0);
  CHECK(std::filesystem::read_symlink(t / "out/etc/app-link") == "../usr/bin/app");
}
