#!/usr/bin/env bash
# Builds (or reuses) a Debian bookworm sysroot for cross-building Tugboat for ARM.
#
#   cross/make-sysroot.sh ARCH [DIR]      ARCH = arm64 | armhf; DIR defaults to /var/cache/tugboat/sysroots/ARCH
#
# Why a sysroot and not multiarch: `apt-get install libfoo-dev:arm64` on this host fails on version skew between the
# amd64 and arm64 package indexes, whereas mmdebstrap resolves one consistent arm64 (or armhf) package set.
#
# The sysroot holds the -dev packages the project links against (the list below). Absolute symlinks inside it
# (e.g. usr/lib/aarch64-linux-gnu/libz.so -> /lib/aarch64-linux-gnu/libz.so.1) are rewritten as relative ones,
# otherwise the cross linker would follow them into the host's /lib.
#
# Idempotent: a stamp file records the suite, architecture and package list; the sysroot is rebuilt only when it
# is missing or that record changed. A new sysroot is built beside the old one and swapped in only when complete,
# so an interrupted run never leaves a half sysroot behind. Concurrent runs for one DIR serialise on DIR.lock.
# The packages and their dependencies are only extracted (mmdebstrap --variant=extract), not installed: a compiler
# needs their headers, libraries, pkg-config and CMake files, none of which a maintainer script makes, and running
# those scripts for ~150 foreign packages under QEMU was what made a sysroot take 5-6 minutes (now about 1).
# Needs root (mmdebstrap) and the network (Debian's mirror).
set -euo pipefail

SUITE=bookworm
PACKAGES=(
  libboost-dev libssl-dev libsodium-dev libarchive-dev zlib1g-dev libzstd-dev
  nlohmann-json3-dev libexpected-dev libcli11-dev libspdlog-dev libfmt-dev catch2
  libsqlite3-dev libmosquitto-dev
  # libarchive's private dependencies (pkg-config --static), for trying a static libarchive link; --static does not
  # use them today: libarchive.a drags in libxml2 and ICU (see cmake/Dependencies.cmake)
  liblzma-dev libbz2-dev liblz4-dev libacl1-dev nettle-dev libxml2-dev
)

usage() { echo "usage: $0 arm64|armhf [DIR]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
ARCH=$1
case "$ARCH" in
  arm64) QEMU_ARCH=aarch64 ;;
  armhf) QEMU_ARCH=arm ;;
  *) usage ;;
esac
DIR=${2:-/var/cache/tugboat/sysroots/$ARCH}
DIR=$(realpath -m "$DIR")
STAMP_NAME=.tugboat-sysroot.stamp
say() { echo "make-sysroot[$ARCH]: $*" >&2; }

# What the sysroot must match: one line per fact, packages sorted so that reordering the list is not a change.
want_stamp() {
  echo "suite=$SUITE"
  echo "arch=$ARCH"
  echo "variant=extract"
  printf 'package=%s\n' "${PACKAGES[@]}" | sort -u
}

up_to_date() {
  [ -f "$DIR/$STAMP_NAME" ] && [ "$(cat "$DIR/$STAMP_NAME")" = "$(want_stamp)" ]
}

if up_to_date; then
  say "up to date: $DIR"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "building a sysroot needs root (mmdebstrap, binfmt_misc); run: sudo $0 $*"; exit 1; }
command -v mmdebstrap >/dev/null || { say "mmdebstrap missing: apt-get install mmdebstrap (or run scripts/setup.sh)"; exit 1; }
command -v python3 >/dev/null || { say "python3 missing: apt-get install python3"; exit 1; }

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
if ! flock -n 9; then
  say "another run is building $DIR; waiting for it"
  flock 9
fi
# The other run may have just built exactly what we want.
if up_to_date; then
  say "up to date: $DIR"
  exit 0
fi

# The cross tests run the sysroot's binaries under QEMU: make sure binfmt_misc knows the architecture.
"$(dirname "$0")/register-binfmt.sh" "$QEMU_ARCH"

if [ -d "$DIR" ]; then
  if [ -f "$DIR/$STAMP_NAME" ]; then
    say "package list changed; rebuilding $DIR"
    diff <(cat "$DIR/$STAMP_NAME") <(want_stamp) | sed 's/^/  /' >&2 || true
  else
    say "$DIR exists without a complete stamp (interrupted or foreign); rebuilding it"
  fi
else
  say "building $DIR"
fi

NEW="$DIR.new.$$"
rm -rf "$DIR".new.*
trap 'rm -rf "$NEW"' EXIT
start=$(date +%s)
say "mmdebstrap --arch=$ARCH --variant=extract $SUITE (${#PACKAGES[@]} -dev packages and their dependencies; about 1 min)"
include=$(IFS=,; echo "${PACKAGES[*]}")
# Docs, man pages and locales are of no use to a compiler; leaving them out saves time and space.
# Debian's mirrors are sometimes caught mid-sync ("File has unexpected size"): retry. The mirror reachable here has
# served a bookworm-security index that never matches its InRelease; the last attempt goes without that suite
# (headers and libraries then lack the latest security point releases: harmless for compiling, said loudly).
SOURCES=()
attempt=1
until mmdebstrap --arch="$ARCH" --variant=extract --include="$include" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "$SUITE" "$NEW" "${SOURCES[@]}" 2>&1 | sed -u 's/^/  /' >&2; do
  rm -rf "$NEW"
  if [ $attempt -ge 3 ]; then
    say "mmdebstrap failed $attempt times (see above; it needs arch-test, qemu-user-static and Debian's mirror)"
    exit 1
  fi
  attempt=$((attempt + 1))
  if [ $attempt = 3 ]; then
    say "WARNING: attempt 3/3 without the bookworm-security suite (its index failed twice above)"
    SOURCES=("deb http://deb.debian.org/debian $SUITE main" "deb http://deb.debian.org/debian $SUITE-updates main")
  fi
  say "mmdebstrap failed; attempt $attempt/3 in 20s"
  sleep 20
done
[ ${#SOURCES[@]} = 0 ] || echo "built without $SUITE-security (its index did not match the mirror's InRelease)" >"$NEW/.tugboat-sysroot.degraded"
say "mmdebstrap done in $(( $(date +%s) - start ))s"

# Rewrite absolute symlinks relative to the sysroot: /lib/x -> ../../lib/x as seen from the link's directory.
say "making absolute symlinks relative"
python3 - "$NEW" <<'EOF'
import os, sys
root = sys.argv[1]
fixed = 0
for dirpath, dirnames, filenames in os.walk(root):
    # os.walk lists symlinks to directories in dirnames but does not descend into them.
    for name in dirnames + filenames:
        path = os.path.join(dirpath, name)
        if not os.path.islink(path):
            continue
        target = os.readlink(path)
        if not target.startswith('/'):
            continue
        rel = os.path.relpath(os.path.join(root, target.lstrip('/')), dirpath)
        os.unlink(path)
        os.symlink(rel, path)
        fixed += 1
print(f"  {fixed} symlinks rewritten", file=sys.stderr)
EOF

# Nothing in a sysroot needs the apt lists or downloaded archives.
rm -rf "$NEW"/var/cache/apt/archives/*.deb "$NEW"/var/lib/apt/lists/*_Packages "$NEW"/var/lib/apt/lists/*_InRelease
want_stamp >"$NEW/$STAMP_NAME"

# Swap: the old sysroot (if any) goes only once the new one is complete.
if [ -e "$DIR" ]; then
  mv "$DIR" "$DIR.old.$$"
  mv "$NEW" "$DIR"
  rm -rf "$DIR.old.$$"
else
  mv "$NEW" "$DIR"
fi
trap - EXIT
say "ready: $DIR ($(du -sh "$DIR" | cut -f1), built in $(( $(date +%s) - start ))s)"
