#!/usr/bin/env bash
# Cost of making a tree writable and back: `asl-usroverlay apply` + `remove` (records, locks,
# tagged tmpfs + overlay through the new mount API, checks) next to the anchor — what an
# operator does by hand (or bootc does in-process): mount a tmpfs, mount -t overlay, unmount
# both. Runs as root inside a private mount namespace on a tmpfs tree; the host is untouched.
#
# Usage: bench/usroverlay/apply-remove.sh [ASL_BINARY] [ROUNDS]   (default: target/release/asl, 200)
set -euo pipefail
ASL=${1:-target/release/asl}
ROUNDS=${2:-200}
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
ASL=$(readlink -f "$ASL")

exec unshare --mount --propagation private bash -s "$ASL" "$ROUNDS" <<'INNER'
set -euo pipefail
ASL=$1; ROUNDS=$2
W=$(mktemp -d /tmp/uo-bench.XXXXXX)
trap 'umount -R "$W" 2>/dev/null || true; rm -rf "$W"' EXIT
mount -t tmpfs bench "$W"
mkdir -p "$W/tree/bin" "$W/state" "$W/hand"
for i in $(seq 1 200); do echo "$i" > "$W/tree/bin/f$i"; done

now() { date +%s%N; }
report() { # name start end
  local us=$(( ($3 - $2) / ROUNDS / 1000 ))
  printf '| %-46s | %7d µs |\n' "$1" "$us"
}

echo "| operation (mean of $ROUNDS rounds, this host) | per round |"
echo "|---|---|"

t0=$(now)
for _ in $(seq 1 "$ROUNDS"); do
  "$ASL" usroverlay --state-root "$W/state" apply --path "$W/tree" --name b >/dev/null 2>&1
  "$ASL" usroverlay --state-root "$W/state" remove b >/dev/null
done
report "asl-usroverlay apply + remove (transient)" "$t0" "$(now)"

t0=$(now)
for _ in $(seq 1 "$ROUNDS"); do
  "$ASL" usroverlay --state-root "$W/state" apply --path "$W/tree" --name b --mode hotfix >/dev/null 2>&1
  "$ASL" usroverlay --state-root "$W/state" remove b >/dev/null
done
report "asl-usroverlay apply + remove (hotfix)" "$t0" "$(now)"

t0=$(now)
for _ in $(seq 1 "$ROUNDS"); do
  mount -t tmpfs -o mode=0700 hand "$W/hand"
  mkdir "$W/hand/u" "$W/hand/w"
  mount -t overlay hand -o "lowerdir=$W/tree,upperdir=$W/hand/u,workdir=$W/hand/w" "$W/tree"
  umount "$W/tree"
  umount "$W/hand"
done
report "anchor: mount tmpfs + mount -t overlay + 2×umount" "$t0" "$(now)"

t0=$(now)
for _ in $(seq 1 "$ROUNDS"); do
  "$ASL" usroverlay --state-root "$W/state" status >/dev/null
done
report "asl-usroverlay status (no overlays)" "$t0" "$(now)"
INNER
