#!/usr/bin/env bash
# ctest examples_sensor_update_test: examples/sensor built by image-builder and run through a device's update cycle.
#
#   tests/examples/sensor_update_test.sh IMAGE_BUILDER DEVICE_AGENT TUG
#
# 1. image-builder debootstrap-lite makes the busybox arm64 base (an OCI layout) from the cached Debian .deb;
# 2. examples/sensor/build.sh cross-compiles v1, v2 and v3 statically for arm64, and image-builder builds each into
#    one OCI layout and pushes it to a docker-registry this script starts on a free loopback port, signing a release;
# 3. the OCI layout is checked: v1 and v2 share the base layer byte for byte and differ in the app layer only;
# 4. device-agent (--platform linux/arm64/v8, containers under runc + QEMU) installs v1 (its reading has a
#    temperature), v2 (humidity too; it fetches fewer bytes than the base layer) and v3 (health check fails: exit 1,
#    ROLLED_BACK, v2 running again).
# Every wait is bounded. On exit, whatever the outcome, the containers are deleted, the registry is stopped (by its
# pid) and the temp dir removed (KEEP=1 keeps it). Exit 0 only if every check passed.
set -euo pipefail

[ $# = 3 ] || { echo "usage: $0 IMAGE_BUILDER DEVICE_AGENT TUG" >&2; exit 2; }
BUILDER=$1 AGENT=$2 TUG=$3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SENSOR_DIR="$ROOT/examples/sensor"
DEBS_DIR=${DEBS_DIR:-/var/cache/tugboat/debs}
PLATFORM=linux/arm64/v8
KEEP=${KEEP:-0}

T="" REGISTRY_PID="" STATE="" PORT=""
START=$SECONDS

log() { printf '[%3ss] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$STATE" ] && [ -d "$STATE/runc" ]; then
    for id in $(runc --root "$STATE/runc" list -q 2>/dev/null); do
      timeout 30 runc --root "$STATE/runc" delete --force "$id" >/dev/null 2>&1
    done
  fi
  if [ -n "$REGISTRY_PID" ]; then
    kill "$REGISTRY_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$REGISTRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REGISTRY_PID" 2>/dev/null
    wait "$REGISTRY_PID" 2>/dev/null
  fi
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "$KEEP" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
  fi
  [ $rc = 0 ] && log "PASS" || log "FAILED (exit $rc)"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- prerequisites (scripts/setup.sh provides them) ------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "needs root (runc, image-builder's RUN steps)"
for b in "$BUILDER" "$AGENT" "$TUG"; do [ -x "$b" ] || fail "missing binary $b (build it first)"; done
for c in runc docker-registry curl python3 aarch64-linux-gnu-gcc; do
  command -v "$c" >/dev/null || fail "$c not found (run scripts/setup.sh)"
done
grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || fail "QEMU binfmt for aarch64 not registered (cross/register-binfmt.sh)"
DEB=$(ls "$DEBS_DIR"/busybox-static_*_arm64.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || fail "no busybox-static arm64 .deb in $DEBS_DIR (run scripts/setup.sh)"

T=$(mktemp -d /tmp/tug-examples-test.XXXXXX)
chmod 755 "$T"
STATE="$T/device"
log "temp dir $T"

# --- registry on a free loopback port --------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
REG="127.0.0.1:$PORT"
cat >"$T/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: $REG
YML
docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
REGISTRY_PID=$!
up=0
for _ in $(seq 100); do  # up to 10 s
  if curl -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null; then up=1; break; fi
  kill -0 "$REGISTRY_PID" 2>/dev/null || break
  sleep 0.1
done
[ $up = 1 ] || { cat "$T/registry.log" >&2; fail "registry did not come up on $REG"; }
log "docker-registry pid $REGISTRY_PID on $REG"

# --- keys, base, three builds ----------------------------------------------------------------------------------
timeout 60 "$TUG" keygen --out "$T/key" >/dev/null || fail "tug keygen"
timeout 60 "$TUG" trust init --key "$T/key.pub" --threshold 1 --expires 1d --out "$T/root.json" >/dev/null ||
  fail "tug trust init"

timeout 300 "$BUILDER" debootstrap-lite --platform "$PLATFORM" --deb "$DEB" --oci-layout "$T/base" --tag base:v1 \
  >"$T/base.out" 2>"$T/base.log" || { cat "$T/base.log" >&2; fail "image-builder debootstrap-lite"; }

for v in 1 2 3; do
  timeout 120 "$SENSOR_DIR/build.sh" arm64 "$v" "$T/ctx-v$v" >/dev/null || fail "examples/sensor/build.sh arm64 $v"
  t0=$SECONDS
  timeout 300 "$BUILDER" build -f "$SENSOR_DIR/Dockerfile" --platform "$PLATFORM" \
    --build-arg "BASE=$T/base:v1" --build-arg "VERSION=$v" --cache-dir "$T/cache" \
    --oci-layout "$T/oci" --tag "$REG/acme/sensor:v$v" --push --insecure-registry "$REG" \
    --sign "$T/key" --release-version "$v" --release-name "sensor v$v" --release-out "$T/release-v$v.json" \
    "$T/ctx-v$v" >"$T/build-v$v.out" 2>"$T/build-v$v.log" ||
    { cat "$T/build-v$v.log" >&2; fail "image-builder build v$v"; }
  timeout 60 "$TUG" release verify --root "$T/root.json" "$T/release-v$v.json" >/dev/null ||
    fail "tug release verify rejects release v$v"
  log "built, pushed and signed sensor v$v in $((SECONDS - t0))s: $(tail -1 "$T/build-v$v.out")"
done

# --- the OCI layout: per-version manifests, shared base layer, one changed app layer ----------------------------
# Prints "BASE_DIGEST BASE_SIZE" then one line per version: "INDEX_DIGEST MANIFEST_DIGEST L0:S0 L1:S1 ...".
python3 - "$T" >"$T/layout.txt" <<'PY' || fail "OCI layout check"
import base64, json, sys
t = sys.argv[1]
def blob(layout, digest):
    return json.load(open(f"{layout}/blobs/sha256/{digest.split(':')[1]}"))
def ref(layout, name):
    for m in json.load(open(f"{layout}/index.json"))["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name:
            return m["digest"]
    sys.exit(f"{layout} has no ref {name}")
# The base layout's index entry (tag v1) is an index with one arm64 manifest.
bidx = blob(f"{t}/base", ref(f"{t}/base", "v1"))
bman = blob(f"{t}/base", bidx["manifests"][0]["digest"])
assert len(bman["layers"]) == 1, bman
print(bman["layers"][0]["digest"], bman["layers"][0]["size"])
for v in (1, 2, 3):
    idx_digest = ref(f"{t}/oci", f"v{v}")
    man_digest = ref(f"{t}/oci", f"v{v}-arm64v8")
    idx = blob(f"{t}/oci", idx_digest)
    assert [m["digest"] for m in idx["manifests"]] == [man_digest], idx
    rel = json.loads(base64.b64decode(json.load(open(f"{t}/release-v{v}.json"))["payload"]))
    assert rel["digest"] == idx_digest, (rel, idx_digest)
    assert rel["platforms"] == {"linux/arm64/v8": man_digest}, rel
    man = blob(f"{t}/oci", man_digest)
    cfg = blob(f"{t}/oci", man["config"]["digest"])
    assert cfg["architecture"] == "arm64", cfg
    assert cfg["config"]["Entrypoint"] == ["/usr/bin/sensor"], cfg["config"]
    assert cfg["config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -e /tmp/ready"], cfg["config"]
    print(idx_digest, man_digest, " ".join(f"{l['digest']}:{l['size']}" for l in man["layers"]))
PY
read -r BASE_LAYER BASE_SIZE < <(sed -n 1p "$T/layout.txt")
declare -A LAYERS=()
for v in 1 2 3; do LAYERS[$v]=$(sed -n "$((v + 1))p" "$T/layout.txt" | cut -d' ' -f3-); done
for v in 1 2 3; do
  set -- ${LAYERS[$v]}
  [ $# = 2 ] || fail "v$v has $# layers, expected 2 (base + app): ${LAYERS[$v]}"
  [ "${1%:*}" = "$BASE_LAYER" ] || fail "v$v's first layer ${1%:*} is not the base layer $BASE_LAYER"
done
APP1=${LAYERS[1]#* } APP2=${LAYERS[2]#* }
[ "$APP1" != "$APP2" ] || fail "v1 and v2 have the same app layer"
APP2_SIZE=${APP2##*:}
[ "$APP2_SIZE" -lt "$BASE_SIZE" ] || fail "v2's app layer ($APP2_SIZE B) is not smaller than the base ($BASE_SIZE B)"
log "OCI layout: base layer ${BASE_LAYER:7:12} ($BASE_SIZE B) shared by v1..v3; app layers differ (v2: $APP2_SIZE B)"
# The registry serves what the layout holds.
curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "http://$REG/v2/acme/sensor/manifests/v2" || fail "registry has no acme/sensor:v2"

# --- the device ------------------------------------------------------------------------------------------------
agent() { timeout 300 "$AGENT" --state-dir "$STATE" --platform "$PLATFORM" --insecure-registry "$REG" "$@"; }
status_field() {  # Python expression over the status JSON `j`
  timeout 30 "$AGENT" --state-dir "$STATE" status --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
blob_bytes() { du -sb "$STATE/blobs/sha256" | cut -f1; }
# expect_reading REGEX: the active container's /tmp/reading matches, within 10 tries a second apart.
expect_reading() {
  local slot id reading=""
  slot=$(status_field 'j["active"]["slot"]')
  id=$(runc --root "$STATE/runc" list -q | grep -- "-$slot\$" | head -1 || true)
  [ -n "$id" ] || fail "no container for active slot $slot"
  for _ in $(seq 10); do
    reading=$(timeout 20 runc --root "$STATE/runc" exec "$id" cat /tmp/reading 2>/dev/null || true)
    if grep -Eq -- "$1" <<<"$reading"; then log "reading: $reading"; return 0; fi
    sleep 1
  done
  fail "reading '${reading:-<none>}' does not match '$1'"
}
# install V -> INSTALL_RC, FETCHED (bytes added to the blob store)
install() {
  local before t0=$SECONDS
  before=$(blob_bytes)
  set +e
  agent install --release "$T/release-v$1.json" >"$T/install-v$1.log" 2>&1
  INSTALL_RC=$?
  set -e
  FETCHED=$(($(blob_bytes) - before))
  log "install v$1: exit $INSTALL_RC in $((SECONDS - t0))s, fetched $FETCHED B"
}

timeout 60 "$AGENT" --state-dir "$STATE" init --root "$T/root.json" >/dev/null 2>&1 || fail "device-agent init"

install 1
[ "$INSTALL_RC" = 0 ] || { cat "$T/install-v1.log" >&2; fail "install v1 exited $INSTALL_RC"; }
[ "$(status_field '(j["active"]["version"], j["active"]["status"], j["active"]["running"])')" = "(1, 'committed', True)" ] ||
  fail "v1 not active/committed/running: $(status_field 'j')"
expect_reading '^sensor v1 reading [0-9]+: temperature=[0-9]+\.[0-9]C$'
[ "$FETCHED" -ge "$BASE_SIZE" ] || fail "v1 fetched $FETCHED B, less than its base layer"

install 2
[ "$INSTALL_RC" = 0 ] || { cat "$T/install-v2.log" >&2; fail "install v2 exited $INSTALL_RC"; }
[ "$(status_field '(j["active"]["version"], j["active"]["status"], j["active"]["running"])')" = "(2, 'committed', True)" ] ||
  fail "v2 not active/committed/running: $(status_field 'j')"
expect_reading '^sensor v2 reading [0-9]+: temperature=[0-9]+\.[0-9]C humidity=[0-9]+\.[0-9]%$'
[ "$FETCHED" -lt "$BASE_SIZE" ] || fail "v2 fetched $FETCHED B, not less than the base layer ($BASE_SIZE B)"
[ "$FETCHED" -ge "$APP2_SIZE" ] || fail "v2 fetched $FETCHED B, less than its app layer ($APP2_SIZE B)"

install 3
[ "$INSTALL_RC" = 1 ] || { cat "$T/install-v3.log" >&2; fail "install v3 should exit 1 (rolled back), exited $INSTALL_RC"; }
grep -q "rolled back" "$T/install-v3.log" || fail "install v3 did not report a rollback"
[ "$(status_field 'j["job"]["phase"]')" = ROLLED_BACK ] || fail "last job is not ROLLED_BACK: $(status_field 'j')"
[ "$(status_field '(j["active"]["version"], j["active"]["status"], j["active"]["running"])')" = "(2, 'committed', True)" ] ||
  fail "v2 not active/committed/running after the rollback: $(status_field 'j')"
[ "$FETCHED" -lt "$BASE_SIZE" ] || fail "v3 fetched $FETCHED B, not less than the base layer"
expect_reading '^sensor v2 reading [0-9]+: .*humidity='
grep -q "sensor v3 starting" "$STATE/slots/$(status_field '"a" if j["active"]["slot"] == "b" else "b"')/container.log" ||
  fail "v3 never started"
