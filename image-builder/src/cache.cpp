#include "builder/cache.hpp"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/env.hpp"
#include "crypto/sha256.hpp"

namespace tug::builder {

std::string LayerCache::DefaultDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/tugboat/builder";
  return "/var/cache/tugboat/builder";
}

std::string LayerCache::Key(const std::vector<std::string>& parts) {
  // Length-prefixed so that no two different part lists hash the same text.
  crypto::Sha256 h;
  for (const auto& p : parts) {
    h.Update(std::to_string(p.size()));
    h.Update(":");
    h.Update(p);
  }
  return h.FinishHex();
}

std::optional<CachedLayer> LayerCache::Lookup(const std::string& key) const {
  if (!enabled()) return std::nullopt;
  auto* env = core::DefaultEnv();
  auto text = env->ReadFile(dir_ + "/keys/" + key + ".json");
  if (!text) return std::nullopt;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  CachedLayer c;
  c.empty = j.value("empty", false);
  if (c.empty) return c;
  c.blob.digest = j.value("digest", "");
  c.blob.diff_id = j.value("diff_id", "");
  c.blob.media_type = j.value("media_type", "");
  if (c.blob.digest.rfind("sha256:", 0) != 0) return std::nullopt;
  auto data = env->ReadFile(dir_ + "/blobs/sha256/" + c.blob.digest.substr(7));
  if (!data || crypto::Sha256Digest(*data) != c.blob.digest) return std::nullopt;
  c.blob.data = std::move(*data);
  return c;
}

Status LayerCache::Store(const std::string& key, const oci::LayerBlob* blob) const {
  if (!enabled()) return {};
  auto* env = core::DefaultEnv();
  TUG_TRY(env->CreateDirs(dir_ + "/keys"));
  TUG_TRY(env->CreateDirs(dir_ + "/blobs/sha256"));
  nlohmann::json j;
  if (blob == nullptr) {
    j["empty"] = true;
  } else {
    const std::string path = dir_ + "/blobs/sha256/" + blob->digest.substr(7);
    if (!env->Exists(path)) TUG_TRY(core::WriteFileDurable(*env, path, blob->data));
    j = {{"digest", blob->digest}, {"diff_id", blob->diff_id}, {"media_type", blob->media_type},
         {"size", blob->data.size()}, {"empty", false}};
  }
  return core::WriteFileDurable(*env, dir_ + "/keys/" + key + ".json", j.dump());
}

}  // namespace tug::builder
