#!/usr/bin/env bash
# Tugboat's own cloud side hosted on Tugboat's cluster scheduler, on one machine, with the fleet demo run through it.
#
# The cluster: etcd, two cluster-master processes (leader election), three cluster-node processes (node-0..2) and
# the services framework (cluster-services) with its HAProxy gateway. On it, two apps (examples/cluster/apps):
#
#   /tugboat/mosquitto   the MQTT broker (TLS, fleet ACL, from tug-broker-config), pinned to node-1, its config,
#                        certificates and persistence in the host directory $W/volumes/broker; gateway TCP port
#                        (HAProxy passes the TLS through: devices see Mosquitto's certificate)
#   /tugboat/controller  the iot-controller, pinned to node-0, its SQLite database and config in the host directory
#                        $W/volumes/controller (outside the task sandbox); gateway HTTP port; it reaches the broker
#                        through the gateway's TCP port too
#
# Then the fleet story of scripts/demo.sh, but every device and every `tug` call goes through HAProxy: three arm64
# device-agent daemons (QEMU + runc) connect to the gateway's MQTT port, tug to the gateway's HTTP port. v1 goes out,
# then v2 in two phases; then the controller's task is killed with kill -9 and the services framework starts a new
# one on node-0 on the same database: releases, rollout history, devices and operator labels are all still there;
# finally the broken v3 is stopped at its canary by the restarted controller.
#
#   sudo examples/cluster/run.sh            # the whole story, about 2-3 minutes
#   KEEP=1 sudo examples/cluster/run.sh     # keep the temp dir (cluster logs, volumes, device state)
#   SHORT=1 ...                             # skip the broken v3 (used by the cloud_on_cluster_test ctest)
#   BUILD=0 ...                             # do not run cmake/ninja (binaries must already be in BUILD_DIR)
#   BUILD_DIR=out ...
#
# Exits 0 only when every step happened as expected. Everything it starts (etcd, masters, nodes and their tasks,
# cluster-services and its HAProxy, the registry, device agents and their runc containers) is stopped by pid on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
KEEP=${KEEP:-0}
SHORT=${SHORT:-0}
BUILD=${BUILD:-1}
DEVICES=(dev-1 dev-2 dev-3)
NODES=(node-0 node-1 node-2)

ETCD=etcd
MASTER="$BUILD_DIR/cluster-scheduler/master/cluster-master"
NODE="$BUILD_DIR/cluster-scheduler/node/cluster-node"
SERVICES="$BUILD_DIR/cluster-scheduler/frameworks/services/cluster-services"
TOKEN_TOOL="$BUILD_DIR/common/http/tug-token"

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/fleet.sh
. "$ROOT/scripts/lib/fleet.sh"   # the fleet steps shared with scripts/demo.sh
fleet_init "cluster demo"        # colours, binaries, PLATFORM, REPO_PATH, AGENT_PID, DIGEST, SUMMARY, ...
WATCH_TAIL=12                    # rollout watch: only its last lines

W=""                       # temp dir: the whole "cluster" (etcd, node work dirs, volumes), registry, devices, logs
LOG_DIR=""                 # $W/logs
ETCD_PID="" SERVICES_PID=""
declare -a MASTER_PID=() MASTER_URL=()
declare -A NODE_PID=() NODE_API=()       # node name -> pid, http://127.0.0.1:PORT of its own API
MASTERS=""                 # comma-separated master URLs
SVC=""                     # cluster-services REST API
SVC_TOKEN=""               # its operator token (tug-token add)
MQTT_GW="" API_GW=""       # HAProxy frontends: Mosquitto (tcp), controller (http)

# ---------------------------------------------------------------------------------------------------------------
# helpers (the output helpers are in scripts/lib/fleet.sh)

free_range() {  # free_range N: the first of N consecutive free loopback ports, away from the ephemeral range
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 30000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", p))
        print(base); sys.exit(0)
    except OSError:
        pass
    finally:
        for s in socks: s.close()
sys.exit("no free port range")
PY
}
http_get() { curl -fsS --max-time 5 "$@"; }
# wait_for SECONDS WHAT CMD...: polls CMD every 0.5 s until it succeeds
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "timed out after ${secs}s waiting for $what"
}
# svc METHOD PATH [BODY]: the services framework's REST API
# (with the operator token made in start_services: the API refuses anonymous calls)
svc() {
  curl -sS --max-time 10 -X "$1" -H 'Content-Type: application/json' -H "Authorization: Bearer $SVC_TOKEN" \
    ${3:+--data-binary "$3"} "$SVC$2"
}

# ---------------------------------------------------------------------------------------------------------------
# cleanup: everything by pid

# Processes still running whose command line names the temp dir: task supervisors, tasks, HAProxy. Only ever
# processes this script's nodes and cluster-services started (the temp dir is ours alone).
leftover_pids() {
  local p
  [ -n "$W" ] || return 0
  local -a argv
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" != $$ ] || continue
    # Builtins only: a helper process (grep "$W/") would find itself.
    mapfile -d '' argv 2>/dev/null <"/proc/$p/cmdline" || continue
    [[ " ${argv[*]} " == *"$W/"* ]] && echo "$p"
  done
  return 0
}

cleanup() {
  local rc=$? d i p left
  trap - EXIT INT TERM
  set +e
  [ "$rc" = 0 ] || printf '%scleaning up: agents, containers, cluster-services + HAProxy, nodes + tasks, masters, etcd, registry%s\n' "$D" "$N" >&2
  if [ "$rc" != 0 ] && [ -n "$W" ] && [ -d "$W" ]; then
    for f in "$W"/services.log "$W"/logs/node-0.log; do
      [ -f "$f" ] && { printf -- '--- tail of %s\n' "$f" >&2; tail -15 "$f" >&2; }
    done
  fi
  stop_devices
  # The framework first (it stops its HAProxy and would otherwise replace the tasks the nodes kill), then the nodes:
  # they run with --kill-tasks-on-exit, so SIGTERM kills their tasks (Mosquitto, the controller) before they exit.
  stop_pid "$SERVICES_PID" 20
  for d in "${!NODE_PID[@]}"; do kill "${NODE_PID[$d]}" 2>/dev/null; done
  for d in "${!NODE_PID[@]}"; do stop_pid "${NODE_PID[$d]}" 15; done
  for i in "${!MASTER_PID[@]}"; do stop_pid "${MASTER_PID[$i]}"; done
  stop_pid "$ETCD_PID"
  stop_pid "$REGISTRY_PID"
  # Anything of ours still alive (a task whose node was SIGKILLed, say): by pid, SIGKILL.
  left=$(leftover_pids)
  if [ -n "$left" ]; then
    printf '%sstopping leftover processes of %s: %s%s\n' "$D" "$W" "$(echo $left)" "$N" >&2
    for p in $left; do kill -9 "$p" 2>/dev/null; done
  fi
  remove_work_dir
  exit $rc
}

# ---------------------------------------------------------------------------------------------------------------
# 1-2. host and binaries

setup_host() {
  heading "1. Host setup (Debian packages, QEMU binfmt, busybox .debs)"
  [ "$(id -u)" = 0 ] || die "run as root: sudo $0 (runc, binfmt and the nodes' cgroups need it)"
  run_setup
}

build() {
  heading "2. Build the cluster (master, node, services) and the fleet binaries"
  local b targets=(cluster-master cluster-node cluster-services tug-token iot-controller tug-broker-config tug device-agent
    image-builder)
  if [ "$BUILD" = 1 ]; then
    local CMAKE_ARGS=() NINJA_ARGS=(-j2 "${targets[@]}")
    cmdline ninja -C "$BUILD_DIR" "${targets[@]}"
    say "  (through flock /tmp/tug-build.lock: waits while another build on this machine holds it)"
    build_binaries
  else
    say "  BUILD=0: using the binaries in $BUILD_DIR as they are"
  fi
  check_binaries "$MASTER" "$NODE" "$SERVICES" "$TOKEN_TOOL" "$AGENT" "$TUG" "$BUILDER" "$CONTROLLER" "$BROKER_CONFIG"
  for b in etcd haproxy runc docker-registry mosquitto_pub; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "missing $b (scripts/setup.sh installs it)"
  done
  ok "binaries in $BUILD_DIR"
}

# ---------------------------------------------------------------------------------------------------------------
# 3-4. releases (as scripts/demo.sh: image-builder on a busybox base, pushed to a loopback registry, signed)

build_releases() {
  heading "3. Build, push and sign the sensor releases v1, v2 and the broken v3 (as scripts/demo.sh does)"
  start_registry
  ok "docker-registry (pid $REGISTRY_PID) on 127.0.0.1:$REGISTRY_PORT"
  make_release_keys
  build_base
  local v versions=(1 2 3)
  [ "$SHORT" = 1 ] && versions=(1 2)
  for v in "${versions[@]}"; do
    "$SENSOR_DIR/build.sh" arm64 "$v" "$W/sensor-v$v" >"$W/logs/sensor-v$v.log" 2>&1 ||
      { tail -20 "$W/logs/sensor-v$v.log" >&2; die "examples/sensor/build.sh failed for v$v"; }
    cmdline "$SENSOR_DIR/build.sh" arm64 "$v" "$W/sensor-v$v"
    build_sensor_image "$v" "$W/sensor-v$v"
    sensor_image_ok "$v"
    verify_release "$v"
    ok "sensor v$v pushed and signed: release-v$v.json (${DIGEST[$v]:0:19}...)"
  done
}

# ---------------------------------------------------------------------------------------------------------------
# 4-5. the cluster

LEADER=""
connected_nodes() {
  [ "$(http_get -L "$LEADER/api/v1/state" | json_get - 'sum(1 for a in j["agents"] if a.get("connected"))')" = 3 ]
}

start_cluster() {
  heading "4. Start the cluster: etcd, 2 masters (leader election), 3 nodes"
  local cport pport i port n begin res
  cport=$(free_port) pport=$(free_port)
  while [ "$pport" = "$cport" ]; do pport=$(free_port); done
  local etcd_args=(--name tug-etcd --data-dir "$W/etcd" --listen-client-urls "http://127.0.0.1:$cport"
    --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport"
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "tug-etcd=http://127.0.0.1:$pport"
    --initial-cluster-state new --heartbeat-interval 100 --election-timeout 1000 --logger zap --log-outputs stderr)
  cmdline "$ETCD" "${etcd_args[@]}"
  "$ETCD" "${etcd_args[@]}" >"$W/logs/etcd.log" 2>&1 &
  ETCD_PID=$!
  wait_for 20 "etcd on 127.0.0.1:$cport" http_get -o /dev/null "http://127.0.0.1:$cport/health"
  ok "etcd (pid $ETCD_PID) on 127.0.0.1:$cport"

  for i in 0 1; do
    port=$(free_port)
    MASTER_URL[$i]="http://127.0.0.1:$port"
    local margs=(--listen "127.0.0.1:$port" --etcd "http://127.0.0.1:$cport" --role-weight services=1)
    cmdline "$MASTER" "${margs[@]}"
    "$MASTER" "${margs[@]}" >"$W/logs/master-$i.log" 2>&1 &
    MASTER_PID[$i]=$!
  done
  MASTERS="${MASTER_URL[0]},${MASTER_URL[1]}"
  local leader=""
  for _ in $(seq 40); do
    for i in 0 1; do
      if http_get "${MASTER_URL[$i]}/api/v1/leader" 2>/dev/null | grep -q '"leading":true'; then
        leader=${MASTER_URL[$i]}
        break 2
      fi
    done
    sleep 0.5
  done
  [ -n "$leader" ] || { tail -5 "$W"/logs/master-*.log >&2; die "no master leads after 20 s"; }
  LEADER=$leader
  ok "masters (pids ${MASTER_PID[*]}) on $MASTERS; leader $leader"

  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    port=$(free_port)
    begin=$(free_range 20)
    NODE_API[$n]="http://127.0.0.1:$port"
    res="cpus:4;mem:4096;ports:[$begin-$((begin + 19))]"
    local nargs=(--master "$MASTERS" --work-dir "$W/nodes/$n" --hostname "$n" --resources "$res"
      --attributes "zone:a;node:$n;ip:127.0.0.1" --listen "127.0.0.1:$port" --kill-grace 2 --kill-tasks-on-exit)
    cmdline "$NODE" "${nargs[@]}"
    "$NODE" "${nargs[@]}" >"$W/logs/$n.log" 2>&1 &
    NODE_PID[$n]=$!
  done
  wait_for 30 "3 nodes registered with the leader" connected_nodes
  say "  the nodes as the leader sees them (GET /api/v1/state):"
  http_get -L "$LEADER/api/v1/state" | json_get - '"\n".join("%s  attributes %s" % (a["hostname"], ",".join("%s:%s" % (x["name"], x["text"]["value"]) for x in a.get("attributes", []))) for a in j["agents"])' | indent | indent
  ok "3 nodes registered (node-0, node-1, node-2: each with its own work dir and task port range)"
}

start_services() {
  heading "5. Start the services framework with its HAProxy gateway"
  local port
  port=$(free_port)
  SVC="http://127.0.0.1:$port"
  # The REST API refuses anonymous calls: an operator token, stored hashed in \$W/services.tokens.
  cmdline "$TOKEN_TOOL" add --file "$W/services.tokens" --name example --scope operator
  SVC_TOKEN=$("$TOKEN_TOOL" add --file "$W/services.tokens" --name example --scope operator) ||
    die "tug-token add failed"
  local args=(--master "$MASTERS" --listen "127.0.0.1:$port" --state-dir "$W/services" --haproxy "$W/haproxy"
    --drain-seconds 1 --token-file "$W/services.tokens")
  cmdline "$SERVICES" "${args[@]}"
  "$SERVICES" "${args[@]}" >"$W/services.log" 2>&1 &
  SERVICES_PID=$!
  wait_for 20 "cluster-services /healthz" http_get -o /dev/null "$SVC/healthz"
  ok "cluster-services (pid $SERVICES_PID) REST API on $SVC; HAProxy is its child, work dir \$W/haproxy"
  say "  HAProxy is not an app: it is the framework's gateway, with one frontend per app that has \"gateway\"."
}

# ---------------------------------------------------------------------------------------------------------------
# 6-7. the cloud side as apps

fill() {  # fill TEMPLATE: the template with the script's placeholders replaced
  sed -e "s|@BUILD_DIR@|$BUILD_DIR|g" -e "s|@BROKER_DIR@|$W/volumes/broker|g" \
    -e "s|@CONTROLLER_DIR@|$W/volumes/controller|g" -e "s|@MQTT_GATEWAY_PORT@|$MQTT_GW|g" \
    -e "s|@API_GATEWAY_PORT@|$API_GW|g" "$1"
}

prepare_volumes() {
  heading "6. Prepare the two host directories the apps keep their state in (the \"volumes\")"
  local d
  # Two fixed frontend ports for HAProxy, picked free (outside the ephemeral range) for this run.
  MQTT_GW=$(free_range 2)
  API_GW=$((MQTT_GW + 1))
  mkdir -p "$W/volumes/controller"
  # The broker volume (node-1): CA, server and client certificates, config, ACL, persistence. The listener port in
  # mosquitto.conf is a placeholder: the app's cmd puts its $PORT0 there when it starts.
  provision_broker "$W/volumes/broker" 1883
  # The controller volume (node-0): config, token, trust root, its MQTT client certificate; the database appears
  # here when the controller first starts.
  TOKEN=$(new_token cluster)
  printf '%s\n' "$TOKEN" >"$W/volumes/controller/token"
  cp "$W/root.json" "$W/volumes/controller/root.json"
  cp "$W/volumes/broker/ca/ca.crt" "$W/volumes/broker/clients/controller.crt" \
    "$W/volumes/broker/clients/controller.key" "$W/volumes/controller/"
  chmod 600 "$W/volumes/controller/token" "$W/volumes/controller/controller.key"
  fill "$HERE/apps/controller-config.json" >"$W/volumes/controller/controller.json"
  say "  \$W/volumes/controller/controller.json (from examples/cluster/apps/controller-config.json):"
  sed "s|$W|\$W|g" "$W/volumes/controller/controller.json" | indent | indent
  say "  \$W/volumes/controller: $(ls "$W/volumes/controller" | tr '\n' ' ')"
  ok "gateway ports chosen: MQTT (tcp) 127.0.0.1:$MQTT_GW, controller API (http) 127.0.0.1:$API_GW"
}

app_healthy() {  # app_healthy ID: exactly one task, healthy, and no deployment in progress
  [ "$(svc GET /v2/deployments)" = "[]" ] || return 1
  [ "$(svc GET "/v2/apps$1/tasks" | json_get - 'sum(1 for t in j["tasks"] if t.get("healthy"))')" = 1 ]
}

both_apps_healthy() { app_healthy /tugboat/mosquitto && app_healthy /tugboat/controller; }

controller_healthz() {  # the controller answers through the gateway and is connected to MQTT (through the gateway)
  http_get "http://127.0.0.1:$API_GW/healthz" | grep -q '"mqtt_connected":true'
}

create_apps() {
  heading "7. Create the apps /tugboat/mosquitto and /tugboat/controller"
  local app f
  for app in mosquitto controller; do
    f="$W/app-$app.json"
    fill "$HERE/apps/$app.json" >"$f"
    say "  examples/cluster/apps/$app.json, filled in:"
    sed "s|$W|\$W|g; s|$BUILD_DIR/|\$BUILD_DIR/|g" "$f" | indent | indent
    cmdline curl -H 'Authorization: Bearer $SVC_TOKEN' -X POST "$SVC/v2/apps" -d @"$f"
    local out
    out=$(svc POST /v2/apps "$(cat "$f")")
    [ "$(json_get - 'j.get("id", "")' <<<"$out")" = "/tugboat/$app" ] || die "POST /v2/apps for $app: $out"
    say "    201: deployment $(json_get - 'j["deploymentId"]' <<<"$out")"
  done
  cmdline curl -H 'Authorization: Bearer $SVC_TOKEN' "$SVC/v2/deployments"
  local t0=$SECONDS
  wait_for 90 "both apps healthy and GET /v2/deployments == []" both_apps_healthy
  say "    [] after $((SECONDS - t0))s"
  say "  their tasks (GET /v2/apps/<id>/tasks):"
  for app in mosquitto controller; do
    svc GET "/v2/apps/tugboat/$app/tasks" |
      json_get - '"\n".join("%s  on %s  port %s  %s healthy=%s" % (t["id"], t["host"], t["ports"][0], t["state"], t["healthy"]) for t in j["tasks"])' |
      indent | indent
  done
  [ "$(svc GET /v2/apps/tugboat/controller/tasks | json_get - 'j["tasks"][0]["host"]')" = node-0 ] ||
    die "the controller is not on node-0"
  [ "$(svc GET /v2/apps/tugboat/mosquitto/tasks | json_get - 'j["tasks"][0]["host"]')" = node-1 ] ||
    die "mosquitto is not on node-1"
  say "  HAProxy's frontends, as cluster-services wrote them (\$W/haproxy/haproxy.cfg):"
  grep -A3 '^frontend' "$W/haproxy/haproxy.cfg" | grep -Ev '^--$|option' | indent | indent
  # The broker through HAProxy's TCP frontend: TLS end to end, with a device certificate.
  local b="$W/volumes/broker"
  wait_for 20 "Mosquitto through the gateway" timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_GW" --cafile "$b/ca/ca.crt" \
    --cert "$b/clients/dev-1.crt" --key "$b/clients/dev-1.key" -i dev-1-probe -q 1 -t tug/v1/d/dev-1/hello -m hi
  show mosquitto_pub -h 127.0.0.1 -p "$MQTT_GW" --cafile "$b/ca/ca.crt" --cert "$b/clients/dev-1.crt" \
    --key "$b/clients/dev-1.key" -i dev-1-probe -q 1 -t tug/v1/d/dev-1/hello -m hi ||
    die "cannot publish to Mosquitto through the gateway"
  say "    (QoS 1, acknowledged: TLS with dev-1's certificate, through HAProxy to Mosquitto on node-1)"
  wait_for 30 "the controller through the gateway, connected to MQTT" controller_healthz
  show curl -sS "http://127.0.0.1:$API_GW/healthz" || die "controller /healthz through the gateway failed"
  use_controller "http://127.0.0.1:$API_GW"
  show_tug_env
  ok "Mosquitto on node-1 and the controller on node-0, both healthy, both reached only through HAProxy"
}

# ---------------------------------------------------------------------------------------------------------------
# 8-11. the fleet story through the gateway

start_devices() {
  heading "8. Start ${#DEVICES[@]} arm64 devices whose MQTT broker is the gateway's TCP port $MQTT_GW"
  init_devices "$MQTT_GW" "$W/volumes/broker"
  say "  dev-1's config (the others alike):"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps(j["mqtt"]))' "$W/devices/dev-1.json" |
    sed "s|$W|\$W|g" | indent | indent
  start_agents
  wait_devices_online 60
  show tug devices list || die "tug devices list failed"
  # An operator label: it exists only in the controller's database (devices do not report it).
  show tug devices label dev-1 site=harbour || die "tug devices label failed"
  ok "all ${#DEVICES[@]} devices registered with the controller through HAProxy (MQTT/TLS) -> Mosquitto"
}

add_releases() {
  heading "9. Register the signed releases with the controller (through the gateway)"
  local f
  for f in "$W"/release-v*.json; do
    show tug releases add "$f" || die "tug releases add $f failed"
  done
  ok "releases verified against root.json and stored in \$W/volumes/controller/controller.db"
}

fleet_table() {
  local d st
  say "  on the devices themselves (device-agent status --json):"
  printf '    %-6s %-7s %-10s %-8s %s\n' DEVICE ACTIVE STATUS RUNNING "LAST JOB"
  for d in "${DEVICES[@]}"; do
    st=$(dev_status "$d") || die "device-agent status failed for $d"
    json_get - '"%-6s %-7s %-10s %-8s %s" % ("'"$d"'", ("v%s" % j["active"]["version"]) if j["active"] else "-", j["active"]["status"] if j["active"] else "-", ("yes" if j["active"]["running"] else "NO") if j["active"] else "-", "%s %s" % (j["job"]["id"] or "-", j["job"]["phase"]))' <<<"$st" | indent
  done
}

rollout_v1_v2() {
  heading "10. Roll out v1 to all devices, then v2 in two phases (1 canary, then 100%)"
  local t0=$SECONDS
  rollout_succeeds 1 100%
  R1=$ROLLOUT
  expect_fleet_on 1
  ok "v1 on all ${#DEVICES[@]} devices ($((SECONDS - t0))s)"
  t0=$SECONDS
  rollout_succeeds 2 1 100%
  R2=$ROLLOUT
  expect_fleet_on 2
  show tug devices list || die "tug devices list failed"
  fleet_table
  ok "v2 on all ${#DEVICES[@]} devices, committed after their health checks ($((SECONDS - t0))s)"
  SUMMARY+=("$R1 (v1, one phase) and $R2 (v2, canary then 100%) succeeded on all ${#DEVICES[@]} devices, every device and tug call going through HAProxy.")
}

controller_task() {  # the controller app's one task as "ID HOST" (GET /v2/apps/tugboat/controller/tasks)
  svc GET /v2/apps/tugboat/controller/tasks | json_get - '" ".join([j["tasks"][0]["id"], j["tasks"][0]["host"]]) if len(j["tasks"]) == 1 else ""'
}

new_controller_up() {  # a different task than $1, on node-0, healthy, deployments converged, answering via the gateway
  local t
  t=$(controller_task)
  [ -n "$t" ] && [ "${t%% *}" != "$1" ] || return 1
  app_healthy /tugboat/controller && controller_healthz
}

kill_controller() {
  heading "11. kill -9 the controller's task: the services framework replaces it on node-0, same database"
  local task host node pid comm t0 new newhost newpid db_before db_after
  read -r task host <<<"$(controller_task)"
  [ "$host" = node-0 ] || die "controller task '$task' is on '$host', not node-0"
  say "  the controller's task, from the services framework and from node-0's own API:"
  cmdline curl -H 'Authorization: Bearer $SVC_TOKEN' "$SVC/v2/apps/tugboat/controller/tasks"
  say "    $task on $host"
  cmdline curl "${NODE_API[node-0]}/api/v1/tasks/$task"
  node=$(http_get "${NODE_API[node-0]}/api/v1/tasks/$task")
  pid=$(json_get - 'j["pid"]' <<<"$node")
  json_get - '"state %s, healthy %s, pid %s, sandbox %s" % (j["state"], j["healthy"], j["pid"], j["sandbox"])' <<<"$node" |
    sed "s|$W|\$W|g" | indent
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  [ "$comm" = iot-controller ] || die "pid $pid is '$comm', not iot-controller"
  db_before=$(stat -c '%i' "$W/volumes/controller/controller.db")
  say "  its database is outside the sandbox, in node-0's host directory \$W/volumes/controller:"
  ls -l "$W/volumes/controller" | grep controller.db | sed "s|$W|\$W|g" | indent
  t0=$SECONDS
  cmdline kill -9 "$pid"
  kill -9 "$pid"
  wait_for 60 "a new, healthy controller task on node-0" new_controller_up "$task"
  local back=$((SECONDS - t0))
  read -r new newhost <<<"$(controller_task)"
  newpid=$(http_get "${NODE_API[node-0]}/api/v1/tasks/$new" | json_get - 'j["pid"]')
  say "  the old task ended (its last status, from node-0):"
  http_get "${NODE_API[node-0]}/api/v1/tasks/$task" |
    json_get - '"    %s: %s" % (j["state"], j["message"].split("; stderr:")[0])' || true
  say "  what cluster-services did (\$W/services.log):"
  grep -F -e "$task" -e "$new" -e "gateway: " "$W/services.log" | grep -F tugboat.controller | tail -4 |
    sed -E 's/^[0-9T:.-]+ [a-z]+ services: //; s/; stderr: .*\)/)/' | cut -c1-150 | indent
  say "  the replacement: $new on $newhost, pid $newpid; tug answers through the gateway again ${back}s after the kill"
  [ "$newhost" = node-0 ] || die "the new controller task is on $newhost, not node-0"
  db_after=$(stat -c '%i' "$W/volumes/controller/controller.db")
  [ "$db_before" = "$db_after" ] || die "controller.db was replaced (inode $db_before -> $db_after)"

  say ""
  say "  what the restarted controller knows (nothing was registered again; the devices' MQTT links to the broker never dropped):"
  show tug releases list || die "tug releases list failed"
  show tug rollout list || die "tug rollout list failed"
  show tug rollout get "$R2" || die "tug rollout get $R2 failed"
  wait_devices_online 30
  show tug devices list || die "tug devices list failed"
  local st
  for r in "$R1" "$R2"; do
    st=$(tug_json rollout get "$r" | json_get - 'j["state"]')
    [ "$st" = succeeded ] || die "after the restart rollout $r is '$st', expected succeeded"
  done
  [ "$(tug_json releases list | json_get - 'len(j["releases"])')" = "$(ls "$W"/release-v*.json | wc -l)" ] ||
    die "the restarted controller does not have every release"
  [ "$(tug_json devices get dev-1 | json_get - '(j.get("operator_labels") or {}).get("site")')" = harbour ] ||
    die "dev-1's operator label site=harbour is gone after the restart"
  expect_fleet_on 2
  ok "same releases, rollouts $R1 and $R2 (succeeded), devices on v2, dev-1's operator label: the state survived"
  SUMMARY+=("kill -9 of the controller ($task, pid $pid): cluster-services started $new on node-0 (constraint node:CLUSTER:node-0) with the same \$W/volumes/controller/controller.db; tug through the gateway answered again ${back}s after the kill, with every release, both rollouts and the operator label.")
}

rollout_v3() {
  heading "12. Roll out the broken v3 through the restarted controller: the canary fails, the rollout aborts"
  local t0=$SECONDS canary
  rollout_aborts 3 1 100%
  R3=$ROLLOUT
  expect_aborted_at_canary "$R3"
  canary=$CANARY
  show tug rollout get "$R3" || die "tug rollout get $R3 failed"
  expect_fleet_on 2
  fleet_table
  ok "canary $canary rolled itself back to v2, $R3 aborted, the others never saw v3 ($((SECONDS - t0))s)"
  SUMMARY+=("$R3 (broken v3) through the restarted controller: canary $canary failed its health check and rolled back, the rollout aborted ($(json_get "$W/rollout-$R3.json" 'j["abort_reason"]')), the other devices stayed on v2.")
}

summary() {
  heading "Summary"
  say "Cluster: etcd, 2 masters, 3 nodes, cluster-services + HAProxy. Gateway: MQTT 127.0.0.1:$MQTT_GW (tcp, TLS passed through), controller API http://127.0.0.1:$API_GW."
  local line
  for line in "${SUMMARY[@]}"; do say "  - $line"; done
  say ""
  printf '%scluster demo passed in %ss%s\n' "$G" "$((SECONDS - START_TIME))" "$N"
}

main() {
  install_traps
  W=$(mktemp -d /tmp/tugboat-cluster.XXXXXX)
  chmod 755 "$W"
  LOG_DIR=$W/logs
  mkdir -p "$W/logs" "$W/nodes"
  say "${B}Tugboat's cloud side on Tugboat's cluster${N}: Mosquitto and the iot-controller as services behind HAProxy; the fleet demo through them; the controller killed and replaced with its state."
  say "Working dir W=$W (removed at the end unless KEEP=1)"
  setup_host
  build
  build_releases
  start_cluster
  start_services
  prepare_volumes
  create_apps
  start_devices
  add_releases
  rollout_v1_v2
  kill_controller
  [ "$SHORT" = 1 ] || rollout_v3
  summary
}

main "$@"
