#!/usr/bin/env bash
# Four validators, each in its own network namespace, joined by a bridge
# (10.77.0.1-4, the host at 10.77.0.254). Under load, validator 3 is cut off
# from the other three for CUT_S seconds (blackhole routes on both sides:
# packets vanish, connections are not closed, as on a real network), then
# healed. Passes if v3's COMMIT is in a commit certificate again within
# BOUND_S seconds of healing (the participation bound), and v3 is then in
# the others' view, not changing view. Prints the figures either way.
#
# Needs root (ip netns). Bounded: gives up after DEADLINE_S in all; removes
# every namespace, link, process and file it made on exit, also on failure
# or Ctrl-C (KEEP=1 keeps the directory with the nodes' logs).
#   sudo scripts/netns-partition.sh            # CUT_S=6 BOUND_S=10
set -euo pipefail
cd "$(dirname "$0")/.."

CUT_S=${CUT_S:-6}
BOUND_S=${BOUND_S:-10}
WARM_S=${WARM_S:-8}
DEADLINE_S=${DEADLINE_S:-300}
NET=10.77.0
N=4
CUT=3

[ "$(id -u)" = 0 ] || { echo "netns-partition: needs root (ip netns)" >&2; exit 2; }
for tool in ip curl jq; do
  command -v "$tool" >/dev/null || { echo "netns-partition: needs $tool" >&2; exit 2; }
done
if ip -4 addr | grep -q "inet $NET\."; then
  echo "netns-partition: $NET.0/24 is already in use on this host; not touching it" >&2
  exit 2
fi

source scripts/prereqs.sh >/dev/null
cargo build --quiet -p phalanx-node -p phalanx-testnet --bins
BIN="$CARGO_TARGET_DIR/debug"

TAG="px$$"                       # short: interface names are at most 15 bytes
BR="${TAG}br"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/phalanx-netns.XXXXXX")
NODE_PIDS=()
LOAD_PIDS=()
WATCHDOG=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  touch "$DIR/stop-load" 2>/dev/null || true
  for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${NODE_PIDS[@]}" "${LOAD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}" "${LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for i in $(seq 0 $((N - 1))); do
    ip netns del "${TAG}v$i" 2>/dev/null || true   # takes its veth pair along
  done
  ip link del "$BR" 2>/dev/null || true
  [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept: $DIR (logs v*.log)"
  else
    rm -rf "$DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
( sleep "$DEADLINE_S"; echo "netns-partition: deadline of $DEADLINE_S s reached" >&2; kill -TERM $$ ) &
WATCHDOG=$!

ns() { echo "${TAG}v$1"; }
ip_of() { echo "$NET.$(($1 + 1))"; }
api() { echo "http://$(ip_of "$1"):8000"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
status() { curl -s -m 1 "$(api "$1")/v1/status" || echo '{}'; }

# --- the network -----------------------------------------------------------
ip link add "$BR" type bridge
ip addr add "$NET.254/24" dev "$BR"
ip link set "$BR" up
for i in $(seq 0 $((N - 1))); do
  ip netns add "$(ns "$i")"
  ip link add "${TAG}h$i" type veth peer name "${TAG}n$i"
  ip link set "${TAG}n$i" netns "$(ns "$i")"
  ip link set "${TAG}h$i" master "$BR" up
  ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev "${TAG}n$i"
  ip -n "$(ns "$i")" link set "${TAG}n$i" up
  ip -n "$(ns "$i")" link set lo up
done

# --- keys, genesis, homes --------------------------------------------------
"$BIN/phalanx-testnet" generate --validators $N --out "$DIR/gen" \
  --host "$(ip_of 0)" --p2p-port-base 26000 --api-port-base 8000 >/dev/null
# Each validator at its own address, port 26000.
jq --arg net "$NET" '.validators |= (to_entries
    | map(.value.p2p_address = "/ip4/\($net).\(.key + 1)/tcp/26000" | .value))' \
  "$DIR/gen/genesis.json" >"$DIR/genesis.json"
for i in $(seq 0 $((N - 1))); do
  "$BIN/phalanx" init --home "$DIR/v$i" --genesis "$DIR/genesis.json" \
    --key "$DIR/gen/v$i.key.json" --api-listen "$(ip_of "$i"):8000" >/dev/null
  # The process testnet's local timing (testnet/src/process.rs).
  sed -i 's/^\[consensus\]$/[consensus]\nview_timeout_ms = 1500\npropose_timeout_ms = 1000\nretransmit_ms = 200/' \
    "$DIR/v$i/config/node.toml"
done
for i in $(seq 0 $((N - 1))); do
  NO_COLOR=1 ip netns exec "$(ns "$i")" "$BIN/phalanx" run --home "$DIR/v$i" \
    >"$DIR/v$i.log" 2>&1 &
  NODE_PIDS+=($!)
done
for i in $(seq 0 $((N - 1))); do
  for _ in $(seq 1 300); do
    curl -sf -m 1 "$(api "$i")/health" >/dev/null && break
    sleep 0.1
  done
  curl -sf -m 1 "$(api "$i")/health" >/dev/null || { echo "v$i did not come up; see its log" >&2; KEEP=1; exit 1; }
done
echo "4 validators up, each in its own namespace ($NET.1-4 on bridge $BR)"

# --- load: one wallet per validator, each with its own funded account ------
W() { "$BIN/phalanx-wallet" "$@"; }
for i in $(seq 0 $((N - 1))); do
  W keygen --out "$DIR/k$i.json" >/dev/null
done
for i in $(seq 0 $((N - 1))); do
  W --node "$(api 0)" --key "$DIR/gen/faucet.key.json" send \
    --to "$(W --key "$DIR/k$i.json" address)" --amount 1000000 --wait >/dev/null
done
for i in $(seq 0 $((N - 1))); do
  to=$(W --key "$DIR/k$(((i + 1) % N)).json" address)
  (
    while [ ! -e "$DIR/stop-load" ]; do
      W --node "$(api "$i")" --key "$DIR/k$i.json" send --to "$to" --amount 1 >/dev/null 2>&1 || sleep 0.2
    done
  ) &
  LOAD_PIDS+=($!)
done
echo "load: one wallet loop per validator (each sends to its own validator's API)"
sleep "$WARM_S"

heights() { for i in $(seq 0 $((N - 1))); do status "$i" | jq -r '.height // "-"'; done | paste -sd' '; }
views() { for i in $(seq 0 $((N - 1))); do status "$i" | jq -r '"\(.view // "-")\(if .view_changing then "*" else "" end)"'; done | paste -sd' '; }

# --- the cut ---------------------------------------------------------------
before=$(status 0 | jq -r .height)
echo "before the cut: heights [$(heights)]  views [$(views)]  (* = changing view)"
for i in $(seq 0 $((N - 1))); do
  [ "$i" = "$CUT" ] && continue
  ip -n "$(ns "$CUT")" route add blackhole "$(ip_of "$i")/32"
  ip -n "$(ns "$i")" route add blackhole "$(ip_of "$CUT")/32"
done
cut_at=$(now)
echo "v$CUT cut off for $CUT_S s"
sleep "$CUT_S"
echo "end of the cut:  heights [$(heights)]  views [$(views)]"
for i in $(seq 0 $((N - 1))); do
  [ "$i" = "$CUT" ] && continue
  ip -n "$(ns "$CUT")" route del blackhole "$(ip_of "$i")/32"
  ip -n "$(ns "$i")" route del blackhole "$(ip_of "$CUT")/32"
done
heal=$(now)
healed_height=$(status 0 | jq -r .height)
echo "healed after $(since "$cut_at") s; the others committed $((healed_height - before)) blocks meanwhile"

# --- back in the quorum? ---------------------------------------------------
# Every block committed after the heal, on every validator that has it: is
# v3's signature in its certificate? (Each node's certificate holds the
# COMMITs it had, its own among them unless it caught the block up.)
next=$((healed_height + 1))
back=
back_height=
signed=0
total=0
limit=$(awk -v b="$BOUND_S" 'BEGIN { print b + 5 }')
while awk -v s="$(since "$heal")" -v l="$limit" 'BEGIN { exit !(s < l) }'; do
  tip=$(status 0 | jq -r '.height // 0')
  while [ "$next" -le "$tip" ]; do
    seen=$(since "$heal")
    in_cert=no
    for i in $(seq 0 $((N - 1))); do
      if curl -s -m 1 "$(api "$i")/v1/blocks/$next" |
        jq -e --argjson v "$CUT" '[.certificate.signatures[]?.validator_index] | index($v) != null' >/dev/null 2>&1; then
        in_cert=yes
        break
      fi
    done
    total=$((total + 1))
    if [ "$in_cert" = yes ]; then
      signed=$((signed + 1))
      if [ -z "$back" ]; then
        back=$seen
        back_height=$next
        echo "v$CUT's COMMIT is in the certificate of height $next, $seen s after healing"
      fi
    fi
    next=$((next + 1))
  done
  sleep 0.2
done
touch "$DIR/stop-load"
echo "after $(since "$heal") s: heights [$(heights)]  views [$(views)]"
echo "v$CUT signed $signed of the $total blocks committed after healing"
v3=$(status "$CUT")
v0=$(status 0)
same_view=$(jq -n --argjson a "$v3" --argjson b "$v0" '$a.view == $b.view and ($a.view_changing | not)')
ok=no
if [ -n "$back" ] && awk -v b="$back" -v l="$BOUND_S" 'BEGIN { exit !(b <= l) }' && [ "$same_view" = true ]; then
  ok=yes
fi
if [ "$ok" = yes ]; then
  echo "PASS: v$CUT back in the quorum $back s after healing (height $back_height; bound $BOUND_S s), in view $(jq -r .view <<<"$v3")"
else
  echo "FAIL: v$CUT not back in the quorum within $BOUND_S s of healing (first certificate with it: ${back:-none}${back_height:+ s, height $back_height}); v$CUT: view $(jq -r .view <<<"$v3"), view_changing $(jq -r .view_changing <<<"$v3"), height $(jq -r .height <<<"$v3"); v0: view $(jq -r .view <<<"$v0"), height $(jq -r .height <<<"$v0")"
  exit 1
fi
