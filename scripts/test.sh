#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

cargo fmt --all -- --check
# One package selection for every step (--workspace, all targets), so
# dependency features resolve the same way and RocksDB's C++ is compiled
# once. `cargo test` also builds the `phalanx` binaries the multi-process
# tests start.
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
scripts/cache-rocksdb.sh
cargo test --workspace --all-targets
