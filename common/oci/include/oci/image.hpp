// OCI image-spec 1.1 types: descriptors, platforms, manifests, indexes, image configs.
// Parsing accepts OCI and Docker v2 schema 2 media types; serialisation emits OCI media types with sorted keys,
// so the same value always yields the same bytes (and digest).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::oci {

namespace media {
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kOciEmpty = "application/vnd.oci.empty.v1+json";
inline constexpr std::string_view kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}  // namespace media

bool IsIndexMediaType(std::string_view mt);
bool IsManifestMediaType(std::string_view mt);
enum class Compression { kNone, kGzip, kZstd };
// kUnsupported for media types that are not layers we can unpack.
Result<Compression> LayerCompression(std::string_view media_type);

struct Platform {
  std::string os = "linux";
  std::string architecture;  // amd64, arm64, arm
  std::string variant;       // v8, v7, ...; may be empty

  // "linux/arm64", "linux/arm64/v8", "linux/arm/v7"
  static Result<Platform> Parse(std::string_view s);
  std::string ToString() const;
  // Normalised match: arm64 without variant == arm64/v8; arm without variant == arm/v7; amd64 ignores variant.
  bool Matches(const Platform& want) const;
  bool operator==(const Platform&) const = default;
};

// The platform of the machine we run on (uname): linux/amd64, linux/arm64/v8, linux/arm/v7, else linux/<machine>.
Platform HostPlatform();

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::optional<Platform> platform;
  std::optional<std::string> artifact_type;
  std::map<std::string, std::string> annotations;
};

struct Manifest {
  std::string media_type{media::kOciManifest};
  std::optional<std::string> artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
};

struct Index {
  std::string media_type{media::kOciIndex};
  std::vector<Descriptor> manifests;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
};

struct HealthCheck {
  std::vector<std::string> test;  // ["CMD", ...] | ["CMD-SHELL", "cmd"] | ["NONE"]
  int64_t interval_ns = 0;
  int64_t timeout_ns = 0;
  int64_t start_period_ns = 0;
  int retries = 0;
};

struct ContainerConfig {
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::vector<std::string> exposed_ports;  // "8080/tcp"
  std::string stop_signal;
  std::optional<HealthCheck> healthcheck;
};

struct HistoryEntry {
  std::string created;
  std::string created_by;
  std::string comment;
  bool empty_layer = false;
};

struct ImageConfig {
  std::string architecture;
  std::string os = "linux";
  std::string variant;
  std::string created;  // RFC 3339; empty to omit
  ContainerConfig config;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, "sha256:..."
  std::vector<HistoryEntry> history;
  Platform GetPlatform() const { return Platform{os, architecture, variant}; }
};

Result<Manifest> ParseManifest(std::string_view bytes);
Result<Index> ParseIndex(std::string_view bytes);
Result<ImageConfig> ParseImageConfig(std::string_view bytes);
std::string Serialize(const Manifest& m);
std::string Serialize(const Index& i);
std::string Serialize(const ImageConfig& c);

// The media type declared inside a manifest/index JSON ("mediaType"), or empty when absent.
std::string SniffMediaType(std::string_view bytes);

// Picks the manifest for `want` from an index; kNotFound lists the platforms the index does have.
Result<Descriptor> SelectPlatform(const Index& index, const Platform& want);

}  // namespace tug::oci
