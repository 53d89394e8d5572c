#!/usr/bin/env bash
# After a build that compiled RocksDB from source, keep its static library
# in the machine's build cache (see prereqs.sh) so later builds link it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
[ -n "${ROCKSDB_LIB_DIR:-}" ] && exit 0
built=$(ls -t "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
if [ -n "$built" ]; then
  mkdir -p "$ROCKSDB_CACHE"
  cp "$built" "$ROCKSDB_CACHE/librocksdb.a.tmp" && mv "$ROCKSDB_CACHE/librocksdb.a.tmp" "$ROCKSDB_CACHE/librocksdb.a"
  echo "cached RocksDB in $ROCKSDB_CACHE"
fi
