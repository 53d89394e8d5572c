//! Hash sets of transaction hashes, for the replica's bookkeeping of
//! pending, in-flight and recently committed transactions.
//!
//! They hold up to `pending_txs_max` entries each and are touched several
//! times per transaction, where an ordered map's 32-byte comparisons cost
//! more than everything else in the normal case. They are only ever looked
//! up, never iterated, so no output depends on their layout. The hasher has
//! no random seed (the replica stays deterministic): it is keyed from the
//! replica's signing key instead, so a client cannot grind transactions
//! whose hashes collide in the table.

use phalanx_crypto::{Digest, Keypair};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// A set of transaction hashes. Never iterate it in a decision.
pub(crate) type TxSet = HashSet<Digest, TxHashKey>;
/// A map keyed by transaction hash. Never iterate it in a decision.
pub(crate) type TxMap<V> = HashMap<Digest, V, TxHashKey>;

/// The secret key of a replica's transaction hash tables.
#[derive(Clone, Debug)]
pub(crate) struct TxHashKey {
    multiplier: u64,
    seed: u64,
}

impl TxHashKey {
    /// Derived from the replica's signing key, which clients do not know.
    pub fn new(key: &Keypair) -> TxHashKey {
        let mut bytes = b"phalanx/tx-set-key/v1".to_vec();
        bytes.extend_from_slice(&key.seed());
        let d = Digest::sha256(&bytes).0;
        let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"));
        TxHashKey {
            multiplier: word(0) | 1,
            seed: word(8),
        }
    }

    pub fn set(&self) -> TxSet {
        HashSet::with_hasher(self.clone())
    }

    pub fn map<V>(&self) -> TxMap<V> {
        HashMap::with_hasher(self.clone())
    }
}

impl BuildHasher for TxHashKey {
    type Hasher = TxHasher;

    fn build_hasher(&self) -> TxHasher {
        TxHasher {
            multiplier: self.multiplier,
            state: self.seed,
        }
    }
}

/// Multiply-rotate over 8-byte words: the input is already a SHA-256
/// digest, so this only needs to be keyed, not a good hash of its own.
pub(crate) struct TxHasher {
    multiplier: u64,
    state: u64,
}

impl Hasher for TxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = (self.state ^ u64::from_le_bytes(word))
                .wrapping_mul(self.multiplier)
                .rotate_left(29);
        }
    }

    fn finish(&self) -> u64 {
        // The high bits of a product mix best; hashbrown indexes with the
        // low ones and tags with the top seven.
        self.state ^ (self.state >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_deterministic_and_spread() {
        let a = TxHashKey::new(&Keypair::insecure_from_label("a"));
        let b = TxHashKey::new(&Keypair::insecure_from_label("b"));
        let d = Digest::sha256(b"tx");
        assert_eq!(a.hash_one(d), a.clone().hash_one(d));
        assert_ne!(a.hash_one(d), b.hash_one(d));
        let mut set = a.set();
        for i in 0u32..10_000 {
            assert!(set.insert(Digest::sha256(&i.to_le_bytes())));
        }
        assert!(set.contains(&Digest::sha256(&7u32.to_le_bytes())));
        assert!(!set.contains(&Digest::sha256(b"absent")));
    }
}
