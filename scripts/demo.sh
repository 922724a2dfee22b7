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
NDEV=5

# shellcheck source-path=SCRIPTDIR source=lib/fleet.sh
. "$ROOT/scripts/lib/fleet.sh"   # the steps shared with examples/cluster/run.sh
fleet_init demo                  # colours, binaries, PLATFORM, REPO_PATH, AGENT_PID, DIGEST, SUMMARY, ...

W=""             # temp dir: registry storage, keys, releases, broker, controller db, device state dirs, logs
LOG_DIR=""       # = W
MOSQUITTO_PID=""
CONTROLLER_PID=""
MQTT_PORT=""     # Mosquitto's TLS listener
API_PORT=""      # controller REST API
DEVICES=()       # dev-1 .. dev-5
declare -A MANIFEST=()    # version -> linux/arm64/v8 manifest digest
declare -A LAYERS=()      # version -> "digest:size ..." of the arm64 manifest's layers, base first

human() { python3 -c 'import sys; n=int(sys.argv[1]); print(f"{n/1048576:.1f} MiB" if n >= 1048576 else f"{n/1024:.1f} KiB")' "$1"; }

# ---------------------------------------------------------------------------------------------------------------
# cleanup: agents, containers, controller, broker, registry, temp dir

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ "$rc" = 0 ] || printf '%scleaning up: agents, containers, controller, broker, registry%s\n' "$D" "$N" >&2
  # The daemons first (so nothing restarts an app), then their containers, then the servers.
  stop_devices
  stop_pid "$CONTROLLER_PID"
  stop_pid "$MOSQUITTO_PID"
  stop_pid "$REGISTRY_PID"
  remove_work_dir
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
  run_setup
}

build() {
  heading "2. Build device-agent, tug, image-builder, iot-controller and tug-broker-config"
  local CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  local NINJA_ARGS=(iot-controller tug-broker-config tug device-agent image-builder)
  build_binaries
  check_binaries "$AGENT" "$TUG" "$BUILDER" "$CONTROLLER" "$BROKER_CONFIG"
  ok "binaries in $BUILD_DIR"
}

start_registry_step() {
  heading "3. Start an OCI registry on loopback"
  start_registry
  ok "docker-registry (pid $REGISTRY_PID) serving http://127.0.0.1:$REGISTRY_PORT"
}

make_keys() {
  heading "4. Create a signing key and a device trust root"
  make_release_keys
  ok "release-key (secret), release-key.pub and root.json (what devices trust)"
}

make_base() {
  heading "5. Build a busybox base image from a Debian package (image-builder debootstrap-lite)"
  build_base
  ok "busybox base in the OCI layout \$W/base, tag base:v1 (one layer; never pushed: the builds read it locally)"
}

# layer_list VERSION: "digest:size ..." of the pushed arm64 manifest's layers, as the registry serves them
layer_list() {
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$REGISTRY_PORT/v2/$REPO_PATH/manifests/${MANIFEST[$1]}" |
    python3 -c 'import json,sys; print(" ".join("%s:%s" % (l["digest"], l["size"]) for l in json.load(sys.stdin)["layers"]))'
}

build_sensor() {  # build_sensor VERSION WHAT
  local v=$1 what=$2 ctx="$W/sensor-v$1" l d sz note
  say ""
  say "${B}sensor v$v${N}: $what"
  # The app: one static arm64 binary, cross-compiled on this machine (no QEMU needed for the compile).
  show "$SENSOR_DIR/build.sh" arm64 "$v" "$ctx" || die "examples/sensor/build.sh failed for v$v"
  # The image: base + that binary; pushed, and signed as release v$v in the same command.
  build_sensor_image "$v" "$ctx"
  # The step lines that tell the story (layers made, RUN output, the summary); the full log stays in $W.
  grep -E '^\[[0-9]+/[0-9]+\] (FROM|COPY|RUN)|^  (->|\|)|^built |^pushed|^signed|^wrote' "$W/build-v$v.log" |
    indent || true
  sensor_image_ok "$v"
  verify_release "$v"
  MANIFEST[$v]=$(release_field "$W/release-v$v.json" 'p["platforms"]["'"$PLATFORM"'"]')
  [ "${DIGEST[$v]}" = "$(tr -d '\n' <"$W/build-v$v.out")" ] ||
    die "release v$v pins ${DIGEST[$v]}, but image-builder printed $(cat "$W/build-v$v.out")"
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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
  heading "7. Provision and start the MQTT broker (Mosquitto, TLS with per-device certificates, fleet ACL)"
  local i
  for i in $(seq "$NDEV"); do DEVICES+=("dev-$i"); done
  MQTT_PORT=$(free_port)
  provision_broker "$W/broker" "$MQTT_PORT"
  say "  the ACL (each device may only read its own desired/cmd topics and write below its own prefix):"
  grep -Ev '^\s*(#|$)' "$W/broker/acl" | indent | indent
  cmdline mosquitto -c "$W/broker/mosquitto.conf"
  /usr/sbin/mosquitto -c "$W/broker/mosquitto.conf" >"$W/mosquitto.log" 2>&1 &
  MOSQUITTO_PID=$!
  wait_up 15 "$MOSQUITTO_PID" port_open "$MQTT_PORT" ||
    { tail -20 "$W/mosquitto.log" >&2; die "mosquitto did not accept on 127.0.0.1:$MQTT_PORT"; }
  ok "mosquitto (pid $MOSQUITTO_PID) on 127.0.0.1:$MQTT_PORT (TLS only, client certificate required)"
}

start_controller() {
  heading "8. Start the fleet controller (iot-controller: REST API, rollout engine, MQTT bridge)"
  API_PORT=$(free_port)
  TOKEN=$(new_token demo)
  local args=(--db "$W/controller.db" --listen "127.0.0.1:$API_PORT" --token "$TOKEN" --root "$W/root.json"
    --mqtt-host 127.0.0.1 --mqtt-port "$MQTT_PORT" --mqtt-ca "$W/broker/ca/ca.crt"
    --mqtt-cert "$W/broker/clients/controller.crt" --mqtt-key "$W/broker/clients/controller.key" --tick 300ms)
  cmdline "$CONTROLLER" "${args[@]}"
  "$CONTROLLER" "${args[@]}" >"$W/controller.log" 2>&1 &
  CONTROLLER_PID=$!
  wait_up 15 "$CONTROLLER_PID" curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/healthz" ||
    { tail -20 "$W/controller.log" >&2; die "iot-controller did not come up on 127.0.0.1:$API_PORT"; }
  use_controller "http://127.0.0.1:$API_PORT"
  ok "iot-controller (pid $CONTROLLER_PID) serving $TUG_CONTROLLER; trusts releases signed for root.json"
  say "  tug talks to it from here on:"
  show_tug_env
}

start_devices() {
  heading "9. Start $NDEV devices: a state dir each, then \`device-agent --config DEV.json run\`"
  init_devices "$MQTT_PORT" "$W/broker" dev-1
  say "  (the same for dev-2 .. dev-$NDEV) and the config of dev-1:"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("{" + ",\n ".join("%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in j.items()) + "}")' \
    "$W/devices/dev-1.json" | sed "s|$W|\$W|g" | indent
  start_agents
  # Each daemon registers itself with the controller through its retained presence and state on first connect.
  wait_devices_online 60
  show tug devices list || die "tug devices list failed"
  ok "all $NDEV devices online, registered by the controller from MQTT alone; no release installed yet"
}

add_releases() {
  heading "10. Register the three signed releases with the controller"
  local v
  for v in 1 2 3; do
    show tug releases add "$W/release-v$v.json" || die "tug releases add failed for v$v"
  done
  show tug releases list || die "tug releases list failed"
  ok "the controller verified each release against root.json before accepting it"
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
  rollout_succeeds 1 100%
  R1=$ROLLOUT
  expect_fleet_on 1
  show tug devices list || die "tug devices list failed"
  ok "v1 installed, health-checked and committed on all $NDEV devices ($((SECONDS - t0))s)"
  SUMMARY+=("rollout $R1: v1 to all $NDEV devices in one phase ($((SECONDS - t0))s).")
}

rollout_v2() {
  heading "12. Roll out v2 in phases: 1 canary, then 50%, then 100%"
  local t0=$SECONDS phases states
  rollout_succeeds 2 1 50% 100%
  R2=$ROLLOUT
  tug_json rollout get "$R2" >"$W/rollout-$R2.json" || die "tug rollout get $R2 failed"
  [ "$(json_get "$W/rollout-$R2.json" 'j["state"]')" = succeeded ] || die "rollout $R2 is not 'succeeded'"
  phases=$(json_get "$W/rollout-$R2.json" 'len(j["phases"])')
  [ "$phases" = 3 ] || die "rollout $R2 has $phases phases, expected 3"
  states=$(json_get "$W/rollout-$R2.json" '" ".join(sorted(set(d["state"] for d in j["devices"])))')
  [ "$states" = succeeded ] || die "rollout $R2 device states: $states (expected all succeeded)"
  # Which device went in which phase (1 canary, then up to 50% = 3, then the rest).
  local per_phase
  per_phase=$(json_get "$W/rollout-$R2.json" \
    '"; ".join("phase %d: %s" % (p + 1, " ".join(sorted(d["id"] for d in j["devices"] if d["phase"] == p))) for p in sorted(set(d["phase"] for d in j["devices"])))')
  say "  which device went when: $per_phase"
  # Each phase updated exactly its share: 1, then up to 50% (cumulative target 3), then the rest.
  local sizes targets
  sizes=$(json_get "$W/rollout-$R2.json" '" ".join(str(sum(1 for d in j["devices"] if d["phase"] == p["index"])) for p in j["phases"])')
  targets=$(json_get "$W/rollout-$R2.json" '" ".join(str(p["target"] - (j["phases"][i-1]["target"] if i else 0)) for i, p in enumerate(j["phases"]))')
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
  rollout_aborts 3 1 50% 100%
  R3=$ROLLOUT
  say ""
  say "  the fleet report:"
  show tug rollout get "$R3" || die "tug rollout get $R3 failed"
  expect_aborted_at_canary "$R3"
  canary=$CANARY
  # Its touched list is exactly the devices the rollout got to (all others still pending).
  touched=$(json_get "$W/rollout-$R3.json" '" ".join(d["id"] for d in j["devices"] if d["state"] != "pending")')
  [ "$canary" = "$touched" ] || die "rollout $R3's touched list ($canary) is not '$touched'"
  cstate=$(json_get "$W/rollout-$R3.json" '[d["state"] for d in j["devices"] if d["id"] == "'"$canary"'"][0]')
  [[ "$cstate" = failed || "$cstate" = rolled_back ]] || die "the canary $canary is '$cstate', expected failed"
  reason=$(json_get "$W/rollout-$R3.json" 'j["abort_reason"]')
  [ -n "$reason" ] || die "rollout $R3 has no abort reason"
  grep -q "abort reason: $reason" "$LOG_DIR/watch-$R3.log" || die "tug rollout watch did not print the abort reason"
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
  say "Registry 127.0.0.1:$REGISTRY_PORT, Mosquitto (TLS) 127.0.0.1:$MQTT_PORT, controller $TUG_CONTROLLER, $NDEV devices $PLATFORM (arm64 under QEMU, containers in runc), state dirs \$W/devices/dev-N/state."
  local line
  for line in "${SUMMARY[@]}"; do say "  - $line"; done
  say "  - Every release was signed by image-builder with the key from tug keygen and checked twice against root.json: by the controller when registered, by each device before downloading anything."
  say ""
  printf '%sdemo passed in %ss%s\n' "$G" "$((SECONDS - START_TIME))" "$N"
}

main() {
  check_root
  install_traps
  W=$(mktemp -d /tmp/tugboat-demo.XXXXXX)
  chmod 755 "$W"
  LOG_DIR=$W
  say "${B}Tugboat fleet demo${N}: Mosquitto (TLS) + registry + controller + $NDEV arm64 devices; v2 in phases, a broken v3 stopped at the canary."
  say "Working dir W=$W (removed at the end unless KEEP=1)"
  setup_host
  build
  start_registry_step
  make_keys
  make_base
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
