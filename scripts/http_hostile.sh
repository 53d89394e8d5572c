#!/usr/bin/env bash
# HTTP under hostile clients (docs/PERFORMANCE.md, session 7): a
# one-validator testnet on loopback, then scripts/http_hostile.py
# (N slow-header connections, N idle event streams, 8 concurrent 4 MiB
# bodies). With FD_LIMIT set (e.g. 1024) the node runs under that
# `ulimit -n`. Stops the node and removes its files in every case.
#   N=8000 FD_LIMIT=1024 scripts/http_hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
N="${N:-8000}"
PROFILE="${PROFILE:-debug}"
BIN="$CARGO_TARGET_DIR/$PROFILE"
export PHALANX_BIN="$BIN/phalanx" PHALANX_WALLET_BIN="$BIN/phalanx-wallet"
DIR="$(mktemp -d /tmp/phalanx-hostile.XXXXXX)"
(
  [ -n "${FD_LIMIT:-}" ] && ulimit -n "$FD_LIMIT"
  exec "$BIN/phalanx-testnet" up --validators 1 --rate 5 --dir "$DIR/net"
) >"$DIR/testnet.log" 2>&1 &
NET=$!
cleanup() {
  kill -INT "$NET" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$NET" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$NET" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
TOML="$DIR/net/v0/config/node.toml"
for _ in $(seq 300); do [ -f "$TOML" ] && break; sleep 0.2; done
API="$(sed -n '/^\[api\]/,/^\[/s/^listen = "\(.*\)"/\1/p' "$TOML")"
for _ in $(seq 300); do curl -sf "http://$API/health" >/dev/null && break; sleep 0.2; done
# The node is the child `phalanx run` of the testnet process.
NODE="$(pgrep -P "$NET" -f "phalanx run" | head -n1)"
python3 scripts/http_hostile.py "$API" "$NODE" "$N"
