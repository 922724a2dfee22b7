#!/bin/sh
# Builds cluster-scheduler/java (client library, examples, self-test) into one jar with nothing but the JDK.
#
#   cluster-scheduler/java/build.sh [OUT_DIR]      -> OUT_DIR/tugboat-java.jar (default: <repo>/build/java)
#
# Quiet unless something fails. Idempotent and safe to re-run or run concurrently: the jar is rebuilt only when the
# set of sources or their contents changed (a digest of both is kept beside it), compiled in a private temp dir and
# renamed into place, so a reader never sees a half-written jar. The jar is reproducible (fixed entry timestamps).
# Environment: JAVAC, JAR (default: from PATH / JAVA_HOME).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out_dir=${1:-$repo/build/java}
jar_path=$out_dir/tugboat-java.jar
stamp=$jar_path.inputs

if [ -n "${JAVA_HOME:-}" ]; then
  : "${JAVAC:=$JAVA_HOME/bin/javac}" "${JAR:=$JAVA_HOME/bin/jar}"
fi
JAVAC=${JAVAC:-javac}
JAR=${JAR:-jar}

mkdir -p "$out_dir"
# One build at a time per output dir (ninja and a hand-run build may race).
if command -v flock > /dev/null 2>&1; then
  exec 9> "$out_dir/.tugboat-java.lock"
  flock 9
fi

# Sorted source list, relative to $here, so the digest does not depend on where the repo lives.
sources=$(cd "$here" && find client examples test -name '*.java' -type f | LC_ALL=C sort)
[ -n "$sources" ] || { echo "build.sh: no Java sources under $here" >&2; exit 1; }

digest=$(cd "$here" && {
  echo "build.sh $(sha256sum build.sh | cut -d' ' -f1)"
  "$JAVAC" -version 2>&1
  for f in $sources; do sha256sum "$f"; done
} | sha256sum | cut -d' ' -f1)

if [ -f "$jar_path" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  touch "$jar_path"  # newer than its inputs for make/ninja, even if they were only touched
  exit 0
fi

tmp=$(mktemp -d "$out_dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/classes"

# javac's diagnostics go to a file and are shown only on failure; warnings are errors so they cannot hide.
(cd "$here" && printf '%s\n' $sources > "$tmp/sources.txt")
if ! (cd "$here" && "$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -implicit:none \
        -d "$tmp/classes" @"$tmp/sources.txt") > "$tmp/javac.log" 2>&1; then
  cat "$tmp/javac.log" >&2
  echo "build.sh: javac failed" >&2
  exit 1
fi
if ! "$JAR" --create --file "$tmp/tugboat-java.jar" --date=2000-01-01T00:00:00Z -C "$tmp/classes" . \
        > "$tmp/jar.log" 2>&1; then
  cat "$tmp/jar.log" >&2
  echo "build.sh: jar failed" >&2
  exit 1
fi

mv -f "$tmp/tugboat-java.jar" "$jar_path"
printf '%s\n' "$digest" > "$tmp/stamp"
mv -f "$tmp/stamp" "$stamp"
