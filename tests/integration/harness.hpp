// Shared set-up for device-agent integration tests: a real registry, a signing key and trust root, test images,
// and an Updater (in-process) or the device-agent binary on its own state dir, with runc as the runtime.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agent/updater.hpp"
#include "core/clock.hpp"
#include "core/subprocess.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/release.hpp"
#include "fixtures/app_image.hpp"
#include "oci/layer.hpp"
#include "registry/client.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::itest {

struct Harness {
  std::unique_ptr<testsupport::RegistryServer> registry;
  testsupport::TempDir dir{"tug-itest"};
  crypto::KeyPair key = crypto::GenerateKeyPair();
  std::string root_json;
  registry::ClientOptions client_opts;
  std::unique_ptr<registry::Client> client;

  Harness();
  ~Harness();

  registry::Reference Repo(const std::string& tag = "") const;
  fixtures::PushedImage Push(int version, fixtures::AppBehaviour b = fixtures::AppBehaviour::kHealthy,
                             std::vector<std::string> archs = {"amd64"}, size_t payload = 0);
  // A release over `image` signed by `signer` (default: the trusted key).
  std::string Sign(const fixtures::PushedImage& image, uint64_t version,
                   std::optional<crypto::KeyPair> signer = std::nullopt,
                   std::chrono::seconds expires_in = std::chrono::hours(24), const std::string& repository = "");
  // `base`'s linux/amd64 image with one more layer on top, pushed as a single-platform manifest (its digest is the
  // returned index_digest): for hostile or oversized layers inside an otherwise valid, signed image.
  fixtures::PushedImage PushWithExtraLayer(const fixtures::PushedImage& base, const oci::LayerBlob& layer);
  agent::UpdaterOptions Options(const std::string& platform = "linux/amd64") const;
  // State dir for a device, initialised with the trust root.
  std::string InitDevice(const std::string& name);
  // Stops every container of the state dirs this harness made (tests must not leave containers behind).
  void StopContainers(const std::string& state_dir);

  std::vector<std::string> devices;
};

// Paths of built binaries (ctest sets TUG_BUILD_DIR).
std::string BuildPath(const std::string& rel);

// Runs the device-agent binary; returns the RunResult.
core::RunResult RunAgent(const std::vector<std::string>& args, std::chrono::seconds timeout = std::chrono::seconds(120));

}  // namespace tug::itest
