#!/usr/bin/env bash
# Builds the release binary and installs it with its tool links and man pages, and libasl (the
# C library: lib, header, pkg-config file; scripts/install-libasl.sh).
#   bash scripts/install.sh            # into /usr/local (PREFIX=/usr/local)
#   PREFIX=$HOME/.local bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
cargo build --release --locked -p asl
install -d "$PREFIX/bin" "$PREFIX/share/man/man1"
install -m 0755 target/release/asl "$PREFIX/bin/asl"
"$PREFIX/bin/asl" install-links --dir "$PREFIX/bin" --quiet
"$PREFIX/bin/asl" man --out "$PREFIX/share/man/man1" > /dev/null
echo "installed asl and its tools into $PREFIX/bin (man pages in $PREFIX/share/man/man1)"
PREFIX="$PREFIX" bash scripts/install-libasl.sh
