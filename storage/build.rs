//! RocksDB is C++. When `librocksdb-sys` compiles it, the C++ standard
//! library is linked for us; when it links a prebuilt static library instead
//! (`ROCKSDB_LIB_DIR`, as `scripts/prereqs.sh` does from its build cache),
//! nobody does, so we do.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
