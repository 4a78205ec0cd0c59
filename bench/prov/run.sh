#!/bin/bash
# Side-by-side provenance benchmark (run as root; not a test).
#   1. Cost of observing a file-heavy command: plain vs asl-capture --trace none|fanotify|ptrace.
#   2. Hashing a ~45k-file input set: asl-capture --artifact-inputs (cold, then with a warm stat
#      cache) vs in-toto-run -m on the same set.
# usage: bench/prov/run.sh ASL_BINARY [OUT.md]   (needs hyperfine, in-toto (pip), openssl)
set -euo pipefail
ASL=${1:?usage: run.sh ASL_BINARY [OUT.md]}
OUT=${2:-bench/results/prov-$(date -u +%F).md}
WORK=$(mktemp -d /tmp/asl-prov-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SET=(/usr/share /usr/include)
files=$(find "${SET[@]}" -type f | wc -l)
bytes=$(du -scb "${SET[@]}" | tail -1 | cut -f1)
"$ASL" init-store --store "$WORK/store" >/dev/null
openssl genpkey -algorithm ed25519 -out "$WORK/key.pem" 2>/dev/null

# W1: the file-heavy command of research/anchors-store.md A.3 (one process, ~5k files).
W1="tar -cf - /usr/share/doc | cat > /dev/null"
# Enough runs for a median: one run of W1 takes ~0.1 s (ptrace ~1 s).
hyperfine -N --warmup 2 --runs "${W1_RUNS:-30}" --export-markdown "$WORK/w1.md" --export-json "$WORK/w1.json" \
  -n plain "sh -c '$W1'" \
  -n "capture --trace none" "$ASL capture -q --store $WORK/store --trace none --cmd '$W1'" \
  -n "capture --trace fanotify" "$ASL capture -q --store $WORK/store --trace fanotify --cmd '$W1'" \
  -n "capture --trace ptrace" "$ASL capture -q --store $WORK/store --trace ptrace --cmd '$W1'"

# W1b: the same over all of /usr/share (~43k files), where the capture's fixed cost (store
# open, commit) is amortised.
W1B="tar -cf - /usr/share | cat > /dev/null"
hyperfine -N --warmup 1 --runs "${W1B_RUNS:-10}" --export-markdown "$WORK/w1b.md" --export-json "$WORK/w1b.json" \
  -n plain "sh -c '$W1B'" \
  -n "capture --trace fanotify" "$ASL capture -q --store $WORK/store --trace fanotify --cmd '$W1B'"

# Hashing the input set. asl-capture cold: a fresh store each run; warm: the stat cache of
# the previous run is reused (unchanged files are not read again).
args=(); for p in "${SET[@]}"; do args+=(--artifact-inputs "$p"); done
hyperfine -N --runs "${HASH_RUNS:-5}" --export-markdown "$WORK/hash.md" --export-json "$WORK/hash.json" \
  --prepare "sh -c 'rm -rf $WORK/cold && $ASL init-store --store $WORK/cold >/dev/null'" \
  -n "asl-capture cold" "$ASL capture -q --store $WORK/cold --trace none ${args[*]} -- true" \
  -n "in-toto-run -m" "in-toto-run -n step --signing-key $WORK/key.pem -m ${SET[*]} --metadata-directory $WORK -- true"
hyperfine -N --warmup 1 --runs "${HASH_RUNS:-5}" --export-markdown "$WORK/warm.md" --export-json "$WORK/warm.json" \
  -n "asl-capture warm (stat cache)" "$ASL capture -q --store $WORK/store --trace none ${args[*]} -- true"

{
  echo "# Provenance benchmark — $(date -u +%FT%TZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -r). Binary: $ASL. Input set: ${SET[*]} ($files files, $bytes bytes)."
  echo
  echo "## Observation cost, W1 = \`$W1\`"
  echo; cat "$WORK/w1.md"; echo
  echo "## Observation cost, W1b = \`$W1B\`"
  echo; cat "$WORK/w1b.md"; echo
  echo "## Hashing the input set"
  echo; cat "$WORK/hash.md"; echo; cat "$WORK/warm.md"; echo
  echo "## Medians and the targets of issue 4"
  echo
  python3 "$(dirname "$0")/medians.py" "$WORK"
} > "$OUT"
echo "wrote $OUT"
