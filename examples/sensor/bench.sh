#!/usr/bin/env bash
# Build-time benchmark of the sensor image (examples/sensor) with image-builder, for linux/arm64 on this machine:
#
#   sudo examples/sensor/bench.sh [RUNS]       # RUNS repetitions per case (default 5); prints a Markdown section
#
# Cases, each timed around one `image-builder build` into a fresh OCI layout (no push):
#   cold      v1 with an empty --cache-dir (every step runs: base extraction, COPY, the RUN smoke test under QEMU)
#   cached    v1 again with the cache that build filled (same inputs: every step a cache hit)
#   one-line  v2 with the cache filled by v1 (v2 = v1 plus the humidity line of sensor.c: the COPY misses, so does the RUN
#             after it; the base is shared)
# plus the static cross-compile of the binary (examples/sensor/build.sh) and the bytes a device that runs v1 must
# download to update to v2: every blob of v2 (index, manifest, config, layers) that v1 does not have, which is what
# device-agent fetches (it skips blobs already in its store).
# Needs root (image-builder), QEMU binfmt for aarch64, aarch64-linux-gnu-gcc and the busybox .deb: scripts/setup.sh.
set -euo pipefail

RUNS=${1:-5}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILDER=${BUILDER:-$BUILD_DIR/image-builder/image-builder}
DEBS_DIR=${DEBS_DIR:-/var/cache/tugboat/debs}
PLATFORM=linux/arm64/v8

[ "$(id -u)" = 0 ] || { echo "$0: needs root (image-builder)" >&2; exit 1; }
[ -x "$BUILDER" ] || { echo "$0: no $BUILDER (ninja -C build image-builder)" >&2; exit 1; }
DEB=$(ls "$DEBS_DIR"/busybox-static_*_arm64.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { echo "$0: no busybox-static arm64 .deb in $DEBS_DIR (scripts/setup.sh)" >&2; exit 1; }

LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
T=$(mktemp -d /tmp/sensor-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$1" "$2"; }
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }

# build VERSION CACHE_DIR OUT_LAYOUT -> prints seconds; the build's stderr goes to $T/last.log
build() {
  local t0 t1
  t0=$(now)
  "$BUILDER" build -q -f "$HERE/Dockerfile" --platform "$PLATFORM" --build-arg "BASE=$T/base:v1" \
    --build-arg "VERSION=$1" --cache-dir "$2" --oci-layout "$3" --tag "sensor:v$1" "$T/ctx-v$1" \
    >/dev/null 2>"$T/last.log" || { cat "$T/last.log" >&2; exit 1; }
  t1=$(now)
  elapsed "$t0" "$t1"
}

"$BUILDER" debootstrap-lite --platform "$PLATFORM" --deb "$DEB" --oci-layout "$T/base" --tag base:v1 \
  >/dev/null 2>&1 || { echo "$0: debootstrap-lite failed" >&2; exit 1; }

compile=() cold=() cached=() oneline=()
for _ in $(seq "$RUNS"); do
  rm -rf "$T/ctx-v1" "$T/ctx-v2"
  t0=$(now); "$HERE/build.sh" arm64 1 "$T/ctx-v1" >/dev/null; t1=$(now)
  compile+=("$(elapsed "$t0" "$t1")")
  "$HERE/build.sh" arm64 2 "$T/ctx-v2" >/dev/null
  rm -rf "$T/cache" "$T/out"
  cold+=("$(build 1 "$T/cache" "$T/out/cold")")
  cached+=("$(build 1 "$T/cache" "$T/out/cached")")
  grep -q ' 0 RUN step(s) executed' "$T/last.log" || { echo "$0: the cached build ran a step:" >&2; cat "$T/last.log" >&2; exit 1; }
  oneline+=("$(build 2 "$T/cache" "$T/out/v2")")
done

# Blobs of v2 that a device holding v1 lacks, and the layer sizes, from the OCI layouts.
read -r BASE_SIZE APP1 APP2 NEW_BYTES NEW_BLOBS TOTAL2 < <(python3 - "$T/out/cold" "$T/out/v2" <<'PY'
import json, sys
def closure(layout, tag):
    idx = json.load(open(f"{layout}/index.json"))
    ref = next(m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    blobs = {ref["digest"]: ref["size"]}
    index = json.load(open(f"{layout}/blobs/sha256/{ref['digest'][7:]}"))
    for m in index["manifests"]:
        blobs[m["digest"]] = m["size"]
        man = json.load(open(f"{layout}/blobs/sha256/{m['digest'][7:]}"))
        blobs[man["config"]["digest"]] = man["config"]["size"]
        layers = man["layers"]
        for l in layers:
            blobs[l["digest"]] = l["size"]
    return blobs, layers
v1, l1 = closure(sys.argv[1], "v1")
v2, l2 = closure(sys.argv[2], "v2")
assert l1[0]["digest"] == l2[0]["digest"], "base layer differs"
new = {d: s for d, s in v2.items() if d not in v1}
print(l1[0]["size"], l1[1]["size"], l2[1]["size"], sum(new.values()), len(new), sum(v2.values()))
PY
)

cpus=$(nproc)
cat <<MD
## Image builds (examples/sensor)

Produced by \`examples/sensor/bench.sh $RUNS\` ($RUNS runs per case, median; wall-clock seconds around one
\`image-builder build\` into a fresh OCI layout, no push). Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $cpus CPUs; load
average before the run: $LOAD_BEFORE; commit $(git -C "$ROOT" rev-parse --short HEAD). The image is linux/arm64: the
debootstrap-lite busybox base (one layer, $BASE_SIZE B) and one layer with the static sensor binary; the
Dockerfile's \`RUN /usr/bin/sensor --version\` smoke test runs under QEMU.

| case | what runs | runs (s) | median (s) |
| --- | --- | --- | --- |
| cross-compile | \`examples/sensor/build.sh arm64 1 DIR\` (aarch64-linux-gnu-gcc -static -Os) | ${compile[*]} | $(median "${compile[@]}") |
| cold | v1, empty \`--cache-dir\`: base extracted, COPY layer made, RUN under QEMU | ${cold[*]} | $(median "${cold[@]}") |
| cached | v1 again, same inputs: COPY and RUN are cache hits | ${cached[*]} | $(median "${cached[@]}") |
| one-line change | v2 (VERSION=2: one compile flag, which enables the humidity line of sensor.c) with v1's cache: new COPY layer, RUN again | ${oneline[*]} | $(median "${oneline[@]}") |

What a device running v1 downloads to update to v2 (blobs of v2 it lacks, from the two OCI layouts):

| | bytes |
| --- | --- |
| base layer (shared by v1 and v2, not downloaded) | $BASE_SIZE |
| app layer v1 / v2 | $APP1 / $APP2 |
| **downloaded for v1 -> v2** ($NEW_BLOBS blobs: index, manifest, config, app layer) | **$NEW_BYTES** |
| whole v2 image (what a fresh device downloads) | $TOTAL2 |
| downloaded / whole image | $(python3 -c "print(f'{$NEW_BYTES / $TOTAL2:.2f}')") |

Notes:
- Every build extracts the base layers into a fresh working rootfs (FROM is not a cached step), and that, plus
  process start-up and writing the layout, is most of the cached time. Cold and one-line builds also make the COPY
  layer (gzip of a ~600 KB binary) and start the RUN smoke test under QEMU; they cost about the same, since the
  image has nothing above the changed layer but that RUN.
- The download column counts blobs, not HTTP overhead. device-agent fetches exactly the blobs its store lacks, so a
  device's blob store grows by this much (scripts/demo.sh and tests/examples/sensor_update_test.sh measure it).
- The machine is shared with other builds: read the medians and their ratios, not single runs.

Commands (as root, from the repository root, after \`scripts/setup.sh\` and \`ninja -C build image-builder\`):

\`\`\`
image-builder debootstrap-lite --platform linux/arm64 --deb /var/cache/tugboat/debs/busybox-static_*_arm64.deb \\
    --oci-layout \$T/base --tag base:v1
examples/sensor/build.sh arm64 1 \$T/ctx-v1      # and: build.sh arm64 2 \$T/ctx-v2
# cold (rm -rf \$T/cache first), then cached: the same command again
image-builder build -q -f examples/sensor/Dockerfile --platform linux/arm64/v8 --build-arg BASE=\$T/base:v1 \\
    --build-arg VERSION=1 --cache-dir \$T/cache --oci-layout \$T/out/cold --tag sensor:v1 \$T/ctx-v1
# one-line change
image-builder build -q -f examples/sensor/Dockerfile --platform linux/arm64/v8 --build-arg BASE=\$T/base:v1 \\
    --build-arg VERSION=2 --cache-dir \$T/cache --oci-layout \$T/out/v2 --tag sensor:v2 \$T/ctx-v2
\`\`\`
MD
