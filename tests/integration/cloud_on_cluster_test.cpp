// Tugboat's cloud side on Tugboat's cluster, end to end: runs examples/cluster/run.sh in its short mode (SHORT=1:
// no broken v3) against the binaries of this build (BUILD=0). The script starts etcd, two masters, three nodes and
// cluster-services with HAProxy, runs Mosquitto and the iot-controller as apps, rolls v1 and v2 out to three arm64
// devices through the gateway, kill -9s the controller's task and checks that its replacement (pinned to node-0,
// same database directory) still has the releases, rollouts, devices and operator labels. It exits 0 only if every
// step held and stops everything it started. Needs root (runc, binfmt), like the other integration tests.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "core/subprocess.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace std::chrono_literals;

namespace {

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("cloud on cluster: Mosquitto and the controller as services behind HAProxy; controller state survives a "
          "kill -9 of its task") {
  if (::geteuid() != 0) FAIL("needs root (runc, binfmt, cgroups), like the other integration tests");
  const std::string src = Env("TUG_SOURCE_DIR", ".");
  const std::string build = Env("TUG_BUILD_DIR", "build");
  testsupport::TempDir dir("tug-cloud-on-cluster");
  const std::string log = dir.Sub("run.log");

  core::RunOptions opts;
  opts.extra_env = {{"SHORT", "1"}, {"BUILD", "0"}, {"BUILD_DIR", build}};
  auto p = core::Spawn({src + "/examples/cluster/run.sh"}, log, opts);
  REQUIRE(p);
  auto status = p->Wait(420s);
  if (!status) {
    // SIGTERM lets the script's trap stop everything it started.
    p->Stop(90s);
    FAIL("examples/cluster/run.sh did not finish in 420 s; output:\n" + ReadAll(log));
  }
  const std::string out = ReadAll(log);
  INFO((out.size() > 12000 ? "..." + out.substr(out.size() - 12000) : out));
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(out.find("the state survived") != std::string::npos);
  CHECK(out.find("cluster demo passed") != std::string::npos);
}
