//! Stored records, as a node reads them back from RocksDB.
//!
//! The storage crate's record decoders (`storage/src/records.rs`: the
//! private `decode`, `decode_checkpoint` and the checks in `block`,
//! `certificate`, `verify_one`, `load_wal`, `evidence`) are reachable only
//! through a store whose bytes the caller cannot set, so this target makes
//! the same calls through public items: `codec::decode::<T>` with the limit
//! `phalanx_storage::schema` names for that column family, then the checks
//! the store runs on what it read. Input: `[kind][value bytes]`.

use crate::{fixture, Verdict, CHAIN};
use phalanx_consensus::ledger::Account;
use phalanx_consensus::{
    Block, CheckpointCertificate, CommitCertificate, Evidence, SeqNum, WalEntry,
};
use phalanx_crypto::{codec, Digest};
use phalanx_storage::{schema, ChainTip, TxLocation};
use serde::{de::DeserializeOwned, Serialize};

/// Which record the value bytes are read as: the first input byte, modulo
/// the number of kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Block,
    Certificate,
    Checkpoint,
    TxLocation,
    Account,
    Tip,
    GenesisHash,
    HashIndex,
    SchemaVersion,
    Wal,
    Evidence,
}

pub const RECORD_KINDS: [RecordKind; 11] = [
    RecordKind::Block,
    RecordKind::Certificate,
    RecordKind::Checkpoint,
    RecordKind::TxLocation,
    RecordKind::Account,
    RecordKind::Tip,
    RecordKind::GenesisHash,
    RecordKind::HashIndex,
    RecordKind::SchemaVersion,
    RecordKind::Wal,
    RecordKind::Evidence,
];

/// The first byte that selects `kind`.
pub fn record_kind(kind: RecordKind) -> u8 {
    RECORD_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is listed") as u8
}

/// Decodes as the store does, and checks the codec's one-encoding promise.
fn read<T: DeserializeOwned + Serialize>(bytes: &[u8], limit: u64) -> Option<T> {
    let value: T = codec::decode(bytes, limit).ok()?;
    assert!(
        codec::encode(&value) == bytes,
        "a record decoded from bytes that are not its canonical encoding"
    );
    Some(value)
}

pub fn stored_record(data: &[u8]) -> Verdict {
    let Some((&kind, bytes)) = data.split_first() else {
        return Verdict::Rejected;
    };
    let kind = RECORD_KINDS[kind as usize % RECORD_KINDS.len()];
    let ok = match kind {
        RecordKind::Block => read::<Block>(bytes, schema::BLOCK_BYTES_MAX).map(|block| {
            // `block` and `verify_one`: its hash, its contents against its
            // header; a catch-up peer serves its batch.
            let _ = block.hash();
            let _ = block.check_contents();
            let _ = block.batch().digest();
        }),
        RecordKind::Certificate => read::<CommitCertificate>(bytes, schema::CERTIFICATE_BYTES_MAX)
            .map(|cert| {
                let _ = cert.verify(&fixture().cfg.validators, CHAIN);
            }),
        RecordKind::Checkpoint => {
            read::<CheckpointCertificate>(bytes, schema::CERTIFICATE_BYTES_MAX).map(|cert| {
                let _ = schema::height_key(cert.seq);
                let _ = cert.verify(&fixture().cfg.validators, CHAIN);
            })
        }
        RecordKind::TxLocation => {
            read::<TxLocation>(bytes, schema::TX_LOCATION_BYTES_MAX).map(drop)
        }
        RecordKind::Account => read::<Account>(bytes, schema::ACCOUNT_BYTES_MAX).map(drop),
        RecordKind::Tip => read::<ChainTip>(bytes, schema::META_BYTES_MAX).map(drop),
        RecordKind::GenesisHash => read::<Digest>(bytes, schema::META_BYTES_MAX).map(drop),
        RecordKind::HashIndex => read::<SeqNum>(bytes, schema::META_BYTES_MAX).map(drop),
        RecordKind::SchemaVersion => read::<u32>(bytes, schema::META_BYTES_MAX).map(drop),
        RecordKind::Wal => read::<WalEntry>(bytes, schema::WAL_ENTRY_BYTES_MAX).map(|entry| {
            // The key it is stored under.
            let _ = schema::wal_key(entry.seq(), 0);
        }),
        RecordKind::Evidence => {
            read::<Evidence>(bytes, schema::EVIDENCE_BYTES_MAX).map(|evidence| {
                let _ = schema::evidence_key(&evidence.validator, evidence.view, evidence.phase);
            })
        }
    };
    match ok {
        Some(()) => Verdict::Accepted,
        None => Verdict::Rejected,
    }
}
