#!/usr/bin/env bash
# Runs process-testnet scenarios (default: every manifest in
# testnet/manifests/) one after another and prints a verdict for each.
# Exits non-zero if any scenario ends other than as its manifest expects.
# Extra `phalanx-testnet run` options may follow `--`, e.g.
#   scripts/scenarios.sh testnet/manifests/no-faults.toml -- --report out.json
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
manifests=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do manifests+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#manifests[@]} -gt 0 ] || manifests=(testnet/manifests/*.toml)
cargo build --quiet --workspace --all-targets
scripts/cache-rocksdb.sh >/dev/null
BIN="$CARGO_TARGET_DIR/debug"
export PHALANX_BIN="$BIN/phalanx" PHALANX_WALLET_BIN="$BIN/phalanx-wallet"
exec "$BIN/phalanx-testnet" run "${manifests[@]}" "$@"
