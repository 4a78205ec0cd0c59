#!/usr/bin/env bash
# Prepares the benchmark datasets of bench/intake.sh (read-only masters; the benchmark copies
# them before every run because the incremental phase mutates its copy).
#
# Usage: bench/intake/datasets.sh D1|D2|D3|D4...     (DATA=/var/tmp/asl-bench/data by default)
#
#   D1  a copy of /usr/share (many small text files, symlinks)                    -> $DATA/d1
#   D2  a Debian bookworm minbase root (scripts/minbase.sh, cached under
#       /var/cache/asl-test/minbase)                                                -> $DATA/d2
#       and its "drifted" copy: `apt-get install python3 xz-utils` in a chroot    -> $DATA/d2-drift
#   D3  the Rust toolchain directory (`rustc --print sysroot`, large binaries)     -> $DATA/d3
#   D4  an approximation of asl_fs::testing::build_rescue_tree written in Python
#       (bench/intake/rescue-tree.py: same odd cases, larger data part)            -> $DATA/d4
#
# A dataset that is already present (marked complete) is reused. Only Debian packages are
# downloaded (D2, from the Debian mirror through debootstrap and apt).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATA=${DATA:-/var/tmp/asl-bench/data}
mkdir -p "$DATA"

done_mark() { [ -f "$DATA/.$1.complete" ]; }
mark() { touch "$DATA/.$1.complete"; }

prep() {
  local d=$1
  if done_mark "$d"; then echo "$d: present ($DATA/$d)"; return; fi
  rm -rf "${DATA:?}/$d" "${DATA:?}/$d-drift"
  case $d in
    d1)
      cp -a /usr/share "$DATA/d1"
      ;;
    d2)
      [ "$(id -u)" = 0 ] || { echo "D2 needs root (debootstrap, chroot)" >&2; exit 1; }
      local base
      base=$("$REPO/scripts/minbase.sh")
      cp -a "$base" "$DATA/d2"
      rm -f "$DATA/d2/.asl-minbase-complete"
      cp -a "$DATA/d2" "$DATA/d2-drift"
      # The drift: what an admin does to a fresh root. Needs the Debian mirror; /proc and /dev
      # are not mounted (apt and dpkg do not need them for these packages).
      cp /etc/resolv.conf "$DATA/d2-drift/etc/resolv.conf"
      chroot "$DATA/d2-drift" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get install -y -qq python3 xz-utils >/dev/null'
      ;;
    d3)
      cp -a "$(rustc --print sysroot)" "$DATA/d3"
      ;;
    d4)
      mkdir -p "$DATA/d4"
      python3 "$HERE/rescue-tree.py" "$DATA/d4"
      ;;
    *) echo "unknown dataset $d (D1..D4)" >&2; exit 2 ;;
  esac
  mark "$d"
  echo "$d: $(du -sb "$DATA/$d" | cut -f1) bytes, $(find "$DATA/$d" -type f | wc -l) files"
}

[ $# -gt 0 ] || { sed -n 2,16p "$0"; exit 2; }
for a in "$@"; do prep "$(echo "$a" | tr 'A-Z' 'a-z')"; done
