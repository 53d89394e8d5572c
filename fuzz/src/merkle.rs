//! Merkle inclusion proofs (`phalanx_crypto::merkle::verify`) with
//! arbitrary proofs against real trees.
//!
//! Input: `[n][mode][32 bytes][MerkleProof, canonical encoding]`. The tree
//! has `n % 65` leaves (precomputed). `mode` bit 0: the leaf is the tree's
//! leaf at `proof.index % n` (else the 32 bytes); bit 1: the expected root
//! is the 32 bytes (else the tree's root); bit 2: also check that the
//! honest proof for that leaf verifies.
//!
//! Soundness is the oracle: a proof accepted against a tree's root must be
//! for that tree's size, an index inside it, and the leaf at that index.

use crate::Verdict;
use phalanx_crypto::merkle::{self, MerkleProof};
use phalanx_crypto::{codec, Digest, HashDomain};
use std::sync::OnceLock;

/// The largest tree the target builds.
pub const TREE_LEAVES_MAX: usize = 64;

struct Tree {
    leaves: Vec<Digest>,
    root: Digest,
}

fn trees() -> &'static [Tree] {
    static TREES: OnceLock<Vec<Tree>> = OnceLock::new();
    TREES.get_or_init(|| {
        (0..=TREE_LEAVES_MAX)
            .map(|n| {
                let leaves: Vec<Digest> = (0..n as u64)
                    .map(|i| Digest::of(HashDomain::Transaction, &i.to_le_bytes()))
                    .collect();
                let root = merkle::root(&leaves);
                Tree { leaves, root }
            })
            .collect()
    })
}

/// The tree of `n` leaves the target uses (for the seeds).
pub fn tree_leaves(n: usize) -> &'static [Digest] {
    &trees()[n].leaves
}

pub fn merkle_proof(data: &[u8]) -> Verdict {
    if data.len() < 34 {
        return Verdict::Rejected;
    }
    let tree = &trees()[data[0] as usize % (TREE_LEAVES_MAX + 1)];
    let n = tree.leaves.len();
    let mode = data[1];
    let mut free = [0u8; 32];
    free.copy_from_slice(&data[2..34]);
    let free = Digest(free);
    let Ok(proof) = codec::decode::<MerkleProof>(&data[34..], 4096) else {
        return Verdict::Rejected;
    };
    let leaf_index = (n > 0).then(|| (proof.index % n as u64) as usize);
    let leaf = match leaf_index {
        Some(i) if mode & 1 != 0 => tree.leaves[i],
        _ => free,
    };
    let against_tree = mode & 2 == 0;
    let root = if against_tree { tree.root } else { free };
    if mode & 4 != 0 && against_tree {
        if let Some(i) = leaf_index {
            let honest = merkle::prove(&tree.leaves, i).expect("index in range");
            assert_eq!(
                merkle::verify(&tree.leaves[i], &honest, &tree.root),
                Ok(()),
                "the honest proof for leaf {i} of {n} fails"
            );
        }
    }
    match merkle::verify(&leaf, &proof, &root) {
        Ok(()) => {
            if against_tree {
                assert_eq!(proof.leaf_count, n as u64, "accepted another tree size");
                assert!(proof.index < n as u64, "accepted an index outside");
                assert_eq!(
                    tree.leaves[proof.index as usize], leaf,
                    "accepted a leaf that is not at its index"
                );
            }
            Verdict::Accepted
        }
        Err(_) => Verdict::Rejected,
    }
}
