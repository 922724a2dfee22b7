#!/usr/bin/env bash
# Builds Tugboat's libFuzzer targets with Debian's clang (ASan + UBSan + libFuzzer, cmake/Fuzzing.cmake) and runs
# each one for a bounded time on a copy of its seed corpus. See --help.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  cat <<'USAGE'
Usage: scripts/fuzz.sh [--build-only] [--list] [TARGET...]

Builds every libFuzzer target (tug_add_fuzzer in the CMake files: fleet_fuzz, crypto_fuzz, oci_fuzz,
extract_fuzz, http_request_fuzz, recordio_fuzz, builder_fuzz) with clang -fsanitize=fuzzer,address,undefined in
its own build dir, then runs each named TARGET (default: all), one at a time, for FUZZ_SECONDS with
-max_total_time. Each run starts from a temporary copy of the target's seed corpus (<module>/fuzz/*corpus in the
repo) which is deleted afterwards: new inputs libFuzzer finds are kept nowhere, the corpora in the repo stay small.

Exits non-zero if any target crashes, leaks, hangs (-timeout) or fails to build; for each failure it prints the
target and the crashing input (path, size and a hex dump), kept under $FUZZ_ARTIFACTS. Reproduce with
  <build dir>/<module>/<target> <crashing input>

Environment:
  FUZZ_SECONDS    seconds per target (default 10)
  FUZZ_BUILD_DIR  build dir (default /var/cache/tugboat/fuzz-build if writable, else build-fuzz)
  FUZZ_ARTIFACTS  where crashing inputs go (default $FUZZ_BUILD_DIR/artifacts)
  FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 10)
  FUZZ_RSS_MB     memory limit per target in MB (default 2048)
  FUZZ_JOBS       ninja -j (default 2)
Installs clang and libclang-rt-14-dev (apt-get) if they are missing.

  --build-only  build, do not run
  --list        print the targets (name, binary, seed corpus) after building
USAGE
}

build_only=0 list=0 targets=()
for a in "$@"; do
  case $a in
    -h|--help) usage; exit 0 ;;
    --build-only) build_only=1 ;;
    --list) list=1 ;;
    -*) echo "fuzz.sh: unknown option $a (see --help)" >&2; exit 2 ;;
    *) targets+=("$a") ;;
  esac
done

SECONDS_PER=${FUZZ_SECONDS:-10}
if [ -z "${FUZZ_BUILD_DIR:-}" ]; then
  if mkdir -p /var/cache/tugboat 2>/dev/null && [ -w /var/cache/tugboat ]; then
    FUZZ_BUILD_DIR=/var/cache/tugboat/fuzz-build
  else
    FUZZ_BUILD_DIR=$PWD/build-fuzz
  fi
fi
# The default build dir outlives clones (CI makes a fresh clone each run): one configured from another checkout
# would make cmake refuse ("does not match the source ... used to generate cache"). Start it again; ccache keeps
# the rebuild short.
if [ -f "$FUZZ_BUILD_DIR/CMakeCache.txt" ]; then
  cached_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$FUZZ_BUILD_DIR/CMakeCache.txt")
  if [ "$cached_src" != "$(pwd)" ] && [ "$cached_src" != "$(pwd -P)" ]; then
    echo "fuzz: $FUZZ_BUILD_DIR was configured for $cached_src; configuring it again for $(pwd)"
    rm -rf "$FUZZ_BUILD_DIR"
  fi
fi
ARTIFACTS=${FUZZ_ARTIFACTS:-$FUZZ_BUILD_DIR/artifacts}

# clang + the sanitizer/libFuzzer runtimes, the house way (scripts/setup.sh): only what is missing, idempotent.
need=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  # shellcheck source=lib/apt.sh
  . scripts/lib/apt.sh
  echo "fuzz: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  $SUDO apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export CCACHE_DIR=${CCACHE_DIR:-/var/cache/tugboat/ccache}
mkdir -p "$CCACHE_DIR" 2>/dev/null || true
lock=()
if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
# -O2 -g1 -DNDEBUG as the shipped build (asserts off, as in scripts/test.sh), line tables for the reports; unity batches.
"${lock[@]}" cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DTUG_FUZZ=ON -DTUG_BUILD_INTEGRATION_TESTS=OFF \
  -DTUG_UNITY_BUILD=ON >/dev/null
"${lock[@]}" ninja -C "$FUZZ_BUILD_DIR" -j"${FUZZ_JOBS:-2}" fuzzers

list_file=$FUZZ_BUILD_DIR/fuzzers.tsv
if [ "$list" = 1 ]; then cat "$list_file"; fi
[ "$build_only" = 1 ] && exit 0

mkdir -p "$ARTIFACTS"
failed=()
ran=0
while IFS=$'\t' read -r name bin corpus; do
  [ -n "$name" ] || continue
  if [ ${#targets[@]} -gt 0 ]; then
    want=0
    for t in "${targets[@]}"; do [ "$t" = "$name" ] && want=1; done
    [ "$want" = 1 ] || continue
  fi
  ran=$((ran + 1))
  work=$(mktemp -d "${TMPDIR:-/tmp}/tug-fuzz-$name.XXXXXX")
  cp -r "$corpus/." "$work/"
  log=$ARTIFACTS/$name.log
  echo "fuzz: $name for ${SECONDS_PER}s ($(find "$corpus" -type f | wc -l) seeds)"
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$SECONDS_PER" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" "$work" >"$log" 2>&1 || rc=$?
  rm -rf "$work"
  stats=$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" |
          sed 's/^stat:://' | tr -s ' ' | tr '\n' ' ')
  if [ "$rc" != 0 ]; then
    failed+=("$name")
    echo "fuzz: FAILED $name (exit $rc); log: $log" >&2
    grep -E 'ERROR: |SUMMARY: |runtime error|Test unit written to' "$log" | head -20 >&2 || true
    for f in $(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //'); do
      echo "fuzz: crashing input $f ($(stat -c %s "$f") bytes); reproduce: $bin $f" >&2
      head -c 512 "$f" | od -A d -t x1z | head -32 >&2
    done
  else
    echo "fuzz: $name ok: $stats"
  fi
done <"$list_file"

if [ ${#targets[@]} -gt 0 ] && [ "$ran" = 0 ]; then
  echo "fuzz: no such target: ${targets[*]} (see --list)" >&2
  exit 2
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all $ran targets ran ${SECONDS_PER}s each without a crash"
