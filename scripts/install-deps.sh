#!/usr/bin/env bash
# Installs every external tool the tests and benchmarks need, from the package registries only.
# Each part of the project lists its needs in scripts/deps/<part>.{apt,pip,cargo}: one package per
# line (`#` starts a comment); .cargo lines are NAME@VERSION (pinned: newer releases may need a
# newer rustc than ours). Safe to re-run: what is installed already is skipped.
#   bash scripts/install-deps.sh           what the tests need
#   bash scripts/install-deps.sh --bench   also the anchor tools of the benchmarks (bench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

with_bench=false
[ "${1:-}" = "--bench" ] && with_bench=true

list() {
  for f in scripts/deps/*."$1"; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in bench.*) $with_bench || continue ;; esac
    cat "$f"
  done | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u || true
}

mapfile -t apt < <(list apt)
missing=()
for p in "${apt[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mapfile -t pip < <(list pip)
if [ ${#pip[@]} -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pip[@]}"
fi

mapfile -t crates < <(list cargo)
for c in "${crates[@]}"; do
  name=${c%@*}; ver=${c#*@}
  if ! cargo install --list | grep -q "^$name v$ver:"; then
    cargo install --locked "$name@$ver"
  fi
done

# The S3 engine of the remote-store tests: too long a build for a line in a .cargo list (it
# goes to a tool cache of its own, kept where the machine keeps it).
bash scripts/install-garage.sh
