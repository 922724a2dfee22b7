#include "container.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/env.hpp"
#include "crypto/sha256.hpp"
#include "model/types.hpp"
#include "oci/runtime_spec.hpp"
#include "oci/layer.hpp"
#include "oci/user.hpp"
#include "registry/client.hpp"
#include "registry/reference.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The blob at cache_dir/sha256/<hex>, downloaded and verified first if missing. A partial download never takes
// the final name: it is written under a unique temp name, hashed while streaming, and renamed only when it matches.
Result<std::string> EnsureBlob(registry::Client& client, const registry::Reference& ref, const oci::Descriptor& d,
                               const std::string& cache_dir, const std::function<bool()>& cancelled) {
  if (!crypto::IsSha256Digest(d.digest)) return MakeError(Errc::kInvalidArgument, "layer digest " + d.digest);
  auto* env = core::DefaultEnv();
  const std::string dir = core::JoinPath(cache_dir, "sha256");
  const std::string path = core::JoinPath(dir, d.digest.substr(7));
  if (env->Exists(path)) return path;
  TUG_TRY(env->CreateDirs(dir));
  const std::string tmp = path + "." + NewId("partial");
  TUG_ASSIGN_OR_RETURN(auto file, env->NewWritableFile(tmp));
  crypto::Sha256 hash;
  Status written{};
  auto fetched = client.FetchBlob(ref, d.digest, 0, [&](std::string_view chunk) -> Status {
    if (cancelled && cancelled()) return MakeError(Errc::kCancelled, "node is stopping");
    hash.Update(chunk);
    return file->Append(chunk);
  });
  Status closed = file->Close();
  if (!fetched || !closed) {
    (void)env->RemoveFile(tmp);
    return tl::unexpected(!fetched ? fetched.error() : closed.error());
  }
  const std::string got = "sha256:" + hash.FinishHex();
  if (got != d.digest) {
    (void)env->RemoveFile(tmp);
    return MakeError(Errc::kIntegrity, "blob " + d.digest + " from the registry hashes to " + got);
  }
  TUG_TRY(env->Rename(tmp, path));
  return path;
}

}  // namespace

Result<oci::ImageConfig> PullImage(const std::string& image, bool plain_http, const std::string& cache_dir,
                                   const std::string& rootfs, const std::function<bool()>& cancelled,
                                   const std::function<void(const std::string& digest)>& use_blob) {
  TUG_ASSIGN_OR_RETURN(auto ref, registry::Reference::Parse(image));
  registry::ClientOptions ro;
  if (plain_http) ro.insecure_registries.insert(ref.registry);
  registry::Client client(ro);
  TUG_ASSIGN_OR_RETURN(auto top, client.GetManifest(ref, ref.Ref()));
  std::string manifest_bytes = top.bytes;
  if (oci::IsIndexMediaType(top.media_type)) {
    TUG_ASSIGN_OR_RETURN(auto index, oci::ParseIndex(top.bytes));
    TUG_ASSIGN_OR_RETURN(auto desc, oci::SelectPlatform(index, oci::HostPlatform()));
    TUG_ASSIGN_OR_RETURN(auto m, client.GetManifest(ref, desc.digest));
    manifest_bytes = std::move(m.bytes);
  } else if (!oci::IsManifestMediaType(top.media_type)) {
    return MakeError(Errc::kUnsupported, "unexpected manifest media type '" + top.media_type + "'");
  }
  TUG_ASSIGN_OR_RETURN(auto manifest, oci::ParseManifest(manifest_bytes));

  std::string config_bytes;
  TUG_TRY(client.FetchBlob(ref, manifest.config.digest, 0, [&](std::string_view chunk) -> Status {
    if (config_bytes.size() + chunk.size() > (4u << 20)) return MakeError(Errc::kProtocol, "image config above 4 MiB");
    config_bytes.append(chunk);
    return {};
  }));
  if (crypto::Sha256Digest(config_bytes) != manifest.config.digest)
    return MakeError(Errc::kIntegrity, "image config does not hash to " + manifest.config.digest);
  TUG_ASSIGN_OR_RETURN(auto config, oci::ParseImageConfig(config_bytes));
  if (config.diff_ids.size() != manifest.layers.size())
    return MakeError(Errc::kProtocol, "image config lists " + std::to_string(config.diff_ids.size()) +
                                          " diff_ids for " + std::to_string(manifest.layers.size()) + " layers");

  auto* env = core::DefaultEnv();
  TUG_TRY(env->RemoveAll(rootfs));
  TUG_TRY(env->CreateDirs(rootfs));
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const auto& layer = manifest.layers[i];
    TUG_ASSIGN_OR_RETURN(auto compression, oci::LayerCompression(layer.media_type));
    if (use_blob) use_blob(layer.digest);  // before EnsureBlob's look in the cache, never after
    TUG_ASSIGN_OR_RETURN(auto blob, EnsureBlob(client, ref, layer, cache_dir, cancelled));
    TUG_ASSIGN_OR_RETURN(auto src, oci::FileSource::Open(blob));
    oci::ExtractOptions eo;
    eo.compression = compression;
    eo.preserve_owner = ::geteuid() == 0;
    eo.expected_digest = layer.digest;
    eo.expected_diff_id = config.diff_ids[i];
    auto st = oci::ExtractLayer(*src, rootfs, eo);
    if (!st) {
      // A cached blob that no longer verifies is dropped, so the next launch downloads it again.
      if (st.error().Is(Errc::kIntegrity)) (void)env->RemoveFile(blob);
      return tl::unexpected(Wrap(st.error(), "unpacking layer " + layer.digest));
    }
  }
  return config;
}

Status WriteContainerSpec(const std::string& bundle, const oci::ImageConfig& image, const ContainerProcess& p) {
  const auto& c = image.config;
  std::vector<std::string> args = p.args;
  if (args.empty()) {
    args = c.entrypoint;
    args.insert(args.end(), c.cmd.begin(), c.cmd.end());
  }
  if (args.empty()) return MakeError(Errc::kInvalidArgument, "image has neither Entrypoint nor Cmd and the task no command");
  TUG_ASSIGN_OR_RETURN(auto ids, oci::ResolveImageUser(bundle + "/rootfs", p.user.empty() ? c.user : p.user));

  // The image's Env first, in order; the task's variables replace same-named ones or are appended.
  std::vector<std::string> env;
  std::map<std::string, std::string> rest = p.env;
  bool has_path = false;
  for (const auto& kv : c.env) {
    std::string key = kv.substr(0, kv.find('='));
    if (auto it = rest.find(key); it != rest.end()) {
      env.push_back(key + "=" + it->second);
      rest.erase(it);
    } else {
      env.push_back(kv);
    }
    has_path |= key == "PATH";
  }
  for (const auto& [k, v] : rest) {
    env.push_back(k + "=" + v);
    has_path |= k == "PATH";
  }
  if (!has_path) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

  const std::vector<std::string>& caps = oci::DefaultContainerCapabilities();
  nlohmann::json mounts = oci::DefaultContainerMounts();  // + the task's sandbox, read-write
  mounts.push_back({{"destination", kSandboxInContainer}, {"type", "bind"}, {"source", p.sandbox},
                    {"options", {"rbind", "rw"}}});
  // As many open files as this node may have, up to 65536 (runc cannot raise a limit above our hard limit).
  struct rlimit rl{};
  uint64_t nofile = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) nofile = std::min<uint64_t>(65536, rl.rlim_max);
  json resources = json::object();
  if (p.mem_mib > 0) resources["memory"] = {{"limit", static_cast<int64_t>(p.mem_mib * 1024 * 1024)}};
  if (p.cpus > 0)
    resources["cpu"] = {{"quota", std::max<int64_t>(static_cast<int64_t>(p.cpus * 100000), 1000)},
                        {"period", 100000},
                        {"shares", std::max<int64_t>(static_cast<int64_t>(p.cpus * 1024), 2)}};
  json linux_section = {
      // No network namespace: the task listens on the host's ports it was given ($PORT0..).
      {"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}},
      {"resources", resources},
      {"maskedPaths", {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                       "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"}},
      {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}};
  if (!p.cgroups_path.empty()) linux_section["cgroupsPath"] = p.cgroups_path;
  json spec = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", ids.first}, {"gid", ids.second}}},
        {"args", args},
        {"env", env},
        {"cwd", c.working_dir.empty() ? "/" : c.working_dir},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", nofile}, {"soft", nofile}}}},
        {"noNewPrivileges", true}}},
      {"root", {{"path", "rootfs"}, {"readonly", false}}},
      {"hostname", p.hostname},
      {"mounts", mounts},
      {"linux", linux_section},
  };
  // runc creates missing mount points itself, resolving them inside the rootfs (never through its symlinks).
  return core::WriteFileDurable(*core::DefaultEnv(), bundle + "/config.json", spec.dump(2) + "\n");
}

std::string ContainerId(const std::string& task_id, const std::string& node_key) {
  std::string id = "tug-";
  for (char ch : task_id.substr(0, 64))
    id += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-') ? ch : '_';
  // Sanitising may map two task ids to one name: a hash of the real id keeps them apart.
  return id + "-" + crypto::Sha256Hex(node_key + "/" + task_id).substr(0, 8);
}

std::vector<std::string> Runc::RunArgv(const std::string& bundle, const std::string& id) const {
  return {binary_, "--root", root_, "run", "--bundle", bundle, id};
}

Result<core::RunResult> Runc::Call(std::vector<std::string> args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv{binary_, "--root", root_};
  argv.insert(argv.end(), args.begin(), args.end());
  core::RunOptions o;
  o.timeout = timeout;
  return core::Run(argv, o);
}

Status Runc::Kill(const std::string& id, const std::string& signal) const {
  TUG_ASSIGN_OR_RETURN(auto r, Call({"kill", id, signal}, 10s));
  if (!r.ok()) return MakeError(Errc::kRuntime, "runc kill " + id + " " + signal + ": " + r.Describe());
  return {};
}

Status Runc::Delete(const std::string& id) const {
  TUG_ASSIGN_OR_RETURN(auto r, Call({"delete", "--force", id}, 30s));
  if (!r.ok() && r.err.find("does not exist") == std::string::npos)
    return MakeError(Errc::kRuntime, "runc delete " + id + ": " + r.Describe());
  return {};
}

Result<std::vector<std::string>> Runc::List() const {
  TUG_ASSIGN_OR_RETURN(auto r, Call({"list", "-q"}, 30s));
  if (!r.ok()) return MakeError(Errc::kRuntime, "runc list: " + r.Describe());
  std::vector<std::string> ids;
  size_t start = 0;
  while (start < r.out.size()) {
    size_t nl = r.out.find('\n', start);
    if (nl == std::string::npos) nl = r.out.size();
    if (nl > start) ids.push_back(r.out.substr(start, nl - start));
    start = nl + 1;
  }
  return ids;
}

Result<core::RunResult> Runc::Exec(const std::string& id, const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout) const {
  std::vector<std::string> args{"exec", id};
  args.insert(args.end(), argv.begin(), argv.end());
  return Call(args, timeout);
}

}  // namespace tug::cluster::node
