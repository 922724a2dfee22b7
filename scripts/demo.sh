#!/usr/bin/env bash
# Tugboat end-to-end demo on one machine: image-builder builds three arm64 releases of the sensor app in
# examples/sensor (a static C program on a busybox base made from a Debian .deb), pushes them to a real registry on
# loopback and signs them; then one simulated device (a state dir + runc + QEMU) installs v1, updates to v2
# (downloading only the changed layer) and refuses v3, whose health check fails, by rolling back to v2 on its own.
#
#   sudo scripts/demo.sh            # the whole story, about half a minute on an incremental build
#   KEEP=1 sudo scripts/demo.sh     # keep the temp dir (registry data, keys, releases, device state) afterwards
#   BUILD_DIR=out sudo scripts/demo.sh
#
# Exits 0 only when every step of the story happened as expected. Everything it starts (registry, containers) is
# stopped on exit, whatever the outcome.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
KEEP=${KEEP:-0}
PLATFORM=linux/arm64/v8
REPO_PATH=acme/sensor

AGENT="$BUILD_DIR/device-agent/device-agent"
TUG="$BUILD_DIR/iot-controller/cli/tug"
BUILDER="$BUILD_DIR/image-builder/image-builder"
SENSOR_DIR="$ROOT/examples/sensor"
DEBS_DIR=${DEBS_DIR:-/var/cache/tugboat/debs}

WORK=""          # temp dir: registry storage, keys, releases, device state
REGISTRY_PID=""
PORT=""
STATE=""         # the device's state dir
declare -A DIGEST=()      # version -> signed index digest
declare -A MANIFEST=()    # version -> linux/arm64/v8 manifest digest
declare -A LAYERS=()      # version -> "digest:size ..." of the arm64 manifest's layers, base first
declare -a SUMMARY=()     # lines of the closing summary
START_TIME=$SECONDS

# ---------------------------------------------------------------------------------------------------------------
# output helpers

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B=""; G=""; R=""; D=""; N=""; fi

heading() { printf '\n%s== %s ==%s\n' "$B" "$*" "$N"; }
say() { printf '%s\n' "$*"; }
ok() { printf '%s  ok%s  %s\n' "$G" "$N" "$*"; }
indent() { sed 's/^/    /'; }
die() {
  printf '\n%sdemo FAILED: %s%s\n' "$R" "$*" "$N" >&2
  exit 1
}
# Runs a command, showing it and its output indented; the output is also kept in $LAST_OUT.
LAST_OUT=""
pretty() {  # a command line as the reader would type it: short binary names, $W for the temp dir
  local a out=()
  for a in "$@"; do
    a=${a/#$BUILD_DIR\/device-agent\//}
    a=${a/#$BUILD_DIR\/iot-controller\/cli\//}
    a=${a/#$BUILD_DIR\/image-builder\//}
    a=${a//$ROOT\//}
    [ -z "$WORK" ] || a=${a//$WORK/\$W}
    [[ "$a" != *" "* ]] || a="'$a'"
    out+=("$a")
  done
  printf '%s' "${out[*]}"
}
show() {
  printf '%s  $ %s%s\n' "$D" "$(pretty "$@")" "$N"
  local rc=0
  LAST_OUT=$("$@" 2>&1) || rc=$?
  [ -z "$LAST_OUT" ] || printf '%s\n' "$LAST_OUT" | indent
  return $rc
}
human() { python3 -c 'import sys; n=int(sys.argv[1]); print(f"{n/1048576:.1f} MiB" if n >= 1048576 else f"{n/1024:.1f} KiB")' "$1"; }
json_get() {  # json_get FILE-or-- EXPR  (EXPR is Python over `j`)
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1]!="-" else sys.stdin); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# ---------------------------------------------------------------------------------------------------------------
# cleanup: containers, registry, temp dir

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$STATE" ] && [ -d "$STATE/runc" ]; then
    for id in $(runc --root "$STATE/runc" list -q 2>/dev/null); do
      timeout 30 runc --root "$STATE/runc" delete --force "$id" >/dev/null 2>&1
    done
  fi
  if [ -n "$REGISTRY_PID" ] && kill -0 "$REGISTRY_PID" 2>/dev/null; then
    kill "$REGISTRY_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$REGISTRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REGISTRY_PID" 2>/dev/null
    wait "$REGISTRY_PID" 2>/dev/null
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ]; then
      say "kept $WORK (KEEP=1)"
    else
      rm -rf "$WORK"
    fi
  fi
  exit $rc
}

# ---------------------------------------------------------------------------------------------------------------
# the steps

check_root() {
  # runc and binfmt registration need root.
  [ "$(id -u)" = 0 ] || die "run as root: sudo $0"
}

setup_host() {
  heading "1. Host setup (Debian packages, QEMU binfmt, busybox .debs)"
  "$ROOT/scripts/setup.sh" 2>&1 | indent
  [ "${PIPESTATUS[0]}" = 0 ] || die "scripts/setup.sh failed"
}

build() {
  heading "2. Build device-agent, tug and image-builder"
  local lock=()
  # Other builds may share this machine (and build dir): take turns.
  if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
  "${lock[@]}" cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/cmake.log" 2>&1 ||
    { tail -30 "$WORK/cmake.log" >&2; die "cmake configure failed (log above)"; }
  if ! "${lock[@]}" ninja -C "$BUILD_DIR" device-agent tug image-builder >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2
    die "build failed (log above)"
  fi
  grep -E '^\[[0-9]+/[0-9]+\]|no work to do' "$WORK/build.log" | tail -1 | indent
  for b in "$AGENT" "$TUG" "$BUILDER"; do [ -x "$b" ] || die "missing binary $b"; done
  ok "binaries in $BUILD_DIR"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_registry() {
  heading "3. Start an OCI registry on loopback"
  PORT=$(free_port)
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  local up=0
  for _ in $(seq 100); do  # up to 10 s
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" 2>/dev/null; then up=1; break; fi
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $up = 1 ] || { tail -20 "$WORK/registry.log" >&2; die "registry did not come up on 127.0.0.1:$PORT"; }
  ok "docker-registry (pid $REGISTRY_PID) serving http://127.0.0.1:$PORT"
}

make_keys() {
  heading "4. Create a signing key and a device trust root"
  show "$TUG" keygen --out "$WORK/release-key" || die "tug keygen failed"
  show "$TUG" trust init --key "$WORK/release-key.pub" --threshold 1 --expires 30d --out "$WORK/root.json" ||
    die "tug trust init failed"
  ok "release-key (secret), release-key.pub and root.json (what devices trust)"
}

build_base() {
  heading "5. Build a busybox base image from a Debian package (image-builder debootstrap-lite)"
  local deb
  deb=$(ls "$DEBS_DIR"/busybox-static_*_arm64.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "no busybox-static arm64 .deb in $DEBS_DIR (scripts/setup.sh fetches it)"
  show timeout 300 "$BUILDER" debootstrap-lite --platform "$PLATFORM" --deb "$deb" --oci-layout "$WORK/base" \
    --tag base:v1 || die "image-builder debootstrap-lite failed"
  ok "busybox base in the OCI layout \$W/base, tag base:v1 (one layer; never pushed: the builds read it locally)"
}

# release_field FILE EXPR: EXPR (Python over the decoded release payload `p`) of a signed release envelope
release_field() {
  python3 -c 'import base64,json,sys; p=json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"])); print(eval(sys.argv[2]))' "$1" "$2"
}

# layer_list VERSION: "digest:size ..." of the pushed arm64 manifest's layers, as the registry serves them
layer_list() {
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$PORT/v2/$REPO_PATH/manifests/${MANIFEST[$1]}" |
    python3 -c 'import json,sys; print(" ".join("%s:%s" % (l["digest"], l["size"]) for l in json.load(sys.stdin)["layers"]))'
}

build_sensor() {  # build_sensor VERSION WHAT
  local v=$1 what=$2 ctx="$WORK/sensor-v$1" rc=0 l d sz note
  say ""
  say "${B}sensor v$v${N}: $what"
  # The app: one static arm64 binary, cross-compiled on this machine (no QEMU needed for the compile).
  show "$SENSOR_DIR/build.sh" arm64 "$v" "$ctx" || die "examples/sensor/build.sh failed for v$v"
  # The image: base + that binary; pushed, and signed as release v$v in the same command.
  printf '%s  $ %s%s\n' "$D" "$(pretty "$BUILDER" build -f "$SENSOR_DIR/Dockerfile" --platform "$PLATFORM" \
    --build-arg "BASE=$WORK/base:v1" --build-arg "VERSION=$v" --cache-dir "$WORK/build-cache" \
    --tag "127.0.0.1:$PORT/$REPO_PATH:v$v" --push --insecure-registry "127.0.0.1:$PORT" \
    --sign "$WORK/release-key" --release-version "$v" --release-name "sensor v$v" \
    --release-out "$WORK/release-v$v.json" "$ctx")" "$N"
  timeout 300 "$BUILDER" build -f "$SENSOR_DIR/Dockerfile" --platform "$PLATFORM" \
    --build-arg "BASE=$WORK/base:v1" --build-arg "VERSION=$v" --cache-dir "$WORK/build-cache" \
    --tag "127.0.0.1:$PORT/$REPO_PATH:v$v" --push --insecure-registry "127.0.0.1:$PORT" \
    --sign "$WORK/release-key" --release-version "$v" --release-name "sensor v$v" \
    --release-out "$WORK/release-v$v.json" "$ctx" >"$WORK/build-v$v.out" 2>"$WORK/build-v$v.log" || rc=$?
  # The step lines that tell the story (layers made, RUN output, the summary); the full log stays in $W.
  grep -E '^\[[0-9]+/[0-9]+\] (FROM|COPY|RUN)|^  (->|\|)|^built |^pushed|^signed|^wrote' "$WORK/build-v$v.log" |
    indent || true
  [ $rc = 0 ] || { tail -20 "$WORK/build-v$v.log" >&2; die "image-builder build failed for v$v (exit $rc)"; }
  DIGEST[$v]=$(release_field "$WORK/release-v$v.json" 'p["digest"]')
  MANIFEST[$v]=$(release_field "$WORK/release-v$v.json" 'p["platforms"]["'"$PLATFORM"'"]')
  [ "${DIGEST[$v]}" = "$(tr -d '\n' <"$WORK/build-v$v.out")" ] ||
    die "release v$v pins ${DIGEST[$v]}, but image-builder printed $(cat "$WORK/build-v$v.out")"
  "$TUG" release verify --root "$WORK/root.json" "$WORK/release-v$v.json" >/dev/null 2>&1 ||
    die "tug release verify rejected release v$v"
  LAYERS[$v]=$(layer_list "$v") || die "cannot read v$v's manifest back from the registry"
  for l in ${LAYERS[$v]}; do
    d=${l%:*} sz=${l##*:} note="new"
    [ "$v" = 1 ] || [[ " ${LAYERS[1]} " != *" $l "* ]] || note="same as in v1"
    say "    layer ${d:7:12}  $(human "$sz")  $note"
  done
  ok "sensor v$v pushed as $REPO_PATH:v$v (${DIGEST[$v]:0:19}...), release-v$v.json signed and verified"
}

build_images() {
  heading "6. Build, push and sign three arm64 releases of the sensor app (image-builder, examples/sensor)"
  say "Dockerfile: FROM the busybox base, COPY the static sensor binary, HEALTHCHECK test -e /tmp/ready."
  build_sensor 1 "reports temperature"
  build_sensor 2 "adds humidity (VERSION=2 turns on one line of sensor.c): only the app layer changes"
  build_sensor 3 "broken: starts, but never creates /tmp/ready, so its health check fails"
  local base1 base2
  base1=${LAYERS[1]%% *} base2=${LAYERS[2]%% *}
  [ "$base1" = "$base2" ] || die "v1 and v2 do not share their base layer ($base1 vs $base2)"
  [ "${LAYERS[1]}" != "${LAYERS[2]}" ] || die "v1 and v2 have the same layers"
  SUMMARY+=("image-builder built all three from examples/sensor (busybox base from a .deb + one static binary) and signed each as a release; v1 and v2 share the base layer byte for byte.")
}

agent() { "$AGENT" --state-dir "$STATE" --platform "$PLATFORM" --insecure-registry "127.0.0.1:$PORT" "$@"; }

init_device() {
  heading "7. Provision a device (state dir + trust root)"
  STATE="$WORK/device"
  show "$AGENT" --state-dir "$STATE" init --root "$WORK/root.json" || die "device-agent init failed"
}

blob_bytes() {  # total size of the device's blob store
  du -sb "$STATE/blobs/sha256" | cut -f1
}

# install VERSION -> sets INSTALL_RC, INSTALL_OUT, INSTALL_BYTES (bytes added to the blob store), INSTALL_SECS
install() {
  local v=$1 before t0=$SECONDS
  before=$(blob_bytes)
  printf '%s  $ %s%s\n' "$D" "$(pretty "$AGENT" --state-dir "$STATE" --platform "$PLATFORM" \
    --insecure-registry "127.0.0.1:$PORT" install --release "$WORK/release-v$v.json")" "$N"
  # Streamed as it happens (the agent logs each state transition), and kept for the checks below.
  set +e
  timeout 300 "$AGENT" --state-dir "$STATE" --platform "$PLATFORM" --insecure-registry "127.0.0.1:$PORT" \
    install --release "$WORK/release-v$v.json" 2>&1 | tee "$WORK/install-v$v.log" | indent
  INSTALL_RC=${PIPESTATUS[0]}
  set -e
  INSTALL_OUT=$(cat "$WORK/install-v$v.log")
  INSTALL_BYTES=$(( $(blob_bytes) - before ))
  INSTALL_SECS=$(( SECONDS - t0 ))
  say "  exit code $INSTALL_RC after ${INSTALL_SECS}s; $(human "$INSTALL_BYTES") downloaded into the blob store"
}

status_json() { "$AGENT" --state-dir "$STATE" status --json; }

show_device() {  # prints status, the running containers and the active app's log
  local slot id
  show "$AGENT" --state-dir "$STATE" status || die "device-agent status failed"
  show runc --root "$STATE/runc" list || true
  slot=$(status_json | json_get - 'j["active"]["slot"] if j["active"] else ""')
  if [ -n "$slot" ]; then
    say "  the app's output (slots/$slot/container.log):"
    indent <"$STATE/slots/$slot/container.log" | tail -5
    id=$(runc --root "$STATE/runc" list -q | grep -- "-$slot\$" | head -1 || true)
    if [ -n "$id" ]; then
      say "  the app's latest reading (runc exec $id cat /tmp/reading):"
      timeout 20 runc --root "$STATE/runc" exec "$id" cat /tmp/reading 2>&1 | indent || true
    fi
  fi
}

# expect_active VERSION: the active slot holds VERSION, committed and running
expect_active() {
  local want=$1 got
  got=$(status_json | json_get - \
    '"%s %s %s" % (j["active"]["version"], j["active"]["status"], j["active"]["running"]) if j["active"] else "none"')
  [ "$got" = "$want committed True" ] || die "expected v$want active, committed and running; status says: $got"
}

# expect_reading PATTERN: the active app's latest reading (/tmp/reading inside its container) matches PATTERN.
# Retried for a few seconds: a reading is written every second, and runc exec under QEMU can be slow.
expect_reading() {
  local want=$1 slot id reading=""
  slot=$(status_json | json_get - 'j["active"]["slot"] if j["active"] else ""')
  id=$(runc --root "$STATE/runc" list -q | grep -- "-$slot\$" | head -1 || true)
  [ -n "$id" ] || die "no container for the active slot '$slot'"
  for _ in $(seq 10); do
    reading=$(timeout 20 runc --root "$STATE/runc" exec "$id" cat /tmp/reading 2>/dev/null || true)
    grep -Eq -- "$want" <<<"$reading" && return 0
    sleep 1
  done
  die "the active app's reading does not match '$want': ${reading:-<none>}"
}

install_v1() {
  heading "8. Install v1 on the fresh device"
  install 1
  [ "$INSTALL_RC" = 0 ] || die "install of v1 failed (exit $INSTALL_RC)"
  show_device
  expect_active 1
  expect_reading '^sensor v1 .*temperature=[0-9.]+C$'
  V1_BYTES=$INSTALL_BYTES
  ok "v1 committed and running"
  SUMMARY+=("v1 installed on a fresh device: $(human "$V1_BYTES") downloaded (base + app layer), committed after its HEALTHCHECK passed (${INSTALL_SECS}s).")
}

install_v2() {
  heading "9. Update to v2 (only the changed layer is downloaded)"
  install 2
  [ "$INSTALL_RC" = 0 ] || die "install of v2 failed (exit $INSTALL_RC)"
  show_device
  expect_active 2
  expect_reading '^sensor v2 .*temperature=[0-9.]+C humidity=[0-9.]+%$'
  local base app
  base=$(python3 - "$STATE" "${MANIFEST[2]}" <<'EOF'
import json, sys
m = json.load(open(f"{sys.argv[1]}/blobs/sha256/{sys.argv[2].split(':')[1]}"))
print(m["layers"][0]["size"], sum(l["size"] for l in m["layers"][1:]))
EOF
)
  read -r base app <<<"$base"
  say "  image v2: base layer $(human "$base") (already on the device), app layer $(human "$app")"
  # The device fetched v2's index, manifest, config and app layer; never the base layer again.
  [ "$INSTALL_BYTES" -lt "$base" ] ||
    die "v2 downloaded $(human "$INSTALL_BYTES"), not less than the shared base layer ($(human "$base")): layers were not reused"
  ok "v2 committed and running; downloaded $(human "$INSTALL_BYTES") of a $(human $((base + app))) image"
  SUMMARY+=("v2 update: $(human "$INSTALL_BYTES") downloaded; the $(human "$base") base layer was reused from the blob store. v1 stays in the other slot as the rollback target.")
}

install_v3() {
  heading "10. Update to v3, whose health check fails: the device rolls back on its own"
  install 3
  [ "$INSTALL_RC" = 1 ] || die "install of v3 should exit 1 (rolled back), got exit $INSTALL_RC"
  grep -q "rolled back" <<<"$INSTALL_OUT" || die "install of v3 did not report a rollback"
  show_device
  expect_active 2
  local phase
  phase=$(status_json | json_get - 'j["job"]["phase"]')
  [ "$phase" = ROLLED_BACK ] || die "last job should be ROLLED_BACK, is $phase"
  expect_reading '^sensor v2 .*humidity='
  grep -q "sensor v2" "$STATE/slots/$(status_json | json_get - 'j["active"]["slot"]')/container.log" ||
    die "the active container's log does not show sensor v2"
  ok "v3 rolled back; v2 active and running again (its log shows it was stopped for v3 and started again)"
  SUMMARY+=("v3 update: unpacked into the idle slot (replacing v1) and started, failed its HEALTHCHECK 3 times, and the device switched back to v2 by itself (exit code 1, job ROLLED_BACK, ${INSTALL_SECS}s). No previous release is left: v1's slot now holds the failed v3.")
}

summary() {
  heading "Summary"
  say "Registry 127.0.0.1:$PORT, device state dir $STATE, platform $PLATFORM (arm64 under QEMU, containers in runc)."
  local line
  for line in "${SUMMARY[@]}"; do say "  - $line"; done
  say "  - Every release was signed by image-builder with the key from tug keygen, and checked on the device against its trust root before anything was downloaded."
  say ""
  printf '%sdemo passed in %ss%s\n' "$G" "$((SECONDS - START_TIME))" "$N"
}

main() {
  check_root
  trap cleanup EXIT INT TERM
  WORK=$(mktemp -d /tmp/tugboat-demo.XXXXXX)
  chmod 755 "$WORK"
  say "${B}Tugboat demo${N}: one arm64 device, three signed releases, an automatic rollback."
  say "Working dir W=$WORK (removed at the end unless KEEP=1)"
  setup_host
  build
  start_registry
  make_keys
  build_base
  build_images
  init_device
  install_v1
  install_v2
  install_v3
  summary
}

main "$@"
