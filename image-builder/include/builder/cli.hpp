// image-builder's command line (DESIGN.md §9, docs/image-builder.md):
//   image-builder build -f Dockerfile --platform linux/arm64[,linux/arm/v7] [--tag HOST/REPO:TAG] [--push]
//                       [--insecure-registry H:P] [--oci-layout DIR] [--build-arg K=V] [--no-cache]
//                       [--cache-dir DIR] [--sign KEY --release-version N --release-out F] CONTEXT
//   image-builder debootstrap-lite --platform linux/arm64 --deb FILE.deb ... [--tag T] [--oci-layout DIR] [--push]
// The final index digest goes to `out` (stdout); progress and errors to `err`.
// Exit codes: 0 success, 1 the build or publish failed, 2 usage error.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace tug::builder {

int Main(int argc, char** argv);
// The same with explicit streams; args excludes the program name. For tests.
int Main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tug::builder
