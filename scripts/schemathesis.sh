#!/usr/bin/env bash
# Runs schemathesis (every check) against one validator's /openapi.json:
# a one-validator testnet on loopback with light background load, then
# `schemathesis run --checks all` with a small example count. Exits
# non-zero on any failure; stops the testnet in every case.
#
#   scripts/schemathesis.sh              # 25 examples per operation
#   MAX_EXAMPLES=200 scripts/schemathesis.sh
#
# schemathesis is installed into a virtualenv (SCHEMATHESIS_VENV, default
# /var/tmp/phalanx-schemathesis) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
MAX_EXAMPLES="${MAX_EXAMPLES:-25}"
VENV="${SCHEMATHESIS_VENV:-/var/tmp/phalanx-schemathesis}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet schemathesis
fi
cargo build --quiet -p phalanx-node --bins -p phalanx-testnet
BIN="$CARGO_TARGET_DIR/debug"
export PHALANX_BIN="$BIN/phalanx" PHALANX_WALLET_BIN="$BIN/phalanx-wallet"

DIR="$(mktemp -d /tmp/phalanx-schemathesis.XXXXXX)"
"$BIN/phalanx-testnet" up --validators 1 --rate 5 --dir "$DIR/net" >"$DIR/testnet.log" 2>&1 &
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
curl -sf "http://$API/health" >/dev/null || { cat "$DIR/testnet.log"; exit 1; }

echo "schemathesis against http://$API/openapi.json, $MAX_EXAMPLES examples per operation"
start=$(date +%s)
status=0
"$VENV/bin/schemathesis" run "http://$API/openapi.json" --url "http://$API" \
  --checks all --max-examples "$MAX_EXAMPLES" --seed 7 --no-color || status=$?
echo "schemathesis: exit $status after $(( $(date +%s) - start )) s"
exit $status
