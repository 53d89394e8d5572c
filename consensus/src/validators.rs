//! The validator set: who may vote, and how many votes make a quorum.

use crate::{ValidatorIndex, View};
use phalanx_crypto::{KeySet, PublicKey};
use serde::{Deserialize, Serialize};

/// The genesis validators, in order. `n = 3f + 1` is not required: any
/// `n ≥ 1` works with `f = (n - 1) / 3`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    keys: Vec<PublicKey>,
}

impl ValidatorSet {
    /// Panics on an empty or duplicated list: validated at genesis load.
    pub fn new(keys: Vec<PublicKey>) -> ValidatorSet {
        assert!(!keys.is_empty(), "a validator set needs at least one key");
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "duplicate validator key");
        assert!(keys.len() <= u16::MAX as usize);
        ValidatorSet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The most faulty validators tolerated.
    pub fn f(&self) -> usize {
        (self.keys.len() - 1) / 3
    }

    /// `2f + 1`: the votes that make a prepared or committed certificate.
    pub fn quorum(&self) -> usize {
        2 * self.f() + 1
    }

    /// `f + 1`: enough to include at least one honest validator.
    pub fn weak_quorum(&self) -> usize {
        self.f() + 1
    }

    pub fn primary(&self, view: View) -> ValidatorIndex {
        ValidatorIndex((view.0 % self.keys.len() as u64) as u16)
    }

    pub fn key(&self, index: ValidatorIndex) -> Option<&PublicKey> {
        self.keys.get(index.as_usize())
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(|i| ValidatorIndex(i as u16))
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn indices(&self) -> impl Iterator<Item = ValidatorIndex> {
        (0..self.keys.len() as u16).map(ValidatorIndex)
    }
}

impl KeySet for ValidatorSet {
    fn contains_key(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;

    #[test]
    fn quorums_by_size() {
        for (n, f, q) in [(1, 0, 1), (4, 1, 3), (5, 1, 3), (7, 2, 5), (10, 3, 7)] {
            let keys = (0..n)
                .map(|i| Keypair::insecure_from_label(&format!("v{i}")).public())
                .collect();
            let set = ValidatorSet::new(keys);
            assert_eq!((set.f(), set.quorum()), (f, q), "n = {n}");
        }
    }
}
