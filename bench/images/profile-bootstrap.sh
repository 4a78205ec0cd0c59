#!/usr/bin/env bash
# Where the cold build's bootstrap step spends its time: runs the mmdebstrap command of
# asl-image's `bootstrap` step (crates/asl-host/src/image/build.rs) for a package set, with
# every line of its output stamped with the seconds since the start, and prints the time of
# each of mmdebstrap's phases ("I: downloading packages with apt...", ...).
#   sudo bash bench/images/profile-bootstrap.sh PACKAGES.txt [OUT_DIR]
# PACKAGES.txt: a cache entry's packages.txt (name=version lines), e.g.
# /var/cache/asl-image/base/KEY/packages.txt. The apt source: SOURCES (a sources.list; the one
# asl-image used is the base tarball's ./etc/apt/sources.list), else the host's bookworm mirror.
# UNSAFE_IO=1 lets dpkg skip its fsyncs during the bootstrap (a setup hook writes
# force-unsafe-io to the chroot's dpkg.cfg.d, a customize hook removes it), as mkosi does.
# Nothing is cached: a cold bootstrap, as in bench/images/run.sh's asl-cold phase. Prints the
# tarball's sha256, to compare with the cache entry's.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "profile-bootstrap: needs root (mmdebstrap --mode=root)" >&2; exit 1; }
pk=${1:?usage: profile-bootstrap.sh PACKAGES.txt [OUT_DIR]}
out=${2:-/var/tmp/asl-imgbench-profile}
rm -rf "$out"; mkdir -p "$out"
trap 'rm -f "$out/rootfs.tar"' EXIT
mirror=$(python3 - <<'EOF'
import glob, re
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(f).read().split("\n\n"):
        kv = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if "bookworm" in kv.get("Suites", "").split():
            print(kv["URIs"].split()[0]); raise SystemExit
EOF
)
mirror=${mirror:-http://deb.debian.org/debian}
if [ -n "${SOURCES:-}" ]; then
  cp "$SOURCES" "$out/sources.list"
else
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    echo "deb ${mirror%/debian}/debian-security bookworm-security main"
  } >"$out/sources.list"
fi
hooks=()
if [ "${UNSAFE_IO:-0}" = 1 ]; then
  hooks=('--setup-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d" && echo force-unsafe-io >"$1/etc/dpkg/dpkg.cfg.d/00asl-unsafe-io"'
    '--customize-hook=d="$1/etc/dpkg/dpkg.cfg.d"; t=$(stat -c %Y "$d"); rm "$1/etc/dpkg/dpkg.cfg.d/00asl-unsafe-io"; touch -d "@$t" "$d"')
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)} LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
  mmdebstrap --verbose --variant=minbase --mode=root --format=tar \
  '--aptopt=APT::Install-Recommends "false"' "${hooks[@]}" --include="$(paste -sd, "$pk")" \
  bookworm "$out/rootfs.tar" "$out/sources.list" 2>&1 |
  python3 -c '
import sys, time
t0 = time.monotonic()
for line in sys.stdin:
    sys.stdout.write(f"{time.monotonic() - t0:8.1f} {line}")
    sys.stdout.flush()
' >"$out/stamped.log"
python3 - "$out/stamped.log" <<'EOF'
import re, sys
phases = []
for line in open(sys.argv[1], errors="replace"):
    t, _, rest = line.strip().partition(" ")
    if re.match(r"I: [a-z].*\.\.\.$", rest.strip()):
        phases.append((float(t), rest.strip()[3:]))
    last = float(t)
phases.append((last, "end"))
for (t, name), (t2, _) in zip(phases, phases[1:]):
    print(f"{t2 - t:7.1f} s  {name}")
print(f"{last:7.1f} s  total")
EOF
echo "sha256 $(sha256sum "$out/rootfs.tar" | cut -d' ' -f1)"
