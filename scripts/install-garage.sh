#!/usr/bin/env bash
# Builds the S3 engine the tests run against, Garage, at a pinned version, into a tool cache
# that survives between runs on a machine that keeps it (/var/cache/asl-tools by default,
# ASL_TOOLS to change). A fresh machine builds it (about 18 minutes on 2 cores); a machine
# that has it skips. The tests find it as $ASL_TOOLS/bin/garage (or $ASL_GARAGE).
# Garage is AGPL-3.0; it is only run as a separate test process, never linked.
set -euo pipefail
version=2.5.0
root=${ASL_TOOLS:-/var/cache/asl-tools}
bin=$root/bin/garage
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "cargo:$version"; then
  exit 0
fi
echo "install-garage: building garage $version into $root (about 18 minutes on 2 cores)"
mkdir -p "$root"
cargo install --locked --root "$root" "garage@$version"
"$bin" --version
