#!/usr/bin/env bash
# libasl.so against the Rust API it wraps: put and get throughput of 4 KiB and 16 MiB objects,
# the same operations on the same bytes (bench/ffi/bench.c and
# crates/asl-ffi/examples/bench_rust.rs), in alternating order, each run on a fresh store.
# Issue 21's target: the C figure at least 95 % of the Rust one.
#
# Usage: bench/ffi/run.sh [ROUNDS]     (default 11)
#   SMALL=20000 LARGE=16: how many 4 KiB and 16 MiB objects each run puts and gets (about
#   80 MiB and 256 MiB: long enough that per-run noise does not swamp the figure)
# Writes bench/results/<date>-ffi-<commit>.{md,csv}: the medians, the ratios, every raw run.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-11}
small=${SMALL:-20000}
large=${LARGE:-16}
cargo build --release --locked -p asl-ffi --lib --examples

work=$(mktemp -d "${TMPDIR:-/tmp}/asl-bench-ffi.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/lib"
ln -s "$PWD/target/release/libasl.so" "$work/lib/libasl.so.0"
ln -s "$PWD/target/release/libasl.so" "$work/lib/libasl.so"
gcc -O2 -std=c11 -Wall -Werror -I crates/asl-ffi/include bench/ffi/bench.c \
  -L "$work/lib" -lasl -o "$work/bench"

raw="$work/raw.txt"
: > "$raw"
for round in $(seq 1 "$rounds"); do
  for spec in "4096 $small" "16777216 $large"; do
    read -r size count <<< "$spec"
    # Alternate which side runs first, so neither always meets a warmer page cache.
    if [ $((round % 2)) -eq 0 ]; then order="c rust"; else order="rust c"; fi
    for impl in $order; do
      rm -rf "$work/store"
      if [ "$impl" = c ]; then
        LD_LIBRARY_PATH="$work/lib" "$work/bench" "$work/store" "$size" "$count" "$round"
      else
        target/release/examples/bench_rust "$work/store" "$size" "$count" "$round"
      fi | sed "s/^/$round /" >> "$raw"
    done
  done
done

date=$(date -u +%Y-%m-%d)
commit=$(git rev-parse --short HEAD)
out="bench/results/$date-ffi-$commit"
{
  echo "round,impl,op,size,count,seconds,cpu_seconds"
  tr ' ' ',' < "$raw"
} > "$out.csv"
CMDLINE="SMALL=$small LARGE=$large bash bench/ffi/run.sh $rounds" python3 - "$out.csv" "$rounds" > "$out.md" <<'PY'
import csv, statistics, sys, os, platform
rows = list(csv.DictReader(open(sys.argv[1])))
print("# libasl.so (C) against the Rust API: put/get throughput\n")
print("Command: `%s` (release build, one fresh store per run, order alternating per round). "
      "Machine: %s, %d cores, load average %s at the end.\n"
      % (os.environ.get("CMDLINE", sys.argv[2]), platform.platform(), os.cpu_count(),
         " ".join("%.2f" % l for l in os.getloadavg())))
print("| op | object | objects | Rust MB/s (wall) | C MB/s (wall) | C / Rust wall | "
      "Rust CPU s | C CPU s | C / Rust CPU | paired wall ratios (min-max) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for op in ("put", "get"):
    for size, name in (("4096", "4 KiB"), ("16777216", "16 MiB")):
        sel = {impl: [r for r in rows if (r["impl"], r["op"], r["size"]) == (impl, op, size)]
               for impl in ("c", "rust")}
        count = int(sel["c"][0]["count"])
        mb = int(size) * count / 1e6
        wall = {i: statistics.median(float(r["seconds"]) for r in sel[i]) for i in sel}
        cpu = {i: statistics.median(float(r["cpu_seconds"]) for r in sel[i]) for i in sel}
        by_round = {i: {r["round"]: float(r["seconds"]) for r in sel[i]} for i in sel}
        paired = [by_round["rust"][k] / by_round["c"][k] for k in by_round["c"]]
        print("| %s | %s | %d | %.1f | %.1f | %.3f | %.3f | %.3f | %.3f | %.2f-%.2f |" % (
            op, name, count, mb / wall["rust"], mb / wall["c"], wall["rust"] / wall["c"],
            cpu["rust"], cpu["c"], cpu["rust"] / cpu["c"], min(paired), max(paired)))
print("\nC / Rust is the Rust median time over the C one: the C figure's share of the Rust "
      "throughput (1.0: the same; the issue's target is >= 0.95), by wall time and by the "
      "process's CPU time (user + system, all threads), which a loaded machine disturbs less. "
      "`put` times the puts and the commit; `get` reads every object back into one buffer and "
      "compares it. Raw runs: the .csv beside this file.")
PY
cat "$out.md"
echo "results: $out.md, $out.csv"
