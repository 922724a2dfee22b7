#!/usr/bin/env bash
# Tugboat fleet demo on one machine. image-builder builds three arm64 releases of the sensor app in examples/sensor
# (a static C program on a busybox base made from a Debian .deb), pushes them to a real registry on loopback and
# signs them. Then the whole fleet stack runs: Mosquitto with TLS and the fleet ACL (tug-broker-config), the
# iot-controller, and five device-agent daemons (`device-agent --config X run`), each with its own state dir,
# running the arm64 images in runc under QEMU. With tug the operator rolls v1 out everywhere, v2 in phases (one
# canary, then 50%, then all), and a broken v3: its health check fails on the canary, which rolls itself back to v2;
# the rollout aborts and no other device is touched.
#
#   sudo scripts/demo.sh            # the whole story, about 70 s on an incremental build
#   KEEP=1 sudo scripts/demo.sh     # keep the temp dir (registry, broker, controller db, device state, logs)
#   BUILD_DIR=out sudo scripts/demo.sh
#
# Exits 0 only when every step of the story happened as expected. Everything it starts (registry, broker,
# controller, agents, containers) is stopped on exit, whatever the outcome.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
KEEP=${KEEP:-0}
PLATFORM=linux/arm64/v8
REPO_PATH=acme/sensor
NDEV=5

AGENT="$BUILD_DIR/device-agent/device-agent"
TUG="$BUILD_DIR/iot-controller/cli/tug"
BUILDER="$BUILD_DIR/image-builder/image-builder"
CONTROLLER="$BUILD_DIR/iot-controller/controller/iot-controller"
BROKER_CONFIG="$BUILD_DIR/iot-controller/broker/tug-broker-config"
SENSOR_DIR="$ROOT/examples/sensor"
DEBS_DIR=${DEBS_DIR:-/var/cache/tugboat/debs}

WORK=""          # temp dir: registry storage, keys, releases, broker, controller db, device state dirs, logs
REGISTRY_PID=""
MOSQUITTO_PID=""
CONTROLLER_PID=""
declare -A AGENT_PID=()   # device id -> daemon pid
PORT=""          # registry
MQTT_PORT=""     # Mosquitto's TLS listener
API_PORT=""      # controller REST API
TOKEN=""
DEVICES=()       # dev-1 .. dev-5
declare -A DIGEST=()      # version -> signed index digest
declare -A MANIFEST=()    # version -> linux/arm64/v8 manifest digest
declare -A LAYERS=()      # version -> "digest:size ..." of the arm64 manifest's layers, base first
declare -a SUMMARY=()     # lines of the closing summary
START_TIME=$SECONDS

# ---------------------------------------------------------------------------------------------------------------
# output helpers

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B=""; G=""; R=""; D=""; N=""; fi

heading() { printf '\n%s== %s ==%s  %s(%ss)%s\n' "$B" "$*" "$N" "$D" "$((SECONDS - START_TIME))" "$N"; }
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
    a=${a/#$BUILD_DIR\/iot-controller\/controller\//}
    a=${a/#$BUILD_DIR\/iot-controller\/broker\//}
    a=${a/#$BUILD_DIR\/image-builder\//}
    a=${a//$ROOT\//}
    [ -z "$WORK" ] || a=${a//$WORK/\$W}
    [[ "$a" != *" "* ]] || a="'$a'"
    out+=("$a")
  done
  printf '%s' "${out[*]}"
}
cmdline() { printf '%s  $ %s%s\n' "$D" "$(pretty "$@")" "$N"; }
show() {
  cmdline "$@"
  local rc=0
  LAST_OUT=$("$@" 2>&1) || rc=$?
  [ -z "$LAST_OUT" ] || printf '%s\n' "$LAST_OUT" | indent
  return $rc
}
human() { python3 -c 'import sys; n=int(sys.argv[1]); print(f"{n/1048576:.1f} MiB" if n >= 1048576 else f"{n/1024:.1f} KiB")' "$1"; }
json_get() {  # json_get FILE-or-- EXPR  (EXPR is Python over `j`)
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1]!="-" else sys.stdin); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}
# tug against the demo's controller (TUG_CONTROLLER and TUG_TOKEN are exported once it runs)
tug() { timeout 60 "$TUG" "$@"; }
tug_json() { tug --json "$@"; }

# ---------------------------------------------------------------------------------------------------------------
# cleanup: agents, controller, broker, registry, containers, temp dir

stop_pid() {  # stop_pid PID: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local rc=$? d id state
  trap - EXIT INT TERM
  set +e
  [ "$rc" = 0 ] || printf '%scleaning up: agents, containers, controller, broker, registry%s\n' "$D" "$N" >&2
  # The daemons first (so nothing restarts an app), then their containers, then the servers.
  for d in "${!AGENT_PID[@]}"; do kill "${AGENT_PID[$d]}" 2>/dev/null; done
  for d in "${!AGENT_PID[@]}"; do stop_pid "${AGENT_PID[$d]}"; done
  if [ -n "$WORK" ] && [ -d "$WORK/devices" ]; then
    for state in "$WORK"/devices/*/state; do
      [ -d "$state/runc" ] || continue
      for id in $(timeout 30 runc --root "$state/runc" list -q 2>/dev/null); do
        timeout 30 runc --root "$state/runc" delete --force "$id" >/dev/null 2>&1
      done
    done
  fi
  stop_pid "$CONTROLLER_PID"
  stop_pid "$MOSQUITTO_PID"
  stop_pid "$REGISTRY_PID"
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
  heading "2. Build device-agent, tug, image-builder, iot-controller and tug-broker-config"
  local lock=()
  # Other builds may share this machine (and build dir): take turns.
  if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
  "${lock[@]}" cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/cmake.log" 2>&1 ||
    { tail -30 "$WORK/cmake.log" >&2; die "cmake configure failed (log above)"; }
  if ! "${lock[@]}" ninja -C "$BUILD_DIR" iot-controller tug-broker-config tug device-agent image-builder >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2
    die "build failed (log above)"
  fi
  grep -E '^\[[0-9]+/[0-9]+\]|no work to do' "$WORK/build.log" | tail -1 | indent
  for b in "$AGENT" "$TUG" "$BUILDER" "$CONTROLLER" "$BROKER_CONFIG"; do [ -x "$b" ] || die "missing binary $b"; done
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

# wait_port PORT PID SECONDS: until 127.0.0.1:PORT accepts connections (false if PID exits or time runs out)
wait_port() {
  local port=$1 pid=$2 i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_broker() {
  heading "7. Provision and start the MQTT broker (Mosquitto, TLS with per-device certificates, fleet ACL)"
  local i
  for i in $(seq "$NDEV"); do DEVICES+=("dev-$i"); done
  MQTT_PORT=$(free_port)
  local args=(--out "$WORK/broker" --controller controller --tls-port "$MQTT_PORT" --user root --days 2)
  for i in "${DEVICES[@]}"; do args+=(--device "$i"); done
  show "$BROKER_CONFIG" "${args[@]}" || die "tug-broker-config failed"
  say "  the ACL (each device may only read its own desired/cmd topics and write below its own prefix):"
  grep -Ev '^\s*(#|$)' "$WORK/broker/acl" | indent | indent
  cmdline mosquitto -c "$WORK/broker/mosquitto.conf"
  /usr/sbin/mosquitto -c "$WORK/broker/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  MOSQUITTO_PID=$!
  wait_port "$MQTT_PORT" "$MOSQUITTO_PID" 15 ||
    { tail -20 "$WORK/mosquitto.log" >&2; die "mosquitto did not accept on 127.0.0.1:$MQTT_PORT"; }
  ok "mosquitto (pid $MOSQUITTO_PID) on 127.0.0.1:$MQTT_PORT (TLS only, client certificate required)"
}

start_controller() {
  heading "8. Start the fleet controller (iot-controller: REST API, rollout engine, MQTT bridge)"
  API_PORT=$(free_port)
  TOKEN=demo-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local args=(--db "$WORK/controller.db" --listen "127.0.0.1:$API_PORT" --token "$TOKEN" --root "$WORK/root.json"
    --mqtt-host 127.0.0.1 --mqtt-port "$MQTT_PORT" --mqtt-ca "$WORK/broker/ca/ca.crt"
    --mqtt-cert "$WORK/broker/clients/controller.crt" --mqtt-key "$WORK/broker/clients/controller.key" --tick 300ms)
  cmdline "$CONTROLLER" "${args[@]}"
  "$CONTROLLER" "${args[@]}" >"$WORK/controller.log" 2>&1 &
  CONTROLLER_PID=$!
  local up=0
  for _ in $(seq 150); do  # up to 15 s
    if curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/healthz" 2>/dev/null; then up=1; break; fi
    kill -0 "$CONTROLLER_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $up = 1 ] || { tail -20 "$WORK/controller.log" >&2; die "iot-controller did not come up on 127.0.0.1:$API_PORT"; }
  export TUG_CONTROLLER="http://127.0.0.1:$API_PORT" TUG_TOKEN="$TOKEN"
  ok "iot-controller (pid $CONTROLLER_PID) serving $TUG_CONTROLLER; trusts releases signed for root.json"
  say "  tug talks to it from here on:"
  say "${D}  \$ export TUG_CONTROLLER=$TUG_CONTROLLER TUG_TOKEN=$TOKEN${N}"
}

dev_state() { printf '%s' "$WORK/devices/$1/state"; }
dev_status() { "$AGENT" --state-dir "$(dev_state "$1")" status --json; }

start_devices() {
  heading "9. Start $NDEV devices: a state dir each, then \`device-agent --config DEV.json run\`"
  local d state cfg
  mkdir -p "$WORK/devices"
  for d in "${DEVICES[@]}"; do
    state=$(dev_state "$d") cfg="$WORK/devices/$d.json"
    if [ "$d" = dev-1 ]; then
      show "$AGENT" --state-dir "$state" init --root "$WORK/root.json" || die "device-agent init failed for $d"
    else
      "$AGENT" --state-dir "$state" init --root "$WORK/root.json" >/dev/null 2>&1 ||
        die "device-agent init failed for $d"
    fi
    python3 - "$cfg" "$d" "$state" "$PLATFORM" "$MQTT_PORT" "$WORK/broker" "127.0.0.1:$PORT" <<'PY'
import json, sys
cfg, dev, state, platform, port, broker, registry = sys.argv[1:]
json.dump({"device_id": dev, "state_dir": state, "platform": platform, "labels": {"fleet": "demo"},
           "mqtt": {"host": "127.0.0.1", "port": int(port), "ca": f"{broker}/ca/ca.crt",
                    "cert": f"{broker}/clients/{dev}.crt", "key": f"{broker}/clients/{dev}.key", "keepalive": 5},
           "registry": {"insecure": [registry]}, "commit_window": 1}, open(cfg, "w"), indent=1)
PY
  done
  say "  (the same for dev-2 .. dev-$NDEV) and the config of dev-1:"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("{" + ",\n ".join("%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in j.items()) + "}")' \
    "$WORK/devices/dev-1.json" | sed "s|$WORK|\$W|g" | indent
  for d in "${DEVICES[@]}"; do
    "$AGENT" --config "$WORK/devices/$d.json" run >"$WORK/devices/$d.log" 2>&1 &
    AGENT_PID[$d]=$!
  done
  cmdline "$AGENT" --config "$WORK/devices/dev-N.json" run
  say "  pids: $(for d in "${DEVICES[@]}"; do printf '%s=%s ' "$d" "${AGENT_PID[$d]}"; done)"
  # Each daemon registers itself with the controller through its retained presence and state on first connect.
  local n=0
  for _ in $(seq 120); do  # up to 60 s
    n=$(tug_json devices list --online 2>/dev/null | json_get - 'len(j["devices"])' 2>/dev/null || echo 0)
    [ "$n" = "$NDEV" ] && break
    for d in "${DEVICES[@]}"; do
      kill -0 "${AGENT_PID[$d]}" 2>/dev/null || { tail -20 "$WORK/devices/$d.log" >&2; die "$d's daemon exited"; }
    done
    sleep 0.5
  done
  [ "$n" = "$NDEV" ] || die "only $n of $NDEV devices registered online with the controller"
  show tug devices list || die "tug devices list failed"
  ok "all $NDEV devices online, registered by the controller from MQTT alone; no release installed yet"
}

add_releases() {
  heading "10. Register the three signed releases with the controller"
  local v
  for v in 1 2 3; do
    show tug releases add "$WORK/release-v$v.json" || die "tug releases add failed for v$v"
  done
  show tug releases list || die "tug releases list failed"
  ok "the controller verified each release against root.json before accepting it"
}

ROLLOUT=""
create_rollout() {  # create_rollout VERSION PHASE... -> sets ROLLOUT
  local v=$1 args
  shift
  args=(rollout create --release "$v" --label fleet=demo)
  for p in "$@"; do args+=(--phase "$p"); done
  args+=(--abort-failure-percent 1 --abort-min-devices 1 --device-timeout 5m)
  cmdline tug "${args[@]}"
  ROLLOUT=$(tug "${args[@]}") || die "tug rollout create failed"
  [[ "$ROLLOUT" =~ ^r-[0-9A-Za-z-]+$ ]] || die "tug rollout create printed '$ROLLOUT', not a rollout id"
  say "$ROLLOUT" | indent
}

WATCH_RC=0
watch_rollout() {  # watch_rollout ID -> WATCH_RC; the progress blocks as they change
  cmdline tug rollout watch "$1" --interval 1s --timeout 5m
  set +e
  timeout 330 "$TUG" rollout watch "$1" --interval 1s --timeout 5m 2>&1 | tee "$WORK/watch-$1.log" | indent
  WATCH_RC=${PIPESTATUS[0]}
  set -e
  say "  exit code $WATCH_RC"
}

# fleet_table: each device's own view (device-agent status in its state dir) and its app's latest reading
fleet_table() {
  local d st slot id reading
  say "  on the devices themselves (device-agent status --json, and /tmp/reading inside the running container):"
  printf '    %-6s %-8s %-10s %-8s %-28s %s\n' DEVICE ACTIVE STATUS RUNNING "LAST JOB" READING
  for d in "${DEVICES[@]}"; do
    st=$(dev_status "$d") || die "device-agent status failed for $d"
    slot=$(json_get - 'j["active"]["slot"] if j["active"] else ""' <<<"$st")
    id=""
    [ -z "$slot" ] || id=$(runc --root "$(dev_state "$d")/runc" list -q 2>/dev/null | grep -- "-$slot\$" | head -1 || true)
    reading=""
    [ -z "$id" ] || reading=$(timeout 20 runc --root "$(dev_state "$d")/runc" exec "$id" cat /tmp/reading 2>/dev/null || true)
    printf '    %-6s %-8s %-10s %-8s %-28s %s\n' "$d" \
      "$(json_get - '("v%s" % j["active"]["version"]) if j["active"] else "-"' <<<"$st")" \
      "$(json_get - 'j["active"]["status"] if j["active"] else "-"' <<<"$st")" \
      "$(json_get - '("yes" if j["active"]["running"] else "NO") if j["active"] else "-"' <<<"$st")" \
      "$(json_get - '"%s %s" % (j["job"]["id"] or "-", j["job"]["phase"])' <<<"$st")" "${reading:--}"
  done
}

# expect_fleet_on VERSION: controller and every device agree: VERSION active, committed, running, app answering
expect_fleet_on() {
  local v=$1 d got
  for d in "${DEVICES[@]}"; do
    got=$(tug_json devices get "$d" | json_get - '(j.get("active") or {}).get("version")') ||
      die "tug devices get $d failed"
    [ "$got" = "$v" ] || die "the controller reports $d on version '$got', expected $v"
    got=$(dev_status "$d" | json_get - \
      '"%s %s %s" % (j["active"]["version"], j["active"]["status"], j["active"]["running"]) if j["active"] else "none"')
    [ "$got" = "$v committed True" ] || die "$d: expected v$v active, committed and running; its status says: $got"
  done
}

# expect_readings PATTERN: every device's app writes a reading matching PATTERN (retried: runc exec under QEMU)
expect_readings() {
  local want=$1 d slot id reading
  for d in "${DEVICES[@]}"; do
    slot=$(dev_status "$d" | json_get - 'j["active"]["slot"]')
    id=$(runc --root "$(dev_state "$d")/runc" list -q | grep -- "-$slot\$" | head -1 || true)
    [ -n "$id" ] || die "$d: no container for its active slot '$slot'"
    reading=""
    for _ in $(seq 10); do
      reading=$(timeout 20 runc --root "$(dev_state "$d")/runc" exec "$id" cat /tmp/reading 2>/dev/null || true)
      grep -Eq -- "$want" <<<"$reading" && continue 2
      sleep 1
    done
    die "$d: the app's reading does not match '$want': ${reading:-<none>}"
  done
}

rollout_v1() {
  heading "11. Roll out v1 to the whole fleet in one phase"
  local t0=$SECONDS
  create_rollout 1 100%
  R1=$ROLLOUT
  watch_rollout "$R1"
  [ "$WATCH_RC" = 0 ] || die "rollout $R1 of v1 did not succeed (watch exit $WATCH_RC)"
  expect_fleet_on 1
  show tug devices list || die "tug devices list failed"
  ok "v1 installed, health-checked and committed on all $NDEV devices ($((SECONDS - t0))s)"
  SUMMARY+=("rollout $R1: v1 to all $NDEV devices in one phase ($((SECONDS - t0))s).")
}

rollout_v2() {
  heading "12. Roll out v2 in phases: 1 canary, then 50%, then 100%"
  local t0=$SECONDS phases states
  create_rollout 2 1 50% 100%
  R2=$ROLLOUT
  watch_rollout "$R2"
  [ "$WATCH_RC" = 0 ] || die "rollout $R2 of v2 did not succeed (watch exit $WATCH_RC)"
  tug_json rollout get "$R2" >"$WORK/rollout-$R2.json" || die "tug rollout get $R2 failed"
  [ "$(json_get "$WORK/rollout-$R2.json" 'j["state"]')" = succeeded ] || die "rollout $R2 is not 'succeeded'"
  phases=$(json_get "$WORK/rollout-$R2.json" 'len(j["phases"])')
  [ "$phases" = 3 ] || die "rollout $R2 has $phases phases, expected 3"
  states=$(json_get "$WORK/rollout-$R2.json" '" ".join(sorted(set(d["state"] for d in j["devices"])))')
  [ "$states" = succeeded ] || die "rollout $R2 device states: $states (expected all succeeded)"
  # Which device went in which phase (1 canary, then up to 50% = 3, then the rest).
  local per_phase
  per_phase=$(json_get "$WORK/rollout-$R2.json" \
    '"; ".join("phase %d: %s" % (p + 1, " ".join(sorted(d["id"] for d in j["devices"] if d["phase"] == p))) for p in sorted(set(d["phase"] for d in j["devices"])))')
  say "  which device went when: $per_phase"
  # Each phase updated exactly its share: 1, then up to 50% (cumulative target 3), then the rest.
  local sizes targets
  sizes=$(json_get "$WORK/rollout-$R2.json" '" ".join(str(sum(1 for d in j["devices"] if d["phase"] == p["index"])) for p in j["phases"])')
  targets=$(json_get "$WORK/rollout-$R2.json" '" ".join(str(p["target"] - (j["phases"][i-1]["target"] if i else 0)) for i, p in enumerate(j["phases"]))')
  [ "$sizes" = "$targets" ] && [ "${targets%% *}" = 1 ] ||
    die "rollout $R2 phase sizes are '$sizes', expected '$targets' starting with a single canary"
  show tug devices list || die "tug devices list failed"
  expect_fleet_on 2
  expect_readings '^sensor v2 .*temperature=[0-9.]+C humidity=[0-9.]+%$'
  fleet_table
  ok "v2 on all $NDEV devices, committed after its health check, every app reporting humidity ($((SECONDS - t0))s)"
  SUMMARY+=("rollout $R2: v2 in three phases (canary, 50%, 100%) - $per_phase; all $NDEV devices on v2, healthy ($((SECONDS - t0))s).")
}

rollout_v3() {
  heading "13. Roll out the broken v3 the same way: the canary fails, the rollout aborts"
  local t0=$SECONDS canary touched failed cstate reason d jobid
  create_rollout 3 1 50% 100%
  R3=$ROLLOUT
  watch_rollout "$R3"
  [ "$WATCH_RC" = 1 ] || die "tug rollout watch $R3 should exit 1 (aborted), got exit $WATCH_RC"
  say ""
  say "  the fleet report:"
  show tug rollout get "$R3" || die "tug rollout get $R3 failed"
  tug_json rollout get "$R3" >"$WORK/rollout-$R3.json" || die "tug rollout get $R3 failed"
  [ "$(json_get "$WORK/rollout-$R3.json" 'j["state"]')" = aborted ] || die "rollout $R3 is not 'aborted'"
  touched=$(json_get "$WORK/rollout-$R3.json" '" ".join(d["id"] for d in j["devices"] if d["state"] != "pending")')
  [ "$(json_get "$WORK/rollout-$R3.json" '" ".join(j["touched"])')" = "$touched" ] ||
    die "rollout $R3's touched list ($(json_get "$WORK/rollout-$R3.json" '" ".join(j["touched"])')) is not '$touched'"
  [ "$(wc -w <<<"$touched")" = 1 ] || die "rollout $R3 touched '$touched'; expected exactly one device (the canary)"
  canary=$touched
  cstate=$(json_get "$WORK/rollout-$R3.json" '[d["state"] for d in j["devices"] if d["id"] == "'"$canary"'"][0]')
  [[ "$cstate" = failed || "$cstate" = rolled_back ]] || die "the canary $canary is '$cstate', expected failed"
  reason=$(json_get "$WORK/rollout-$R3.json" 'j["abort_reason"]')
  [ -n "$reason" ] || die "rollout $R3 has no abort reason"
  grep -q "abort reason: $reason" "$WORK/watch-$R3.log" || die "tug rollout watch did not print the abort reason"
  show tug devices list || die "tug devices list failed"
  expect_fleet_on 2
  expect_readings '^sensor v2 .*humidity='
  fleet_table
  # The canary's own journal: its last job is this rollout's, ended ROLLED_BACK; the others never got a v3 job.
  for d in "${DEVICES[@]}"; do
    jobid=$(dev_status "$d" | json_get - '"%s %s" % (j["job"]["id"], j["job"]["phase"])')
    if [ "$d" = "$canary" ]; then
      [[ "$jobid" == "$R3."*" ROLLED_BACK" ]] || die "canary $d's last job is '$jobid', expected a $R3 job ROLLED_BACK"
    else
      [[ "$jobid" != "$R3."* ]] || die "$d got a job of the aborted rollout: $jobid"
      [[ "$jobid" == "$R2."*" SUCCEEDED" ]] || die "$d's last job should be its v2 install, is '$jobid'"
    fi
  done
  ok "canary $canary rolled itself back to v2; rollout $R3 aborted; the other $((NDEV - 1)) devices never saw v3 ($((SECONDS - t0))s)"
  SUMMARY+=("rollout $R3: broken v3 went to the canary $canary only; its HEALTHCHECK failed, it switched back to v2 by itself (job ROLLED_BACK), the controller marked it $cstate and aborted the rollout${reason:+ ($reason)}; the other $((NDEV - 1)) devices stayed pending, untouched, on v2 ($((SECONDS - t0))s).")
}

summary() {
  heading "Summary"
  say "Registry 127.0.0.1:$PORT, Mosquitto (TLS) 127.0.0.1:$MQTT_PORT, controller $TUG_CONTROLLER, $NDEV devices $PLATFORM (arm64 under QEMU, containers in runc), state dirs \$W/devices/dev-N/state."
  local line
  for line in "${SUMMARY[@]}"; do say "  - $line"; done
  say "  - Every release was signed by image-builder with the key from tug keygen and checked twice against root.json: by the controller when registered, by each device before downloading anything."
  say ""
  printf '%sdemo passed in %ss%s\n' "$G" "$((SECONDS - START_TIME))" "$N"
}

main() {
  check_root
  trap cleanup EXIT
  trap 'printf "\n%sinterrupted%s\n" "$R" "$N" >&2; exit 130' INT
  trap 'printf "\n%sterminated%s\n" "$R" "$N" >&2; exit 143' TERM
  WORK=$(mktemp -d /tmp/tugboat-demo.XXXXXX)
  chmod 755 "$WORK"
  say "${B}Tugboat fleet demo${N}: Mosquitto (TLS) + registry + controller + $NDEV arm64 devices; v2 in phases, a broken v3 stopped at the canary."
  say "Working dir W=$WORK (removed at the end unless KEEP=1)"
  setup_host
  build
  start_registry
  make_keys
  build_base
  build_images
  start_broker
  start_controller
  start_devices
  add_releases
  rollout_v1
  rollout_v2
  rollout_v3
  summary
}

main "$@"
