#!/usr/bin/env bash
# The VM tests (crates/asl/tests/vm.rs): builds the rescue and authority-host ISOs once per run
# with `asl-image build`, then boots them in QEMU. Needs root (mmdebstrap; the tests mount the
# crashed-machine disk read-only through a loop device to compare) and the packages of
# scripts/deps/image.apt. The base root is cached in
# $ASL_IMAGE_CACHE (default /var/cache/asl-image), so only the first run on a machine pays for
# the bootstrap. Prints where the time went.
#   bash scripts/test-vm.sh                 build both ISOs, run every VM scenario
#   bash scripts/test-vm.sh scenario2       only the tests whose name contains scenario2
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
out=${ASL_VM_DIR:-target/vm-images}
mkdir -p "$out"
t0=$(date +%s)
cargo build -q -p asl --locked
asl=$PWD/target/debug/asl
t1=$(date +%s)
times=()
for p in rescue auth-host; do
  s=$(date +%s)
  "$asl" image build --profile "$p" --out "$out/$p.iso" >/dev/null
  times+=("build $p: $(( $(date +%s) - s )) s")
done
t2=$(date +%s)
export ASL_VM_RESCUE_ISO=$PWD/$out/rescue.iso
export ASL_VM_AUTH_ISO=$PWD/$out/auth-host.iso
# One VM at a time: on two cores a second TCG guest only slows the first one down.
cargo test -p asl --test vm --locked -- --ignored --test-threads=1 --nocapture $filter
t3=$(date +%s)
echo "test-vm: asl binary $(( t1 - t0 )) s; ${times[*]}; boots and scenarios $(( t3 - t2 )) s; total $(( t3 - t0 )) s"
