#include "builder/debootstrap.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "builder/executor.hpp"
#include "core/clock.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"

namespace tug::builder {

Result<oci::Platform> PlatformFromDebianArch(const std::string& arch) {
  if (arch == "arm64") return oci::Platform{"linux", "arm64", "v8"};
  if (arch == "armhf") return oci::Platform{"linux", "arm", "v7"};
  if (arch == "armel") return oci::Platform{"linux", "arm", "v6"};
  if (arch == "amd64") return oci::Platform{"linux", "amd64", ""};
  if (arch == "i386") return oci::Platform{"linux", "386", ""};
  return MakeError(Errc::kInvalidArgument, "unknown Debian architecture " + arch);
}

std::string DebArchFromFileName(const std::string& path) {
  const std::string base = core::Basename(path);
  if (base.size() < 5 || base.compare(base.size() - 4, 4, ".deb") != 0) return "";
  const auto us = base.rfind('_');
  if (us == std::string::npos) return "";
  return base.substr(us + 1, base.size() - 4 - us - 1);
}

Result<PlatformImage> DebootstrapLite(const DebootstrapOptions& opts) {
  auto* env = core::DefaultEnv();
  if (opts.debs.empty()) return MakeError(Errc::kInvalidArgument, "no .deb given");
  std::string root = opts.work_dir;
  if (root.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    root = tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp";
  }
  TUG_TRY(env->CreateDirs(root));
  std::string tmpl = root + "/tug-debootstrap-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "mkdtemp in " + root);
  const std::string work = tmpl;
  const std::string rootfs = work + "/rootfs";
  auto result = [&]() -> Result<PlatformImage> {
    for (const auto& deb : opts.debs) {
      const std::string arch = DebArchFromFileName(deb);
      if (!arch.empty() && arch != "all") {
        TUG_ASSIGN_OR_RETURN(auto p, PlatformFromDebianArch(arch));
        if (!p.Matches(opts.platform))
          return MakeError(Errc::kInvalidArgument, deb + " is for " + p.ToString() + ", not " +
                                                       opts.platform.ToString());
      }
      auto s = oci::ExtractDebData(deb, rootfs);
      if (!s) return tl::unexpected(Wrap(s.error(), "unpacking " + deb));
    }
    for (const char* d : {"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var/tmp", "proc", "sys", "dev",
                          "home"})
      TUG_TRY(env->CreateDirs(rootfs + "/" + d));
    ::chmod((rootfs + "/tmp").c_str(), 01777);
    ::chmod((rootfs + "/var/tmp").c_str(), 01777);
    ::chmod((rootfs + "/root").c_str(), 0700);
    if (!env->Exists(rootfs + "/etc/passwd"))
      TUG_TRY(core::WriteFileDurable(*env, rootfs + "/etc/passwd",
                                     "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"));
    if (!env->Exists(rootfs + "/etc/group"))
      TUG_TRY(core::WriteFileDurable(*env, rootfs + "/etc/group", "root:x:0:\nnogroup:x:65534:\n"));

    if (env->Exists(rootfs + "/bin/busybox")) {
      // The binary is static, so it runs straight from the rootfs (through QEMU binfmt when foreign).
      TUG_TRY(CheckEmulation(opts.platform));
      TUG_ASSIGN_OR_RETURN(auto r, core::Run({rootfs + "/bin/busybox", "--list-full"}, {}));
      if (!r.ok()) return MakeError(Errc::kRuntime, "busybox --list-full: " + r.Describe());
      std::istringstream in(r.out);
      std::string applet;
      while (std::getline(in, applet)) {
        if (applet.empty() || applet.find("..") != std::string::npos || applet[0] == '/') continue;
        const std::string link = rootfs + "/" + applet;
        if (env->Exists(link)) continue;
        struct stat st;
        if (::lstat(link.c_str(), &st) == 0) continue;
        TUG_TRY(env->CreateDirs(core::Dirname(link)));
        TUG_TRY(env->Symlink("/bin/busybox", link));
      }
    }
    oci::LayerFromDirOptions lo;
    lo.source_date_epoch = opts.source_date_epoch;
    TUG_ASSIGN_OR_RETURN(auto layer, oci::LayerFromDirectory(rootfs, lo));
    PlatformImage img;
    img.platform = opts.platform;
    img.config.architecture = opts.platform.architecture;
    img.config.variant = opts.platform.variant;
    img.config.os = opts.platform.os;
    img.config.created = core::FormatRfc3339(core::TimePoint(std::chrono::seconds(opts.source_date_epoch)));
    img.config.config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    img.config.config.cmd = {"/bin/sh"};
    img.config.diff_ids = {layer.diff_id};
    std::string names;
    for (const auto& d : opts.debs) names += (names.empty() ? "" : " ") + core::Basename(d);
    img.config.history.push_back({img.config.created, "debootstrap-lite " + names, "image-builder", false});
    img.layers.push_back(std::move(layer));
    return img;
  }();
  (void)env->RemoveAll(work);
  return result;
}

}  // namespace tug::builder
