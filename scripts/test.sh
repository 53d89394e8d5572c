#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, the whole test suite, and a
# representative few process-testnet scenarios.
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

# Real processes: an equivocating primary, a killed primary (acknowledged
# transactions must survive it), a 2|2 partition that heals, and the
# negative control (f + 1 colluding equivocators), which must end in FAIL.
# All of them: scripts/scenarios.sh
scripts/scenarios.sh \
  testnet/manifests/traitor-equivocate.toml \
  testnet/manifests/primary-killed.toml \
  testnet/manifests/partition-2-2.toml \
  testnet/manifests/negative-control-colluding-equivocators.toml
