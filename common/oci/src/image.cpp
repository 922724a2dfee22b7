#include "oci/image.hpp"

#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include <algorithm>

namespace tug::oci {

using nlohmann::json;

namespace {

// Parse errors carry the JSON path of the offending field so a bad manifest from a registry is diagnosable.
struct FieldError {
  std::string field;
  std::string what;
};

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

const json* Find(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;  // Docker writes null for absent lists
  return &*it;
}

std::string GetString(const json& obj, const char* key, const std::string& path, bool required = false) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    if (required) throw FieldError{Join(path, key), "missing"};
    return {};
  }
  if (!v->is_string()) throw FieldError{Join(path, key), "not a string"};
  return v->get<std::string>();
}

std::optional<std::string> GetOptString(const json& obj, const char* key, const std::string& path) {
  if (Find(obj, key) == nullptr) return std::nullopt;
  return GetString(obj, key, path);
}

int64_t GetInt(const json& obj, const char* key, const std::string& path, bool required = false) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    if (required) throw FieldError{Join(path, key), "missing"};
    return 0;
  }
  if (!v->is_number_integer()) throw FieldError{Join(path, key), "not an integer"};
  return v->get<int64_t>();
}

std::vector<std::string> GetStrings(const json& obj, const char* key, const std::string& path) {
  std::vector<std::string> out;
  const json* v = Find(obj, key);
  if (v == nullptr) return out;
  if (!v->is_array()) throw FieldError{Join(path, key), "not an array"};
  for (const auto& e : *v) {
    if (!e.is_string()) throw FieldError{Join(path, key), "array element is not a string"};
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> GetStringMap(const json& obj, const char* key, const std::string& path) {
  std::map<std::string, std::string> out;
  const json* v = Find(obj, key);
  if (v == nullptr) return out;
  if (!v->is_object()) throw FieldError{Join(path, key), "not an object"};
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it.value().is_string()) throw FieldError{Join(Join(path, key), it.key()), "not a string"};
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

const json& GetObject(const json& obj, const char* key, const std::string& path) {
  const json* v = Find(obj, key);
  if (v == nullptr) throw FieldError{Join(path, key), "missing"};
  if (!v->is_object()) throw FieldError{Join(path, key), "not an object"};
  return *v;
}

// Digests become file names in layouts and blob stores, so their shape is checked at the boundary.
bool PlausibleDigest(const std::string& d) {
  auto colon = d.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == d.size()) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = d[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  for (size_t i = colon + 1; i < d.size(); ++i) {
    char c = d[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '=' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

Platform PlatformFromJson(const json& j, const std::string& path) {
  if (!j.is_object()) throw FieldError{path, "not an object"};
  Platform p;
  p.os = GetString(j, "os", path, true);
  p.architecture = GetString(j, "architecture", path, true);
  p.variant = GetString(j, "variant", path);
  return p;
}

Descriptor DescriptorFromJson(const json& j, const std::string& path) {
  if (!j.is_object()) throw FieldError{path, "not an object"};
  Descriptor d;
  d.media_type = GetString(j, "mediaType", path, true);
  d.digest = GetString(j, "digest", path, true);
  if (!PlausibleDigest(d.digest)) throw FieldError{Join(path, "digest"), "malformed digest '" + d.digest + "'"};
  d.size = GetInt(j, "size", path, true);
  if (d.size < 0) throw FieldError{Join(path, "size"), "negative"};
  if (const json* p = Find(j, "platform")) d.platform = PlatformFromJson(*p, Join(path, "platform"));
  d.artifact_type = GetOptString(j, "artifactType", path);
  d.annotations = GetStringMap(j, "annotations", path);
  return d;
}

std::vector<Descriptor> DescriptorsFromJson(const json& obj, const char* key, const std::string& path,
                                            bool required) {
  std::vector<Descriptor> out;
  const json* v = Find(obj, key);
  if (v == nullptr) {
    if (required) throw FieldError{Join(path, key), "missing"};
    return out;
  }
  if (!v->is_array()) throw FieldError{Join(path, key), "not an array"};
  for (size_t i = 0; i < v->size(); ++i) {
    out.push_back(DescriptorFromJson((*v)[i], Join(path, key) + "[" + std::to_string(i) + "]"));
  }
  return out;
}

void CheckSchemaVersion(const json& j) {
  const json* v = Find(j, "schemaVersion");
  if (v == nullptr) return;
  if (!v->is_number_integer() || v->get<int64_t>() != 2) throw FieldError{"schemaVersion", "must be 2"};
}

template <typename T, typename F>
Result<T> ParseWith(std::string_view bytes, const char* what, F&& f) {
  try {
    json j = json::parse(bytes.begin(), bytes.end());
    if (!j.is_object()) return MakeError(Errc::kInvalidArgument, std::string(what) + ": not a JSON object");
    return f(j);
  } catch (const FieldError& e) {
    return MakeError(Errc::kInvalidArgument, std::string(what) + ": field " + e.field + ": " + e.what);
  } catch (const json::exception& e) {
    return MakeError(Errc::kInvalidArgument, std::string(what) + ": " + e.what());
  }
}

json PlatformToJson(const Platform& p) {
  json j = json::object();
  j["os"] = p.os;
  j["architecture"] = p.architecture;
  if (!p.variant.empty()) j["variant"] = p.variant;
  return j;
}

json DescriptorToJson(const Descriptor& d) {
  json j = json::object();
  j["mediaType"] = d.media_type;
  j["digest"] = d.digest;
  j["size"] = d.size;
  if (d.platform) j["platform"] = PlatformToJson(*d.platform);
  if (d.artifact_type && !d.artifact_type->empty()) j["artifactType"] = *d.artifact_type;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

// Invalid UTF-8 in a label must not make serialisation throw; it is replaced instead.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct Normalised {
  std::string os, arch, variant;
};

Normalised Normalise(const Platform& p) {
  Normalised n{p.os, p.architecture, p.variant};
  if (n.arch == "aarch64") n.arch = "arm64";
  if (n.arch == "x86_64" || n.arch == "x86-64") n.arch = "amd64";
  if (n.arch == "armhf") {
    n.arch = "arm";
    if (n.variant.empty()) n.variant = "v7";
  }
  if (n.arch == "armel") {
    n.arch = "arm";
    if (n.variant.empty()) n.variant = "v6";
  }
  if (n.arch == "arm64" && n.variant.empty()) n.variant = "v8";
  if (n.arch == "arm" && n.variant.empty()) n.variant = "v7";
  if (n.arch == "amd64") n.variant.clear();
  return n;
}

}  // namespace

bool IsIndexMediaType(std::string_view mt) { return mt == media::kOciIndex || mt == media::kDockerManifestList; }

bool IsManifestMediaType(std::string_view mt) { return mt == media::kOciManifest || mt == media::kDockerManifest; }

Result<Compression> LayerCompression(std::string_view mt) {
  if (mt == media::kOciLayerTar || mt == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
      mt == "application/vnd.docker.image.rootfs.diff.tar") {
    return Compression::kNone;
  }
  if (mt == media::kOciLayerGzip || mt == media::kDockerLayerGzip ||
      mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
      mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return Compression::kGzip;
  }
  if (mt == media::kOciLayerZstd || mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" ||
      mt == "application/vnd.docker.image.rootfs.diff.tar.zstd") {
    return Compression::kZstd;
  }
  return MakeError(Errc::kUnsupported, "not an unpackable layer media type: " + std::string(mt));
}

Result<Platform> Platform::Parse(std::string_view s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    parts.emplace_back(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 ||
      std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
    return MakeError(Errc::kInvalidArgument,
                     "platform '" + std::string(s) + "': expected os/architecture[/variant], e.g. linux/arm64/v8");
  }
  Platform p;
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

std::string Platform::ToString() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

bool Platform::Matches(const Platform& want) const {
  Normalised a = Normalise(*this), b = Normalise(want);
  return a.os == b.os && a.arch == b.arch && a.variant == b.variant;
}

Result<Manifest> ParseManifest(std::string_view bytes) {
  return ParseWith<Manifest>(bytes, "parsing manifest", [](const json& j) -> Result<Manifest> {
    CheckSchemaVersion(j);
    Manifest m;
    if (const json* mt = Find(j, "mediaType")) {
      if (!mt->is_string()) throw FieldError{"mediaType", "not a string"};
      m.media_type = mt->get<std::string>();
      if (!IsManifestMediaType(m.media_type)) throw FieldError{"mediaType", "'" + m.media_type + "' is not a manifest"};
    }
    m.artifact_type = GetOptString(j, "artifactType", "");
    m.config = DescriptorFromJson(GetObject(j, "config", ""), "config");
    m.layers = DescriptorsFromJson(j, "layers", "", true);
    if (const json* s = Find(j, "subject")) m.subject = DescriptorFromJson(*s, "subject");
    m.annotations = GetStringMap(j, "annotations", "");
    return m;
  });
}

Result<Index> ParseIndex(std::string_view bytes) {
  return ParseWith<Index>(bytes, "parsing index", [](const json& j) -> Result<Index> {
    CheckSchemaVersion(j);
    Index idx;
    if (const json* mt = Find(j, "mediaType")) {
      if (!mt->is_string()) throw FieldError{"mediaType", "not a string"};
      idx.media_type = mt->get<std::string>();
      if (!IsIndexMediaType(idx.media_type)) throw FieldError{"mediaType", "'" + idx.media_type + "' is not an index"};
    }
    idx.manifests = DescriptorsFromJson(j, "manifests", "", true);
    if (const json* s = Find(j, "subject")) idx.subject = DescriptorFromJson(*s, "subject");
    idx.annotations = GetStringMap(j, "annotations", "");
    return idx;
  });
}

Result<ImageConfig> ParseImageConfig(std::string_view bytes) {
  return ParseWith<ImageConfig>(bytes, "parsing image config", [](const json& j) -> Result<ImageConfig> {
    ImageConfig c;
    c.architecture = GetString(j, "architecture", "", true);
    c.os = GetString(j, "os", "", true);
    c.variant = GetString(j, "variant", "");
    c.created = GetString(j, "created", "");
    if (const json* cfg = Find(j, "config")) {
      if (!cfg->is_object()) throw FieldError{"config", "not an object"};
      ContainerConfig& cc = c.config;
      cc.user = GetString(*cfg, "User", "config");
      cc.env = GetStrings(*cfg, "Env", "config");
      cc.entrypoint = GetStrings(*cfg, "Entrypoint", "config");
      cc.cmd = GetStrings(*cfg, "Cmd", "config");
      cc.working_dir = GetString(*cfg, "WorkingDir", "config");
      cc.labels = GetStringMap(*cfg, "Labels", "config");
      cc.stop_signal = GetString(*cfg, "StopSignal", "config");
      if (const json* ports = Find(*cfg, "ExposedPorts")) {
        if (!ports->is_object()) throw FieldError{"config.ExposedPorts", "not an object"};
        for (auto it = ports->begin(); it != ports->end(); ++it) cc.exposed_ports.push_back(it.key());
      }
      if (const json* hc = Find(*cfg, "Healthcheck")) {
        if (!hc->is_object()) throw FieldError{"config.Healthcheck", "not an object"};
        HealthCheck h;
        const std::string p = "config.Healthcheck";
        h.test = GetStrings(*hc, "Test", p);
        h.interval_ns = GetInt(*hc, "Interval", p);
        h.timeout_ns = GetInt(*hc, "Timeout", p);
        h.start_period_ns = GetInt(*hc, "StartPeriod", p);
        h.retries = static_cast<int>(GetInt(*hc, "Retries", p));
        cc.healthcheck = std::move(h);
      }
    }
    if (const json* rootfs = Find(j, "rootfs")) {
      if (!rootfs->is_object()) throw FieldError{"rootfs", "not an object"};
      std::string type = GetString(*rootfs, "type", "rootfs");
      if (!type.empty() && type != "layers") throw FieldError{"rootfs.type", "must be 'layers'"};
      c.diff_ids = GetStrings(*rootfs, "diff_ids", "rootfs");
    }
    if (const json* hist = Find(j, "history")) {
      if (!hist->is_array()) throw FieldError{"history", "not an array"};
      for (size_t i = 0; i < hist->size(); ++i) {
        const json& h = (*hist)[i];
        const std::string p = "history[" + std::to_string(i) + "]";
        if (!h.is_object()) throw FieldError{p, "not an object"};
        HistoryEntry e;
        e.created = GetString(h, "created", p);
        e.created_by = GetString(h, "created_by", p);
        e.comment = GetString(h, "comment", p);
        if (const json* el = Find(h, "empty_layer")) {
          if (!el->is_boolean()) throw FieldError{p + ".empty_layer", "not a boolean"};
          e.empty_layer = el->get<bool>();
        }
        c.history.push_back(std::move(e));
      }
    }
    return c;
  });
}

std::string Serialize(const Manifest& m) {
  json j = json::object();
  j["schemaVersion"] = 2;
  if (!m.media_type.empty()) j["mediaType"] = m.media_type;
  if (m.artifact_type && !m.artifact_type->empty()) j["artifactType"] = *m.artifact_type;
  j["config"] = DescriptorToJson(m.config);
  j["layers"] = json::array();
  for (const auto& l : m.layers) j["layers"].push_back(DescriptorToJson(l));
  if (m.subject) j["subject"] = DescriptorToJson(*m.subject);
  if (!m.annotations.empty()) j["annotations"] = m.annotations;
  return Dump(j);
}

std::string Serialize(const Index& i) {
  json j = json::object();
  j["schemaVersion"] = 2;
  if (!i.media_type.empty()) j["mediaType"] = i.media_type;
  j["manifests"] = json::array();
  for (const auto& d : i.manifests) j["manifests"].push_back(DescriptorToJson(d));
  if (i.subject) j["subject"] = DescriptorToJson(*i.subject);
  if (!i.annotations.empty()) j["annotations"] = i.annotations;
  return Dump(j);
}

std::string Serialize(const ImageConfig& c) {
  json j = json::object();
  j["architecture"] = c.architecture;
  j["os"] = c.os;
  if (!c.variant.empty()) j["variant"] = c.variant;
  if (!c.created.empty()) j["created"] = c.created;
  json cfg = json::object();
  const ContainerConfig& cc = c.config;
  if (!cc.user.empty()) cfg["User"] = cc.user;
  if (!cc.env.empty()) cfg["Env"] = cc.env;
  if (!cc.entrypoint.empty()) cfg["Entrypoint"] = cc.entrypoint;
  if (!cc.cmd.empty()) cfg["Cmd"] = cc.cmd;
  if (!cc.working_dir.empty()) cfg["WorkingDir"] = cc.working_dir;
  if (!cc.labels.empty()) cfg["Labels"] = cc.labels;
  if (!cc.exposed_ports.empty()) {
    json ports = json::object();
    for (const auto& p : cc.exposed_ports) ports[p] = json::object();
    cfg["ExposedPorts"] = ports;
  }
  if (!cc.stop_signal.empty()) cfg["StopSignal"] = cc.stop_signal;
  if (cc.healthcheck) {
    const HealthCheck& h = *cc.healthcheck;
    json hc = json::object();
    if (!h.test.empty()) hc["Test"] = h.test;
    if (h.interval_ns != 0) hc["Interval"] = h.interval_ns;
    if (h.timeout_ns != 0) hc["Timeout"] = h.timeout_ns;
    if (h.start_period_ns != 0) hc["StartPeriod"] = h.start_period_ns;
    if (h.retries != 0) hc["Retries"] = h.retries;
    cfg["Healthcheck"] = hc;
  }
  if (!cfg.empty()) j["config"] = cfg;
  json rootfs = json::object();
  rootfs["type"] = "layers";
  rootfs["diff_ids"] = c.diff_ids;
  j["rootfs"] = rootfs;
  if (!c.history.empty()) {
    json hist = json::array();
    for (const auto& e : c.history) {
      json h = json::object();
      if (!e.created.empty()) h["created"] = e.created;
      if (!e.created_by.empty()) h["created_by"] = e.created_by;
      if (!e.comment.empty()) h["comment"] = e.comment;
      if (e.empty_layer) h["empty_layer"] = true;
      hist.push_back(h);
    }
    j["history"] = hist;
  }
  return Dump(j);
}

std::string SniffMediaType(std::string_view bytes) {
  try {
    json j = json::parse(bytes.begin(), bytes.end());
    if (j.is_object()) {
      auto it = j.find("mediaType");
      if (it != j.end() && it->is_string()) return it->get<std::string>();
    }
  } catch (const json::exception&) {
  }
  return {};
}

Result<Descriptor> SelectPlatform(const Index& index, const Platform& want) {
  std::string available;
  for (const auto& d : index.manifests) {
    if (!d.platform) continue;
    if (d.platform->Matches(want)) return d;
    if (!available.empty()) available += ", ";
    available += d.platform->ToString();
  }
  return MakeError(Errc::kNotFound, "no manifest for platform " + want.ToString() + " in index; available: " +
                                        (available.empty() ? std::string("none") : available));
}

Platform HostPlatform() {
  struct utsname u {};
  ::uname(&u);
  const std::string m = u.machine;
  if (m == "aarch64" || m == "arm64") return {"linux", "arm64", "v8"};
  if (m.rfind("armv7", 0) == 0 || m.rfind("armv8l", 0) == 0 || m == "armhf") return {"linux", "arm", "v7"};
  if (m.rfind("armv6", 0) == 0) return {"linux", "arm", "v6"};
  if (m == "x86_64") return {"linux", "amd64", ""};
  return {"linux", m, ""};
}

}  // namespace tug::oci
