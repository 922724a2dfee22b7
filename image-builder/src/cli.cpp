#include "builder/cli.hpp"

#include <cstdlib>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "builder/build.hpp"
#include "builder/cache.hpp"
#include "builder/debootstrap.hpp"
#include "builder/executor.hpp"
#include "builder/image.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/release.hpp"
#include "registry/reference.hpp"

namespace tug::builder {
namespace {

constexpr int kFailed = 1;
constexpr int kUsage = 2;

Result<std::vector<oci::Platform>> ParsePlatforms(const std::string& list) {
  std::vector<oci::Platform> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    TUG_ASSIGN_OR_RETURN(auto parsed, oci::Platform::Parse(item));
    const oci::Platform p = NormalizePlatform(parsed);
    for (const auto& q : out)
      if (q == p) return MakeError(Errc::kInvalidArgument, "platform " + item + " given twice");
    out.push_back(p);
  }
  if (out.empty()) out.push_back(oci::HostPlatform());
  return out;
}

int64_t DefaultSourceDateEpoch() {
  const char* s = std::getenv("SOURCE_DATE_EPOCH");
  if (s == nullptr || *s == '\0') return 0;
  return std::strtoll(s, nullptr, 10);
}

struct PublishFlags {
  std::string tag, oci_layout;
  bool push = false;
  std::vector<std::string> insecure;
  std::string sign_key, release_out = "release.json", release_expires = "30d", release_channel = "stable",
                        release_name;
  uint64_t release_version = 0;
};

// Common checks for flags that say where the image goes; returns a usage message or "".
std::string CheckPublish(const PublishFlags& f) {
  if (f.push) {
    auto ref = registry::Reference::Parse(f.tag);
    if (f.tag.empty() || !ref) return "--push needs --tag HOST[:PORT]/REPO[:TAG]";
  }
  if (!f.sign_key.empty()) {
    if (!registry::Reference::Parse(f.tag)) return "--sign needs --tag HOST[:PORT]/REPO[:TAG] (the release names it)";
    if (f.release_version == 0) return "--sign needs --release-version N (N > 0)";
  }
  return "";
}

int PublishAndSign(const std::vector<PlatformImage>& images, const PublishFlags& f, std::ostream& out,
                   std::ostream& err) {
  PublishOptions po;
  po.oci_layout = f.oci_layout;
  po.tag = f.tag;
  po.push = f.push;
  po.client.insecure_registries.insert(f.insecure.begin(), f.insecure.end());
  po.progress = &err;
  auto pub = Publish(images, po);
  if (!pub) {
    err << "image-builder: " << pub.error().Message() << "\n";
    return kFailed;
  }
  if (!f.sign_key.empty()) {
    auto key = crypto::LoadSecretKeyFile(f.sign_key);
    auto dur = core::ParseDuration(f.release_expires);
    if (!key || !dur) {
      err << "image-builder: " << (!key ? key.error().Message() : dur.error().Message()) << "\n";
      return kFailed;
    }
    crypto::Release r;
    r.repository = pub->repository;
    r.digest = pub->index_digest;
    r.platforms = pub->platforms;
    r.version = f.release_version;
    r.channel = f.release_channel;
    r.name = f.release_name;
    r.issued_at = core::SystemClock()->Now();
    r.expires_at = r.issued_at + *dur;
    const std::string envelope = crypto::SignRelease(r, {*key});
    auto s = core::WriteFileDurable(*core::DefaultEnv(), f.release_out, envelope + "\n");
    if (!s) {
      err << "image-builder: writing " << f.release_out << ": " << s.error().Message() << "\n";
      return kFailed;
    }
    err << "signed release v" << f.release_version << " of " << r.repository << "@" << r.digest << " -> "
        << f.release_out << "\n";
  }
  if (f.oci_layout.empty() && !f.push) err << "note: neither --oci-layout nor --push given; nothing was written\n";
  out << pub->index_digest << "\n";
  return 0;
}

void AddPublishFlags(CLI::App* cmd, PublishFlags* f) {
  cmd->add_option("--tag,-t", f->tag, "HOST[:PORT]/REPO:TAG (or NAME:TAG for a layout only)");
  cmd->add_flag("--push", f->push, "push blobs, manifests and the index to the tag's registry");
  cmd->add_option("--insecure-registry", f->insecure, "HOST:PORT spoken to over plain HTTP")->take_all();
  cmd->add_option("--oci-layout", f->oci_layout, "write an OCI image layout here");
  cmd->add_option("--sign", f->sign_key, "secret key file: sign a release of the pushed index");
  cmd->add_option("--release-version", f->release_version, "release version (must exceed the devices' ratchet)");
  cmd->add_option("--release-out", f->release_out, "where the signed release goes")->capture_default_str();
  cmd->add_option("--release-expires", f->release_expires, "release lifetime")->capture_default_str();
  cmd->add_option("--release-channel", f->release_channel, "release channel")->capture_default_str();
  cmd->add_option("--release-name", f->release_name, "human name of the release");
}

}  // namespace

int Main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"image-builder: builds multi-arch OCI images from a Dockerfile subset (RUN under QEMU)"};
  app.require_subcommand(1);

  // build
  auto* build = app.add_subcommand("build", "build an image from a Dockerfile");
  BuildOptions bo;
  PublishFlags bf;
  std::string file, platforms, context;
  std::vector<std::string> build_args;
  bool no_cache = false, quiet = false;
  std::string cache_dir = LayerCache::DefaultDir();
  bo.source_date_epoch = DefaultSourceDateEpoch();
  build->add_option("-f,--file", file, "Dockerfile (default CONTEXT/Dockerfile)");
  build->add_option("--platform", platforms, "comma-separated target platforms (default: this machine's)");
  build->add_option("--build-arg", build_args, "KEY=VALUE for an ARG")->take_all();
  build->add_flag("--no-cache", no_cache, "execute every step; neither read nor write the layer cache");
  build->add_option("--cache-dir", cache_dir, "layer cache directory")->capture_default_str();
  build->add_option("--source-date-epoch", bo.source_date_epoch,
                    "clamp file times and set `created` (default $SOURCE_DATE_EPOCH or 0)");
  build->add_option("--target", bo.target, "build up to this stage");
  build->add_option("--work-dir", bo.work_dir, "scratch directory for rootfs trees (default $TMPDIR or /var/tmp)");
  build->add_flag("--keep-work-dir", bo.keep_work_dir, "do not delete the scratch rootfs trees (debugging)");
  build->add_flag("-q,--quiet", quiet, "no progress output");
  build->add_option("CONTEXT", context, "build context directory")->required();
  AddPublishFlags(build, &bf);

  // debootstrap-lite
  auto* deb = app.add_subcommand("debootstrap-lite", "make a base image from Debian .deb packages");
  PublishFlags df;
  std::vector<std::string> debs;
  std::string deb_platforms, deb_arch;
  int64_t deb_epoch = DefaultSourceDateEpoch();
  deb->add_option("--deb", debs, ".deb files; each goes to the platform its file name's arch names")
      ->take_all()
      ->required();
  deb->add_option("--platform", deb_platforms, "comma-separated platforms (default: from --arch or the host)");
  deb->add_option("--arch", deb_arch, "Debian architecture (arm64, armhf, amd64) instead of --platform");
  deb->add_option("--source-date-epoch", deb_epoch, "clamp file times (default $SOURCE_DATE_EPOCH or 0)");
  AddPublishFlags(deb, &df);

  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    std::ostringstream o, eo;
    int code = app.exit(e, o, eo);
    out << o.str();
    err << eo.str();
    return code == 0 ? 0 : kUsage;
  }

  if (*build) {
    auto ps = ParsePlatforms(platforms);
    if (!ps) {
      err << "image-builder: --platform: " << ps.error().Message() << "\n";
      return kUsage;
    }
    if (auto msg = CheckPublish(bf); !msg.empty()) {
      err << "image-builder: " << msg << "\n";
      return kUsage;
    }
    for (const auto& a : build_args) {
      auto eq = a.find('=');
      if (eq == std::string::npos || eq == 0) {
        err << "image-builder: --build-arg needs KEY=VALUE, got " << a << "\n";
        return kUsage;
      }
      bo.build_args[a.substr(0, eq)] = a.substr(eq + 1);
    }
    bo.dockerfile = file.empty() ? context + "/Dockerfile" : file;
    bo.context = context;
    bo.platforms = *ps;
    bo.cache_dir = no_cache ? "" : cache_dir;
    bo.client.insecure_registries.insert(bf.insecure.begin(), bf.insecure.end());
    bo.progress = quiet ? nullptr : &err;
    auto r = Build(bo);
    if (!r) {
      err << "image-builder: " << r.error().context << "\n";
      return kFailed;
    }
    err << "built " << r->images.size() << " platform(s): " << r->stats.layers << " new layer(s), "
        << r->stats.runs_executed << " RUN step(s) executed, " << r->stats.cache_hits << " cache hit(s)\n";
    return PublishAndSign(r->images, bf, out, err);
  }

  // debootstrap-lite
  std::vector<oci::Platform> targets;
  if (!deb_arch.empty()) {
    auto p = PlatformFromDebianArch(deb_arch);
    if (!p) {
      err << "image-builder: --arch: " << p.error().Message() << "\n";
      return kUsage;
    }
    targets.push_back(*p);
  } else {
    auto ps = ParsePlatforms(deb_platforms);
    if (!ps) {
      err << "image-builder: --platform: " << ps.error().Message() << "\n";
      return kUsage;
    }
    targets = *ps;
  }
  if (auto msg = CheckPublish(df); !msg.empty()) {
    err << "image-builder: " << msg << "\n";
    return kUsage;
  }
  std::vector<PlatformImage> images;
  for (const auto& p : targets) {
    DebootstrapOptions o;
    o.platform = p;
    o.source_date_epoch = deb_epoch;
    for (const auto& d : debs) {
      const std::string arch = DebArchFromFileName(d);
      auto dp = PlatformFromDebianArch(arch);
      if (arch.empty() || arch == "all" || (dp && dp->Matches(p))) o.debs.push_back(d);
    }
    if (o.debs.empty()) {
      err << "image-builder: no .deb for " << p.ToString() << "\n";
      return kUsage;
    }
    auto img = DebootstrapLite(o);
    if (!img) {
      err << "image-builder: " << p.ToString() << ": " << img.error().Message() << "\n";
      return kFailed;
    }
    err << "debootstrap-lite " << PlatformKey(p) << ": " << o.debs.size() << " package(s), layer "
        << img->layers[0].digest << " (" << img->layers[0].data.size() << " B)\n";
    images.push_back(std::move(*img));
  }
  return PublishAndSign(images, df, out, err);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return Main(args, std::cout, std::cerr);
}

}  // namespace tug::builder
