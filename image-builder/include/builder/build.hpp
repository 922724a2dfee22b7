// The build engine: runs a parsed Dockerfile once per target platform (sequentially) and returns the final
// stage's image for each.
//
// Per stage, a rootfs working directory is assembled from the base image's layers (verified, extracted with
// oci::ExtractLayer). Every filesystem-changing step (RUN, COPY, ADD, WORKDIR creating a directory) is followed by
// a snapshot; the step's layer is the difference from the previous snapshot (snapshot.hpp), with whiteouts for
// deletions. Layers are reproducible: entries sorted, numeric owners, mtimes clamped to source_date_epoch, gzip
// without timestamps; the config's `created` and history times are source_date_epoch. Steps are looked up in the
// layer cache first (cache.hpp); a hit applies the cached layer instead of executing.
//
// Errors name the Dockerfile line: "Dockerfile:5: RUN exited with code 2: <output tail>". Blocking; progress
// lines ("[2/7] RUN ... (linux/arm64)") go to `progress`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "builder/image.hpp"
#include "core/error.hpp"
#include "oci/image.hpp"

namespace tug::builder {

struct BuildOptions {
  std::string dockerfile;  // path of the Dockerfile
  std::string context;     // context directory
  std::vector<oci::Platform> platforms;
  std::map<std::string, std::string> build_args;
  std::string cache_dir;   // empty: no cache
  int64_t source_date_epoch = 0;
  std::string target;      // stage name to stop at; empty for the last stage
  registry::ClientOptions client;  // for registry base images
  std::string work_dir;    // scratch root (a private directory is made inside); default $TMPDIR or /var/tmp
  bool keep_work_dir = false;
  std::ostream* progress = nullptr;
};

struct BuildStats {
  int runs_executed = 0;  // RUN steps that really ran
  int cache_hits = 0;     // steps reused from the cache
  int layers = 0;         // layers added by the Dockerfile (all platforms)
};

struct BuildResult {
  std::vector<PlatformImage> images;  // one per platform, in the order asked
  BuildStats stats;
};

Result<BuildResult> Build(const BuildOptions& opts);

}  // namespace tug::builder
