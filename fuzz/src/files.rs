//! Files an operator writes: key files, the genesis file and `node.toml`.
//!
//! Their loaders (`phalanx_crypto::load_key_file`,
//! `phalanx_node::config::load_genesis`, `NodeConfig::load`) read from a
//! path and have no from-bytes form, so each input is written to a scratch
//! file (mode 0600, one per thread, under `TMPDIR`) and the real loader
//! reads it: permissions check, parsing and validation, as at startup.

use crate::{fixture, Verdict};
use phalanx_consensus::{Genesis, Replica};
use phalanx_crypto::{codec, load_key_file, KeyFile};
use phalanx_node::config::{load_genesis, NodeConfig};
use phalanx_storage::{MemStore, Store};
use std::io::Write as _;
use std::path::Path;

thread_local! {
    static SCRATCH: tempfile::TempDir = tempfile::Builder::new()
        .prefix("phalanx-fuzz-")
        .tempdir()
        .expect("a scratch directory under TMPDIR");
}

/// Writes `data` to the scratch file `name` (mode 0600) and calls `load`.
fn with_file<T>(name: &str, data: &[u8], load: impl FnOnce(&Path) -> T) -> T {
    SCRATCH.with(|dir| {
        let path = dir.path().join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&path).expect("the scratch file opens");
        file.write_all(data).expect("the scratch file is written");
        drop(file);
        load(&path)
    })
}

/// `load_key_file`: JSON, kind, hex seed, public key matching the seed.
pub fn key_file(data: &[u8]) -> Verdict {
    match with_file("key.json", data, load_key_file) {
        Ok(key) => {
            // The loader promises the stored public key is the seed's. (Hex
            // may be in either case, so compare keys, not text.)
            let file: KeyFile = serde_json::from_slice(data).expect("a loaded key file parses");
            assert_eq!(
                file.public_key,
                key.public(),
                "a key file loaded whose public key is not the one stored"
            );
            Verdict::Accepted
        }
        Err(_) => Verdict::Rejected,
    }
}

/// `load_genesis`: JSON, `Genesis::validate`, validators' multiaddrs; then
/// what a node derives from it at startup.
pub fn genesis(data: &[u8]) -> Verdict {
    let Ok(genesis) = with_file("genesis.json", data, load_genesis) else {
        return Verdict::Rejected;
    };
    let validators = genesis.validator_set();
    assert_eq!(validators.len(), genesis.validators.len());
    assert!(validators.quorum() <= validators.len(), "quorum over n");
    let cfg = genesis.consensus_config();
    assert!(cfg.validate().is_ok(), "validated genesis, invalid config");
    let supply = genesis.total_supply();
    assert!(supply <= u64::MAX as u128, "validated supply over 64 bits");
    // The store a node initialises from it.
    let store = MemStore::from_genesis(&genesis);
    assert_eq!(
        store.genesis_hash().expect("in-memory read"),
        Some(genesis.hash())
    );
    // The genesis hash is over the canonical encoding: it must round-trip,
    // and so must the JSON a node would write back.
    let bytes = codec::encode(&genesis);
    let decoded: Genesis = codec::decode(&bytes, bytes.len() as u64).expect("own encoding");
    assert_eq!(decoded, genesis, "genesis does not survive the codec");
    let json = serde_json::to_vec(&genesis).expect("genesis serialises");
    let again: Genesis = serde_json::from_slice(&json).expect("own JSON parses");
    assert_eq!(again, genesis, "genesis does not survive JSON");
    for v in genesis.validators.iter().take(4) {
        check_init(&v.p2p_address);
    }
    Verdict::Accepted
}

/// `phalanx init` (node/src/bin/phalanx.rs) writes `node.toml` with
/// `NodeConfig::render`, taking `p2p.listen` from the validator's
/// `p2p_address` in the genesis file: what it writes must load back as
/// the config it meant to write.
fn check_init(p2p_address: &str) {
    let mut config = NodeConfig::default();
    config.p2p.listen = p2p_address.to_string();
    let text = config.render();
    let loaded = with_file("init.toml", text.as_bytes(), NodeConfig::load);
    assert!(
        loaded.as_ref().ok() == Some(&config),
        "`phalanx init` with p2p address {p2p_address:?} writes a node.toml that loads as {loaded:?}"
    );
}

/// `NodeConfig::load`: TOML, unknown fields, multiaddrs, limits, the log
/// filter, the traitor behaviour; then the consensus config it makes with
/// the fixture's genesis, as the node builds its replica.
pub fn node_config(data: &[u8]) -> Verdict {
    let Ok(config) = with_file("node.toml", data, NodeConfig::load) else {
        return Verdict::Rejected;
    };
    let f = fixture();
    let cfg = config.consensus_config(&f.genesis);
    // The node refuses to start on a config the replica refuses; either
    // way, an error, not a panic.
    let _ = Replica::new(cfg, f.keys[0].clone());
    Verdict::Accepted
}
