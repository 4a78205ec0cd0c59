#!/usr/bin/env bash
# Builds (once) a Debian bookworm minbase root for the subhost tests and benchmark and prints its
# path. The result is cached under /var/cache/asl-test/minbase (override with ASL_MINBASE_DIR) and
# reused when present, because debootstrap takes minutes. A half-built tree is never reused: the
# root is built in a temporary directory and renamed into place only when debootstrap succeeded.
# Needs root and the `debootstrap` package (scripts/deps/subhost.apt).
set -euo pipefail
dest=${ASL_MINBASE_DIR:-/var/cache/asl-test/minbase}
suite=${ASL_MINBASE_SUITE:-bookworm}
mirror=${ASL_MINBASE_MIRROR:-http://deb.debian.org/debian}
if [ -x "$dest/bin/sh" ] && [ -f "$dest/.asl-minbase-complete" ]; then
  echo "$dest"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "minbase.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
parent=$(dirname "$dest")
mkdir -p "$parent"
# Serialise concurrent callers (parallel tests): the second one waits and then reuses the result.
exec 9>"$parent/.minbase.lock"
flock 9
if [ -x "$dest/bin/sh" ] && [ -f "$dest/.asl-minbase-complete" ]; then
  echo "$dest"
  exit 0
fi
tmp=$(mktemp -d "$parent/.minbase.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "minbase.sh: debootstrap --variant=minbase $suite into $tmp (takes a few minutes, once)" >&2
debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$parent/minbase.log" 2>&1 || {
  echo "minbase.sh: debootstrap failed; see $parent/minbase.log" >&2
  exit 1
}
touch "$tmp/.asl-minbase-complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
