#!/usr/bin/env bash
# Installs libasl, the C library of crates/asl-ffi: libasl.so.<version> with its soname link
# libasl.so.0 and the link libasl.so under $PREFIX/lib, asl.h under $PREFIX/include, and
# asl.pc under $PREFIX/lib/pkgconfig, the libasl(3) man page under $PREFIX/share/man/man3.
#   bash scripts/install-libasl.sh                 build (release) and install into /usr/local
#   DESTDIR=/tmp/root LIBASL_SO=target/debug/libasl.so bash scripts/install-libasl.sh
#                                                  stage an already built library elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
if [ -z "${LIBASL_SO:-}" ]; then
  cargo build --release --locked -p asl-ffi
  LIBASL_SO=target/release/libasl.so
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
lib="$DESTDIR$PREFIX/lib"
install -d "$lib/pkgconfig" "$DESTDIR$PREFIX/include" "$DESTDIR$PREFIX/share/man/man3"
install -m 0644 "$LIBASL_SO" "$lib/libasl.so.$version"
ln -sfn "libasl.so.$version" "$lib/libasl.so.0"
ln -sfn "libasl.so.0" "$lib/libasl.so"
install -m 0644 crates/asl-ffi/include/asl.h "$DESTDIR$PREFIX/include/asl.h"
install -m 0644 crates/asl-ffi/man/libasl.3 "$DESTDIR$PREFIX/share/man/man3/libasl.3"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$version|" crates/asl-ffi/asl.pc.in \
  > "$lib/pkgconfig/asl.pc"
if [ -z "$DESTDIR" ] && command -v ldconfig > /dev/null; then
  ldconfig
fi
echo "installed libasl $version into $DESTDIR$PREFIX (lib, include, lib/pkgconfig, share/man/man3)"
