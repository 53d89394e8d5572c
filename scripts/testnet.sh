#!/usr/bin/env bash
# Starts a local 4-validator Phalanx testnet with one traitor and a live
# view. Ctrl-C stops it cleanly. Extra arguments go to `phalanx-testnet up`
# (e.g. --validators 7 --traitor 0=slow-primary); without --traitor,
# validator 0 (the first primary) equivocates.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
echo "building (the first build compiles RocksDB: several minutes on 2 cores)..."
cargo build --quiet --workspace --all-targets
scripts/cache-rocksdb.sh >/dev/null
BIN="$CARGO_TARGET_DIR/debug"
export PHALANX_BIN="$BIN/phalanx" PHALANX_WALLET_BIN="$BIN/phalanx-wallet"
# One traitor unless the arguments name traitors themselves.
case " $* " in
  *" --traitor"*) ;;
  *) set -- "$@" --traitor 0=equivocate ;;
esac
exec "$BIN/phalanx-testnet" up "$@"
