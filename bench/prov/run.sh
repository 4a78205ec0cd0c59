#!/bin/bash
# Side-by-side provenance benchmark (run as root, alone on the machine; not a test).
#   1. Cost of observing a file-heavy command: plain vs asl-capture --trace none|fanotify|ptrace,
#      the anchor fatrace (fanotify, research/anchors-store.md A.3) watching the plain run, and
#      a floor for a fanotify capture (bench/prov/fanotify-floor.c).
#   2. Hashing a ~45k-file input set: asl-capture --artifact-inputs (cold, then with a warm stat
#      cache) vs in-toto-run -m on the same set.
# usage: bench/prov/run.sh ASL_BINARY [OUT.md]
#   (needs fatrace, in-toto (pip), openssl, cc: bash scripts/install-deps.sh --bench)
# Every workload runs in paired rounds (bench/prov/paired.py): each round runs every command
# once, back to back, and a command is judged on its per-round ratio to the baseline, since
# this VM drifts by ±15 % within minutes (bench/prov/report.py).
#   W1_ROUNDS (30), W1B_ROUNDS (20), HASH_ROUNDS (15): rounds per workload.
set -euo pipefail
ASL=$(realpath "${1:?usage: run.sh ASL_BINARY [OUT.md]}")
OUT=${2:-bench/results/prov-$(date -u +%F).md}
HERE=$(cd "$(dirname "$0")" && pwd)
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
# open, commit) is amortised and the cost per event decides.
W1B="tar -cf - /usr/share | cat > /dev/null"
cap() { echo "$ASL capture -q --store $WORK/store --trace $1 --cmd '$2'"; }
# A floor: the command's own mount tree alone, then with the fanotify events asl-capture asks
# for read and dropped (bench/prov/fanotify-floor.c): the kernel's cost per event and a
# reader that does nothing with them.
cc -O2 -o "$WORK/fanotify-floor" "$HERE/fanotify-floor.c"
floor_ns() { echo "kernel floor: private mount tree=$WORK/fanotify-floor ns '$1'"; }
floor_read() { echo "kernel floor: + fanotify events read=$WORK/fanotify-floor read '$1'"; }

python3 "$HERE/paired.py" "${W1_ROUNDS:-30}" "$WORK/w1.json" --fatrace "fatrace -c (anchor)" \
  "plain=$W1" \
  "capture --trace none=$(cap none "$W1")" \
  "capture --trace fanotify=$(cap fanotify "$W1")" \
  "$(floor_ns "$W1")" "$(floor_read "$W1")" \
  "fatrace -c (anchor)=$W1" \
  "capture --trace ptrace=$(cap ptrace "$W1")"
python3 "$HERE/paired.py" "${W1B_ROUNDS:-20}" "$WORK/w1b.json" --fatrace "fatrace -c (anchor)" \
  "plain=$W1B" \
  "capture --trace none=$(cap none "$W1B")" \
  "capture --trace fanotify=$(cap fanotify "$W1B")" \
  "$(floor_ns "$W1B")" "$(floor_read "$W1B")" \
  "fatrace -c (anchor)=$W1B"

# Hashing the input set. asl-capture cold: a fresh store each run; warm: the stat cache of a
# store that holds the set already (unchanged files are not read again).
args=(); for p in "${SET[@]}"; do args+=(--artifact-inputs "$p"); done
"$ASL" init-store --store "$WORK/warm" >/dev/null
python3 "$HERE/paired.py" "${HASH_ROUNDS:-15}" "$WORK/hash.json" \
  --prepare "asl-capture cold=rm -rf $WORK/cold && $ASL init-store --store $WORK/cold" \
  "in-toto-run -m=in-toto-run -n step --signing-key $WORK/key.pem -m ${SET[*]} --metadata-directory $WORK -- true" \
  "asl-capture cold=$ASL capture -q --store $WORK/cold --trace none ${args[*]} -- true" \
  "asl-capture warm (stat cache)=$ASL capture -q --store $WORK/warm --trace none ${args[*]} -- true"

{
  echo "# Provenance benchmark — $(date -u +%FT%TZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -r). Binary: $ASL ($("$ASL" --version 2>/dev/null || echo '?'))."
  echo "Input set: ${SET[*]} ($files files, $bytes bytes). Anchors: $(fatrace --help >/dev/null 2>&1 && dpkg-query -W -f='fatrace ${Version}' fatrace), in-toto-run $(in-toto-run --version 2>/dev/null | awk '{print $NF}')."
  echo
  echo "## Observation cost, W1 = \`$W1\`"
  echo; python3 "$HERE/report.py" "$WORK" table w1; echo
  echo "## Observation cost, W1b = \`$W1B\`"
  echo; python3 "$HERE/report.py" "$WORK" table w1b; echo
  echo "## Hashing the input set"
  echo; python3 "$HERE/report.py" "$WORK" table hash; echo
  echo "## The targets of issue 4"
  echo
  python3 "$HERE/report.py" "$WORK" targets
  echo
  echo "The raw rounds (seconds; columns in the order of \`commands\`):"
  echo
  for w in w1 w1b hash; do echo "\`$w\`: \`$(cat "$WORK/$w.json")\`"; echo; done
} > "$OUT"
echo "wrote $OUT"
