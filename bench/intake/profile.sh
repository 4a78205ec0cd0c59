#!/usr/bin/env bash
# Profiles asl's first intake of a dataset with `perf record` (software cpu-clock event: this VM
# exposes no hardware counters) and prints the top functions, self time, all threads together.
#
# Usage: bench/intake/profile.sh [D1|D3|D4] [TOP]   (ASL, DATA, WORK as for bench/intake.sh)
# Writes perf.data and the full report under $WORK/profile-<dataset>/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
d=$(echo "${1:-D1}" | tr 'A-Z' 'a-z'); TOP=${2:-30}
DATA=${DATA:-/var/tmp/asl-bench/data}
WORK=${WORK:-/var/tmp/asl-bench/work}
ASL=${ASL:-$REPO/target/release/asl}
[ -x "$ASL" ] || { echo "profile.sh: no asl binary at $ASL" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile.sh: perf missing (linux-perf)" >&2; exit 1; }
"$HERE/datasets.sh" "$d" >/dev/null
P=$WORK/profile-$d
rm -rf "$P"; mkdir -p "$P"
# Warm cache, as in the default benchmark.
find "$DATA/$d" -type f -print0 | xargs -0 -r cat > /dev/null 2>&1 || true
perf record -e cpu-clock -F 997 -g -o "$P/perf.data" -- \
  "$ASL" asl-intake --store "$P/store" -q "$DATA/$d" 2> "$P/record.log"
perf report -i "$P/perf.data" --no-children --sort symbol --stdio --percent-limit 0.3 \
  -g none 2>/dev/null > "$P/report.txt"
perf report -i "$P/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null > "$P/dso.txt"
perf report -i "$P/perf.data" --children --sort symbol --stdio --percent-limit 2 \
  -g none 2>/dev/null > "$P/children.txt"
echo "# self time by function (top $TOP)"
grep -E '^ +[0-9]' "$P/report.txt" | head -n "$TOP"
echo "# by shared object"
grep -E '^ +[0-9]' "$P/dso.txt" | head -8
echo "# inclusive time (children), >= 2 %"
grep -E '^ +[0-9]' "$P/children.txt" | head -n "$TOP"
# Floors for the same data and cache state: reading everything, and zstd -3 on both cores
# (what asl's compression alone costs at the least).
T() { /usr/bin/time -f "%e s wall, %U+%S s CPU" "$@" 2>&1 >/dev/null | tail -1; }
echo "# floors (warm cache)"
echo "read all (tar | cat):        $(T sh -c "tar -cf - -C '$DATA/$d' . | cat")"
echo "tar | zstd -T2 -3:           $(T sh -c "tar -cf - -C '$DATA/$d' . | zstd -T2 -3 -q -c | wc -c")"
echo "(full reports in $P)"
