//! The on-disk layout: column families, key encodings, meta keys and the
//! decode limits for every kind of stored value.
//!
//! Keys are raw bytes chosen for their order (heights big-endian, so a
//! column family iterates in height order); values are the canonical
//! encoding of `phalanx_crypto::codec`, decoded with a named limit.

use phalanx_consensus::{Evidence, Phase, SeqNum, View};
use phalanx_crypto::{Address, Digest, PublicKey};

/// Bumped whenever the layout or a stored type changes incompatibly.
/// Version 2 keys evidence by (validator, view, phase) instead of
/// (seq, view, phase, validator); a version-1 store is migrated on open.
pub const SCHEMA_VERSION: u32 = 2;

/// The version before evidence was re-keyed; the only one migrated.
pub const SCHEMA_VERSION_EVIDENCE_BY_SEQ: u32 = 1;

/// Evidence kept per validator: the newest records by (view, phase). One
/// validator's equivocations can only push out its own older records, and
/// the whole family holds at most `n ×` this many (records are small: two
/// signed votes, pre-prepares without their batch).
pub const EVIDENCE_PER_VALIDATOR_MAX: usize = 256;

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
    /// validator key (32 bytes) ‖ view (u64 BE) ‖ phase (1 byte) → `Evidence`
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

/// The first key of the unnumbered WAL entries (view records and stable
/// checkpoints), which sort after every numbered one.
pub fn wal_unnumbered_start() -> [u8; 16] {
    wal_key(None, 0)
}

/// Length of an evidence key.
pub const EVIDENCE_KEY_LEN: usize = 41;

fn phase_byte(phase: Phase) -> u8 {
    match phase {
        Phase::PrePrepare => 0,
        Phase::Prepare => 1,
        Phase::Commit => 2,
    }
}

/// The phase a key byte stands for.
pub fn phase_of_byte(byte: u8) -> Option<Phase> {
    match byte {
        0 => Some(Phase::PrePrepare),
        1 => Some(Phase::Prepare),
        2 => Some(Phase::Commit),
        _ => None,
    }
}

/// One evidence record per `(validator, view, phase)`: one proof that a
/// validator equivocated in a phase of a view is enough, so a traitor
/// signing conflicting votes for every seq of a view adds one record per
/// phase, not one per seq. A validator's records are contiguous and sorted
/// by view, so retention drops its lowest keys.
pub fn evidence_key(validator: &PublicKey, view: View, phase: Phase) -> [u8; EVIDENCE_KEY_LEN] {
    let mut key = [0u8; EVIDENCE_KEY_LEN];
    key[..32].copy_from_slice(&validator.0);
    key[32..40].copy_from_slice(&view.0.to_be_bytes());
    key[40] = phase_byte(phase);
    key
}

/// The key `evidence` is stored under.
pub fn evidence_key_of(evidence: &Evidence) -> [u8; EVIDENCE_KEY_LEN] {
    evidence_key(&evidence.validator, evidence.view, evidence.phase)
}

/// The first key after every one of `validator`'s evidence keys, or `None`
/// for the greatest possible validator key.
pub fn evidence_validator_end(validator: &PublicKey) -> Option<[u8; 32]> {
    let mut end = validator.0;
    for byte in end.iter_mut().rev() {
        if *byte == u8::MAX {
            *byte = 0;
        } else {
            *byte += 1;
            return Some(end);
        }
    }
    None
}

/// The key of a version-1 evidence record, `seq ‖ view ‖ phase ‖
/// validator`: only for migrating (and testing the migration of) old
/// stores.
pub fn evidence_key_v1(evidence: &Evidence) -> [u8; 49] {
    let mut key = [0u8; 49];
    key[..8].copy_from_slice(&evidence.seq.0.to_be_bytes());
    key[8..16].copy_from_slice(&evidence.view.0.to_be_bytes());
    key[16] = phase_byte(evidence.phase);
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

    #[test]
    fn evidence_keys_group_by_validator_then_view_then_phase() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let k = |v: &PublicKey, view: u64, phase| evidence_key(v, View(view), phase);
        assert!(k(&a, 9, Phase::Commit) < k(&b, 0, Phase::PrePrepare));
        assert!(k(&a, 1, Phase::Commit) < k(&a, 2, Phase::PrePrepare));
        assert!(k(&a, 2, Phase::PrePrepare) < k(&a, 2, Phase::Prepare));
        let end = evidence_validator_end(&a).unwrap();
        assert!(k(&a, u64::MAX, Phase::Commit).as_slice() < end.as_slice());
        assert!(end.as_slice() <= k(&b, 0, Phase::PrePrepare).as_slice());
        let mut top = [0xff; 32];
        assert_eq!(evidence_validator_end(&PublicKey(top)), None);
        top[31] = 0xfe;
        assert_eq!(evidence_validator_end(&PublicKey(top)), Some([0xff; 32]));
        let mut carry = [0; 32];
        carry[30] = 1;
        carry[31] = 0xff;
        let mut carried = [0; 32];
        carried[30] = 2;
        assert_eq!(evidence_validator_end(&PublicKey(carry)), Some(carried));
        for byte in 0..=2 {
            assert_eq!(phase_of_byte(byte).map(phase_byte), Some(byte));
        }
        assert_eq!(phase_of_byte(3), None);
    }
}
