//! The on-disk layout: column families, key encodings, meta keys and the
//! decode limits for every kind of stored value.
//!
//! Keys are raw bytes chosen for their order (heights big-endian, so a
//! column family iterates in height order); values are the canonical
//! encoding of `phalanx_crypto::codec`, decoded with a named limit.

use phalanx_consensus::{Evidence, Phase, SeqNum};
use phalanx_crypto::{Address, Digest};

/// Bumped whenever the layout or a stored type changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// Decode limits, one per kind of value. Generous: they exist so that a
/// damaged length prefix fails cleanly instead of allocating gigabytes.
pub const BLOCK_BYTES_MAX: u64 = 64 << 20;
pub const CERTIFICATE_BYTES_MAX: u64 = 4 << 20;
pub const WAL_ENTRY_BYTES_MAX: u64 = 64 << 20;
pub const EVIDENCE_BYTES_MAX: u64 = 64 << 20;
pub const TX_LOCATION_BYTES_MAX: u64 = 1 << 10;
pub const ACCOUNT_BYTES_MAX: u64 = 1 << 10;
pub const META_BYTES_MAX: u64 = 1 << 10;

/// The most blocks one `blocks_range` call returns (one catch-up reply).
pub const BLOCKS_RANGE_MAX: u64 = phalanx_consensus::CATCH_UP_BLOCKS_MAX as u64;

/// One column family per kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// height (u64 BE) → `Block`
    Blocks,
    /// block hash (32 bytes) → height (`SeqNum`)
    BlockHashIndex,
    /// height (u64 BE) → `CommitCertificate`
    Certificates,
    /// seq (u64 BE) → `CheckpointCertificate`
    Checkpoints,
    /// tx hash (32 bytes) → `TxLocation`
    TxIndex,
    /// address (20 bytes) → `Account`
    Accounts,
    /// name → value; see [`meta_key`]
    Meta,
    /// seq-or-`u64::MAX` (u64 BE) ‖ append counter (u64 BE) → `WalEntry`
    Wal,
    /// seq ‖ view (u64 BE each) ‖ phase (1 byte) ‖ validator key (32 bytes) → `Evidence`
    Evidence,
}

impl Cf {
    pub const ALL: [Cf; 9] = [
        Cf::Blocks,
        Cf::BlockHashIndex,
        Cf::Certificates,
        Cf::Checkpoints,
        Cf::TxIndex,
        Cf::Accounts,
        Cf::Meta,
        Cf::Wal,
        Cf::Evidence,
    ];

    /// The RocksDB column family name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::BlockHashIndex => "block_hash_index",
            Cf::Certificates => "certificates",
            Cf::Checkpoints => "checkpoints",
            Cf::TxIndex => "tx_index",
            Cf::Accounts => "accounts",
            Cf::Meta => "meta",
            Cf::Wal => "wal",
            Cf::Evidence => "evidence",
        }
    }

    /// Position in [`Cf::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Column families read by point lookups of random keys (hashes,
    /// addresses), which benefit from a Bloom filter.
    pub fn point_lookups(self) -> bool {
        matches!(self, Cf::BlockHashIndex | Cf::TxIndex | Cf::Accounts)
    }
}

/// Keys of the `meta` column family.
pub mod meta_key {
    /// `u32`: the [`super::SCHEMA_VERSION`] the store was created with.
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    /// `Digest`: the genesis this store belongs to.
    pub const GENESIS_HASH: &[u8] = b"genesis_hash";
    /// `ChainTip`: height, hash and state root after the last applied
    /// block, as one record so a reader never sees a mix of two heights.
    /// At height 0 the hash is the genesis hash.
    pub const TIP: &[u8] = b"tip";
}

/// The key of a height-indexed record: big-endian so keys sort by height.
pub fn height_key(height: SeqNum) -> [u8; 8] {
    height.0.to_be_bytes()
}

pub fn hash_key(hash: &Digest) -> [u8; 32] {
    hash.0
}

pub fn address_key(address: &Address) -> [u8; 20] {
    address.0
}

/// WAL entries without a sequence number sort after every numbered one and
/// are never pruned.
const WAL_NO_SEQ: u64 = u64::MAX;

/// The key of a WAL entry: its seq first, so pruning everything below a seq
/// is one range delete; the append counter second, so keys are unique and
/// the load order (by counter) can be recovered.
pub fn wal_key(seq: Option<SeqNum>, counter: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&seq.map_or(WAL_NO_SEQ, |s| s.0).to_be_bytes());
    key[8..].copy_from_slice(&counter.to_be_bytes());
    key
}

/// The first WAL key not pruned by `prune_wal(below)`.
pub fn wal_prune_end(below: SeqNum) -> [u8; 16] {
    wal_key(Some(below), 0)
}

/// The append counter of a WAL key, or `None` if the key is malformed.
pub fn wal_counter(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 16] = key.try_into().ok()?;
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&bytes[8..]);
    Some(u64::from_be_bytes(counter))
}

/// One evidence record per `(seq, view, phase, validator)`: one proof of an
/// equivocation is enough, so a traitor cannot grow the store without bound
/// by equivocating repeatedly on one slot.
pub fn evidence_key(evidence: &Evidence) -> [u8; 49] {
    let mut key = [0u8; 49];
    key[..8].copy_from_slice(&evidence.seq.0.to_be_bytes());
    key[8..16].copy_from_slice(&evidence.view.0.to_be_bytes());
    key[16] = match evidence.phase {
        Phase::PrePrepare => 0,
        Phase::Prepare => 1,
        Phase::Commit => 2,
    };
    key[17..].copy_from_slice(&evidence.validator.0);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_family_indexes_follow_all() {
        for (i, cf) in Cf::ALL.iter().enumerate() {
            assert_eq!(cf.index(), i, "{cf:?}");
        }
        let mut names: Vec<_> = Cf::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Cf::ALL.len(), "names are unique");
    }

    #[test]
    fn wal_keys_sort_by_seq_then_counter_and_unnumbered_last() {
        let a = wal_key(Some(SeqNum(3)), 9);
        let b = wal_key(Some(SeqNum(4)), 1);
        let c = wal_key(None, 0);
        assert!(a < b && b < c);
        assert!(a < wal_prune_end(SeqNum(4)) && b >= wal_prune_end(SeqNum(4)));
        assert!(c >= wal_prune_end(SeqNum(u64::MAX)));
        assert_eq!(wal_counter(&a), Some(9));
        assert_eq!(wal_counter(&a[..15]), None);
    }
}
