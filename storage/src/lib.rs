//! Phalanx storage: the committed chain, account state and the consensus
//! write-ahead records, behind one [`Store`] trait with two backends —
//! [`RocksStore`] (RocksDB, what a node runs) and [`MemStore`] (BTreeMaps,
//! for tests and the simulator). Both go through one record layer, so they
//! check, encode and refuse exactly alike.
//!
//! # Column families
//!
//! | family             | key                                   | value                   |
//! |--------------------|---------------------------------------|-------------------------|
//! | `blocks`           | height, u64 big-endian                | `Block`                 |
//! | `block_hash_index` | block hash                            | height                  |
//! | `certificates`     | height, u64 big-endian                | `CommitCertificate`     |
//! | `checkpoints`      | seq, u64 big-endian                   | `CheckpointCertificate` |
//! | `tx_index`         | tx hash                               | [`TxLocation`]          |
//! | `accounts`         | address                               | `Account`               |
//! | `meta`             | `schema_version`, `genesis_hash`, `tip` | version, hash, [`ChainTip`] |
//! | `wal`              | seq (or `u64::MAX`) ‖ append counter  | `WalEntry`              |
//! | `evidence`         | validator ‖ view ‖ phase              | `Evidence`              |
//!
//! Values are the canonical encoding (`phalanx_crypto::codec`) and are
//! decoded with a named size limit ([`schema`]); bytes that do not decode
//! are [`StorageError::Corruption`], never a panic and never a guess.
//!
//! # Atomicity
//!
//! [`Store::apply_block`] is one write batch: the block, its hash-index
//! entry, its certificate, one tx-index entry per transaction, the account
//! changes and the new [`ChainTip`] land together or not at all. It first
//! refuses — writing nothing — a block that is not the next height, does
//! not extend the stored last hash, or disagrees with its certificate.
//! Writes are serialised, so the tip a block was checked against is the tip
//! it is written on.
//!
//! # Durability
//!
//! A write that returned is in the RocksDB log. With `sync` (WAL appends
//! that guard a vote, and block writes unless
//! [`RocksOptions::sync_blocks`] is off) it was also fsynced before
//! returning, so it survives a crash of the machine, not only of the
//! process. The node must append a vote's [`WalEntry`] with `sync = true`
//! *before* the vote leaves: that is what stops a restarted validator from
//! signing a second, contradicting vote.
//!
//! # Bounded by design
//!
//! Neither consensus family grows with the chain's age. The WAL keeps
//! votes and proofs only above the stable checkpoint (`prune_wal`), and of
//! the records restore reads only the latest of — stable checkpoint, view
//! entered, view left, NEW-VIEW — only that latest one ([`wal`]). Evidence
//! is one record per (validator, view, phase), at most
//! [`schema::EVIDENCE_PER_VALIDATOR_MAX`] per validator (the newest), read
//! a page at a time ([`Store::evidence_page`]).
//!
//! # Reads check what they return
//!
//! RocksDB verifies block checksums on every read. On top of that a block
//! read checks that the block claims the height it is stored under and
//! that the hash index maps its hash back to that height; certificates and
//! checkpoints must certify the seq they are stored under. A mismatch is
//! [`StorageError::Corruption`]. [`Store::verify_range`] walks the chain:
//! hash links, contents against the header, certificate against the header.

mod error;
mod kv;
mod mem;
mod records;
mod rocks;
pub mod schema;
mod wal;

#[cfg(test)]
mod tests;

pub use error::StorageError;
pub use mem::MemStore;
pub use rocks::{tamper_block_for_test, RocksOptions, RocksStore};

use phalanx_consensus::ledger::{execute, make_block, Account, AccountReader};
use phalanx_consensus::{
    Block, CheckpointCertificate, CommitCertificate, CommittedBatch, Evidence, Genesis, Phase,
    SeqNum, TxResult, View, WalEntry,
};
use phalanx_crypto::{Address, Digest, PublicKey};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Where the chain stands: the last applied block's height and hash and
/// the state root after it. At height 0 the hash is the genesis hash and
/// the root is the genesis state root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTip {
    pub height: SeqNum,
    pub last_hash: Digest,
    pub state_root: Digest,
}

/// Where a transaction was committed, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    pub height: SeqNum,
    /// Index of the transaction in its block.
    pub position: u32,
    pub result: TxResult,
}

/// Where a page of evidence ended: the (validator, view, phase) of its last
/// record. Evidence is listed in that order, so the next page starts just
/// after it. Written as `<validator hex>.<view>.<phase 0|1|2>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvidenceCursor {
    pub validator: PublicKey,
    pub view: View,
    pub phase: Phase,
}

impl EvidenceCursor {
    /// The cursor that pages on after `evidence`.
    pub fn of(evidence: &Evidence) -> EvidenceCursor {
        EvidenceCursor {
            validator: evidence.validator,
            view: evidence.view,
            phase: evidence.phase,
        }
    }
}

impl std::fmt::Display for EvidenceCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = schema::evidence_key(&self.validator, self.view, self.phase);
        write!(f, "{}.{}.{}", self.validator.to_hex(), self.view.0, key[40])
    }
}

impl std::str::FromStr for EvidenceCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<EvidenceCursor, String> {
        let shape = "expected <validator hex>.<view>.<phase 0|1|2>";
        let mut parts = text.split('.');
        let (Some(validator), Some(view), Some(phase), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape.into());
        };
        let validator = PublicKey::from_hex(validator).map_err(|_| shape.to_string())?;
        let view = view.parse().map(View).map_err(|_| shape.to_string())?;
        let phase = phase
            .parse()
            .ok()
            .and_then(schema::phase_of_byte)
            .ok_or_else(|| shape.to_string())?;
        Ok(EvidenceCursor {
            validator,
            view,
            phase,
        })
    }
}

/// One page of evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidencePage {
    pub records: Vec<Evidence>,
    /// Where the next page starts, if more records follow.
    pub next: Option<EvidenceCursor>,
}

/// Everything the node and the simulator store. Object safe: hold it as
/// `Arc<dyn Store>`. Every method takes `&self`; implementations are
/// internally synchronised.
pub trait Store: Send + Sync {
    // ---- genesis and tip ----

    /// Initialises an empty store for `genesis`: its hash as the last hash
    /// at height 0, its opening accounts and state root. On a store already
    /// initialised for the same genesis this does nothing; for another
    /// genesis it is [`StorageError::GenesisMismatch`].
    fn init_genesis(&self, genesis: &Genesis) -> Result<(), StorageError>;

    /// The genesis the store was initialised with, if any.
    fn genesis_hash(&self) -> Result<Option<Digest>, StorageError>;

    /// Height, last hash and state root, read together.
    fn tip(&self) -> Result<ChainTip, StorageError>;

    fn height(&self) -> Result<SeqNum, StorageError> {
        Ok(self.tip()?.height)
    }

    fn last_hash(&self) -> Result<Digest, StorageError> {
        Ok(self.tip()?.last_hash)
    }

    fn state_root(&self) -> Result<Digest, StorageError> {
        Ok(self.tip()?.state_root)
    }

    // ---- blocks ----

    /// Stores block `height + 1` with its certificate, tx index entries and
    /// the account changes its execution made, atomically. Refuses, writing
    /// nothing, a block at another height ([`StorageError::NotNextBlock`]),
    /// one whose `prev_hash` is not the last hash
    /// ([`StorageError::PrevHashMismatch`]), or one inconsistent with its
    /// own contents or its certificate ([`StorageError::InvalidBlock`]).
    /// The certificate's signatures are the caller's to verify.
    fn apply_block(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        changes: &BTreeMap<Address, Account>,
    ) -> Result<(), StorageError>;

    fn block(&self, height: SeqNum) -> Result<Option<Block>, StorageError>;

    fn block_by_hash(&self, hash: &Digest) -> Result<Option<Block>, StorageError>;

    fn certificate(&self, height: SeqNum) -> Result<Option<CommitCertificate>, StorageError>;

    /// Blocks `from..=to` with their certificates, for catch-up: clamped to
    /// `1..=height` and to at most [`schema::BLOCKS_RANGE_MAX`] blocks.
    fn blocks_range(
        &self,
        from: SeqNum,
        to: SeqNum,
    ) -> Result<Vec<(Block, CommitCertificate)>, StorageError>;

    /// Where the transaction with this hash was committed: where it
    /// executed, or if it never did, where it first appeared.
    fn tx_location(&self, tx_hash: &Digest) -> Result<Option<TxLocation>, StorageError>;

    /// An account as of the last applied block (default if never touched).
    fn account(&self, address: &Address) -> Result<Account, StorageError>;

    /// Checks blocks `from..=to` (clamped to `1..=height`): each is present
    /// and indexed under its hash, links to the previous block's hash,
    /// matches its own contents, and has a certificate for its batch
    /// digest. The first failure is [`StorageError::BrokenChain`] with its
    /// height and reason.
    fn verify_range(&self, from: SeqNum, to: SeqNum) -> Result<(), StorageError>;

    // ---- checkpoints ----

    fn put_checkpoint(&self, cert: &CheckpointCertificate) -> Result<(), StorageError>;

    fn checkpoint(&self, seq: SeqNum) -> Result<Option<CheckpointCertificate>, StorageError>;

    /// The checkpoint certificate with the highest seq.
    fn latest_checkpoint(&self) -> Result<Option<CheckpointCertificate>, StorageError>;

    // ---- consensus write-ahead records ----

    /// Appends `entries` atomically; with `sync`, durably before returning.
    fn append_wal(&self, entries: &[WalEntry], sync: bool) -> Result<(), StorageError>;

    /// Makes every earlier write durable, synced or not: a node writes
    /// unsynced while it works through a burst of inputs and syncs once
    /// before it sends anything that depends on those writes (group
    /// commit).
    fn sync(&self) -> Result<(), StorageError>;

    /// Every entry not pruned or superseded, in append order. Of the
    /// stable-checkpoint, view-entered, view-left and NEW-VIEW records only
    /// the latest of each is kept (restore reads nothing else of them): an
    /// append that supersedes one deletes it, and an append that an equal
    /// or later one covers is not written.
    fn load_wal(&self) -> Result<Vec<WalEntry>, StorageError>;

    /// Removes the entries whose `seq()` is below `below`; entries without
    /// a seq are kept.
    fn prune_wal(&self, below: SeqNum) -> Result<(), StorageError>;

    // ---- evidence ----

    /// Stores evidence of equivocation; the first proof for a
    /// (validator, view, phase) is kept, later ones are ignored, and only
    /// the newest [`schema::EVIDENCE_PER_VALIDATOR_MAX`] records of a
    /// validator (by view, then phase) are kept.
    fn put_evidence(&self, evidence: &Evidence) -> Result<(), StorageError>;

    /// Up to `limit` records after `after` (from the start if `None`),
    /// ordered by (validator, view, phase).
    fn evidence_page(
        &self,
        after: Option<&EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StorageError>;

    /// All stored evidence, ordered by (validator, view, phase): at most
    /// `EVIDENCE_PER_VALIDATOR_MAX` records per validator.
    fn evidence(&self) -> Result<Vec<Evidence>, StorageError>;

    // ---- provided ----

    /// Executes a committed batch on the stored state and applies the
    /// resulting block; returns the block. The one call a node needs per
    /// commit, and it never executes on state it could not read.
    fn apply_committed(
        &self,
        chain_id: &str,
        committed: &CommittedBatch,
    ) -> Result<Block, StorageError> {
        let tip = self.tip()?;
        let reader = StateReader::new(self);
        let execution = execute(&reader, &tip.state_root, chain_id, &committed.batch.txs);
        reader.finish()?;
        let block = make_block(tip.last_hash, committed, &execution);
        self.apply_block(&block, &committed.certificate, &execution.changes)?;
        Ok(block)
    }
}

/// An [`AccountReader`] over a store that remembers the first read error
/// instead of panicking: `execute` cannot return errors, so run it on a
/// `StateReader` and then call [`StateReader::finish`], which discards the
/// execution's validity if any read failed.
pub struct StateReader<'a, S: Store + ?Sized> {
    store: &'a S,
    error: RefCell<Option<StorageError>>,
}

impl<'a, S: Store + ?Sized> StateReader<'a, S> {
    pub fn new(store: &'a S) -> StateReader<'a, S> {
        StateReader {
            store,
            error: RefCell::new(None),
        }
    }

    /// `Err` with the first read error, if any read failed.
    pub fn finish(self) -> Result<(), StorageError> {
        self.error.into_inner().map_or(Ok(()), Err)
    }
}

impl<S: Store + ?Sized> AccountReader for StateReader<'_, S> {
    fn account(&self, address: &Address) -> Account {
        self.store.account(address).unwrap_or_else(|e| {
            self.error.borrow_mut().get_or_insert(e);
            Account::default()
        })
    }
}

/// Implements [`Store`] and [`AccountReader`] for a type with a `records`
/// field: both backends share the record layer.
macro_rules! store_via_records {
    ($store:ty) => {
        impl Store for $store {
            fn init_genesis(&self, genesis: &Genesis) -> Result<(), StorageError> {
                self.records.init_genesis(genesis)
            }
            fn genesis_hash(&self) -> Result<Option<Digest>, StorageError> {
                self.records.genesis_hash()
            }
            fn tip(&self) -> Result<ChainTip, StorageError> {
                self.records.tip()
            }
            fn apply_block(
                &self,
                block: &Block,
                cert: &CommitCertificate,
                changes: &BTreeMap<Address, Account>,
            ) -> Result<(), StorageError> {
                self.records.apply_block(block, cert, changes)
            }
            fn block(&self, height: SeqNum) -> Result<Option<Block>, StorageError> {
                self.records.block(height)
            }
            fn block_by_hash(&self, hash: &Digest) -> Result<Option<Block>, StorageError> {
                self.records.block_by_hash(hash)
            }
            fn certificate(
                &self,
                height: SeqNum,
            ) -> Result<Option<CommitCertificate>, StorageError> {
                self.records.certificate(height)
            }
            fn blocks_range(
                &self,
                from: SeqNum,
                to: SeqNum,
            ) -> Result<Vec<(Block, CommitCertificate)>, StorageError> {
                self.records.blocks_range(from, to)
            }
            fn tx_location(&self, tx_hash: &Digest) -> Result<Option<TxLocation>, StorageError> {
                self.records.tx_location(tx_hash)
            }
            fn account(&self, address: &Address) -> Result<Account, StorageError> {
                self.records.account(address)
            }
            fn verify_range(&self, from: SeqNum, to: SeqNum) -> Result<(), StorageError> {
                self.records.verify_range(from, to)
            }
            fn put_checkpoint(&self, cert: &CheckpointCertificate) -> Result<(), StorageError> {
                self.records.put_checkpoint(cert)
            }
            fn checkpoint(
                &self,
                seq: SeqNum,
            ) -> Result<Option<CheckpointCertificate>, StorageError> {
                self.records.checkpoint(seq)
            }
            fn latest_checkpoint(&self) -> Result<Option<CheckpointCertificate>, StorageError> {
                self.records.latest_checkpoint()
            }
            fn append_wal(&self, entries: &[WalEntry], sync: bool) -> Result<(), StorageError> {
                self.records.append_wal(entries, sync)
            }
            fn sync(&self) -> Result<(), StorageError> {
                self.records.sync()
            }
            fn load_wal(&self) -> Result<Vec<WalEntry>, StorageError> {
                self.records.load_wal()
            }
            fn prune_wal(&self, below: SeqNum) -> Result<(), StorageError> {
                self.records.prune_wal(below)
            }
            fn put_evidence(&self, evidence: &Evidence) -> Result<(), StorageError> {
                self.records.put_evidence(evidence)
            }
            fn evidence_page(
                &self,
                after: Option<&EvidenceCursor>,
                limit: usize,
            ) -> Result<EvidencePage, StorageError> {
                self.records.evidence_page(after, limit)
            }
            fn evidence(&self) -> Result<Vec<Evidence>, StorageError> {
                self.records.evidence()
            }
        }

        /// Direct account reads for `ledger::execute`.
        ///
        /// # Panics
        ///
        /// If the account cannot be read (I/O error or corruption): there is
        /// no correct account to return, and executing on a guessed one
        /// would fork this validator from the others. Use
        /// [`Store::apply_committed`] or [`StateReader`] to get the error
        /// as a value instead.
        impl AccountReader for $store {
            fn account(&self, address: &Address) -> Account {
                match self.records.account(address) {
                    Ok(account) => account,
                    Err(e) => panic!(
                        "cannot read account {} to execute a block: {e}",
                        address.to_hex()
                    ),
                }
            }
        }
    };
}

store_via_records!(MemStore);
store_via_records!(RocksStore);
