#!/usr/bin/env bash
# The project's test command: installs what the tests need, then checks format and lints and
# runs every test. Needs root (the tests create namespaces, mounts and network links).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The built images, booted in QEMU (builds both ISOs once; see docs/DEVELOPING.md).
bash scripts/test-vm.sh
