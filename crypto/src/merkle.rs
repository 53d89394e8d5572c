//! A Merkle tree over transaction hashes, shaped as in RFC 6962 (Certificate
//! Transparency): the left subtree holds the largest power of two below the
//! leaf count, so no leaf is ever duplicated (the CVE-2012-2459 shape), and
//! leaves and inner nodes are hashed under different domains, so an inner
//! node can never pose as a leaf. The root binds the leaf count, so a proof
//! cannot claim a different tree size.

use crate::{Digest, HashDomain};
use serde::{Deserialize, Serialize};

/// The most leaves a proof may claim; bounds proof length to 32 siblings.
pub const MAX_LEAVES: u64 = 1 << 32;

/// Proof that a leaf is at `index` in a tree of `leaf_count` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    pub index: u64,
    pub leaf_count: u64,
    /// Sibling hashes from the leaf upwards.
    pub siblings: Vec<Digest>,
}

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is outside a tree of {leaf_count} leaves")]
    IndexOutOfRange { index: u64, leaf_count: u64 },
    #[error(
        "proof has {got} siblings, a tree of {leaf_count} leaves needs {want} at index {index}"
    )]
    WrongLength {
        index: u64,
        leaf_count: u64,
        got: usize,
        want: usize,
    },
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch { computed: Digest, expected: Digest },
}

fn leaf_hash(leaf: &Digest) -> Digest {
    Digest::of(HashDomain::MerkleLeaf, &leaf.0)
}

fn node_hash(left: &Digest, right: &Digest) -> Digest {
    Digest::of_parts(HashDomain::MerkleNode, &[&left.0, &right.0])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of the tree over `leaves`: the tree's top hash bound to the
/// leaf count, so a proof cannot claim a different tree size.
pub fn root(leaves: &[Digest]) -> Digest {
    bind_count(leaves.len() as u64, &subtree_root(leaves))
}

fn bind_count(leaf_count: u64, top: &Digest) -> Digest {
    Digest::of_parts(HashDomain::MerkleRoot, &[&leaf_count.to_le_bytes(), &top.0])
}

fn subtree_root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => Digest::ZERO,
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split_point(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The inclusion proof for `leaves[index]`, or `None` if out of range.
pub fn prove(leaves: &[Digest], index: usize) -> Option<MerkleProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut siblings = Vec::new();
    collect_path(leaves, index, &mut siblings);
    Some(MerkleProof {
        index: index as u64,
        leaf_count: leaves.len() as u64,
        siblings,
    })
}

fn collect_path(leaves: &[Digest], index: usize, out: &mut Vec<Digest>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    if index < k {
        collect_path(&leaves[..k], index, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// Checks that `leaf` is at `proof.index` under `expected_root`.
pub fn verify(
    leaf: &Digest,
    proof: &MerkleProof,
    expected_root: &Digest,
) -> Result<(), ProofError> {
    let MerkleProof {
        index,
        leaf_count,
        siblings,
    } = proof;
    if index >= leaf_count || *leaf_count > MAX_LEAVES {
        return Err(ProofError::IndexOutOfRange {
            index: *index,
            leaf_count: *leaf_count,
        });
    }
    let want = path_len(*index, *leaf_count);
    if siblings.len() != want {
        return Err(ProofError::WrongLength {
            index: *index,
            leaf_count: *leaf_count,
            got: siblings.len(),
            want,
        });
    }
    let top = fold_path(leaf_hash(leaf), *index, *leaf_count, siblings);
    let computed = bind_count(*leaf_count, &top);
    if computed != *expected_root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *expected_root,
        });
    }
    Ok(())
}

/// How many siblings the path from `index` to the root has.
fn path_len(index: u64, n: u64) -> usize {
    if n <= 1 {
        return 0;
    }
    let k = split_point(n as usize) as u64;
    if index < k {
        1 + path_len(index, k)
    } else {
        1 + path_len(index - k, n - k)
    }
}

/// Recomputes the root from the leaf's hash and its siblings (leaf upwards).
fn fold_path(leaf: Digest, index: u64, n: u64, siblings: &[Digest]) -> Digest {
    if n <= 1 {
        return leaf;
    }
    let k = split_point(n as usize) as u64;
    // The last sibling is the top-level one; recurse on the rest.
    let (top, rest) = siblings.split_last().expect("length checked by path_len");
    if index < k {
        node_hash(&fold_path(leaf, index, k, rest), top)
    } else {
        node_hash(top, &fold_path(leaf, index - k, n - k, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| Digest::of(HashDomain::Transaction, &(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_size_proves() {
        for n in 1..=33 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = prove(&l, i).unwrap();
                verify(&l[i], &p, &r).unwrap_or_else(|e| panic!("n={n} i={i}: {e}"));
            }
            assert!(prove(&l, n).is_none());
        }
    }

    #[test]
    fn tampering_is_rejected() {
        let l = leaves(13);
        let r = root(&l);
        let p = prove(&l, 6).unwrap();
        // Altered leaf.
        assert!(verify(&l[5], &p, &r).is_err());
        // Altered index (same length path, different position).
        let mut q = p.clone();
        q.index = 7;
        assert!(verify(&l[6], &q, &r).is_err());
        // Index out of range.
        let mut q = p.clone();
        q.index = 13;
        assert!(matches!(
            verify(&l[6], &q, &r),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        // Altered sibling, each one.
        for s in 0..p.siblings.len() {
            let mut q = p.clone();
            q.siblings[s].0[0] ^= 1;
            assert!(verify(&l[6], &q, &r).is_err(), "sibling {s}");
        }
        // Truncated and extended paths.
        let mut q = p.clone();
        q.siblings.pop();
        assert!(matches!(
            verify(&l[6], &q, &r),
            Err(ProofError::WrongLength { .. })
        ));
        let mut q = p.clone();
        q.siblings.push(Digest::ZERO);
        assert!(verify(&l[6], &q, &r).is_err());
        // Altered leaf count.
        let mut q = p.clone();
        q.leaf_count = 14;
        assert!(verify(&l[6], &q, &r).is_err());
        // Altered root.
        let mut bad_root = r;
        bad_root.0[31] ^= 0x80;
        assert!(matches!(
            verify(&l[6], &p, &bad_root),
            Err(ProofError::RootMismatch { .. })
        ));
    }

    #[test]
    fn inner_node_cannot_pose_as_leaf() {
        let l = leaves(4);
        let r = root(&l);
        // The left inner node, presented as a leaf of a 2-leaf tree.
        let left = node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1]));
        let right = node_hash(&leaf_hash(&l[2]), &leaf_hash(&l[3]));
        let fake = MerkleProof {
            index: 0,
            leaf_count: 2,
            siblings: vec![right],
        };
        assert!(verify(&left, &fake, &r).is_err());
        let fake4 = MerkleProof {
            index: 0,
            leaf_count: 4,
            siblings: vec![right],
        };
        assert!(verify(&left, &fake4, &r).is_err());
    }

    #[test]
    fn roots_differ_by_order_and_size() {
        let l = leaves(5);
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(root(&l), root(&swapped));
        assert_ne!(root(&l[..4]), root(&l));
        assert_ne!(root(&[]), root(&l[..1]));
    }
}
