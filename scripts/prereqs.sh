#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build Phalanx: libclang for
# RocksDB's bindings (bindgen) and a C++ compiler. Safe to run repeatedly.
set -euo pipefail

need=()
# bindgen loads libclang at build time. Look for libclang itself:
# libclang-cpp (shipped with other LLVM packages) does not do.
if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
  && ! compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null \
  && ! compgen -G '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' >/dev/null \
  && ! compgen -G '/usr/lib/*-linux-gnu/libclang.so*' >/dev/null; then
  need+=(libclang-dev)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "prereqs: cargo is not installed (install Rust from rustup.rs)" >&2; exit 1; }

if [ ${#need[@]} -gt 0 ]; then
  echo "prereqs: installing ${need[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A build cache outside the clone: RocksDB takes minutes to compile on two
# cores, so every clone on this machine shares one target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/phalanx-ws}"

# RocksDB's C++ takes tens of minutes on two cores. Once a machine has
# compiled it, keep the static library and link it on later builds (a build
# cache, keyed by the librocksdb-sys version in Cargo.lock); a machine
# without the cache compiles from source as usual.
ROCKSDB_SYS_VERSION=$(grep -A1 'name = "librocksdb-sys"' Cargo.lock | sed -n 's/version = "\(.*\)+.*"/\1/p')
ROCKSDB_CACHE="/var/tmp/phalanx-cache/librocksdb-sys-${ROCKSDB_SYS_VERSION}"
if [ -z "${ROCKSDB_LIB_DIR:-}" ] && [ -f "$ROCKSDB_CACHE/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR="$ROCKSDB_CACHE" ROCKSDB_STATIC=1
fi

