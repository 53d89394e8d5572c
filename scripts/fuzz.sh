#!/usr/bin/env bash
# Fuzzing campaigns (benchmarks, not tests): one bounded libFuzzer run per
# target, one process at a time, at low priority.
#
#   scripts/fuzz.sh [--time SECONDS] [--runs N] [--asan] [--list] [TARGET...]
#
# Default: every target, 60 s each; --runs stops a target after N
# executions (still at most --time seconds). Targets are the binaries in
# fuzz/libfuzzer/Cargo.toml (bodies in fuzz/src, package phalanx-fuzz). The
# committed seeds in fuzz/corpus/<target>/ are read but never written:
# what the campaign learns goes to $FUZZ_WORK/corpus/<target>/, crashes to
# $FUZZ_WORK/artifacts/<target>/. A crash is made a regression by copying
# it to fuzz/corpus/<target>/crash-<what> (replayed by
# `cargo test -p phalanx-fuzz`). A summary line per target (executions,
# exec/s, peak RSS, crashes) is printed and appended to
# $FUZZ_WORK/summary.tsv. One libFuzzer process per campaign (what
# -jobs=1 -workers=1 would give, with the stats on stdout).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs nightly
# flags; this stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

time_s=60
runs=-1  # libFuzzer: -1 is unlimited (0 would only replay the corpus)
sanitizer=none
# Campaigns share the machine: low priority (FUZZ_NICE=0 to compete).
nice_level="${FUZZ_NICE:-10}"
targets=()
all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/libfuzzer/Cargo.toml | grep -v '^phalanx-fuzz-targets$')
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time_s="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --asan) sanitizer=address; shift ;;
    --list) echo "$all_targets"; exit 0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all_targets"
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all_targets" || { echo "fuzz.sh: no target $t (try --list)" >&2; exit 2; }
done

# RocksDB is linked, not fuzzed. Without ROCKSDB_LIB_DIR (set by
# prereqs.sh from the machine's cache: scripts/cache-rocksdb.sh after a
# workspace build) the instrumented build compiles its C++ again.
[ -n "${ROCKSDB_LIB_DIR:-}" ] || echo "fuzz.sh: no ROCKSDB_LIB_DIR: RocksDB will be compiled from source" >&2
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
# Instrumented builds differ from the workspace's: their own target dir, so
# they neither wait for nor invalidate the shared one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/phalanx-fuzz/target}"
FUZZ_WORK="${FUZZ_WORK:-/var/tmp/phalanx-fuzz/work}"
mkdir -p "$FUZZ_WORK"
# The file targets write each input to a scratch file: keep it in memory,
# in a directory of this run's (libFuzzer exits without running the
# destructors that would remove it).
TMPDIR=$(mktemp -d "${FUZZ_TMPDIR:-/dev/shm}/phalanx-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

# --sanitizer none by default: the fuzzed code is safe Rust (unsafe is
# forbidden in the workspace), so ASan finds nothing the panics and
# libFuzzer's RSS limit do not, at about half the speed. --asan for C deps.
cargo fuzz build --fuzz-dir fuzz/libfuzzer -O --sanitizer "$sanitizer"

for t in "${targets[@]}"; do
  mkdir -p "$FUZZ_WORK/corpus/$t" "$FUZZ_WORK/artifacts/$t"
  log="$FUZZ_WORK/$t.log"
  echo "== $t: ${time_s}s (log $log)"
  start=$(date +%s)
  set +e
  nice -n "$nice_level" cargo fuzz run --fuzz-dir fuzz/libfuzzer -O --sanitizer "$sanitizer" "$t" \
    "$FUZZ_WORK/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$time_s" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$FUZZ_WORK/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$FUZZ_WORK/artifacts/$t" -type f | wc -l)
  line="$t	runs=${done_runs:-?}	exec/s=${rate:-?}	cov=${cov:-?}	peak_rss_mb=${rss:-?}	artifacts=$crashes	exit=$rc	time_s=$(( $(date +%s) - start ))"
  echo "$line"
  echo "$(date -u +%FT%TZ)	$line" >>"$FUZZ_WORK/summary.tsv"
  if [ "$rc" -ne 0 ]; then
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20
  fi
done
