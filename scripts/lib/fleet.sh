# shellcheck shell=bash disable=SC2034  # the variables set here are for the scripts that source it
# The fleet-demo steps shared by scripts/demo.sh and examples/cluster/run.sh: output helpers, cleanup pieces, the
# build, a loopback registry, signing keys and signed sensor releases, broker provisioning, device-agent daemons and
# rollout checks. Sourcing it only defines functions (nothing runs, no variable is set); a script calls fleet_init
# first, then the functions it needs. Every function runs under the caller's `set -euo pipefail` and stops the script
# with `die` (exit 1) when a check fails.
#
# What the caller sets, before fleet_init:
#   ROOT        the repository          BUILD_DIR   the cmake build dir          KEEP        1: keep W on exit
# and before the other functions:
#   W           the temp dir (created by the caller; "" until then)
#   LOG_DIR     where the logs go: $W (demo.sh) or $W/logs (cluster)
#   DEVICES     the device ids (dev-1 ..)
#
# fleet_init NAME         sets the colours B G R D N, DEMO_NAME=NAME ("demo" prints "demo FAILED: ...",
#                         "demo passed ..."), START_TIME, the binaries AGENT TUG BUILDER CONTROLLER BROKER_CONFIG (in
#                         BUILD_DIR), SENSOR_DIR, DEBS_DIR (default /var/cache/tugboat/debs), PLATFORM, REPO_PATH,
#                         and empty REGISTRY_PID REGISTRY_PORT TOKEN ROLLOUT WATCH_RC WATCH_TAIL LAST_OUT SENSOR_RC
#                         CANARY AGENT_PID() DIGEST() SUMMARY(); the caller may set WATCH_TAIL afterwards
# output: heading TEXT, say TEXT, ok TEXT, indent (filter), die TEXT (exit 1), pretty ARGS (a command line with
#         short binary names and $W), cmdline ARGS (prints it), show CMD... (runs CMD, prints it and its output
#         indented, sets LAST_OUT, returns CMD's status), json_get FILE-or-- EXPR, free_port, new_token PREFIX,
#         tug ARGS / tug_json ARGS (tug with a 60 s timeout; TUG_CONTROLLER/TUG_TOKEN from use_controller)
# waiting: wait_up SECONDS PID CMD...  polls CMD every 0.1 s; false when PID exits or time runs out
# cleanup: install_traps (EXIT -> the caller's `cleanup`, INT -> exit 130, TERM -> exit 143); stop_pid PID [SECONDS];
#          stop_devices (the AGENT_PID daemons, then every runc container under $W/devices/*/state);
#          remove_work_dir (rm -rf W, or "kept W (KEEP=1)")
# steps:  run_setup (scripts/setup.sh, indented); build_binaries (needs arrays CMAKE_ARGS, NINJA_ARGS; cmake and
#         ninja under flock /tmp/tug-build.lock, logs $W/cmake.log, $W/build.log); check_binaries PATH...;
#         start_registry (sets REGISTRY_PORT, REGISTRY_PID; storage $W/registry, log $LOG_DIR/registry.log);
#         make_release_keys ($W/release-key{,.pub}, $W/root.json); build_base ($W/base, tag base:v1);
#         release_field FILE EXPR; build_sensor_image V CTX (image-builder build, push and sign release V from the
#         context CTX: $W/release-vV.json, $LOG_DIR/build-vV.{out,log}; sets SENSOR_RC, does not die);
#         sensor_image_ok V (dies with the log's tail unless SENSOR_RC is 0); verify_release V (sets DIGEST[V],
#         tug release verify against $W/root.json); provision_broker OUT TLS_PORT (tug-broker-config for
#         "controller" and DEVICES); use_controller URL (exports TUG_CONTROLLER=URL, TUG_TOKEN=$TOKEN);
#         show_tug_env (prints that export line)
# devices: dev_state D, dev_status D; init_devices MQTT_PORT BROKER_DIR [SHOWN] (device-agent init in
#         $W/devices/D/state and the config $W/devices/D.json for each of DEVICES; SHOWN's init is shown);
#         start_agents (the daemons, sets AGENT_PID); wait_devices_online SECONDS (all DEVICES online at the
#         controller, dies if a daemon exits); expect_fleet_on V (controller and devices agree: V committed, running)
# rollouts (label fleet=demo): create_rollout V PHASE... (sets ROLLOUT); watch_rollout ID (tug rollout watch into
#         $LOG_DIR/watch-ID.log, shown as it runs, or only its last WATCH_TAIL lines when WATCH_TAIL is set; sets
#         WATCH_RC); rollout_succeeds V PHASE... (create + watch, dies unless the watch exits 0; sets ROLLOUT);
#         rollout_aborts V PHASE... (create + watch, dies unless the watch exits 1; sets ROLLOUT);
#         expect_aborted_at_canary ID (tug rollout get into $W/rollout-ID.json: aborted, exactly one device touched;
#         sets CANARY)

fleet_init() {
  DEMO_NAME=$1
  if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B=""; G=""; R=""; D=""; N=""; fi
  START_TIME=$SECONDS
  AGENT="$BUILD_DIR/device-agent/device-agent"
  TUG="$BUILD_DIR/iot-controller/cli/tug"
  BUILDER="$BUILD_DIR/image-builder/image-builder"
  CONTROLLER="$BUILD_DIR/iot-controller/controller/iot-controller"
  BROKER_CONFIG="$BUILD_DIR/iot-controller/broker/tug-broker-config"
  SENSOR_DIR="$ROOT/examples/sensor"
  DEBS_DIR=${DEBS_DIR:-/var/cache/tugboat/debs}
  PLATFORM=linux/arm64/v8
  REPO_PATH=acme/sensor
  REGISTRY_PID="" REGISTRY_PORT="" TOKEN="" ROLLOUT="" WATCH_RC=0 WATCH_TAIL="" LAST_OUT="" SENSOR_RC=0 CANARY=""
  declare -gA AGENT_PID=()   # device id -> daemon pid
  declare -gA DIGEST=()      # version -> signed index digest
  declare -ga SUMMARY=()     # lines of the closing summary
}

# ---------------------------------------------------------------------------------------------------------------
# output

heading() { printf '\n%s== %s ==%s  %s(%ss)%s\n' "$B" "$*" "$N" "$D" "$((SECONDS - START_TIME))" "$N"; }
say() { printf '%s\n' "$*"; }
ok() { printf '%s  ok%s  %s\n' "$G" "$N" "$*"; }
indent() { sed 's/^/    /'; }
die() {
  printf '\n%s%s FAILED: %s%s\n' "$R" "$DEMO_NAME" "$*" "$N" >&2
  exit 1
}
pretty() {  # a command line as the reader would type it: short binary names, $W for the temp dir
  local a out=()
  for a in "$@"; do
    a=${a/#$BUILD_DIR\/*\//}
    a=${a//$ROOT\//}
    [ -z "$W" ] || a=${a//$W/\$W}
    [[ "$a" != *" "* ]] || a="'$a'"
    out+=("$a")
  done
  printf '%s' "${out[*]}"
}
cmdline() { printf '%s  $ %s%s\n' "$D" "$(pretty "$@")" "$N"; }
show() {  # runs a command, showing it and its output indented; the output is also kept in $LAST_OUT
  cmdline "$@"
  local rc=0
  LAST_OUT=$("$@" 2>&1) || rc=$?
  [ -z "$LAST_OUT" ] || printf '%s\n' "$LAST_OUT" | indent
  return $rc
}
json_get() {  # json_get FILE-or-- EXPR  (EXPR is Python over `j`)
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1]!="-" else sys.stdin); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
new_token() { printf '%s-%s' "$1" "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }
# tug against the controller (TUG_CONTROLLER and TUG_TOKEN are exported by use_controller)
tug() { timeout 60 "$TUG" "$@"; }
tug_json() { tug --json "$@"; }
use_controller() { export TUG_CONTROLLER="$1" TUG_TOKEN="$TOKEN"; }
show_tug_env() { say "${D}  \$ export TUG_CONTROLLER=$TUG_CONTROLLER TUG_TOKEN=$TOKEN${N}"; }

# wait_up SECONDS PID CMD...: until CMD succeeds, polled every 0.1 s (false if PID exits or time runs out)
wait_up() {
  local secs=$1 pid=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------------------------------------
# cleanup pieces

install_traps() {
  trap cleanup EXIT
  trap 'printf "\n%sinterrupted%s\n" "$R" "$N" >&2; exit 130' INT
  trap 'printf "\n%sterminated%s\n" "$R" "$N" >&2; exit 143' TERM
}

stop_pid() {  # stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (10)
  local pid=$1 t=${2:-10}
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill "$pid" 2>/dev/null
  for _ in $(seq $((t * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

stop_devices() {  # the daemons first (so nothing restarts an app), then their containers
  local d state id
  for d in "${!AGENT_PID[@]}"; do kill "${AGENT_PID[$d]}" 2>/dev/null; done
  for d in "${!AGENT_PID[@]}"; do stop_pid "${AGENT_PID[$d]}"; done
  if [ -n "$W" ] && [ -d "$W/devices" ]; then
    for state in "$W"/devices/*/state; do
      [ -d "$state/runc" ] || continue
      for id in $(timeout 30 runc --root "$state/runc" list -q 2>/dev/null); do
        timeout 30 runc --root "$state/runc" delete --force "$id" >/dev/null 2>&1
      done
    done
  fi
  return 0
}

remove_work_dir() {
  if [ -n "$W" ] && [ -d "$W" ]; then
    if [ "$KEEP" = 1 ]; then
      say "kept $W (KEEP=1)"
    else
      rm -rf "$W"
    fi
  fi
  return 0
}

# ---------------------------------------------------------------------------------------------------------------
# host, binaries, registry, keys, releases, broker

run_setup() {
  "$ROOT/scripts/setup.sh" 2>&1 | indent
  [ "${PIPESTATUS[0]}" = 0 ] || die "scripts/setup.sh failed"
}

build_binaries() {  # needs CMAKE_ARGS and NINJA_ARGS (arrays); other builds may share this machine: take turns
  local lock=()
  if command -v flock >/dev/null 2>&1; then lock=(flock /tmp/tug-build.lock); fi
  "${lock[@]}" cmake -S "$ROOT" -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" >"$W/cmake.log" 2>&1 ||
    { tail -30 "$W/cmake.log" >&2; die "cmake configure failed (log above)"; }
  "${lock[@]}" ninja -C "$BUILD_DIR" "${NINJA_ARGS[@]}" >"$W/build.log" 2>&1 ||
    { tail -40 "$W/build.log" >&2; die "build failed (log above)"; }
  grep -E '^\[[0-9]+/[0-9]+\]|no work to do' "$W/build.log" | tail -1 | indent
}

check_binaries() {
  local b
  for b in "$@"; do [ -x "$b" ] || die "missing binary $b"; done
}

start_registry() {  # docker-registry on a free loopback port; sets REGISTRY_PORT, REGISTRY_PID
  REGISTRY_PORT=$(free_port)
  mkdir -p "$W/registry"
  cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
  docker-registry serve "$W/registry.yml" >"$LOG_DIR/registry.log" 2>&1 &
  REGISTRY_PID=$!
  wait_up 10 "$REGISTRY_PID" curl -fsS -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" ||
    { tail -20 "$LOG_DIR/registry.log" >&2; die "registry did not come up on 127.0.0.1:$REGISTRY_PORT"; }
}

make_release_keys() {
  show "$TUG" keygen --out "$W/release-key" || die "tug keygen failed"
  show "$TUG" trust init --key "$W/release-key.pub" --threshold 1 --expires 30d --out "$W/root.json" ||
    die "tug trust init failed"
}

build_base() {  # the busybox base image from the arm64 .deb, OCI layout $W/base, tag base:v1
  local deb
  deb=$(ls "$DEBS_DIR"/busybox-static_*_arm64.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "no busybox-static arm64 .deb in $DEBS_DIR (scripts/setup.sh fetches it)"
  show timeout 300 "$BUILDER" debootstrap-lite --platform "$PLATFORM" --deb "$deb" --oci-layout "$W/base" \
    --tag base:v1 || die "image-builder debootstrap-lite failed"
}

# release_field FILE EXPR: EXPR (Python over the decoded release payload `p`) of a signed release envelope
release_field() {
  python3 -c 'import base64,json,sys; p=json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"])); print(eval(sys.argv[2]))' "$1" "$2"
}

build_sensor_image() {  # build_sensor_image V CTX: base + the app in CTX, pushed, and signed as release V; sets SENSOR_RC
  local v=$1 ctx=$2 args
  args=(build -f "$SENSOR_DIR/Dockerfile" --platform "$PLATFORM" --build-arg "BASE=$W/base:v1"
    --build-arg "VERSION=$v" --cache-dir "$W/build-cache" --tag "127.0.0.1:$REGISTRY_PORT/$REPO_PATH:v$v" --push
    --insecure-registry "127.0.0.1:$REGISTRY_PORT" --sign "$W/release-key" --release-version "$v"
    --release-name "sensor v$v" --release-out "$W/release-v$v.json" "$ctx")
  cmdline "$BUILDER" "${args[@]}"
  SENSOR_RC=0
  timeout 300 "$BUILDER" "${args[@]}" >"$LOG_DIR/build-v$v.out" 2>"$LOG_DIR/build-v$v.log" || SENSOR_RC=$?
}

sensor_image_ok() {  # sensor_image_ok V: after build_sensor_image V
  [ "$SENSOR_RC" = 0 ] ||
    { tail -20 "$LOG_DIR/build-v$1.log" >&2; die "image-builder build failed for v$1 (exit $SENSOR_RC)"; }
}

verify_release() {  # verify_release V: DIGEST[V] from $W/release-vV.json, which must verify against $W/root.json
  DIGEST[$1]=$(release_field "$W/release-v$1.json" 'p["digest"]')
  "$TUG" release verify --root "$W/root.json" "$W/release-v$1.json" >/dev/null 2>&1 ||
    die "tug release verify rejected release v$1"
}

provision_broker() {  # provision_broker OUT TLS_PORT: Mosquitto's CA, certificates, config and ACL
  local d args=(--out "$1" --controller controller --tls-port "$2" --user root --days 2)
  for d in "${DEVICES[@]}"; do args+=(--device "$d"); done
  show "$BROKER_CONFIG" "${args[@]}" || die "tug-broker-config failed"
}

# ---------------------------------------------------------------------------------------------------------------
# devices

dev_state() { printf '%s' "$W/devices/$1/state"; }
dev_status() { "$AGENT" --state-dir "$(dev_state "$1")" status --json; }

init_devices() {  # init_devices MQTT_PORT BROKER_DIR [SHOWN]: a state dir and a config per device
  local d state shown=${3:-}
  mkdir -p "$W/devices"
  for d in "${DEVICES[@]}"; do
    state=$(dev_state "$d")
    if [ "$d" = "$shown" ]; then
      show "$AGENT" --state-dir "$state" init --root "$W/root.json" || die "device-agent init failed for $d"
    else
      "$AGENT" --state-dir "$state" init --root "$W/root.json" >/dev/null 2>&1 ||
        die "device-agent init failed for $d"
    fi
    python3 - "$W/devices/$d.json" "$d" "$state" "$PLATFORM" "$1" "$2" "127.0.0.1:$REGISTRY_PORT" <<'PY'
import json, sys
cfg, dev, state, platform, port, broker, registry = sys.argv[1:]
json.dump({"device_id": dev, "state_dir": state, "platform": platform, "labels": {"fleet": "demo"},
           "mqtt": {"host": "127.0.0.1", "port": int(port), "ca": f"{broker}/ca/ca.crt",
                    "cert": f"{broker}/clients/{dev}.crt", "key": f"{broker}/clients/{dev}.key", "keepalive": 5},
           "registry": {"insecure": [registry]}, "commit_window": 1}, open(cfg, "w"), indent=1)
PY
  done
}

start_agents() {  # `device-agent --config $W/devices/D.json run` for each device, logs $W/devices/D.log
  local d
  for d in "${DEVICES[@]}"; do
    "$AGENT" --config "$W/devices/$d.json" run >"$W/devices/$d.log" 2>&1 &
    AGENT_PID[$d]=$!
  done
  cmdline "$AGENT" --config "$W/devices/dev-N.json" run
  say "  pids: $(for d in "${DEVICES[@]}"; do printf '%s=%s ' "$d" "${AGENT_PID[$d]}"; done)"
}

wait_devices_online() {  # wait_devices_online SECONDS: every daemon registers through its retained presence/state
  local d n=0 i
  for ((i = 0; i < $1 * 2; i++)); do
    n=$(tug_json devices list --online 2>/dev/null | json_get - 'len(j["devices"])' 2>/dev/null || echo 0)
    [ "$n" = "${#DEVICES[@]}" ] && break
    for d in "${DEVICES[@]}"; do
      kill -0 "${AGENT_PID[$d]}" 2>/dev/null || { tail -20 "$W/devices/$d.log" >&2; die "$d's daemon exited"; }
    done
    sleep 0.5
  done
  [ "$n" = "${#DEVICES[@]}" ] || die "only $n of ${#DEVICES[@]} devices registered online with the controller"
}

# expect_fleet_on VERSION: controller and every device agree: VERSION active, committed, running
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

# ---------------------------------------------------------------------------------------------------------------
# rollouts

create_rollout() {  # create_rollout VERSION PHASE... -> sets ROLLOUT
  local v=$1 p args
  shift
  args=(rollout create --release "$v" --label fleet=demo)
  for p in "$@"; do args+=(--phase "$p"); done
  args+=(--abort-failure-percent 1 --abort-min-devices 1 --device-timeout 5m)
  cmdline tug "${args[@]}"
  ROLLOUT=$(tug "${args[@]}") || die "tug rollout create failed"
  [[ "$ROLLOUT" =~ ^r-[0-9A-Za-z-]+$ ]] || die "tug rollout create printed '$ROLLOUT', not a rollout id"
  say "$ROLLOUT" | indent
}

watch_rollout() {  # watch_rollout ID -> WATCH_RC; the progress blocks as they change (or the last WATCH_TAIL lines)
  local log="$LOG_DIR/watch-$1.log"
  cmdline tug rollout watch "$1" --interval 1s --timeout 5m
  set +e
  if [ -n "${WATCH_TAIL:-}" ]; then
    timeout 330 "$TUG" rollout watch "$1" --interval 1s --timeout 5m >"$log" 2>&1
    WATCH_RC=$?
    set -e
    tail -"$WATCH_TAIL" "$log" | indent
  else
    timeout 330 "$TUG" rollout watch "$1" --interval 1s --timeout 5m 2>&1 | tee "$log" | indent
    WATCH_RC=${PIPESTATUS[0]}
    set -e
  fi
  say "  exit code $WATCH_RC"
}

rollout_succeeds() {  # rollout_succeeds VERSION PHASE... -> ROLLOUT, watched to success
  create_rollout "$@"
  watch_rollout "$ROLLOUT"
  [ "$WATCH_RC" = 0 ] || die "rollout $ROLLOUT of v$1 did not succeed (watch exit $WATCH_RC)"
}

rollout_aborts() {  # rollout_aborts VERSION PHASE... -> ROLLOUT, watched until it aborts
  create_rollout "$@"
  watch_rollout "$ROLLOUT"
  [ "$WATCH_RC" = 1 ] || die "tug rollout watch $ROLLOUT should exit 1 (aborted), got exit $WATCH_RC"
}

expect_aborted_at_canary() {  # expect_aborted_at_canary ID: aborted after touching one device -> CANARY
  local f="$W/rollout-$1.json" touched
  tug_json rollout get "$1" >"$f" || die "tug rollout get $1 failed"
  [ "$(json_get "$f" 'j["state"]')" = aborted ] || die "rollout $1 is not 'aborted'"
  touched=$(json_get "$f" '" ".join(j["touched"])')
  [ "$(wc -w <<<"$touched")" = 1 ] || die "rollout $1 touched '$touched'; expected exactly one device (the canary)"
  CANARY=$touched
}
