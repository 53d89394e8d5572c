//! Batches, blocks and the certificates that prove them.
//!
//! A committed batch at sequence number `h` becomes block `h`. The commit
//! certificate signs `(view, h, batch_digest)`; the batch digest commits to
//! the Merkle root of the transaction hashes, so a Merkle path plus the
//! certificate prove that a transaction is final without the whole block.

use crate::message::{Checkpoint, Commit};
use crate::{tx_hash, SeqNum, Transaction, ValidatorSet, View};
use phalanx_crypto::{merkle, Digest, HashDomain, Signed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What the primary proposes for one sequence number. An empty batch with
/// timestamp 0 is the *null batch* that fills gaps after a view change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Batch {
    pub txs: Vec<Transaction>,
    /// The primary's clock when it cut the batch: informational only.
    pub timestamp_ms: u64,
}

impl Batch {
    pub fn null() -> Batch {
        Batch::default()
    }

    pub fn tx_hashes(&self) -> Vec<Digest> {
        self.txs.iter().map(tx_hash).collect()
    }

    /// The digest votes refer to: over the transaction root, the count and
    /// the timestamp.
    pub fn digest(&self) -> Digest {
        self.digest_of_hashes(&self.tx_hashes())
    }

    /// [`Batch::digest`] from the transactions' hashes, for callers that
    /// already computed them (they must be `self.tx_hashes()`).
    pub(crate) fn digest_of_hashes(&self, tx_hashes: &[Digest]) -> Digest {
        debug_assert_eq!(tx_hashes.len(), self.txs.len());
        batch_digest(
            &merkle::root(tx_hashes),
            self.txs.len() as u64,
            self.timestamp_ms,
        )
    }
}

/// The batch digest from its parts, so a header can be checked against a
/// certificate without the transactions.
pub fn batch_digest(tx_root: &Digest, tx_count: u64, timestamp_ms: u64) -> Digest {
    Digest::of_parts(
        HashDomain::Batch,
        &[
            &tx_root.0,
            &tx_count.to_le_bytes(),
            &timestamp_ms.to_le_bytes(),
        ],
    )
}

/// The header of block `height`. Its hash is the next block's `prev_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: SeqNum,
    // No view here: replicas may commit one batch in different views (a
    // NEW-VIEW re-issues it), and the block must hash the same on all of
    // them. The view is in the commit certificate.
    pub prev_hash: Digest,
    pub batch_digest: Digest,
    pub tx_root: Digest,
    pub tx_count: u64,
    /// The account state root after executing this block.
    pub state_root: Digest,
    pub timestamp_ms: u64,
}

impl BlockHeader {
    pub fn hash(&self) -> Digest {
        Digest::of(
            HashDomain::BlockHeader,
            &phalanx_crypto::codec::encode(self),
        )
    }

    /// Whether `batch_digest` follows from the header's own fields.
    pub fn batch_digest_matches(&self) -> bool {
        batch_digest(&self.tx_root, self.tx_count, self.timestamp_ms) == self.batch_digest
    }
}

/// Why a transaction failed. Failed transactions are kept in the block,
/// with their reason, on every validator alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxFailure {
    BadNonce { expected: u64, got: u64 },
    InsufficientBalance { balance: u64, amount: u64 },
    WrongChain,
    SelfTransfer,
    ZeroAmount,
}

impl std::fmt::Display for TxFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxFailure::BadNonce { expected, got } => {
                write!(f, "bad nonce: expected {expected}, got {got}")
            }
            TxFailure::InsufficientBalance { balance, amount } => {
                write!(f, "insufficient balance: have {balance}, need {amount}")
            }
            TxFailure::WrongChain => write!(f, "wrong chain id"),
            TxFailure::SelfTransfer => write!(f, "transfer to self"),
            TxFailure::ZeroAmount => write!(f, "zero amount"),
        }
    }
}

/// The outcome of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxResult {
    Executed,
    Failed(TxFailure),
}

impl TxResult {
    /// Whether the same signed transaction may still execute in a later
    /// block: it failed only because its nonce was ahead of its sender's
    /// (an earlier one was missing, e.g. left out by a faulty primary).
    /// Such a failure changes nothing and does not use the transaction up:
    /// a client may submit it again. Executing consumes the nonce, so a
    /// transaction still executes at most once.
    pub fn may_execute_later(&self) -> bool {
        matches!(self, TxResult::Failed(TxFailure::BadNonce { expected, got }) if got > expected)
    }
}

/// A block: header, transactions and their results (which follow
/// deterministically from the state and are not separately signed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    pub results: Vec<TxResult>,
}

impl Block {
    pub fn hash(&self) -> Digest {
        self.header.hash()
    }

    /// The batch this block was made from.
    pub fn batch(&self) -> Batch {
        Batch {
            txs: self.txs.clone(),
            timestamp_ms: self.header.timestamp_ms,
        }
    }

    /// Checks the header against the block's own contents: tx root, count,
    /// batch digest, and one result per transaction.
    pub fn check_contents(&self) -> Result<(), CertError> {
        let root = merkle::root(&self.txs.iter().map(tx_hash).collect::<Vec<_>>());
        if root != self.header.tx_root || self.txs.len() as u64 != self.header.tx_count {
            return Err(CertError::ContentMismatch("tx root or count"));
        }
        if !self.header.batch_digest_matches() {
            return Err(CertError::ContentMismatch("batch digest"));
        }
        if self.results.len() != self.txs.len() {
            return Err(CertError::ContentMismatch("results count"));
        }
        Ok(())
    }
}

/// Why a certificate does not prove what it claims.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("vote {index} is for a different (view, seq, digest) than the certificate")]
    VoteMismatch { index: usize },
    #[error("vote {index} is signed by {signer}, who is not a validator")]
    NotAValidator { index: usize, signer: String },
    #[error("validator {signer} signed twice")]
    DuplicateSigner { signer: String },
    #[error("vote {index} has a bad signature (signer {signer})")]
    BadSignature { index: usize, signer: String },
    #[error("{got} distinct signatures, need {need}")]
    TooFewSignatures { got: usize, need: usize },
    #[error("contents do not match: {0}")]
    ContentMismatch(&'static str),
}

/// Proof that `(view, seq, batch_digest)` committed: 2f + 1 signed COMMITs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub view: View,
    pub seq: SeqNum,
    pub batch_digest: Digest,
    pub votes: Vec<Signed<Commit>>,
}

/// Proof that 2f + 1 validators reached `(seq, block_hash, state_root)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCertificate {
    pub seq: SeqNum,
    pub block_hash: Digest,
    pub state_root: Digest,
    pub votes: Vec<Signed<Checkpoint>>,
}

impl CommitCertificate {
    pub fn verify(&self, validators: &ValidatorSet, chain_id: &str) -> Result<(), CertError> {
        let want = Commit {
            view: self.view,
            seq: self.seq,
            digest: self.batch_digest,
        };
        verify_votes(&self.votes, &want, validators, chain_id)
    }
}

impl CheckpointCertificate {
    pub fn verify(&self, validators: &ValidatorSet, chain_id: &str) -> Result<(), CertError> {
        let want = Checkpoint {
            seq: self.seq,
            block_hash: self.block_hash,
            state_root: self.state_root,
        };
        verify_votes(&self.votes, &want, validators, chain_id)
    }
}

/// Checks that `votes` are at least a quorum of distinct validators, all
/// signing exactly `want`, all with valid signatures (batch-verified).
pub fn verify_votes<M>(
    votes: &[Signed<M>],
    want: &M,
    validators: &ValidatorSet,
    chain_id: &str,
) -> Result<(), CertError>
where
    M: phalanx_crypto::SignedPayload + PartialEq + Clone,
{
    let mut signers = BTreeSet::new();
    for (index, vote) in votes.iter().enumerate() {
        if vote.payload != *want {
            return Err(CertError::VoteMismatch { index });
        }
        if validators.index_of(&vote.signer).is_none() {
            return Err(CertError::NotAValidator {
                index,
                signer: vote.signer.to_hex(),
            });
        }
        if !signers.insert(vote.signer) {
            return Err(CertError::DuplicateSigner {
                signer: vote.signer.to_hex(),
            });
        }
    }
    if signers.len() < validators.quorum() {
        return Err(CertError::TooFewSignatures {
            got: signers.len(),
            need: validators.quorum(),
        });
    }
    let verdicts = Signed::verify_all(votes.to_vec(), chain_id, validators);
    for (index, verdict) in verdicts.iter().enumerate() {
        if verdict.is_err() {
            return Err(CertError::BadSignature {
                index,
                signer: votes[index].signer.to_hex(),
            });
        }
    }
    Ok(())
}
