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
# W1b: the same over all of /usr/share (~43k files), where the capture's fixed cost (store
# open, commit) is amortised.
W1B="tar -cf - /usr/share | cat > /dev/null"
# In ROUNDS rounds: hyperfine runs all runs of one command before the next, and this VM drifts
# by ±15 % within minutes, so the plain and captured runs alternate in short blocks and the
# medians are taken over all rounds (bench/prov/medians.py).
ROUNDS=${ROUNDS:-5}
for r in $(seq 1 "$ROUNDS"); do
  hyperfine -N --warmup 1 --runs "${W1_RUNS:-6}" --export-json "$WORK/w1-$r.json" \
    -n plain "sh -c '$W1'" \
    -n "capture --trace none" "$ASL capture -q --store $WORK/store --trace none --cmd '$W1'" \
    -n "capture --trace fanotify" "$ASL capture -q --store $WORK/store --trace fanotify --cmd '$W1'" \
    -n "capture --trace ptrace" "$ASL capture -q --store $WORK/store --trace ptrace --cmd '$W1'"
  hyperfine -N --warmup 1 --runs "${W1B_RUNS:-4}" --export-json "$WORK/w1b-$r.json" \
    -n plain "sh -c '$W1B'" \
    -n "capture --trace fanotify" "$ASL capture -q --store $WORK/store --trace fanotify --cmd '$W1B'"
done

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
  echo; python3 "$(dirname "$0")/medians.py" "$WORK" table w1; echo
  echo "## Observation cost, W1b = \`$W1B\`"
  echo; python3 "$(dirname "$0")/medians.py" "$WORK" table w1b; echo
  echo "## Hashing the input set"
  echo; cat "$WORK/hash.md"; echo; cat "$WORK/warm.md"; echo
  echo "## Medians and the targets of issue 4"
  echo
  python3 "$(dirname "$0")/medians.py" "$WORK" targets
} > "$OUT"
echo "wrote $OUT"
