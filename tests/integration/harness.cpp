#include "harness.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/state_dir.hpp"
#include "crypto/sha256.hpp"
#include "crypto/trust_root.hpp"
#include "oci/image.hpp"

namespace tug::itest {

std::string BuildPath(const std::string& rel) {
  const char* b = std::getenv("TUG_BUILD_DIR");
  return std::string(b ? b : "build") + "/" + rel;
}

core::RunResult RunAgent(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::vector<std::string> argv{BuildPath("device-agent/device-agent")};
  argv.insert(argv.end(), args.begin(), args.end());
  core::RunOptions o;
  o.timeout = timeout;
  auto r = core::Run(argv, o);
  REQUIRE(r);
  return *r;
}

Harness::Harness() {
  auto reg = testsupport::RegistryServer::Start();
  if (!reg) FAIL("registry did not start: " << reg.error().Message());
  registry = std::move(*reg);
  client_opts.insecure_registries.insert(registry->host_port());
  client = std::make_unique<registry::Client>(client_opts);
  auto root = crypto::MakeTrustRoot({key.public_key}, 1, 1, core::SystemClock()->Now() + std::chrono::hours(24 * 365),
                                    {key});
  REQUIRE(root);
  root_json = *root;
}

Harness::~Harness() {
  for (auto& d : devices) StopContainers(d);
}

void Harness::StopContainers(const std::string& state_dir) {
  const std::string root = state_dir + "/runc";
  auto list = core::Run({"runc", "--root", root, "list", "-q"});
  if (!list || !list->ok()) return;
  std::string id;
  for (char c : list->out + "\n") {
    if (c == '\n') {
      if (!id.empty()) (void)core::Run({"runc", "--root", root, "delete", "--force", id});
      id.clear();
    } else {
      id += c;
    }
  }
}

registry::Reference Harness::Repo(const std::string& tag) const {
  auto r = registry::Reference::Parse(registry->host_port() + "/acme/sensor" + (tag.empty() ? "" : ":" + tag));
  REQUIRE(r);
  return *r;
}

fixtures::PushedImage Harness::Push(int version, fixtures::AppBehaviour b, std::vector<std::string> archs,
                                    size_t payload) {
  fixtures::AppImageSpec spec;
  spec.archs = std::move(archs);
  spec.version = version;
  spec.behaviour = b;
  spec.payload_bytes = payload;
  auto pushed = fixtures::PushAppImage(*client, Repo("v" + std::to_string(version)), spec);
  if (!pushed) FAIL("push failed: " << pushed.error().Message());
  return *pushed;
}

std::string Harness::Sign(const fixtures::PushedImage& image, uint64_t version, std::optional<crypto::KeyPair> signer,
                          std::chrono::seconds expires_in, const std::string& repository) {
  crypto::Release r;
  r.repository = repository.empty() ? Repo().Repo() : repository;
  r.digest = image.index_digest;
  r.platforms = image.manifests;
  r.version = version;
  r.name = "sensor " + std::to_string(version);
  r.issued_at = core::SystemClock()->Now();
  r.expires_at = r.issued_at + expires_in;
  return crypto::SignRelease(r, {signer.value_or(key)});
}

fixtures::PushedImage Harness::PushWithExtraLayer(const fixtures::PushedImage& base, const oci::LayerBlob& layer) {
  auto blob = [&](const std::string& digest) {
    std::string out;
    REQUIRE(client->FetchBlob(Repo(), digest, 0, [&](std::string_view c) -> tug::Status {
      out.append(c);
      return {};
    }));
    return out;
  };
  auto fetched = client->GetManifest(Repo(), base.manifests.at("linux/amd64"));
  REQUIRE(fetched);
  auto manifest = oci::ParseManifest(fetched->bytes);
  REQUIRE(manifest);
  auto config = oci::ParseImageConfig(blob(manifest->config.digest));
  REQUIRE(config);
  REQUIRE(client->PushBlob(Repo(), layer.digest, layer.data));
  oci::Descriptor d;
  d.media_type = layer.media_type;
  d.digest = layer.digest;
  d.size = static_cast<int64_t>(layer.data.size());
  manifest->layers.push_back(d);
  config->diff_ids.push_back(layer.diff_id);
  const std::string cfg = oci::Serialize(*config);
  REQUIRE(client->PushBlob(Repo(), crypto::Sha256Digest(cfg), cfg));
  manifest->config.digest = crypto::Sha256Digest(cfg);
  manifest->config.size = static_cast<int64_t>(cfg.size());
  const std::string bytes = oci::Serialize(*manifest);
  REQUIRE(client->PushManifest(Repo(), crypto::Sha256Digest(bytes), bytes, oci::media::kOciManifest));
  fixtures::PushedImage out;
  out.index_digest = crypto::Sha256Digest(bytes);
  return out;
}

agent::UpdaterOptions Harness::Options(const std::string& platform) const {
  agent::UpdaterOptions o;
  o.platform = *oci::Platform::Parse(platform);
  o.registry = client_opts;
  o.commit_window = std::chrono::milliseconds(800);
  o.healthcheck_timeout = std::chrono::seconds(60);
  o.stop_grace = std::chrono::seconds(3);
  o.fetch.max_attempts = 3;
  o.fetch.initial_backoff = std::chrono::milliseconds(50);
  return o;
}

std::string Harness::InitDevice(const std::string& name) {
  const std::string state = dir.Sub(name);
  auto path = dir.Sub(name + "-root.json");
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, root_json));
  auto r = RunAgent({"--state-dir", state, "init", "--root", path});
  REQUIRE(r.ok());
  devices.push_back(state);
  return state;
}

}  // namespace tug::itest
