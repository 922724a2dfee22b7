#!/usr/bin/env bash
# Cross-builds device-agent and the unit tests that need no servers for an ARM device.
#
#   cross/build-agent.sh ARCH [--static] [--test]      ARCH = arm64 | armhf
#
# Ensures the sysroot (cross/make-sysroot.sh ARCH; cached in /var/cache/tugboat/sysroots/ARCH, or $TUG_SYSROOT),
# configures build-ARCH/ (build-ARCH-static/ with --static) with toolchains/<triplet>.cmake, builds device-agent,
# core_test, crypto_test and oci_test, and with --test runs those tests with ctest under qemu-user (pinned CPU:
# see the toolchain file). Prints the binary, `file` on it, its stripped size and what it loads at run time.
# --static builds a mostly-static agent in build-ARCH-static/ (static libstdc++/libgcc and the archives that can be
# linked; what stays shared and why: cmake/Dependencies.cmake, and the report printed at the end).
# Every configure and build step holds /tmp/tug-build.lock and uses -j2: the 2-core machine is shared.
# Exit status: 0 built (and, with --test, all tests passed); 1 a step failed; 2 usage.
set -euo pipefail

usage() { echo "usage: $0 arm64|armhf [--static] [--test]" >&2; exit 2; }
[ $# -ge 1 ] || usage
ARCH=$1; shift
case "$ARCH" in
  arm64) TRIPLET=aarch64-linux-gnu ;;
  armhf) TRIPLET=arm-linux-gnueabihf ;;
  *) usage ;;
esac
STATIC=0 TEST=0
for a in "$@"; do
  case "$a" in
    --static) STATIC=1 ;;
    --test) TEST=1 ;;
    *) usage ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SYSROOT=${TUG_SYSROOT:-/var/cache/tugboat/sysroots/$ARCH}
BUILD=build-$ARCH
[ $STATIC = 0 ] || BUILD=build-$ARCH-static
TESTS=(core_test crypto_test oci_test)
LOCK=/tmp/tug-build.lock
say() { echo "build-agent[$ARCH]: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

for tool in cmake ninja "$TRIPLET-g++" file flock; do
  command -v "$tool" >/dev/null || { say "$tool missing: run scripts/setup.sh"; exit 1; }
done

t=$(date +%s)
"$ROOT/cross/make-sysroot.sh" "$ARCH" "$SYSROOT"
T_SYSROOT=$(elapsed "$t")

t=$(date +%s)
mkdir -p "$BUILD"
say "configuring $BUILD (toolchains/$TRIPLET.cmake, sysroot $SYSROOT, static=$STATIC)"
flock "$LOCK" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$ROOT/toolchains/$TRIPLET.cmake" \
  -DTUG_SYSROOT="$SYSROOT" -DTUG_BUILD_TESTS=ON -DTUG_STATIC=$([ $STATIC = 1 ] && echo ON || echo OFF) \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTUG_UNITY_BUILD=ON >"$BUILD/configure.log" 2>&1 || {
  cat "$BUILD/configure.log" >&2; say "configure failed"; exit 1; }
T_CONFIGURE=$(elapsed "$t")

t=$(date +%s)
say "building device-agent ${TESTS[*]} (ninja -j2 under flock $LOCK)"
flock "$LOCK" ninja -C "$BUILD" -j2 device-agent "${TESTS[@]}" || { say "build failed (errors above)"; exit 1; }
T_BUILD=$(elapsed "$t")

BIN=$BUILD/device-agent/device-agent
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
"$TRIPLET-strip" -o "$stripped" "$BIN"
echo
echo "binary:   $ROOT/$BIN"
echo "file:     $(file -b "$BIN")"
echo "size:     $(stat -c %s "$BIN") bytes with debug info; stripped $(stat -c %s "$stripped") bytes ($(( $(stat -c %s "$stripped") / 1024 )) KiB)"
needed=$("$TRIPLET-readelf" -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
interp=$("$TRIPLET-readelf" -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
if [ -z "$needed" ] && [ -z "$interp" ]; then
  echo "runtime:  fully static (no program interpreter, no shared libraries)"
else
  echo "runtime:  interpreter ${interp:-none}; shared libraries: ${needed:-none}"
fi
if [ $STATIC = 1 ]; then
  # What went in as archives, from the link command itself (our own libtug_*.a left out).
  archives=$(ninja -C "$BUILD" -t commands device-agent/device-agent | tail -n 1 | tr ' ' '\n' | grep '\.a$' |
    grep -v '/libtug_' | xargs -rn1 basename | sort -u | tr '\n' ' ')
  echo "static:   ${archives}libstdc++ libgcc; spdlog and fmt header-only"
  echo "shared:   glibc; libmosquitto (no archive in Debian) and so OpenSSL (libmosquitto.so loads it: one copy only);"
  echo "          libarchive (its archive pulls in libxml2 and ICU through the xar writer); see cmake/Dependencies.cmake"
fi

if [ $TEST = 1 ]; then
  t=$(date +%s)
  say "running ${TESTS[*]} under $(grep -o '"/usr/bin/qemu[^)]*-cpu" "[^"]*"' "$BUILD/common/core/CTestTestfile.cmake" | tr -d '"')"
  regex="^($(IFS='|'; echo "${TESTS[*]}"))\$"
  if ! ctest --test-dir "$BUILD" --output-on-failure -j1 -R "$regex"; then
    say "unit tests FAILED under qemu (took $(elapsed "$t"))"
    exit 1
  fi
  T_TEST=$(elapsed "$t")
  ran=$(ctest --test-dir "$BUILD" -N -R "$regex" | grep -c 'Test *#' || true)
  [ "$ran" = ${#TESTS[@]} ] || { say "expected ${#TESTS[@]} tests, ctest knows $ran"; exit 1; }
fi
echo
say "done: sysroot $T_SYSROOT, configure $T_CONFIGURE, build $T_BUILD${T_TEST:+, tests under qemu $T_TEST}"
