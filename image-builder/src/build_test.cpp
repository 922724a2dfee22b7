// Builds real images: RUN steps under runc, arm64/armhf through QEMU binfmt, on a busybox base made by
// debootstrap-lite from the Debian .debs in /var/cache/tugboat/debs; pushes to a real registry.
#include <catch2/catch.hpp>

#include <glob.h>
#include <sys/stat.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "builder/build.hpp"
#include "builder/cli.hpp"
#include "builder/debootstrap.hpp"
#include "builder/executor.hpp"
#include "builder/image.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/release.hpp"
#include "crypto/sha256.hpp"
#include "crypto/trust_root.hpp"
#include "oci/layout.hpp"
#include "registry/client.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::builder;
using testsupport::TempDir;

namespace {

std::vector<std::string> Debs(const std::string& arch) {
  std::vector<std::string> out;
  glob_t g{};
  const std::string pattern = "/var/cache/tugboat/debs/busybox-static_*_" + arch + ".deb";
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  ::globfree(&g);
  return out;
}

struct Cli {
  int code = -1;
  std::string out, err;
};

Cli RunCli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  Cli c;
  c.code = Main(args, out, err);
  c.out = out.str();
  c.err = err.str();
  return c;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// One busybox base layout (arm64 + armhf) for the whole test binary, made with the CLI as a user would.
const std::string& BaseRef() {
  static TempDir dir("tug-ib-base");
  static std::string ref = [] {
    std::vector<std::string> args{"debootstrap-lite", "--platform", "linux/arm64,linux/arm/v7", "--oci-layout",
                                  dir.Sub("base"), "--tag", "base:v1", "--deb"};
    for (const auto& d : Debs("arm64")) args.push_back(d);
    for (const auto& d : Debs("armhf")) args.push_back(d);
    auto c = RunCli(args);
    INFO(c.err);
    REQUIRE(c.code == 0);
    return "oci:" + dir.Sub("base") + ":v1";
  }();
  return ref;
}

void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  REQUIRE(core::DefaultEnv()->CreateDirs(core::Dirname(path)));
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, data));
  ::chmod(path.c_str(), mode);
}

std::string ReadFile(const std::string& path) {
  auto r = core::DefaultEnv()->ReadFile(path);
  return r ? *r : "<missing " + path + ">";
}

class StringSource : public oci::ByteSource {
 public:
  explicit StringSource(const std::string& s) : s_(s) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min(n, s_.size() - pos_);
    std::copy_n(s_.data() + pos_, k, buf);
    pos_ += k;
    return k;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
};

// Unpacks an image the way a device would (whiteouts applied).
void Unpack(const PlatformImage& img, const std::string& dir) {
  REQUIRE(core::DefaultEnv()->CreateDirs(dir));
  for (const auto& l : img.layers) {
    StringSource src(l.data);
    oci::ExtractOptions eo;
    eo.expected_digest = l.digest;
    auto r = oci::ExtractLayer(src, dir, eo);
    INFO((r ? "" : r.error().Message()));
    REQUIRE(r);
  }
}

// Lists a gzip layer's entry names.
std::vector<std::string> LayerNames(const oci::LayerBlob& l, const std::string& scratch) {
  WriteFile(scratch, l.data);
  auto r = core::Run({"tar", "tzf", scratch});
  REQUIRE(r);
  std::vector<std::string> names;
  std::istringstream in(r->out);
  std::string line;
  while (std::getline(in, line)) names.push_back(line);
  return names;
}

struct Project {
  TempDir dir{"tug-ib"};
  std::string context() const { return dir.Sub("ctx"); }
  std::string cache() const { return dir.Sub("cache"); }
  void Dockerfile(const std::string& text) { WriteFile(context() + "/Dockerfile", text); }
  void File(const std::string& rel, const std::string& data, mode_t mode = 0644) {
    WriteFile(context() + "/" + rel, data, mode);
  }
  BuildOptions Options(const std::string& platforms = "linux/arm64") const {
    BuildOptions o;
    o.dockerfile = context() + "/Dockerfile";
    o.context = context();
    o.cache_dir = cache();
    std::stringstream in(platforms);
    std::string p;
    while (std::getline(in, p, ',')) o.platforms.push_back(*oci::Platform::Parse(p));
    o.build_args = {{"BASE", BaseRef()}};
    o.work_dir = dir.Sub("work");
    return o;
  }
};

BuildResult MustBuild(const BuildOptions& o) {
  auto r = Build(o);
  INFO((r ? "" : r.error().Message()));
  REQUIRE(r);
  return std::move(*r);
}

}  // namespace

TEST_CASE("config instructions set the image config as Docker would") {
  Project p;
  p.Dockerfile(
      "ARG BASE\n"
      "ARG APP=sensor\n"
      "FROM $BASE\n"
      "ARG APP\n"
      "ARG PORT=8080\n"
      "ENV NAME=${APP} MODE=\"fast mode\"\n"
      "ENV LEGACY legacy value\n"
      "WORKDIR /srv/$NAME\n"
      "WORKDIR data\n"
      "USER 1000:1000\n"
      "LABEL org.opencontainers.image.version=\"2.0\" app=$APP\n"
      "EXPOSE $PORT 53/udp\n"
      "STOPSIGNAL SIGINT\n"
      "HEALTHCHECK --interval=5s --timeout=2s --start-period=1m --retries=4 CMD test -e /tmp/ready\n"
      "ENTRYPOINT [\"/bin/sh\", \"/app/run.sh\"]\n"
      "CMD --verbose\n");
  auto o = p.Options();
  o.build_args["PORT"] = "9090";
  auto r = MustBuild(o);
  REQUIRE(r.images.size() == 1);
  const auto& c = r.images[0].config;
  CHECK(c.architecture == "arm64");
  CHECK(c.variant == "v8");
  CHECK(c.created == "1970-01-01T00:00:00Z");
  const auto& cc = c.config;
  CHECK(std::find(cc.env.begin(), cc.env.end(), "NAME=sensor") != cc.env.end());
  CHECK(std::find(cc.env.begin(), cc.env.end(), "MODE=fast mode") != cc.env.end());
  CHECK(std::find(cc.env.begin(), cc.env.end(), "LEGACY=legacy value") != cc.env.end());
  CHECK(std::find_if(cc.env.begin(), cc.env.end(), [](const std::string& e) { return e.rfind("PATH=", 0) == 0; }) !=
        cc.env.end());
  CHECK(cc.working_dir == "/srv/sensor/data");
  CHECK(cc.user == "1000:1000");
  CHECK(cc.labels.at("org.opencontainers.image.version") == "2.0");
  CHECK(cc.labels.at("app") == "sensor");
  CHECK(cc.exposed_ports == std::vector<std::string>{"53/udp", "9090/tcp"});
  CHECK(cc.stop_signal == "SIGINT");
  REQUIRE(cc.healthcheck);
  CHECK(cc.healthcheck->test == std::vector<std::string>{"CMD-SHELL", "test -e /tmp/ready"});
  CHECK(cc.healthcheck->interval_ns == 5'000'000'000);
  CHECK(cc.healthcheck->timeout_ns == 2'000'000'000);
  CHECK(cc.healthcheck->start_period_ns == 60'000'000'000);
  CHECK(cc.healthcheck->retries == 4);
  CHECK(cc.entrypoint == std::vector<std::string>{"/bin/sh", "/app/run.sh"});
  CHECK(cc.cmd == std::vector<std::string>{"/bin/sh", "-c", "--verbose"});
  // Docker's key names in the serialised config.
  auto j = nlohmann::json::parse(oci::Serialize(c));
  CHECK(j["config"]["Healthcheck"]["Interval"] == 5'000'000'000);
  CHECK(j["config"]["ExposedPorts"].contains("9090/tcp"));
  // The WORKDIR created its directory in a layer; history covers every instruction.
  TempDir root("tug-ib-root");
  Unpack(r.images[0], root.Sub("rootfs"));
  struct stat st;
  CHECK(::stat(root.Sub("rootfs/srv/sensor/data").c_str(), &st) == 0);
  CHECK(c.history.size() >= 12);
}

TEST_CASE("an arm64 RUN executes under QEMU and a deleted lower-layer file becomes a whiteout") {
  Project p;
  p.Dockerfile(
      "ARG BASE\nFROM $BASE\n"
      "RUN echo x > /etc/x && echo keep > /etc/keep\n"
      "RUN uname -m > /arch && rm /etc/x && rm -r /home\n");
  auto r = MustBuild(p.Options("linux/arm64,linux/arm/v7"));
  REQUIRE(r.images.size() == 2);
  const auto& arm64 = r.images[0];
  REQUIRE(arm64.layers.size() == 3);
  auto names = LayerNames(arm64.layers[2], p.dir.Sub("layer.tgz"));
  CHECK(std::find(names.begin(), names.end(), "etc/.wh.x") != names.end());
  CHECK(std::find(names.begin(), names.end(), ".wh.home") != names.end());
  CHECK(std::find(names.begin(), names.end(), "arch") != names.end());
  TempDir root("tug-ib-root");
  Unpack(arm64, root.Sub("arm64"));
  CHECK(ReadFile(root.Sub("arm64/arch")) == "aarch64\n");
  CHECK_FALSE(core::DefaultEnv()->Exists(root.Sub("arm64/etc/x")));
  CHECK_FALSE(core::DefaultEnv()->Exists(root.Sub("arm64/home")));
  CHECK(ReadFile(root.Sub("arm64/etc/keep")) == "keep\n");
  Unpack(r.images[1], root.Sub("armv7"));
  CHECK(ReadFile(root.Sub("armv7/arch")).rfind("armv7", 0) == 0);
  CHECK(r.images[1].config.architecture == "arm");
  CHECK(r.images[1].config.variant == "v7");
}

TEST_CASE("COPY and ADD bring context files in with owners, modes, wildcards and .dockerignore") {
  Project p;
  p.File("app/run.sh", "#!/bin/sh\necho hi\n", 0755);
  p.File("app/conf/a.conf", "a\n");
  p.File("app/debug.log", "noise\n");
  p.File("app/docs/README.md", "readme\n");
  p.File("app/docs/notes.md", "notes\n");
  p.File("one.txt", "1\n");
  p.File("two.txt", "2\n");
  p.File("secret.key", "do not ship\n");
  p.File(".dockerignore", "*.key\n**/*.log\napp/docs\n!app/docs/README.md\n");
  WriteFile(p.context() + "/bundle.tar.gz",
            oci::Gzip(oci::BuildTar({{oci::TarEntry::Type::kDir, "pkg", "", "", 0755},
                                     {oci::TarEntry::Type::kFile, "pkg/data.bin", "from tar", "", 0640}})));
  p.Dockerfile(
      "ARG BASE\nFROM $BASE\n"
      "COPY app /opt/app\n"
      "COPY --chown=1000:2000 --chmod=600 one.txt /owned/one\n"
      "COPY *.txt /txt/\n"
      "WORKDIR /w\n"
      "COPY [\"one.txt\", \"rel/\"]\n"
      "ADD bundle.tar.gz /unpacked\n"
      "ADD two.txt /added.txt\n");
  auto r = MustBuild(p.Options());
  TempDir root("tug-ib-root");
  const std::string fs = root.Sub("rootfs");
  Unpack(r.images[0], fs);
  CHECK(ReadFile(fs + "/opt/app/run.sh") == "#!/bin/sh\necho hi\n");
  struct stat st;
  REQUIRE(::stat((fs + "/opt/app/run.sh").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0755);
  CHECK(st.st_uid == 0);
  CHECK(ReadFile(fs + "/opt/app/conf/a.conf") == "a\n");
  CHECK_FALSE(core::DefaultEnv()->Exists(fs + "/opt/app/debug.log"));
  CHECK_FALSE(core::DefaultEnv()->Exists(fs + "/opt/app/docs/notes.md"));
  CHECK(ReadFile(fs + "/opt/app/docs/README.md") == "readme\n");
  REQUIRE(::stat((fs + "/owned/one").c_str(), &st) == 0);
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 2000);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(ReadFile(fs + "/txt/one.txt") == "1\n");
  CHECK(ReadFile(fs + "/txt/two.txt") == "2\n");
  CHECK(ReadFile(fs + "/w/rel/one.txt") == "1\n");
  CHECK(ReadFile(fs + "/unpacked/pkg/data.bin") == "from tar");
  CHECK(ReadFile(fs + "/added.txt") == "2\n");
  CHECK_FALSE(core::DefaultEnv()->Exists(fs + "/secret.key"));

  // Naming an ignored file is an error, as in Docker.
  p.Dockerfile("ARG BASE\nFROM $BASE\nCOPY secret.key /\n");
  auto bad = Build(p.Options());
  REQUIRE_FALSE(bad);
  CHECK(bad.error().context.find("Dockerfile:3:") == 0);
  CHECK(bad.error().context.find(".dockerignore") != std::string::npos);
}

TEST_CASE("a second build reuses cached layers without running RUN, and --no-cache runs it again") {
  Project p;
  p.File("f.txt", "data\n");
  p.Dockerfile("ARG BASE\nFROM $BASE\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nCOPY f.txt /f.txt\n");
  auto first = MustBuild(p.Options());
  CHECK(first.stats.runs_executed == 1);
  CHECK(first.stats.cache_hits == 0);
  auto second = MustBuild(p.Options());
  CHECK(second.stats.runs_executed == 0);
  CHECK(second.stats.cache_hits == 2);
  CHECK(second.images[0].layers.back().digest == first.images[0].layers.back().digest);
  TempDir root("tug-ib-root");
  Unpack(first.images[0], root.Sub("a"));
  Unpack(second.images[0], root.Sub("b"));
  CHECK(ReadFile(root.Sub("a/stamp")) == ReadFile(root.Sub("b/stamp")));

  // A changed COPY input misses the cache for that step only.
  p.File("f.txt", "changed\n");
  auto third = MustBuild(p.Options());
  CHECK(third.stats.runs_executed == 0);
  CHECK(third.stats.cache_hits == 1);

  auto o = p.Options();
  o.cache_dir.clear();  // what --no-cache does
  auto fresh = MustBuild(o);
  CHECK(fresh.stats.runs_executed == 1);
  Unpack(fresh.images[0], root.Sub("c"));
  CHECK(ReadFile(root.Sub("c/stamp")) != ReadFile(root.Sub("a/stamp")));
}

TEST_CASE("building twice from scratch gives the same index digest") {
  Project p;
  p.File("hello.txt", "hello\n");
  p.Dockerfile(
      "ARG BASE\nFROM $BASE\nRUN mkdir -p /app && echo built > /app/built && uname -m > /app/arch\n"
      "COPY hello.txt /app/\nCMD [\"cat\", \"/app/built\"]\n");
  std::vector<std::string> digests;
  for (int i = 0; i < 2; ++i) {
    auto c = RunCli({"build", "--platform", "linux/arm64,linux/arm/v7", "--no-cache", "--build-arg",
                     "BASE=" + BaseRef(), "--oci-layout", p.dir.Sub("out" + std::to_string(i)), "--tag", "app:v1",
                     "-q", p.context()});
    INFO(c.err);
    REQUIRE(c.code == 0);
    digests.push_back(Trim(c.out));
  }
  CHECK(digests[0].rfind("sha256:", 0) == 0);
  CHECK(digests[0] == digests[1]);
  // The layout is readable by umoci (per-platform tag) and skopeo (the index tag).
  auto u = core::Run({"umoci", "unpack", "--image", p.dir.Sub("out0") + ":v1-arm64v8", p.dir.Sub("bundle")});
  REQUIRE(u);
  INFO(u->out + u->err);
  REQUIRE(u->ok());
  CHECK(ReadFile(p.dir.Sub("bundle/rootfs/app/arch")) == "aarch64\n");
  CHECK(ReadFile(p.dir.Sub("bundle/rootfs/app/hello.txt")) == "hello\n");
  auto s = core::Run({"skopeo", "inspect", "--raw", "oci:" + p.dir.Sub("out0") + ":v1"});
  REQUIRE(s);
  REQUIRE(s->ok());
  auto idx = nlohmann::json::parse(s->out);
  REQUIRE(idx["manifests"].size() == 2);
  CHECK(idx["manifests"][1]["platform"]["variant"] == "v7");
}

TEST_CASE("multi-stage builds copy from an earlier stage") {
  Project p;
  p.Dockerfile(
      "ARG BASE\n"
      "FROM $BASE AS build\n"
      "RUN mkdir /out && echo compiled > /out/app && chmod 755 /out/app\n"
      "FROM scratch\n"
      "COPY --from=build /out/app /bin/app\n"
      "COPY --from=0 /bin/busybox /bin/busybox\n");
  auto r = MustBuild(p.Options());
  const auto& img = r.images[0];
  CHECK(img.layers.size() == 2);
  TempDir root("tug-ib-root");
  Unpack(img, root.Sub("rootfs"));
  CHECK(ReadFile(root.Sub("rootfs/bin/app")) == "compiled\n");
  CHECK(core::DefaultEnv()->Exists(root.Sub("rootfs/bin/busybox")));
  CHECK_FALSE(core::DefaultEnv()->Exists(root.Sub("rootfs/bin/sh")));
}

TEST_CASE("errors name the Dockerfile line: syntax, failing RUN, missing binfmt") {
  Project p;
  p.Dockerfile("ARG BASE\nFROM $BASE\n# comment\nFORM x\n");
  auto c = RunCli({"build", "--platform", "linux/arm64", "--build-arg", "BASE=" + BaseRef(), p.context()});
  CHECK(c.code == 1);
  CHECK(c.err.find("Dockerfile:4: unknown instruction FORM") != std::string::npos);

  p.Dockerfile("ARG BASE\nFROM $BASE\nRUN true\nRUN echo boom-output && \\\n  exit 3\n");
  c = RunCli({"build", "--platform", "linux/arm64", "--no-cache", "--build-arg", "BASE=" + BaseRef(), p.context()});
  CHECK(c.code == 1);
  INFO(c.err);
  CHECK(c.err.find("Dockerfile:4: RUN exited with code 3: boom-output") != std::string::npos);

  c = RunCli({"build", "--platform", "linux/arm64", "--push", p.context()});
  CHECK(c.code == 2);

  auto s = CheckEmulation(*oci::Platform::Parse("linux/mips64le"));
  REQUIRE_FALSE(s);
  CHECK(s.error().context.find("sudo cross/register-binfmt.sh") != std::string::npos);
  CHECK(CheckEmulation(*oci::Platform::Parse("linux/arm64")));
}

TEST_CASE("push to a registry, pull back, build FROM it, and sign a release that verifies") {
  auto reg = testsupport::RegistryServer::Start();
  REQUIRE(reg);
  const std::string host = (*reg)->host_port();
  Project p;
  p.File("VERSION", "7\n");
  p.Dockerfile("ARG BASE\nFROM $BASE\nCOPY VERSION /app/VERSION\nRUN uname -m > /app/arch\nCMD [\"cat\", \"/app/VERSION\"]\n");
  auto key = crypto::GenerateKeyPair();
  REQUIRE(crypto::WriteKeyFiles(p.dir.Sub("key"), key));
  auto c = RunCli({"build", "--platform", "linux/arm64,linux/arm/v7", "--build-arg", "BASE=" + BaseRef(),
                   "--cache-dir", p.cache(), "--tag", host + "/acme/sensor:v7", "--push", "--insecure-registry", host,
                   "--sign", p.dir.Sub("key"), "--release-version", "7", "--release-out", p.dir.Sub("release.json"),
                   p.context()});
  INFO(c.err);
  REQUIRE(c.code == 0);
  const std::string digest = Trim(c.out);
  CHECK(c.err.find("push layer") != std::string::npos);

  registry::ClientOptions co;
  co.insecure_registries = {host};
  registry::Client client(co);
  auto ref = *registry::Reference::Parse(host + "/acme/sensor:v7");
  auto top = client.GetManifest(ref, "v7");
  REQUIRE(top);
  CHECK(top->digest == digest);
  auto index = oci::ParseIndex(top->bytes);
  REQUIRE(index);
  REQUIRE(index->manifests.size() == 2);
  CHECK(index->manifests[0].platform->ToString() == "linux/arm64/v8");
  CHECK(index->manifests[1].platform->ToString() == "linux/arm/v7");
  auto m = client.GetManifest(ref, index->manifests[0].digest);
  REQUIRE(m);
  auto manifest = oci::ParseManifest(m->bytes);
  REQUIRE(manifest);
  std::string blob;
  REQUIRE(client.FetchBlob(ref, manifest->layers.back().digest, 0, [&](std::string_view d) -> Status {
    blob.append(d);
    return {};
  }));
  CHECK(crypto::Sha256Digest(blob) == manifest->layers.back().digest);

  auto sk = core::Run({"skopeo", "inspect", "--tls-verify=false", "--override-arch", "arm64",
                       "docker://" + host + "/acme/sensor:v7"});
  REQUIRE(sk);
  INFO(sk->err);
  REQUIRE(sk->ok());
  CHECK(nlohmann::json::parse(sk->out)["Architecture"] == "arm64");

  auto root = crypto::MakeTrustRoot({key.public_key}, 1, 1, core::SystemClock()->Now() + std::chrono::hours(24),
                                    {key});
  REQUIRE(root);
  auto trust = crypto::LoadTrustRoot(*root, core::SystemClock()->Now());
  REQUIRE(trust);
  crypto::ReleasePolicy policy;
  policy.now = core::SystemClock()->Now();
  policy.expected_repository = host + "/acme/sensor";
  auto verified = crypto::VerifyRelease(ReadFile(p.dir.Sub("release.json")), *trust, policy);
  INFO((verified ? "" : verified.error().Message()));
  REQUIRE(verified);
  CHECK(verified->release.digest == digest);
  CHECK(verified->release.version == 7);
  CHECK(verified->release.platforms.at("linux/arm64/v8") == index->manifests[0].digest);
  CHECK(verified->release.platforms.at("linux/arm/v7") == index->manifests[1].digest);
  CHECK(verified->release.expires_at > policy.now + std::chrono::hours(24 * 29));

  // The pushed image serves as a base straight from the registry.
  Project q;
  q.Dockerfile("FROM " + host + "/acme/sensor:v7\nRUN cat /app/VERSION /app/arch > /app/both\n");
  auto o = q.Options("linux/arm/v7");
  o.client.insecure_registries = {host};
  auto r = MustBuild(o);
  TempDir fs("tug-ib-root");
  Unpack(r.images[0], fs.Sub("rootfs"));
  CHECK(ReadFile(fs.Sub("rootfs/app/both")).rfind("7\narmv7", 0) == 0);
  CHECK(r.images[0].config.config.cmd == std::vector<std::string>{"cat", "/app/VERSION"});

  // An image pulled by skopeo (single-platform, into an OCI layout) serves as a base as well.
  const std::string pulled = q.dir.Sub("pulled");
  auto cp = core::Run({"skopeo", "copy", "--src-tls-verify=false", "--override-arch", "arm64",
                       "docker://" + host + "/acme/sensor:v7", "oci:" + pulled + ":v7"});
  REQUIRE(cp);
  INFO(cp->err);
  REQUIRE(cp->ok());
  Project s2;
  s2.Dockerfile("FROM oci:" + pulled + ":v7\nRUN cat /app/arch > /app/from-skopeo\n");
  auto r2 = MustBuild(s2.Options("linux/arm64"));
  TempDir fs2("tug-ib-root");
  Unpack(r2.images[0], fs2.Sub("rootfs"));
  CHECK(ReadFile(fs2.Sub("rootfs/app/from-skopeo")).rfind("aarch64", 0) == 0);
}

TEST_CASE("debootstrap-lite makes a busybox base with applet links from the .debs") {
  auto img = DebootstrapLite({Debs("arm64"), *oci::Platform::Parse("linux/arm64"), 0, ""});
  INFO((img ? "" : img.error().Message()));
  REQUIRE(img);
  REQUIRE(img->layers.size() == 1);
  TempDir root("tug-ib-root");
  Unpack(*img, root.Sub("rootfs"));
  auto link = core::DefaultEnv()->ReadLink(root.Sub("rootfs/bin/sh"));
  REQUIRE(link);
  CHECK(*link == "/bin/busybox");
  CHECK(core::DefaultEnv()->ReadLink(root.Sub("rootfs/usr/bin/awk")).has_value());
  CHECK(ReadFile(root.Sub("rootfs/etc/passwd")).rfind("root:x:0:0:", 0) == 0);
  // Reproducible: the same .debs give the same layer.
  auto again = DebootstrapLite({Debs("arm64"), *oci::Platform::Parse("linux/arm64"), 0, ""});
  REQUIRE(again);
  CHECK(again->layers[0].digest == img->layers[0].digest);
  CHECK_FALSE(DebootstrapLite({Debs("armhf"), *oci::Platform::Parse("linux/arm64"), 0, ""}));
}
