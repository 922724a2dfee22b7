#!/usr/bin/env bash
# Tugboat's test command (what CI runs): set up the host, build everything, run every test.
# Tests start real servers (registry, broker, runc containers) on loopback, so they run one at a time.
#   sudo scripts/test.sh
#   BUILD_DIR=out sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}

scripts/setup.sh

# Compiler cache outside the clone (cmake/BuildSpeed.cmake), so a fresh clone rebuilds in about a minute, not 13.
export CCACHE_DIR=${CCACHE_DIR:-/var/cache/tugboat/ccache}
mkdir -p "$CCACHE_DIR"
# The test build keeps line tables only (-g1: backtraces still name functions and lines); full -g makes the
# template-heavy units compile ~40% slower and is for debugging builds, not for running the suite.
# Unity batches (cmake/BuildSpeed.cmake) make a cold build ~1/3 faster, which is what a fresh CI machine does.
config=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
        "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" -DTUG_UNITY_BUILD=ON)

lock=()
# Other builds may share this machine: take turns (flock comes with util-linux, installed by setup.sh).
if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
"${lock[@]}" cmake -S . -B "$BUILD_DIR" -G Ninja "${config[@]}"
"${lock[@]}" ninja -C "$BUILD_DIR" -j2

rc=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900 -j1 || rc=$?
# Bounded fuzzing (scripts/fuzz.sh): every libFuzzer target for FUZZ_SECONDS (5 here) from its seed corpus in its
# own clang build dir; a crash fails the run. About 75 s from an empty fuzz build dir with ccache warm.
FUZZ_SECONDS=${FUZZ_SECONDS:-5} scripts/fuzz.sh || rc=1
exit $rc
