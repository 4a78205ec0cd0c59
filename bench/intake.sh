#!/usr/bin/env bash
# Intake benchmark: asl next to restic, borg, casync and ostree on the same data, through the
# same phases, measured the same way. See docs/BENCHMARKS.md.
#
# Usage: bench/intake.sh [D1|D2|D3|D4]...            (default: D1; needs root to drop caches)
#
# Environment (defaults in brackets):
#   RUNS   [3]     repetitions per dataset; the report quotes medians (RUNS=1 for a quick pass)
#   TOOLS  [asl restic borg casync ostree]
#   ASL    [target/release/asl, else $CARGO_TARGET_DIR/release/asl]  the asl binary
#   CACHE  [warm]  warm: `sync`, then read the source tree and the repository into the page cache
#                  before every measured command (CPU-bound comparison, the anchors' setting);
#                  cold: `sync; echo 3 > /proc/sys/vm/drop_caches` instead (root). On a shared
#                  machine cold runs also evict everyone else's files: noisier, not only slower.
#   ASL_REV [git HEAD of this checkout]  the source revision the asl binary was built from
#   DATA   [/var/tmp/asl-bench/data]  datasets, made by bench/intake/datasets.sh (called here)
#   WORK   [/var/tmp/asl-bench/work]  scratch (one copy of the dataset, five repositories)
#   OUT    [bench/results/<UTC date>-intake.md]  the report; raw rows go to the same name .csv
#          (rows of the datasets measured now replace older rows of those datasets; others stay)
#   KEEP   [0]     1: keep the scratch directory of the last run
#   RESTORE_FS [fresh]  fresh: every restore goes to a new, empty ext4 file system (a loop image
#                  under WORK, made and removed around the measured command), so no tool inherits
#                  the inode tables the previous tool's restore left behind (ext4 scans past
#                  recently freed inodes: that kernel time swung restores by 2-5x); same: restore
#                  into WORK itself
#   FIRST_RUN [1]  number of the first run; with FIRST_RUN > 1 the rows of earlier runs of the
#                  same datasets are kept (to add runs to an interrupted series)
#
# Phases, per run: init (not measured) -> first intake -> unchanged re-intake -> mutation
# (D1/D3/D4: bench/intake/mutate.py, anchors-store.md Appendix B; D2: the minbase root becomes
# its drifted copy through `rsync -aHAX --delete`) -> incremental intake -> verify with a full
# data read -> full restore of the latest snapshot. Every measured command runs under
# /usr/bin/time (wall, user, sys, max RSS of the process tree).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-asl restic borg casync ostree}
CACHE=${CACHE:-warm}
DATA=${DATA:-/var/tmp/asl-bench/data}
WORK=${WORK:-/var/tmp/asl-bench/work}
OUT=${OUT:-$REPO/bench/results/$(date -u +%Y-%m-%d)-intake.md}
CSV=${OUT%.md}.csv
META=${OUT%.md}.meta
KEEP=${KEEP:-0}
FIRST_RUN=${FIRST_RUN:-1}
RESTORE_FS=${RESTORE_FS:-fresh}
case $RESTORE_FS in fresh|same) ;; *) echo "RESTORE_FS must be fresh or same" >&2; exit 2 ;; esac
if [ "$RESTORE_FS" = fresh ] && { [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null; }; then
  echo "intake.sh: RESTORE_FS=fresh needs root and mkfs.ext4; run as root or with RESTORE_FS=same" >&2; exit 1
fi
if [ -z "${ASL:-}" ]; then
  ASL=$REPO/target/release/asl
  [ -x "$ASL" ] || ASL=${CARGO_TARGET_DIR:-$REPO/target}/release/asl
fi
[ -x "$ASL" ] || { echo "intake.sh: no asl binary at $ASL (cargo build --release -p asl, or set ASL=)" >&2; exit 1; }
ASL=$(readlink -f "$ASL")
case $CACHE in cold|warm) ;; *) echo "CACHE must be cold or warm" >&2; exit 2 ;; esac
if [ "$CACHE" = cold ] && ! { [ -w /proc/sys/vm/drop_caches ] && [ "$(id -u)" = 0 ]; }; then
  echo "intake.sh: CACHE=cold needs root (drop_caches); run as root or with CACHE=warm" >&2; exit 1
fi
for t in $TOOLS; do
  case $t in asl) ;; *) command -v "$t" >/dev/null || { echo "intake.sh: $t missing: bash scripts/install-deps.sh --bench (scripts/deps/bench.apt)" >&2; exit 1; } ;; esac
done
command -v rsync >/dev/null || { echo "intake.sh: rsync missing (scripts/deps/bench.apt)" >&2; exit 1; }
[ $# -gt 0 ] || set -- D1
DSETS=()
for a in "$@"; do DSETS+=("$(echo "$a" | tr 'A-Z' 'a-z')"); done
"$HERE/intake/datasets.sh" "${DSETS[@]}"

export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export ASL

# The exact commands. R = this tool's repository, SRC = the dataset copy, RST = the restore
# target (does not exist yet), PHASE = first|unchanged|incremental. Run with `sh -c`.
declare -A C=(
  [asl.init]=':'
  [asl.intake]='"$ASL" asl-intake --store "$R" -q "$SRC"'
  [asl.verify]='"$ASL" asl-admin --store "$R" verify --read-data'
  [asl.restore]='"$ASL" asl-admin --store "$R" restore latest --target "$RST"'
  [restic.init]='restic -r "$R" init'
  [restic.intake]='restic -r "$R" backup --host bench "$SRC"'
  [restic.verify]='restic -r "$R" check --read-data'
  [restic.restore]='restic -r "$R" restore latest --target "$RST"'
  [borg.init]='borg init --encryption=repokey-blake2 "$R"'
  [borg.intake]='borg create "$R::$PHASE" "$SRC"'
  [borg.verify]='borg check --verify-data "$R"'
  [borg.restore]='mkdir "$RST" && cd "$RST" && borg extract "$R::incremental"'
  [casync.init]='mkdir "$R"'
  [casync.intake]='casync make --store="$R/store" "$R/$PHASE.caidx" "$SRC"'
  [casync.verify]='casync digest --store="$R/store" "$R/incremental.caidx"'
  [casync.restore]='casync extract --store="$R/store" "$R/incremental.caidx" "$RST"'
  [ostree.init]='ostree --repo="$R" init --mode=archive'
  [ostree.intake]='ostree --repo="$R" commit --branch=bench --tree=dir="$SRC" --no-xattrs'
  [ostree.verify]='ostree --repo="$R" fsck'
  [ostree.restore]='ostree --repo="$R" checkout bench "$RST"'
)

# The directory the mutation duplicates (≈ the `doc/` copy of Appendix B).
declare -A DUP=([d1]=doc [d3]=bin [d4]=plain)

# Bytes of a tool's repository and of its auxiliary local cache (kept outside the repository by
# restic and borg, inside it as cache/ by asl; derived data in every case).
store_bytes() { # tool repo
  if [ "$1" = asl ]; then du -sb --exclude=./cache "$2" | cut -f1; else du -sb "$2" | cut -f1; fi
}
aux_bytes() { # tool repo rundir
  case $1 in
    asl) du -sb "$2/cache" 2>/dev/null | cut -f1 || echo 0 ;;
    restic) du -sb "$3/aux-restic" 2>/dev/null | cut -f1 || echo 0 ;;
    borg) du -sb "$3/aux-borg" 2>/dev/null | cut -f1 || echo 0 ;;
    *) echo 0 ;;
  esac
}
prepare_cache() { # dirs...
  sync
  if [ "$CACHE" = cold ]; then
    echo 3 > /proc/sys/vm/drop_caches
  else
    find "$@" -type f -print0 2>/dev/null | xargs -0 -r cat > /dev/null 2>&1 || true
  fi
}

[ -f "$CSV" ] || echo "dataset,run,tool,phase,rc,wall_s,user_s,sys_s,maxrss_kib,src_bytes,store_bytes,aux_bytes,out_bytes,load1,utc,note" > "$CSV"
for d in "${DSETS[@]}"; do  # re-measuring a dataset replaces its old rows (from FIRST_RUN on)
  awk -F, -v d="$d" -v f="$FIRST_RUN" 'NR==1 || $1!=d || $2<f' "$CSV" > "$CSV.tmp" && mv "$CSV.tmp" "$CSV"
done
{
  for k in "${!C[@]}"; do printf 'cmd.%s\t%s\n' "$k" "${C[$k]}"; done
  printf 'asl.version\t%s (git %s)\n' "$("$ASL" --version 2>/dev/null | head -1)" "${ASL_REV:-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)}"
  printf 'restic.version\t%s\n' "$(restic version 2>/dev/null | head -1)"
  printf 'borg.version\t%s\n' "$(borg --version 2>/dev/null)"
  printf 'casync.version\t%s\n' "$(casync --version 2>/dev/null | head -1)"
  printf 'ostree.version\t%s\n' "ostree $(ostree --version 2>/dev/null | sed -n "s/ *Version: '\(.*\)'/\1/p")"
  printf 'machine.nproc\t%s\n' "$(nproc)"
  printf 'machine.cpu\t%s\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  printf 'machine.mem\t%s\n' "$(free -g | awk '/Mem:/{print $2" GiB"}')"
  printf 'machine.kernel\t%s\n' "$(uname -r)"
} >> "$META"
mkdir -p "$WORK"
printf 'machine.fs\t%s\n' "$(df -T "$WORK" | awk 'NR==2{print $2" ("$1")"}')" >> "$META"

# A new ext4 file system mounted at $1 (image $1.img, sparse, sized for the dataset), and its
# removal. Every mount left by an interrupted run is removed on exit.
fresh_fs() { # mountpoint src_bytes
  local size=$(( $2 * 2 + (1 << 30) ))
  truncate -s "$size" "$1.img" && mkfs.ext4 -q -F "$1.img" && mkdir -p "$1" && mount -o loop "$1.img" "$1"
}
drop_fs() { # mountpoint
  umount "$1" 2>/dev/null || true
  rm -f "$1.img"; rmdir "$1" 2>/dev/null || true
}
drop_all_fs() {
  local m
  for m in "$WORK"/*/rstfs-*; do [ -e "$m.img" ] && drop_fs "$m"; done
  return 0
}
trap drop_all_fs EXIT

measure() { # dataset run tool phase rundir
  local d=$1 run=$2 tool=$3 phase=$4 rd=$5 key=$3.$4 rc=0
  case $phase in first|unchanged|incremental) key=$tool.intake ;; esac
  export R=$rd/repo-$tool SRC=$rd/src RST=$rd/rst-$tool PHASE=$phase
  export RESTIC_CACHE_DIR=$rd/aux-restic BORG_BASE_DIR=$rd/aux-borg
  if [ "$phase" = restore ] && [ "$RESTORE_FS" = fresh ]; then
    fresh_fs "$rd/rstfs-$tool" "$(du -sb "$SRC" | cut -f1)"
    export RST=$rd/rstfs-$tool/t
  fi
  if [ "$phase" = verify ] || [ "$phase" = restore ]; then prepare_cache "$R"; else prepare_cache "$SRC" "$R"; fi
  local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
  ( cd "$rd" && /usr/bin/time -f '%e %U %S %M' -o "$rd/logs/$tool-$phase.time" \
      sh -c "${C[$key]}" > "$rd/logs/$tool-$phase.log" 2>&1 ) || rc=$?
  local wall=nan user=nan sys=nan rss=0
  read -r wall user sys rss < <(grep -E '^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$' "$rd/logs/$tool-$phase.time" | tail -1) || true
  local sb=0 ab=0 ob=0 srcb
  srcb=$(du -sb "$SRC" | cut -f1)
  case $phase in
    restore) ob=$(du -sb "$RST" 2>/dev/null | cut -f1 || echo 0); sb=$(store_bytes "$tool" "$R") ;;
    *) sb=$(store_bytes "$tool" "$R"); ab=$(aux_bytes "$tool" "$R" "$rd") ;;
  esac
  local note=''
  # The last line of the tool's output when it failed (or warned), for the report.
  if [ "$rc" != 0 ]; then note=$(grep -v '^[[:space:]]*$' "$rd/logs/$tool-$phase.log" | tail -1 | tr -d ',"\r' | cut -c1-160); fi
  echo "$d,$run,$tool,$phase,$rc,$wall,$user,$sys,$rss,$srcb,$sb,$ab,$ob,$load1,$(date -u +%FT%TZ),$note" >> "$CSV"
  printf '  %-7s %-12s rc=%-2s wall=%6ss cpu=%6ss rss=%6s MiB store=%s MB\n' "$tool" "$phase" "$rc" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u + s}')" "$((rss / 1024))" "$((sb / 1000000))"
  if [ "$rc" != 0 ]; then tail -3 "$rd/logs/$tool-$phase.log" | sed 's/^/      | /'; fi
  if [ "$phase" = restore ]; then
    if [ "$RESTORE_FS" = fresh ]; then drop_fs "$rd/rstfs-$tool"; else rm -rf "$RST"; fi
  fi
}

for d in "${DSETS[@]}"; do
  printf 'start.%s\t%s\n' "$d" "$(date -u +%FT%TZ)" >> "$META"
  printf 'cmdline.%s.%s\t%s\n' "$d" "$FIRST_RUN" "FIRST_RUN=$FIRST_RUN RUNS=$RUNS TOOLS=\"$TOOLS\" CACHE=$CACHE RESTORE_FS=$RESTORE_FS bench/intake.sh $*" >> "$META"
  printf 'cache.%s\t%s\n' "$d" "$CACHE" >> "$META"
  printf 'restore_fs.%s\t%s\n' "$d" "$RESTORE_FS" >> "$META"
  read -ra tools <<< "$TOOLS"
  for run in $(seq "$FIRST_RUN" $((FIRST_RUN + RUNS - 1))); do
    rd=$WORK/$d-run$run
    rm -rf "$rd"; mkdir -p "$rd/logs"
    echo "== $d run $run (runs $FIRST_RUN..$((FIRST_RUN + RUNS - 1))) ($(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
    cp -a "$DATA/$d" "$rd/src"
    for t in "${tools[@]}"; do
      R=$rd/repo-$t RESTIC_CACHE_DIR=$rd/aux-restic BORG_BASE_DIR=$rd/aux-borg sh -c "${C[$t.init]}" > "$rd/logs/$t-init.log" 2>&1
    done
    # Rotate the order of the tools each run, so no tool always runs right after the copy.
    n=${#tools[@]}; order=()
    for i in $(seq 0 $((n - 1))); do order+=("${tools[$(((i + run - 1) % n))]}"); done
    for phase in first unchanged incremental verify restore; do
      if [ "$phase" = incremental ]; then
        if [ "$d" = d2 ]; then
          rsync -aHAX --delete "$DATA/d2-drift/" "$rd/src/"; echo "  drift: d2 -> d2-drift (rsync)"
        else
          echo "  $(python3 "$HERE/intake/mutate.py" "$rd/src" "${DUP[$d]:-}")"
        fi
      fi
      for t in "${order[@]}"; do measure "$d" "$run" "$t" "$phase" "$rd"; done
    done
    if [ "$KEEP" = 1 ] && [ "$run" = $((FIRST_RUN + RUNS - 1)) ]; then echo "kept $rd"; else rm -rf "$rd"; fi
  done
  printf 'end.%s\t%s\n' "$d" "$(date -u +%FT%TZ)" >> "$META"
done
python3 "$HERE/intake/report.py" "$CSV" "$META" > "$OUT"
echo "report: $OUT (raw rows: $CSV)"
