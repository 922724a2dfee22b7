#!/usr/bin/env bash
# Registers QEMU user emulators with binfmt_misc (flag F: the interpreter is opened at registration, so it
# works inside containers and chroots). Idempotent; says clearly what is wrong when it cannot register.
set -euo pipefail
BINFMT=/proc/sys/fs/binfmt_misc
ARCHES=${*:-aarch64 arm}

if [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || {
    echo "register-binfmt: cannot mount binfmt_misc at $BINFMT (need root: sudo mount -t binfmt_misc binfmt_misc $BINFMT)" >&2
    exit 1
  }
fi
for arch in $ARCHES; do
  name=qemu-$arch
  if [ -e "$BINFMT/$name" ]; then
    if grep -q '^enabled' "$BINFMT/$name" && grep -q 'flags:.*F' "$BINFMT/$name"; then
      continue
    fi
    echo -1 > "$BINFMT/$name"   # wrong flags or disabled: replace it
  fi
  conf=/usr/lib/binfmt.d/$name.conf
  [ -f "$conf" ] || { echo "register-binfmt: $conf missing (apt-get install qemu-user-static)" >&2; exit 1; }
  line=$(grep -v '^#' "$conf" | head -n 1)
  # Debian ships flags "F" or "OCF"; make sure F is there so containers see the interpreter.
  case "${line##*:}" in *F*) ;; *) line="${line}F" ;; esac
  echo "$line" > "$BINFMT/register"
  echo "register-binfmt: registered $name"
done
