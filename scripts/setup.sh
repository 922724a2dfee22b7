#!/usr/bin/env bash
# Installs everything Tugboat needs on a Debian 12 machine. Idempotent: safe to run again and again.
# Only Debian's packages are used; nothing is downloaded from anywhere else.
set -euo pipefail

CACHE_DIR=${TUGBOAT_CACHE:-/var/cache/tugboat}
# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl python3 ccache
  libboost-dev libssl-dev libsodium-dev libarchive-dev zlib1g-dev libzstd-dev
  nlohmann-json3-dev libexpected-dev libcli11-dev libspdlog-dev libfmt-dev catch2
  libsqlite3-dev libmosquitto-dev
  docker-registry apache2-utils runc qemu-user-static skopeo umoci mosquitto mosquitto-clients
  iproute2 procps psmisc util-linux
  mmdebstrap arch-test g++-aarch64-linux-gnu g++-arm-linux-gnueabihf binutils-aarch64-linux-gnu file
  etcd-server etcd-client haproxy openjdk-17-jdk-headless
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  $SUDO apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

# Debian starts these daemons on install; Tugboat's tests start their own on free loopback ports.
for svc in docker-registry mosquitto etcd haproxy; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done

"$(dirname "$0")/../cross/register-binfmt.sh"
"$(dirname "$0")/../cross/fetch-base-debs.sh" "$CACHE_DIR/debs"
echo "setup: done"
