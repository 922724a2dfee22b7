// Images as the builder holds them (config + gzip layers in memory, per platform), where they come from (a base
// image: registry, OCI layout or scratch) and where they go (an OCI layout and/or a registry, always under an OCI
// index with one manifest per platform). Blocking.
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "registry/client.hpp"

namespace tug::builder {

struct PlatformImage {
  oci::Platform platform;
  oci::ImageConfig config;              // diff_ids match layers
  std::vector<oci::LayerBlob> layers;   // bottom first
};

// Loads the image for `platform` from
//   "scratch"                 nothing (an empty config);
//   "oci:DIR[:TAG]"           an OCI layout (TAG matched against org.opencontainers.image.ref.name; without it
//                             the only entry, or "latest");
//   "HOST[:PORT]/REPO[:TAG|@sha256:...]"  a registry.
// An index is resolved to the platform's manifest (kNotFound lists what it has). Every blob is verified against
// its digest before use (kIntegrity).
Result<PlatformImage> LoadImage(const std::string& ref, const oci::Platform& platform,
                                const registry::ClientOptions& client_opts);

struct PublishOptions {
  std::string oci_layout;  // write here when non-empty
  std::string tag;         // "HOST/REPO:TAG" (or just a name for the layout); may be empty
  bool push = false;       // needs a registry tag
  registry::ClientOptions client;
  std::ostream* progress = nullptr;
};

struct Published {
  std::string index_digest;
  std::string index_bytes;
  std::map<std::string, std::string> platforms;  // "linux/arm64/v8" -> manifest digest
  std::string repository;                        // "HOST/REPO" when the tag names a registry
};

// Builds the manifests and the index and writes them. In a layout the index is tagged with the tag's name (or
// "latest"); each platform manifest is also listed, tagged NAME-<arch>[<variant>] (e.g. "v1-arm64v8"), for tools
// such as umoci that unpack only manifests. Pushing uploads blobs the registry lacks, then manifests by digest,
// then the index under the tag.
Result<Published> Publish(const std::vector<PlatformImage>& images, const PublishOptions& opts);

// The manifest bytes for one image (config blob descriptor + layers), as Publish writes them.
std::string ManifestBytes(const PlatformImage& image, std::string* config_bytes);

// arm64 without a variant gets "v8", arm gets "v7" (what devices and the release format use).
oci::Platform NormalizePlatform(oci::Platform p);

// The release-style platform key: "linux/arm64/v8" for arm64 (variant normalised), "linux/arm/v7", "linux/amd64".
std::string PlatformKey(const oci::Platform& p);

}  // namespace tug::builder
