#!/usr/bin/env bash
# Remote intake benchmark: the same dataset taken in by asl into a local store, by asl into
# an asl-server (local backend, HTTPS on loopback), and by restic into a local repository, in
# one run; then 8 clients at once into one server. See docs/BENCHMARKS.md.
#
# Usage: bench/remote/run.sh            (root not needed; D1 = a copy of /usr/share)
#
# Environment (defaults in brackets):
#   RUNS  [3]   repetitions; the report quotes medians
#   ASL   [target/release/asl]  the asl binary (cargo build --release -p asl)
#   DATA  [/var/tmp/asl-bench/data]  datasets (bench/intake/datasets.sh D1 makes d1)
#   WORK  [/var/tmp/asl-bench/remote]  scratch, removed at the end
#   OUT   [bench/results/<UTC date>-remote-<rev>.md]  the report; rows go to the same name .csv
#
# Phases per run and tool: first intake, unchanged re-intake, full restore of the latest
# snapshot. asl local is measured twice: with its stat cache (what a user gets) and with
# --no-stat-cache (every file read and hashed, as a remote intake did before it had its
# client-side stat cache). A remote intake's stat cache goes to $WORK/xdg-cache
# (XDG_CACHE_HOME), so it is removed with WORK; each run's server store is new (another
# store_id), so a first intake never finds a cache. Every command runs under /usr/bin/time.
# With Garage installed (scripts/install-garage.sh; GARAGE_TOOLS=0 to leave it out), also:
# asl-garage, asl-server with the store in a 3-node Garage cluster (rf=3) on loopback, and
# restic-s3, restic's S3 backend on the same cluster (bench/remote/garage.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}
DATA=${DATA:-/var/tmp/asl-bench/data}
WORK=${WORK:-/var/tmp/asl-bench/remote}
REV=$(git -C "$REPO" rev-parse --short HEAD)
OUT=${OUT:-$REPO/bench/results/$(date -u +%Y-%m-%d)-remote-$REV.md}
CSV=${OUT%.md}.csv
ASL=${ASL:-$REPO/target/release/asl}
[ -x "$ASL" ] || { echo "run.sh: no asl binary at $ASL (cargo build --release -p asl)" >&2; exit 1; }
command -v restic >/dev/null || { echo "run.sh: restic is missing (scripts/deps/bench.apt)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "run.sh: openssl is missing" >&2; exit 1; }
DATA=$DATA bash "$REPO/bench/intake/datasets.sh" d1 >/dev/null
SRC=$DATA/d1
rm -rf "$WORK"; mkdir -p "$WORK"
export XDG_CACHE_HOME=$WORK/xdg-cache
SERVER_PID=
source "$HERE/garage.sh"
# Restores go into a new, empty ext4 file system each (as in bench/intake.sh, whose notes say
# why: restoring where the previous tool's restore was just deleted measures ext4's inode
# allocator); without root or mkfs.ext4, RESTORE_FS=same restores into WORK.
RESTORE_FS=${RESTORE_FS:-fresh}
if [ "$RESTORE_FS" = fresh ] && { [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null; }; then
  echo "run.sh: RESTORE_FS=fresh needs root and mkfs.ext4; run as root or with RESTORE_FS=same" >&2; exit 1
fi
RSTFS=$WORK/rstfs
fresh_fs() {
  [ "$RESTORE_FS" = fresh ] || return 0
  truncate -s $(( $(du -sb "$SRC" | cut -f1) * 2 + (1 << 30) )) "$RSTFS.img"
  mkfs.ext4 -q -F "$RSTFS.img" && mkdir -p "$RSTFS" && mount -o loop "$RSTFS.img" "$RSTFS"
}
drop_fs() {
  [ "$RESTORE_FS" = fresh ] || return 0
  umount "$RSTFS" 2>/dev/null || true
  rm -f "$RSTFS.img"
}
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  garage_stop
  drop_fs
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "tool,phase,run,wall_s,user_s,sys_s,max_rss_kb,bytes_sent" > "$CSV"
# measure TOOL PHASE RUN CMD...: one row.
measure() {
  local tool=$1 phase=$2 run=$3; shift 3
  local t=$WORK/time.txt out=$WORK/out.json
  /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > "$out"
  local sent=
  if [ "$phase" != restore ] && { [ "$tool" = asl-remote ] || [ "$tool" = asl-garage ]; }; then
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$out")
  fi
  read -r wall user sys rss < "$t"
  echo "$tool,$phase,$run,$wall,$user,$sys,$rss,$sent" >> "$CSV"
}

# The server: a client key, a certificate for 127.0.0.1 signed by a throwaway CA (rustls
# refuses a CA certificate as the server's own: CaUsedAsEndEntity), one store.
"$ASL" key generate "$WORK/client.key" >/dev/null
PUB=$("$ASL" key show --json "$WORK/client.key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["public"])')
EC=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${EC[@]}" -days 2 -subj /CN=asl-bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req "${EC[@]}" -subj /CN=127.0.0.1 -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$WORK/server.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/server.ext" -out "$WORK/server.crt" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# start_server DIR, or start_server s3:PREFIX for a store in the Garage bucket.
start_server() {
  local store="store.main.path = $1"
  case $1 in s3:*)
    printf 'access_key = %s\nsecret_key = %s\n' "$GARAGE_AK" "$GARAGE_SK" > "$WORK/garage.cred"
    store="store.main.s3.endpoint = $GARAGE_S3
store.main.s3.bucket = asl-bench
store.main.s3.prefix = ${1#s3:}
store.main.s3.region = garage
store.main.s3.credentials = $WORK/garage.cred";;
  esac
  cat > "$WORK/server.conf" <<EOF
listen = 127.0.0.1:$PORT
tls.cert = $WORK/server.crt
tls.key = $WORK/server.key
$store
key.bench.public = $PUB
grant.bench.main = read, write
EOF
  "$ASL" server -q --config "$WORK/server.conf" & SERVER_PID=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: asl-server did not start" >&2; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
REMOTE=(--remote "https://127.0.0.1:$PORT/main" --key "$WORK/client.key" --ca "$WORK/ca.crt")
export RESTIC_PASSWORD=bench
TOOLS=(asl-local asl-local-nocache asl-remote restic)
if [ "${GARAGE_TOOLS:-1}" = 1 ] && [ -x "$GARAGE" ]; then
  garage_start "$WORK/garage"
  TOOLS+=(asl-garage restic-s3)
fi

for run in $(seq "$RUNS"); do
  for tool in "${TOOLS[@]}"; do
    repo=$WORK/repo-$tool; target=$RSTFS/restore
    rm -rf "$repo" "$target"
    fresh_fs
    case $tool in
      asl-local|asl-local-nocache)
        flags=(); [ $tool = asl-local-nocache ] && flags=(--no-stat-cache)
        measure $tool first "$run" "$ASL" intake --json "${flags[@]}" --store "$repo" "$SRC"
        measure $tool unchanged "$run" "$ASL" intake --json "${flags[@]}" --store "$repo" "$SRC"
        measure $tool restore "$run" "$ASL" admin --json --store "$repo" restore latest --target "$target"
        ;;
      asl-remote)
        start_server "$repo"
        measure $tool first "$run" "$ASL" intake --json "${REMOTE[@]}" "$SRC"
        measure $tool unchanged "$run" "$ASL" intake --json "${REMOTE[@]}" "$SRC"
        measure $tool restore "$run" "$ASL" admin --json "${REMOTE[@]}" restore latest --target "$target"
        stop_server
        ;;
      asl-garage)
        start_server "s3:run-$run"
        measure $tool first "$run" "$ASL" intake --json "${REMOTE[@]}" "$SRC"
        measure $tool unchanged "$run" "$ASL" intake --json "${REMOTE[@]}" "$SRC"
        measure $tool restore "$run" "$ASL" admin --json "${REMOTE[@]}" restore latest --target "$target"
        stop_server
        ;;
      restic-s3)
        # Path-style requests (the bucket in the path, not the host name): Garage's S3 API on
        # a loopback address has no DNS names for buckets.
        s3=(-o s3.region=garage -o s3.bucket-lookup=path -r "s3:$GARAGE_S3/asl-bench/restic-$run")
        export AWS_ACCESS_KEY_ID=$GARAGE_AK AWS_SECRET_ACCESS_KEY=$GARAGE_SK AWS_DEFAULT_REGION=garage
        restic init -q "${s3[@]}" >/dev/null
        measure $tool first "$run" restic -q "${s3[@]}" backup "$SRC"
        measure $tool unchanged "$run" restic -q "${s3[@]}" backup "$SRC"
        measure $tool restore "$run" restic -q "${s3[@]}" restore latest --target "$target"
        ;;
      restic)
        restic init -q -r "$repo" >/dev/null
        measure $tool first "$run" restic -q -r "$repo" backup "$SRC"
        measure $tool unchanged "$run" restic -q -r "$repo" backup "$SRC"
        measure $tool restore "$run" restic -q -r "$repo" restore latest --target "$target"
        ;;
    esac
    rm -rf "$repo" "$target"
    drop_fs
  done
done

# 8 clients at once into one server: the tree split in 8 parts, one client per part; with the
# store in a local directory, and (with Garage) in the bucket.
LOAD=$WORK/load.csv
echo "backend,run,client,wall_s,commit_s,bytes_sent" > "$LOAD"
mapfile -t PARTS < <(find "$SRC" -mindepth 1 -maxdepth 1 -type d | sort | awk 'NR<=8')
BACKENDS=(disk); [ ${#TOOLS[@]} -gt 4 ] && BACKENDS+=(garage)
for backend in "${BACKENDS[@]}"; do
  for run in $(seq "$RUNS"); do
    rm -rf "$WORK/load-store"
    if [ "$backend" = disk ]; then start_server "$WORK/load-store"; else start_server "s3:load-$run"; fi
    start=$(date +%s.%N)
    pids=()
    for i in "${!PARTS[@]}"; do
      /usr/bin/time -f '%e' -o "$WORK/load-$i.t" "$ASL" intake --json "${REMOTE[@]}" "${PARTS[$i]}" > "$WORK/load-$i.json" &
      pids+=($!)
    done
    wait "${pids[@]}"
    end=$(date +%s.%N)
    for i in "${!PARTS[@]}"; do
      python3 - "$backend" "$run" "$i" "$WORK/load-$i.t" "$WORK/load-$i.json" >> "$LOAD" <<'PY'
import json, sys
backend, run, i, t, j = sys.argv[1:]
r = json.load(open(j))
print(f"{backend},{run},{i},{open(t).read().split()[-1]},{r['commit_seconds']:.4f},{r['bytes_sent']}")
PY
    done
    echo "# load $backend $run: $(python3 -c "print(f'{$end-$start:.2f}')") s wall for 8 clients" >> "$LOAD"
    stop_server
  done
done
cp "$LOAD" "${OUT%.md}-load.csv"

python3 "$HERE/report.py" "$CSV" "$LOAD" "$SRC" "$REV" "$0" > "$OUT"
echo "wrote $OUT"
