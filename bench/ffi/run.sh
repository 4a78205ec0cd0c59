#!/usr/bin/env bash
# libasl.so against the Rust API it wraps: put and get throughput of 4 KiB and 16 MiB objects,
# the same operations on the same bytes (bench/ffi/bench.c and
# crates/asl-ffi/examples/bench_rust.rs), in alternating order, each run on a fresh store.
# Issue 21's target: the C figure at least 95 % of the Rust one.
#
# Usage: bench/ffi/run.sh [ROUNDS]     (default 7)
# Writes bench/results/<date>-ffi-<commit>.{md,csv}: the medians, the ratios, every raw run.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-7}
cargo build --release --locked -p asl-ffi --examples

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
  for spec in "4096 2000" "16777216 8"; do
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
  echo "round,impl,op,size,count,seconds"
  tr ' ' ',' < "$raw"
} > "$out.csv"
python3 - "$out.csv" "$rounds" > "$out.md" <<'PY'
import csv, statistics, sys, os, platform
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for impl in ("c", "rust"):
    for op in ("put", "get"):
        for size in ("4096", "16777216"):
            secs = [float(r["seconds"]) for r in rows
                    if (r["impl"], r["op"], r["size"]) == (impl, op, size)]
            count = int(next(r["count"] for r in rows if r["size"] == size))
            med[impl, op, size] = (statistics.median(secs), count, min(secs), max(secs))
print("# libasl.so (C) against the Rust API: put/get throughput\n")
print("Command: `bash bench/ffi/run.sh %s` (release build, one fresh store per run, order "
      "alternating per round). Machine: %s, %d cores, load average %s at the end.\n"
      % (sys.argv[2], platform.platform(), os.cpu_count(),
         " ".join("%.2f" % l for l in os.getloadavg())))
print("| op | object | objects | Rust median MB/s | C median MB/s | C / Rust | Rust range s | C range s |")
print("|---|---|---|---|---|---|---|---|")
for op in ("put", "get"):
    for size, name in (("4096", "4 KiB"), ("16777216", "16 MiB")):
        r, c = med["rust", op, size], med["c", op, size]
        mb = int(size) * r[1] / 1e6
        print("| %s | %s | %d | %.1f | %.1f | %.3f | %.3f-%.3f | %.3f-%.3f |" % (
            op, name, r[1], mb / r[0], mb / c[0], r[0] / c[0], r[2], r[3], c[2], c[3]))
print("\nC / Rust is the ratio of the medians' throughput (1.0: the same; the issue's target "
      "is >= 0.95). `put` times the puts and the commit; `get` reads every object back into "
      "one buffer and compares it. Raw runs: the .csv beside this file.")
PY
cat "$out.md"
echo "results: $out.md, $out.csv"
