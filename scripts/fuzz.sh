#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, and prints
# a summary line per target. Installs the pinned cargo-fuzz first if it is missing.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 300 seconds; log segment block tree checkpoint index_run)
#
# Environment:
#   ASL_FUZZ_SANITIZER  none (default: works on stable) or address (ASan; needs nightly
#                       features, enabled on stable through RUSTC_BOOTSTRAP=1)
#   ASL_FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=65536"
#   ASL_FUZZ_FEATURES   features to build the fuzz crate with (none are defined today)
#
# The corpus grows in fuzz/corpus/<target> (not committed); fuzz/seeds/<target> (committed,
# written by `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds`) is
# read as a second corpus. A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit 1 after the remaining targets ran; reproduce it with
#   cd fuzz && cargo fuzz run --sanitizer none --debug-assertions <target> <artifact file>
# Each target's libFuzzer output is kept in fuzz/target/fuzz-logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(log segment block tree checkpoint index_run)

secs=${1:-300}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "fuzz.sh: SECONDS must be a positive whole number, not '$secs'" >&2
    echo "usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
fi
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
    if [[ ! " ${ALL_TARGETS[*]} " == *" $t "* ]]; then
        echo "fuzz.sh: unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

if ! cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz $CARGO_FUZZ_VERSION\b"; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

sanitizer=${ASL_FUZZ_SANITIZER:-none}
case $sanitizer in
    none) ;;
    address) export RUSTC_BOOTSTRAP=1 ;;
    *)
        echo "fuzz.sh: ASL_FUZZ_SANITIZER must be none or address, not '$sanitizer'" >&2
        exit 2
        ;;
esac

cd fuzz
mkdir -p target/fuzz-logs
# Debug assertions turn integer overflow into a panic, which the fuzzer then reports.
build_flags=(--sanitizer "$sanitizer" --debug-assertions)
[ -z "${ASL_FUZZ_FEATURES:-}" ] || build_flags+=(--features "$ASL_FUZZ_FEATURES")
# One fuzzing process at a time (libFuzzer's default: no -jobs/-workers): the machine's two
# cores are shared. -print_final_stats gives the execution count for the summary.
# shellcheck disable=SC2206
fuzz_flags=(-max_total_time="$secs" -print_final_stats=1 ${ASL_FUZZ_ARGS:-})

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    logfile="target/fuzz-logs/$t.log"
    echo "== fuzz target $t: $secs s (log: fuzz/$logfile)" >&2
    set +e
    cargo fuzz run "${build_flags[@]}" "$t" "corpus/$t" "seeds/$t" -- "${fuzz_flags[@]}" \
        >"$logfile" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -n1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$logfile" | tail -n1)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc)"
        failed+=("$t")
        tail -n 40 "$logfile" >&2
    fi
    summary+=("$(printf '%-8s %6ss  execs %-10s %-22s %s' "$t" "$secs" "${execs:-?}" "${cov:-cov: ?}" "$result")")
done

echo
echo "date $(date -u +%Y-%m-%dT%H:%MZ), sanitizer $sanitizer, features ${ASL_FUZZ_FEATURES:-none}"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
