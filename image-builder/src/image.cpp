#include "builder/image.hpp"

#include <ostream>

#include "crypto/sha256.hpp"
#include "oci/layout.hpp"
#include "registry/reference.hpp"

namespace tug::builder {
namespace {

oci::Descriptor Desc(std::string_view media_type, const std::string& digest, size_t size) {
  oci::Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = digest;
  d.size = static_cast<int64_t>(size);
  return d;
}

Status CheckDigest(const std::string& data, const std::string& digest, const std::string& what) {
  const std::string got = crypto::Sha256Digest(data);
  if (got != digest) return MakeError(Errc::kIntegrity, what + " " + digest + " hashes to " + got);
  return {};
}

// Reads manifest -> config -> layers through `get` (digest -> bytes), verifying each.
template <typename Get>
Result<PlatformImage> FromManifest(const std::string& manifest_bytes, const oci::Platform& platform, Get get) {
  TUG_ASSIGN_OR_RETURN(auto manifest, oci::ParseManifest(manifest_bytes));
  TUG_ASSIGN_OR_RETURN(auto config_bytes, get(manifest.config.digest));
  TUG_TRY(CheckDigest(config_bytes, manifest.config.digest, "config"));
  TUG_ASSIGN_OR_RETURN(auto config, oci::ParseImageConfig(config_bytes));
  if (config.diff_ids.size() != manifest.layers.size())
    return MakeError(Errc::kProtocol, "base image config lists " + std::to_string(config.diff_ids.size()) +
                                          " diff_ids for " + std::to_string(manifest.layers.size()) + " layers");
  PlatformImage img;
  img.platform = platform;
  img.config = std::move(config);
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const auto& l = manifest.layers[i];
    TUG_TRY(oci::LayerCompression(l.media_type));
    oci::LayerBlob blob;
    TUG_ASSIGN_OR_RETURN(blob.data, get(l.digest));
    TUG_TRY(CheckDigest(blob.data, l.digest, "layer"));
    blob.digest = l.digest;
    blob.diff_id = img.config.diff_ids[i];
    blob.media_type = l.media_type;
    img.layers.push_back(std::move(blob));
  }
  return img;
}

Result<PlatformImage> FromLayout(const std::string& spec, const oci::Platform& platform) {
  // "DIR[:TAG]": a colon followed by no '/' separates the tag.
  std::string dir = spec, tag;
  if (auto colon = spec.rfind(':'); colon != std::string::npos && spec.find('/', colon) == std::string::npos) {
    dir = spec.substr(0, colon);
    tag = spec.substr(colon + 1);
  }
  TUG_ASSIGN_OR_RETURN(auto layout, oci::ImageLayout::Open(dir));
  TUG_ASSIGN_OR_RETURN(auto top, layout.ReadIndex());
  const oci::Descriptor* chosen = nullptr;
  const std::string want = tag.empty() ? "latest" : tag;
  for (const auto& d : top.manifests) {
    auto it = d.annotations.find("org.opencontainers.image.ref.name");
    if (it != d.annotations.end() && it->second == want) chosen = &d;
  }
  if (chosen == nullptr && tag.empty() && top.manifests.size() == 1) chosen = &top.manifests[0];
  if (chosen == nullptr) return MakeError(Errc::kNotFound, "no image tagged \"" + want + "\" in layout " + dir);
  auto get = [&](const std::string& digest) { return layout.ReadBlob(digest); };
  oci::Descriptor desc = *chosen;
  TUG_ASSIGN_OR_RETURN(auto bytes, get(desc.digest));
  TUG_TRY(CheckDigest(bytes, desc.digest, "manifest"));
  if (oci::IsIndexMediaType(desc.media_type) || oci::IsIndexMediaType(oci::SniffMediaType(bytes))) {
    TUG_ASSIGN_OR_RETURN(auto index, oci::ParseIndex(bytes));
    TUG_ASSIGN_OR_RETURN(desc, oci::SelectPlatform(index, platform));
    TUG_ASSIGN_OR_RETURN(bytes, get(desc.digest));
    TUG_TRY(CheckDigest(bytes, desc.digest, "manifest"));
  }
  return FromManifest(bytes, platform, get);
}

Result<PlatformImage> FromRegistry(const std::string& spec, const oci::Platform& platform,
                                   const registry::ClientOptions& client_opts) {
  TUG_ASSIGN_OR_RETURN(auto ref, registry::Reference::Parse(spec));
  registry::Client client(client_opts);
  TUG_ASSIGN_OR_RETURN(auto top, client.GetManifest(ref, ref.Ref()));
  auto fetched = top;
  if (oci::IsIndexMediaType(top.media_type)) {
    TUG_ASSIGN_OR_RETURN(auto index, oci::ParseIndex(top.bytes));
    TUG_ASSIGN_OR_RETURN(auto desc, oci::SelectPlatform(index, platform));
    TUG_ASSIGN_OR_RETURN(fetched, client.GetManifest(ref, desc.digest));
  }
  auto get = [&](const std::string& digest) -> Result<std::string> {
    std::string data;
    TUG_TRY(client.FetchBlob(ref, digest, 0, [&](std::string_view chunk) -> Status {
      data.append(chunk);
      return {};
    }));
    return data;
  };
  return FromManifest(fetched.bytes, platform, get);
}

std::string RefName(const std::string& tag) {
  if (tag.empty()) return "latest";
  auto ref = registry::Reference::Parse(tag);
  if (ref) return ref->tag.empty() ? "latest" : ref->tag;
  // A bare "name:tag" or "name" for a layout-only build.
  auto colon = tag.rfind(':');
  if (colon != std::string::npos && tag.find('/', colon) == std::string::npos) return tag.substr(colon + 1);
  return tag;
}

}  // namespace

oci::Platform NormalizePlatform(oci::Platform p) {
  if (p.architecture == "arm64" && p.variant.empty()) p.variant = "v8";
  if (p.architecture == "arm" && p.variant.empty()) p.variant = "v7";
  return p;
}

std::string PlatformKey(const oci::Platform& p) { return NormalizePlatform(p).ToString(); }

Result<PlatformImage> LoadImage(const std::string& ref, const oci::Platform& platform,
                                const registry::ClientOptions& client_opts) {
  if (ref == "scratch") {
    PlatformImage img;
    img.platform = platform;
    return img;
  }
  auto r = ref.rfind("oci:", 0) == 0 ? FromLayout(ref.substr(4), platform)
                                     : FromRegistry(ref, platform, client_opts);
  if (!r) return tl::unexpected(Wrap(r.error(), "loading base image " + ref));
  return r;
}

std::string ManifestBytes(const PlatformImage& image, std::string* config_bytes) {
  *config_bytes = oci::Serialize(image.config);
  oci::Manifest m;
  m.config = Desc(oci::media::kOciConfig, crypto::Sha256Digest(*config_bytes), config_bytes->size());
  for (const auto& l : image.layers) m.layers.push_back(Desc(l.media_type, l.digest, l.data.size()));
  return oci::Serialize(m);
}

Result<Published> Publish(const std::vector<PlatformImage>& images, const PublishOptions& opts) {
  Published out;
  oci::Index index;
  struct Built {
    std::string config_bytes, manifest_bytes, manifest_digest;
  };
  std::vector<Built> built;
  for (const auto& img : images) {
    Built b;
    b.manifest_bytes = ManifestBytes(img, &b.config_bytes);
    b.manifest_digest = crypto::Sha256Digest(b.manifest_bytes);
    oci::Descriptor d = Desc(oci::media::kOciManifest, b.manifest_digest, b.manifest_bytes.size());
    d.platform = NormalizePlatform(img.platform);
    index.manifests.push_back(d);
    out.platforms[PlatformKey(img.platform)] = b.manifest_digest;
    built.push_back(std::move(b));
  }
  out.index_bytes = oci::Serialize(index);
  out.index_digest = crypto::Sha256Digest(out.index_bytes);
  const std::string name = RefName(opts.tag);

  if (!opts.oci_layout.empty()) {
    TUG_ASSIGN_OR_RETURN(auto layout, oci::ImageLayout::Create(opts.oci_layout));
    for (size_t i = 0; i < images.size(); ++i) {
      for (const auto& l : images[i].layers) TUG_TRY(layout.WriteBlob(l.data, l.media_type));
      TUG_TRY(layout.WriteBlob(built[i].config_bytes, oci::media::kOciConfig));
      TUG_ASSIGN_OR_RETURN(auto md, layout.WriteBlob(built[i].manifest_bytes, oci::media::kOciManifest));
      md.platform = index.manifests[i].platform;
      const auto& p = *md.platform;
      TUG_TRY(layout.AddToIndex(md, name + "-" + p.architecture + p.variant));
    }
    TUG_ASSIGN_OR_RETURN(auto idx, layout.WriteBlob(out.index_bytes, oci::media::kOciIndex));
    TUG_TRY(layout.AddToIndex(idx, name));
    if (opts.progress) *opts.progress << "wrote " << opts.oci_layout << ":" << name << "\n";
  }

  if (opts.push) {
    TUG_ASSIGN_OR_RETURN(auto ref, registry::Reference::Parse(opts.tag));
    out.repository = ref.Repo();
    registry::Client client(opts.client);
    auto push_blob = [&](const std::string& digest, const std::string& data, const char* what) -> Status {
      auto have = client.HeadBlob(ref, digest);
      const bool exists = have && have->has_value();
      if (!exists) TUG_TRY(client.PushBlob(ref, digest, data));
      if (opts.progress)
        *opts.progress << "  push " << what << " " << digest.substr(0, 19) << " " << data.size() << " B"
                       << (exists ? " (already there)" : "") << "\n";
      return {};
    };
    for (size_t i = 0; i < images.size(); ++i) {
      for (const auto& l : images[i].layers) TUG_TRY(push_blob(l.digest, l.data, "layer"));
      TUG_TRY(push_blob(crypto::Sha256Digest(built[i].config_bytes), built[i].config_bytes, "config"));
      TUG_TRY(client.PushManifest(ref, built[i].manifest_digest, built[i].manifest_bytes, oci::media::kOciManifest));
      if (opts.progress)
        *opts.progress << "  push manifest " << built[i].manifest_digest << " (" << PlatformKey(images[i].platform)
                       << ")\n";
    }
    TUG_TRY(client.PushManifest(ref, ref.tag.empty() ? (ref.digest.empty() ? "latest" : out.index_digest) : ref.tag,
                                out.index_bytes, oci::media::kOciIndex));
    if (opts.progress) *opts.progress << "pushed " << ref.Repo() << ":" << name << " " << out.index_digest << "\n";
  } else if (auto ref = registry::Reference::Parse(opts.tag); ref) {
    out.repository = ref->Repo();
  }
  return out;
}

}  // namespace tug::builder
