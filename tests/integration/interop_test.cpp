// Interoperability with independent OCI tools: an image made by umoci and pushed by skopeo installs on the device,
// and what Tugboat pushes is read by skopeo.
#include <catch2/catch.hpp>

#include <glob.h>

#include <nlohmann/json.hpp>

#include "crypto/sha256.hpp"
#include "harness.hpp"
#include "oci/layer.hpp"

using namespace tug;
using namespace tug::itest;

namespace {

core::RunResult Must(const std::vector<std::string>& argv) {
  auto r = core::Run(argv, {});
  REQUIRE(r);
  INFO(argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << ": " << r->Describe());
  REQUIRE(r->ok());
  return *r;
}

std::string AmdBusyboxDeb() {
  glob_t g{};
  std::string found;
  if (::glob("/var/cache/tugboat/debs/busybox-static_*_amd64.deb", 0, nullptr, &g) == 0 && g.gl_pathc > 0)
    found = g.gl_pathv[0];
  ::globfree(&g);
  return found;
}

}  // namespace

TEST_CASE("an image built with umoci and pushed with skopeo installs and runs on the device") {
  Harness h;
  const std::string layout = h.dir.Sub("layout"), bundle = h.dir.Sub("bundle");
  Must({"umoci", "init", "--layout", layout});
  Must({"umoci", "new", "--image", layout + ":v1"});
  Must({"umoci", "unpack", "--image", layout + ":v1", bundle});
  const std::string deb = AmdBusyboxDeb();
  REQUIRE_FALSE(deb.empty());
  REQUIRE(oci::ExtractDebData(deb, bundle + "/rootfs"));
  Must({"ln", "-s", "busybox", bundle + "/rootfs/bin/sh"});
  Must({"mkdir", "-p", bundle + "/rootfs/app", bundle + "/rootfs/tmp"});
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), bundle + "/rootfs/app/run.sh",
                                 "#!/bin/sh\ntrap 'exit 0' TERM\necho made by umoci\nwhile true; do sleep 1; done\n"));
  Must({"umoci", "repack", "--image", layout + ":v1", bundle});
  Must({"umoci", "config", "--image", layout + ":v1", "--config.entrypoint", "/bin/sh", "--config.cmd",
        "/app/run.sh"});
  const std::string dest = "docker://" + h.registry->host_port() + "/acme/umoci:v1";
  Must({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout + ":v1", dest});
  auto raw = Must({"skopeo", "inspect", "--raw", "--tls-verify=false", dest});
  fixtures::PushedImage image;
  image.index_digest = crypto::Sha256Digest(raw.out);  // a single-platform manifest, signed directly

  auto opts = h.Options();
  const std::string state = h.InitDevice("dev");
  agent::RuncRuntime rt(state + "/runc");
  agent::Updater up(*core::DefaultEnv(), agent::StateDir(state), rt, *core::SystemClock(), opts);
  auto st = up.Install(h.Sign(image, 1, std::nullopt, std::chrono::hours(1), h.registry->host_port() + "/acme/umoci"));
  INFO((st ? "" : st.error().Message()));
  REQUIRE(st);
  auto s = up.GetStatus();
  REQUIRE(s);
  CHECK(s->active->running);
  auto out = rt.Exec(up.ContainerId(s->active->record.slot), {"/bin/sh", "-c", "cat /app/run.sh"},
                     std::chrono::seconds(10));
  REQUIRE(out);
  CHECK(out->out.find("made by umoci") != std::string::npos);
}

TEST_CASE("skopeo reads the multi-arch images Tugboat pushes") {
  Harness h;
  auto image = h.Push(1, fixtures::AppBehaviour::kHealthy, {"arm64", "amd64"});
  const std::string ref = "docker://" + h.registry->host_port() + "/acme/sensor:v1";
  auto raw = Must({"skopeo", "inspect", "--raw", "--tls-verify=false", ref});
  CHECK(crypto::Sha256Digest(raw.out) == image.index_digest);
  auto arm = Must({"skopeo", "inspect", "--tls-verify=false", "--override-arch", "arm64", ref});
  auto j = nlohmann::json::parse(arm.out);
  CHECK(j["Architecture"] == "arm64");
  CHECK(j["Digest"] == image.index_digest);  // skopeo reports the digest of what the tag names: our index
  CHECK(j["Layers"].size() == 2);
  // And skopeo can copy it out into an OCI layout that umoci unpacks.
  const std::string layout = h.dir.Sub("copy");
  Must({"skopeo", "copy", "--src-tls-verify=false", "--override-arch", "arm64", ref, "oci:" + layout + ":v1"});
  Must({"umoci", "unpack", "--image", layout + ":v1", h.dir.Sub("unpacked")});
  CHECK(core::DefaultEnv()->Exists(h.dir.Sub("unpacked/rootfs/bin/busybox")));
}
