#!/usr/bin/env bash
# The image benchmark of issue 19: asl-image next to mkosi, in one run on one machine.
#
#   sudo bash bench/images/run.sh            # RUNS=3 COLD_RUNS=1 BOOT_RUNS=1
#   RUNS=2 BOOT_RUNS=2 bash bench/images/run.sh
#
# Phases (each build timed by /usr/bin/time: wall, user, sys, peak RSS of the largest process):
#   asl-cold      asl-image build --profile rescue with an empty cache (--cache SCRATCH/...):
#                 apt lists, resolve, mmdebstrap of the base, then the image
#   mkosi-cold    mkosi 14 (bench/images/mkosi/mkosi.default) with an empty package cache and no
#                 incremental cache, -i so that it saves one (as asl-image saves its base)
#   asl-cached    the same asl-image build again, base found in the cache (RUNS times)
#   mkosi-cached  mkosi -i -f: the incremental cache of mkosi-cold reused (RUNS times)
#   boots         under TCG (no KVM), from qemu's start to serial-console markers:
#                 asl-bios     the rescue ISO as a CD with SeaBIOS -> GRUB -> live-boot, until
#                              preflight's "decision:" line (and ASL-BOOT multi-user marker)
#                 asl-kernel   the ISO's own kernel+initrd through qemu -kernel (no firmware
#                              or GRUB), the ISO as CD; same markers
#                 mkosi-kernel the mkosi image's kernel+initrd through qemu -kernel, its disk
#                              as virtio; until systemd's "Multi-User System" target and the
#                              serial getty's login line
# Then bench/images/report.py writes bench/results/DATE-images-REV.{md,csv}.
#
# Installs nothing: a missing tool stops the run naming its Debian package (all listed in
# scripts/deps/bench.images.apt and scripts/deps/image.apt). Needs root (mmdebstrap, mkosi,
# systemd-nspawn). Scratch space: SCRATCH (default /var/tmp/asl-imgbench, ~10 GB), removed at the
# end unless KEEP=1. Every qemu and mount it makes is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
RUNS=${RUNS:-3}
COLD_RUNS=${COLD_RUNS:-1}
BOOT_RUNS=${BOOT_RUNS:-1}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
SCRATCH=${SCRATCH:-/var/tmp/asl-imgbench}
KEEP=${KEEP:-0}
cmdline="RUNS=$RUNS COLD_RUNS=$COLD_RUNS BOOT_RUNS=$BOOT_RUNS bash bench/images/run.sh"

die() { echo "bench/images: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap and mkosi build as root)"
need() { command -v "$1" >/dev/null || die "$1 not found: install the Debian package $2 (scripts/deps/$3)"; }
need mkosi mkosi bench.images.apt
[ -x /usr/bin/time ] || die "/usr/bin/time not found: install the Debian package time (scripts/deps/bench.images.apt)"
need qemu-system-x86_64 qemu-system-x86 image.apt
need xorriso xorriso image.apt
need debugfs e2fsprogs image.apt
need sfdisk fdisk bench.images.apt
need python3 python3 bench.images.apt
need zstd zstd bench.images.apt
command -v cargo >/dev/null || die "cargo not found: install Rust (docs/DEVELOPING.md)"

# The mirror the host's apt uses for bookworm main: mkosi gets it on its command line, asl-image
# reads /etc/apt itself.
mirror=$(python3 - <<'EOF'
import glob, re
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(f).read().split("\n\n"):
        kv = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if "bookworm" in kv.get("Suites", "").split() and "main" in kv.get("Components", "").split():
            print(kv["URIs"].split()[0]); raise SystemExit
for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try: lines = open(f).read().splitlines()
    except OSError: continue
    for l in lines:
        m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s+.*\bmain\b", l)
        if m: print(m.group(1)); raise SystemExit
EOF
)
[ -n "$mirror" ] || die "no apt source for bookworm main in /etc/apt"

rev=$(git rev-parse --short=10 HEAD)
date_=$(date -u +%Y-%m-%d)
echo "bench/images: rev $rev, mirror $mirror, RUNS=$RUNS COLD_RUNS=$COLD_RUNS BOOT_RUNS=$BOOT_RUNS, scratch $SCRATCH"

# The asl binary: release, as shipped; built before any timing starts.
cargo build -q --release -p asl --locked
asl=$repo/target/release/asl

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"/{asl,mkosi,boot,time}
res=$SCRATCH/results.csv
echo "phase,tool,run,wall_s,user_s,sys_s,maxrss_kb,detail" >"$res"

nspawn_tmpfs=0 nspawn_dir=0
cleanup() {
  set +e
  [ "$nspawn_tmpfs" = 1 ] && umount /run/systemd/nspawn
  [ "$nspawn_dir" = 1 ] && rmdir /run/systemd/nspawn
  if [ "$KEEP" != 1 ]; then rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

# systemd-nspawn (mkosi runs apt inside it) removes its propagation directory with a guard that
# refuses anything but tmpfs; on a host whose /run is not a tmpfs (this container) give it one
# for the run.
if [ "$(stat -f -c %T /run/systemd/nspawn 2>/dev/null || stat -f -c %T /run)" != tmpfs ]; then
  [ -d /run/systemd/nspawn ] || nspawn_dir=1
  mkdir -p /run/systemd/nspawn
  mount -t tmpfs -o mode=0755,size=64m asl-imgbench-nspawn /run/systemd/nspawn
  nspawn_tmpfs=1
fi

# timed PHASE TOOL RUN -- CMD...: runs CMD under /usr/bin/time (stdout to PHASE-RUN.out, stderr
# to PHASE-RUN.err), appends a CSV row.
timed() {
  local phase=$1 tool=$2 run=$3; shift 4
  local base=$SCRATCH/time/$phase-$run
  echo "bench/images: $(date -u +%T) $phase run $run: $*"
  /usr/bin/time -o "$base.time" -f '%e,%U,%S,%M' "$@" >"$base.out" 2>"$base.err" || {
    tail -30 "$base.err" >&2; die "$phase run $run failed (log $base.err)"; }
  echo "$phase,$tool,$run,$(cat "$base.time")," >>"$res"
  echo "bench/images: $phase run $run: $(cut -d, -f1 "$base.time") s"
}

export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
load() { cut -d' ' -f1-3 /proc/loadavg; }
{
  echo "load_before=$(load)"
  echo "nproc=$(nproc)"
  echo "kernel=$(uname -r)"
  echo "mkosi=$(mkosi --version)"
  echo "qemu=$(qemu-system-x86_64 --version | head -1)"
  echo "mirror=$mirror"
  echo "rev=$rev"
  echo "date=$date_"
  echo "cmdline=$cmdline"
} >"$SCRATCH/machine.txt"

mkdir -p "$SCRATCH/mkosi/ws"
asl_build() { # asl_build PHASE RUN OUT_DIR CACHE
  timed "$1" asl-image "$2" -- "$asl" image build --profile rescue --out "$3/rescue.iso" \
    --cache "$4" --json
  cp "$SCRATCH/time/$1-$2.out" "$3/report.json"
}
mkosi_build() { # mkosi_build PHASE RUN OUT_DIR CACHE [-f]
  # MKE2FS_CONFIG: see mkosi/mke2fs.conf (mkosi 14's tune2fs -U on its cached image).
  # SOURCE_DATE_EPOCH is asl-image's input; mkosi runs as its users run it, without.
  timed "$1" mkosi "$2" -- env -u SOURCE_DATE_EPOCH --chdir="$repo/bench/images/mkosi" \
    MKE2FS_CONFIG="$repo/bench/images/mkosi/mke2fs.conf" \
    mkosi --mirror="$mirror" \
    --cache="$4" --workspace-dir="$SCRATCH/mkosi/ws" --output="$3/image.raw" -i "${@:5}" build
}

# Cold builds, each with fresh caches; then the cached rebuilds alternate between the tools
# so that a change of load on the shared machine hits both alike.
for i in $(seq 1 "$COLD_RUNS"); do
  mkdir -p "$SCRATCH/asl/out-$i" "$SCRATCH/mkosi/out-$i"
  asl_build asl-cold "$i" "$SCRATCH/asl/out-$i" "$SCRATCH/asl/cache-$i"
  mkosi_build mkosi-cold "$i" "$SCRATCH/mkosi/out-$i" "$SCRATCH/mkosi/cache-$i"
done
for i in $(seq 1 "$RUNS"); do
  mkdir -p "$SCRATCH/asl/cached-$i"
  asl_build asl-cached "$i" "$SCRATCH/asl/cached-$i" "$SCRATCH/asl/cache-1"
  # -f: replace the previous output; the incremental cache (image.raw.cache-pre-*) stays.
  mkosi_build mkosi-cached "$i" "$SCRATCH/mkosi/out-1" "$SCRATCH/mkosi/cache-1" -f
done

# Sizes: the ISO; mkosi's raw disk, apparent and allocated (it is sparse).
iso=$SCRATCH/asl/cached-1/rescue.iso
raw=$SCRATCH/mkosi/out-1/image.raw
{
  echo "asl_iso_bytes=$(stat -c %s "$iso")"
  echo "asl_iso_sha256=$(sha256sum "$iso" | cut -d' ' -f1)"
  echo "asl_cold_iso_sha256=$(sha256sum "$SCRATCH/asl/out-1/rescue.iso" | cut -d' ' -f1)"
  echo "mkosi_raw_bytes=$(stat -c %s "$raw")"
  echo "mkosi_raw_allocated_bytes=$(du -B1 "$raw" | cut -f1)"
  echo "mkosi_raw_zstd_bytes=$(zstd -q -3 -T0 -c "$raw" | wc -c)"
} >>"$SCRATCH/machine.txt"

# Boots. The kernels and initramfs images come out of the images without mounting anything:
# xorriso reads the ISO, debugfs the mkosi root partition.
b=$SCRATCH/boot
xorriso -osirrox on -indev "$iso" -extract /live/vmlinuz "$b/asl-vmlinuz" \
  -extract /live/initrd.img "$b/asl-initrd.img" -extract /boot/grub/grub.cfg "$b/asl-grub.cfg" \
  >/dev/null 2>&1
# The ISO's own command line, as GRUB would pass it.
asl_cmdline=$(sed -n 's|^ *linux /live/vmlinuz ||p' "$b/asl-grub.cfg")
[ -n "$asl_cmdline" ] || die "no kernel command line in the ISO's grub.cfg"
# debugfs opens the root partition inside the raw disk at its byte offset: no loop device.
off=$(sfdisk --json "$raw" | python3 -c 'import json, sys
t = json.load(sys.stdin)["partitiontable"]
print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
part="$raw?offset=$off"
kver=$(debugfs -R 'ls -p /boot' "$part" 2>/dev/null | tr / '\n' | sed -n 's/^vmlinuz-//p' | head -1)
[ -n "$kver" ] || die "no /boot/vmlinuz-* in $raw"
debugfs -R "dump /boot/vmlinuz-$kver $b/mkosi-vmlinuz" "$part" >/dev/null 2>&1
debugfs -R "dump /boot/initrd.img-$kver $b/mkosi-initrd.img" "$part" >/dev/null 2>&1
[ -s "$b/mkosi-initrd.img" ] || die "no /boot/initrd.img-$kver in $raw"
echo "mkosi_kernel=$kver" >>"$SCRATCH/machine.txt"

common=(-m 1536 -smp 2 -nic none)
asl_markers=(--marker kernel="Linux version" --marker decision="decision:"
  --marker multi-user="Multi-User System" --marker asl-boot="ASL-BOOT multi-user.target reached"
  --until asl-boot)
mk_markers=(--marker kernel="Linux version" --marker multi-user="Multi-User System"
  --marker login=" login:" --until login)
# bootindex only when the firmware boots the CD: with -kernel qemu takes boot index 0 itself.
cd_drive=(-drive "file=$iso,if=none,id=cd,media=cdrom,readonly=on,format=raw" -device ide-cd,drive=cd)
boot() { # boot NAME RUN BOOT.PY-ARGS...
  local name=$1 run=$2; shift 2
  echo "bench/images: $(date -u +%T) boot $name run $run"
  python3 "$repo/bench/images/boot.py" --log "$b/$name-$run.serial" --timeout "$BOOT_TIMEOUT" "$@" \
    >"$b/$name-$run.json" || echo "bench/images: boot $name run $run did not reach its marker"
  echo "bench/images: boot $name run $run: $(cat "$b/$name-$run.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["markers"])')"
}
for i in $(seq 1 "$BOOT_RUNS"); do
  boot asl-bios "$i" "${asl_markers[@]}" -- -machine pc "${common[@]}" "${cd_drive[@]/%drive=cd/drive=cd,bootindex=0}"
  boot asl-kernel "$i" "${asl_markers[@]}" -- -machine pc "${common[@]}" "${cd_drive[@]}" \
    -kernel "$b/asl-vmlinuz" -initrd "$b/asl-initrd.img" -append "$asl_cmdline"
  boot mkosi-kernel "$i" "${mk_markers[@]}" -- -machine pc "${common[@]}" \
    -drive "file=$raw,if=virtio,format=raw,snapshot=on" \
    -kernel "$b/mkosi-vmlinuz" -initrd "$b/mkosi-initrd.img" -append "root=/dev/vda1 rw console=ttyS0"
done
echo "load_after=$(load)" >>"$SCRATCH/machine.txt"

python3 "$repo/bench/images/report.py" "$SCRATCH" "$repo/bench/results/$date_-images-$rev"
echo "bench/images: wrote bench/results/$date_-images-$rev.md and .csv"
