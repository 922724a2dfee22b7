#!/usr/bin/env bash
# Downloads the Debian .debs that make tiny real ARM base images (busybox-static) into a cache dir.
# Idempotent: skips what is already there. apt only lists a foreign architecture's packages once that
# architecture is added, so arm64/armhf are added (download only; nothing foreign gets installed).
set -euo pipefail
# shellcheck source=../scripts/lib/apt.sh
. "$(dirname "$0")/../scripts/lib/apt.sh"
DIR=${1:-/var/cache/tugboat/debs}
mkdir -p "$DIR"
chmod 755 "$DIR"
need_update=0
for arch in arm64 armhf; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    need_update=1
  fi
done
[ $need_update = 0 ] || apt_update
for arch in arm64 armhf amd64; do
  if ! ls "$DIR"/busybox-static_*_"$arch".deb >/dev/null 2>&1; then
    tmp=$(mktemp -d); chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -qq "busybox-static:$arch" 2>/dev/null) || {
      apt_update && (cd "$tmp" && apt-get -o Acquire::Retries=3 download -qq "busybox-static:$arch")
    }
    mv "$tmp"/*.deb "$DIR"/ && rmdir "$tmp"
  fi
done
ls "$DIR"/busybox-static_*.deb | sed 's/^/fetch-base-debs: /'
