#!/usr/bin/env bash
# Cross-compiles the sensor app statically for one device architecture, on any x86 (or ARM) Debian machine.
#
#   examples/sensor/build.sh ARCH VERSION OUTDIR
#
# ARCH is a Debian architecture: arm64, armhf or amd64. VERSION is 1, 2 or 3 (3 is the broken release, built with
# -DSENSOR_BROKEN). Writes OUTDIR/TARGETARCH/sensor, where TARGETARCH is the Docker name of the architecture
# (arm64, arm, amd64), which is where examples/sensor/Dockerfile's COPY looks for it: build several ARCHes into the
# same OUTDIR and one `image-builder build --platform linux/arm64,linux/arm/v7 ... OUTDIR` takes each platform's.
# The binary is static (no libc in the image needed) and stripped, and the same inputs give the same bytes.
set -euo pipefail

usage() { echo "usage: $0 arm64|armhf|amd64 1|2|3 OUTDIR" >&2; exit 2; }
[ $# = 3 ] || usage
arch=$1 version=$2 outdir=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

case "$arch" in
  arm64) cc=aarch64-linux-gnu-gcc targetarch=arm64 ;;
  armhf) cc=arm-linux-gnueabihf-gcc targetarch=arm ;;
  amd64) cc=x86_64-linux-gnu-gcc targetarch=amd64 ;;
  *) usage ;;
esac
case "$version" in
  1 | 2) defs=(-DSENSOR_VERSION="$version") ;;
  3) defs=(-DSENSOR_VERSION=3 -DSENSOR_BROKEN) ;;
  *) usage ;;
esac
# On an amd64 host the native gcc is the amd64 compiler, whatever it is called.
if ! command -v "$cc" >/dev/null 2>&1; then
  if [ "$arch" = amd64 ] && [ "$(uname -m)" = x86_64 ]; then cc=gcc; else
    echo "$0: $cc not found (Debian: apt-get install gcc-${cc%-gcc}; scripts/setup.sh installs the arm ones)" >&2
    exit 1
  fi
fi

mkdir -p "$outdir/$targetarch"
# -ffile-prefix-map keeps the checkout's path out of the binary; -s strips it; a build id over the same
# bytes is the same build id, so rebuilding gives an identical file (and a cache hit in image-builder).
"$cc" -static -Os -s -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror \
  -ffile-prefix-map="$here"=. "${defs[@]}" -o "$outdir/$targetarch/sensor.tmp" "$here/sensor.c"
mv -f "$outdir/$targetarch/sensor.tmp" "$outdir/$targetarch/sensor"
echo "$outdir/$targetarch/sensor"
