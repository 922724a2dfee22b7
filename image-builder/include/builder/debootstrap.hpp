// debootstrap-lite: a base image made from chosen Debian packages, with no registry and no network.
//
// Each .deb's data.tar is unpacked (safely, oci::ExtractDebData) into one rootfs; maintainer scripts are not run.
// When the rootfs has /bin/busybox, its applets are linked the way `busybox --install -s` would, from the list the
// binary itself prints (`busybox --list-full`, run under QEMU for a foreign architecture, so CheckEmulation
// applies). The usual top-level directories and a minimal /etc/passwd and /etc/group are added. The result is one
// reproducible layer (sorted, root-owned, mtimes clamped). Blocking.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "builder/image.hpp"
#include "core/error.hpp"

namespace tug::builder {

struct DebootstrapOptions {
  std::vector<std::string> debs;  // .deb files, all for `platform` (or architecture "all")
  oci::Platform platform;
  int64_t source_date_epoch = 0;
  std::string work_dir;           // scratch root; default $TMPDIR or /var/tmp
};

Result<PlatformImage> DebootstrapLite(const DebootstrapOptions& opts);

// Debian architecture name -> platform: arm64 -> linux/arm64/v8, armhf -> linux/arm/v7, armel -> linux/arm/v6,
// amd64 -> linux/amd64, i386 -> linux/386. kInvalidArgument otherwise.
Result<oci::Platform> PlatformFromDebianArch(const std::string& arch);
// The architecture in a .deb file name "name_version_ARCH.deb" (empty if the name has no such suffix).
std::string DebArchFromFileName(const std::string& path);

}  // namespace tug::builder
