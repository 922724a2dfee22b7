#!/usr/bin/env bash
# Tugboat's test command (what CI runs): set up the host, build everything, run every test.
# Tests start real servers (registry, broker, runc containers) on loopback, so they run one at a time.
#   sudo scripts/test.sh
#   BUILD_DIR=out sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}

scripts/setup.sh

lock=()
# Other builds may share this machine: take turns (flock comes with util-linux, installed by setup.sh).
if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
"${lock[@]}" cmake -S . -B "$BUILD_DIR" -G Ninja
"${lock[@]}" ninja -C "$BUILD_DIR" -j2

rc=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900 -j1 || rc=$?
exit $rc
