//! Safety checkers, run incrementally as the simulation steps.
//!
//! - **agreement**: for each height, every honest replica's block hash and
//!   batch digest are equal (block hashes chain `prev_hash`, so honest
//!   chains are prefixes of one another); the first commit certificate seen
//!   for a height proves it with `2f + 1` valid signatures;
//! - **double-sign**: every vote an honest replica sends (pre-prepare,
//!   prepare, commit, the pre-prepares in its NEW-VIEWs) is recorded by
//!   `(signer, view, seq, phase)` across restarts, and every checkpoint by
//!   `(signer, seq)`; a second, different one is a violation;
//! - **validity**: every committed transaction's signature verifies
//!   strictly, and no `(sender, nonce)` executes twice;
//! - **ledger**: total supply on every honest replica equals genesis;
//! - **evidence**: an honest replica never produces evidence against an
//!   honest validator.
//!
//! Liveness is judged by the driver at the end of a run (see `engine`).

use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::{
    Block, CommittedBatch, Evidence, Message, Phase, SeqNum, TxResult, ValidatorSet, View,
};
use phalanx_crypto::{Address, AnyKey, Digest, PublicKey};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The most violations kept per run (the first ones matter).
const VIOLATIONS_KEPT_MAX: usize = 32;
/// Commit certificates whose signatures the checker verifies again: one
/// height in this many.
const CERT_SIGNATURES_EVERY: u64 = 8;

/// A broken invariant, with what is needed to find and replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `agreement` (two batches at one height), `block-hash` (one batch,
    /// two different blocks), `double-sign`, `validity`, `ledger`, `certificate`,
    /// `evidence`, `checkpoint-diverged` (an honest replica's executed
    /// state differs from a checkpoint quorum's), `commit-order`, `restart`, `liveness` (the network did
    /// not commit every transaction in time), `catch-up` (it did, but an
    /// honest validator lags behind) or `panic`.
    pub checker: &'static str,
    pub seed: u64,
    pub time_ms: u64,
    pub node: Option<u16>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violation, seed {}, t={} ms",
            self.checker, self.seed, self.time_ms
        )?;
        if let Some(n) = self.node {
            write!(f, ", r{n}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// A committed transaction: executed, or failed (e.g. a nonce gap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub sender: Address,
    pub nonce: u64,
    pub hash: Digest,
    pub executed: bool,
}

/// One height of the agreed chain, as first committed by an honest replica.
#[derive(Clone, Debug)]
pub struct ChainEntry {
    pub block_hash: Digest,
    pub batch_digest: Digest,
    pub view: View,
    pub first_node: u16,
}

pub struct Checker {
    seed: u64,
    chain_id: String,
    validators: ValidatorSet,
    genesis_hash: Digest,
    genesis_supply: u128,
    honest: Vec<bool>,
    keys: Vec<PublicKey>,
    /// The agreed chain: entry h - 1 is height h.
    pub chain: Vec<ChainEntry>,
    votes: BTreeMap<(u16, View, SeqNum, Phase), Digest>,
    checkpoints: BTreeMap<(u16, SeqNum), (Digest, Digest)>,
    executed: BTreeMap<(Address, u64), u64>,
    good_txs: BTreeSet<Digest>,
    /// Honest replicas whose block hashes diverged from the agreed chain.
    forked: BTreeSet<u16>,
    reported: BTreeSet<(&'static str, u64)>,
    pub violations: Vec<Violation>,
    /// Violations beyond the first of their kind and key.
    pub suppressed: u64,
    pub votes_recorded: u64,
}

impl Checker {
    pub fn new(
        seed: u64,
        chain_id: &str,
        validators: ValidatorSet,
        genesis_hash: Digest,
        genesis_supply: u128,
        honest: Vec<bool>,
    ) -> Checker {
        let keys = validators.keys().to_vec();
        Checker {
            seed,
            chain_id: chain_id.to_string(),
            validators,
            genesis_hash,
            genesis_supply,
            honest,
            keys,
            chain: Vec::new(),
            votes: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            executed: BTreeMap::new(),
            good_txs: BTreeSet::new(),
            forked: BTreeSet::new(),
            reported: BTreeSet::new(),
            violations: Vec::new(),
            suppressed: 0,
            votes_recorded: 0,
        }
    }

    pub fn is_honest(&self, node: u16) -> bool {
        self.honest.get(node as usize).copied().unwrap_or(false)
    }

    /// Records a violation once per `(checker, key)`.
    pub fn report(
        &mut self,
        checker: &'static str,
        key: u64,
        now_ms: u64,
        node: Option<u16>,
        detail: String,
    ) {
        if !self.reported.insert((checker, key)) || self.violations.len() >= VIOLATIONS_KEPT_MAX {
            self.suppressed += 1;
            return;
        }
        self.violations.push(Violation {
            checker,
            seed: self.seed,
            time_ms: now_ms,
            node,
            detail,
        });
    }

    /// An honest replica executed `cb` into `block`; `ledger` is its state
    /// after. Returns the transactions of the block with whether they
    /// executed, when this is the first honest commit of the height (for
    /// client confirmation).
    pub fn on_commit(
        &mut self,
        node: u16,
        now_ms: u64,
        cb: &CommittedBatch,
        block: &Block,
        ledger: &MemoryLedger,
    ) -> Vec<Outcome> {
        let height = block.header.height.0;
        let supply = ledger.total_supply();
        if supply != self.genesis_supply {
            self.report(
                "ledger",
                node as u64,
                now_ms,
                Some(node),
                format!(
                    "total supply {supply} at height {height}, genesis {}",
                    self.genesis_supply
                ),
            );
        }
        if cb.certificate.batch_digest != block.header.batch_digest
            || cb.batch.digest() != block.header.batch_digest
        {
            self.report(
                "validity",
                height,
                now_ms,
                Some(node),
                format!("height {height}: batch does not hash to its certified digest"),
            );
        }
        let index = (height as usize).wrapping_sub(1);
        if index < self.chain.len() {
            let agreed = self.chain[index].clone();
            if agreed.batch_digest != block.header.batch_digest {
                self.report(
                    "agreement",
                    height,
                    now_ms,
                    Some(node),
                    format!(
                        "height {height}: r{node} committed batch {} (view {}, block {}), r{} committed batch {} (view {}, block {})",
                        block.header.batch_digest.short(),
                        cb.certificate.view,
                        block.hash().short(),
                        agreed.first_node,
                        agreed.batch_digest.short(),
                        agreed.view,
                        agreed.block_hash.short(),
                    ),
                );
            } else if agreed.block_hash != block.hash() && !self.forked.contains(&node) {
                if self.forked.contains(&agreed.first_node) {
                    // The first to commit this height had already forked:
                    // this replica's block is the reference.
                    self.chain[index] = ChainEntry {
                        block_hash: block.hash(),
                        batch_digest: block.header.batch_digest,
                        view: cb.certificate.view,
                        first_node: node,
                    };
                } else {
                    // The same batch, but a different block: the header
                    // holds something replicas do not agree on. Its later
                    // blocks differ too (prev_hash): report the first only.
                    self.forked.insert(node);
                    self.report(
                        "block-hash",
                        node as u64,
                        now_ms,
                        Some(node),
                        format!(
                            "height {height}: same batch {} but r{node} made block {} (header view {}), r{} made block {} (header view {})",
                            block.header.batch_digest.short(),
                            block.hash().short(),
                            cb.certificate.view,
                            agreed.first_node,
                            agreed.block_hash.short(),
                            agreed.view,
                        ),
                    );
                }
            }
            return Vec::new();
        }
        if index != self.chain.len() {
            self.report(
                "agreement",
                height,
                now_ms,
                Some(node),
                format!(
                    "height {height} committed before height {}",
                    self.chain.len() + 1
                ),
            );
            return Vec::new();
        }
        self.first_commit_checks(node, now_ms, cb, block)
    }

    /// Checks made once per height, on its first honest commit.
    fn first_commit_checks(
        &mut self,
        node: u16,
        now_ms: u64,
        cb: &CommittedBatch,
        block: &Block,
    ) -> Vec<Outcome> {
        let height = block.header.height.0;
        let prev = self
            .chain
            .last()
            .map(|e| e.block_hash)
            .unwrap_or(self.genesis_hash);
        if block.header.prev_hash != prev && !self.forked.contains(&node) {
            self.report(
                "agreement",
                height,
                now_ms,
                Some(node),
                format!(
                    "height {height}: prev_hash does not link to the agreed block {}",
                    height - 1
                ),
            );
        }
        if let Err(e) = self.check_certificate(cb, height) {
            self.report(
                "certificate",
                height,
                now_ms,
                Some(node),
                format!("height {height}: commit certificate does not verify: {e}"),
            );
        }
        self.chain.push(ChainEntry {
            block_hash: block.hash(),
            batch_digest: block.header.batch_digest,
            view: cb.certificate.view,
            first_node: node,
        });
        let mut executed = Vec::new();
        for (tx, result) in block.txs.iter().zip(&block.results) {
            let hash = phalanx_consensus::tx_hash(tx);
            if !self.good_txs.contains(&hash) {
                if tx.clone().verify(&self.chain_id, &AnyKey).is_err() {
                    self.report(
                        "validity",
                        height,
                        now_ms,
                        Some(node),
                        format!(
                            "height {height}: transaction {} has a bad signature",
                            hash.short()
                        ),
                    );
                    continue;
                }
                self.good_txs.insert(hash);
            }
            let sender = tx.signer.address();
            let nonce = tx.payload.nonce;
            if *result != TxResult::Executed {
                executed.push(Outcome {
                    sender,
                    nonce,
                    hash,
                    executed: false,
                });
                continue;
            }
            if let Some(first) = self.executed.insert((sender, nonce), height) {
                self.report(
                    "validity",
                    height,
                    now_ms,
                    Some(node),
                    format!("({sender}, nonce {nonce}) executed at heights {first} and {height}"),
                );
            }
            executed.push(Outcome {
                sender,
                nonce,
                hash,
                executed: true,
            });
        }
        executed
    }

    /// The commit certificate must hold a quorum (`2f + 1`, whatever the
    /// replicas were configured with) of distinct validators' commits for
    /// exactly its `(view, seq, digest)`. Every vote's signature was checked
    /// when it arrived (`verify_message`); the checker checks them again on
    /// every `CERT_SIGNATURES_EVERY`-th height, to keep sweeps fast.
    fn check_certificate(&self, cb: &CommittedBatch, height: u64) -> Result<(), String> {
        let cert = &cb.certificate;
        if height.is_multiple_of(CERT_SIGNATURES_EVERY) {
            return cert
                .verify(&self.validators, &self.chain_id)
                .map_err(|e| e.to_string());
        }
        let mut signers = BTreeSet::new();
        for vote in &cert.votes {
            let p = &vote.payload;
            if (p.view, p.seq, p.digest) != (cert.view, cert.seq, cert.batch_digest) {
                return Err("a vote does not match the certificate".into());
            }
            if self.validators.index_of(&vote.signer).is_none() {
                return Err("a vote is not from a validator".into());
            }
            signers.insert(vote.signer);
        }
        if signers.len() < self.validators.quorum() {
            return Err(format!(
                "{} distinct signatures, need {}",
                signers.len(),
                self.validators.quorum()
            ));
        }
        Ok(())
    }

    /// An honest replica sends `message`: record every vote it signed.
    pub fn on_send(&mut self, node: u16, now_ms: u64, message: &Message) {
        let key = self.keys[node as usize];
        let mut votes = Vec::new();
        match message {
            Message::PrePrepare { pre_prepare: p, .. } if p.signer == key => votes.push((
                Phase::PrePrepare,
                p.payload.view,
                p.payload.seq,
                p.payload.digest,
            )),
            Message::Prepare(p) if p.signer == key => votes.push((
                Phase::Prepare,
                p.payload.view,
                p.payload.seq,
                p.payload.digest,
            )),
            Message::Commit(c) if c.signer == key => votes.push((
                Phase::Commit,
                c.payload.view,
                c.payload.seq,
                c.payload.digest,
            )),
            Message::NewView(nv) => {
                for p in nv.payload.pre_prepares.iter().filter(|p| p.signer == key) {
                    votes.push((
                        Phase::PrePrepare,
                        p.payload.view,
                        p.payload.seq,
                        p.payload.digest,
                    ));
                }
            }
            Message::ViewChange(vc) => {
                for proof in &vc.payload.prepared {
                    let p = &proof.pre_prepare;
                    if p.signer == key {
                        votes.push((
                            Phase::PrePrepare,
                            p.payload.view,
                            p.payload.seq,
                            p.payload.digest,
                        ));
                    }
                    for q in proof.prepares.iter().filter(|q| q.signer == key) {
                        votes.push((
                            Phase::Prepare,
                            q.payload.view,
                            q.payload.seq,
                            q.payload.digest,
                        ));
                    }
                }
            }
            Message::Checkpoint(c) if c.signer == key => {
                let value = (c.payload.block_hash, c.payload.state_root);
                match self.checkpoints.insert((node, c.payload.seq), value) {
                    Some(old) if old != value => self.report(
                        "double-sign",
                        (node as u64) << 48 | c.payload.seq.0,
                        now_ms,
                        Some(node),
                        format!(
                            "r{node} signed two checkpoints for seq {}: block {} and {}",
                            c.payload.seq,
                            old.0.short(),
                            value.0.short()
                        ),
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
        for (phase, view, seq, digest) in votes {
            self.votes_recorded += 1;
            match self.votes.insert((node, view, seq, phase), digest) {
                Some(old) if old != digest => self.report(
                    "double-sign",
                    (node as u64) << 48 | seq.0,
                    now_ms,
                    Some(node),
                    format!(
                        "r{node} signed two {phase:?} votes for (view {view}, seq {seq}): {} and {}",
                        old.short(),
                        digest.short()
                    ),
                ),
                _ => {}
            }
        }
    }

    /// An honest replica produced evidence: it must name a traitor.
    pub fn on_evidence(&mut self, reporter: u16, now_ms: u64, e: &Evidence) {
        let Some(accused) = self.validators.index_of(&e.validator) else {
            self.report(
                "evidence",
                u64::MAX,
                now_ms,
                Some(reporter),
                "evidence names a non-validator".into(),
            );
            return;
        };
        if self.is_honest(accused.0) {
            self.report(
                "evidence",
                accused.0 as u64,
                now_ms,
                Some(reporter),
                format!(
                    "r{reporter} reports honest r{} for {:?} at (view {}, seq {}): {} vs {}",
                    accused.0,
                    e.phase,
                    e.view,
                    e.seq,
                    e.first.kind(),
                    e.second.kind()
                ),
            );
        }
    }

    pub fn height(&self) -> u64 {
        self.chain.len() as u64
    }
}

#[cfg(test)]
mod tests {
    //! Every checker fires on a hand-made violation.

    use super::*;
    use phalanx_consensus::{Batch, Commit, CommitCertificate, Prepare, Transfer};
    use phalanx_crypto::{Keypair, Signed};

    const CHAIN: &str = "c";

    fn keys() -> Vec<Keypair> {
        (0..4)
            .map(|i| Keypair::insecure_from_label(&format!("v{i}")))
            .collect()
    }

    fn checker(supply: u128) -> Checker {
        let set = ValidatorSet::new(keys().iter().map(|k| k.public()).collect());
        Checker::new(
            9,
            CHAIN,
            set,
            Digest::ZERO,
            supply,
            vec![true, true, true, false],
        )
    }

    fn prepare(key: &Keypair, digest: Digest) -> Message {
        Message::Prepare(Signed::sign(
            Prepare {
                view: View(0),
                seq: SeqNum(1),
                digest,
            },
            key,
            CHAIN,
        ))
    }

    /// Block 1 with one transfer of 10 from a funded account, certified by
    /// three validators; `corrupt` flips a bit of the transfer's signature.
    fn commit_one(corrupt: bool) -> (MemoryLedger, CommittedBatch, Block) {
        commit_batch(corrupt, 1, 3)
    }

    fn commit_batch(
        corrupt: bool,
        timestamp_ms: u64,
        votes: usize,
    ) -> (MemoryLedger, CommittedBatch, Block) {
        let alice = Keypair::insecure_from_label("alice");
        let mut ledger = MemoryLedger::default();
        ledger.accounts.insert(
            alice.address(),
            phalanx_consensus::ledger::Account {
                balance: 100,
                nonce: 0,
            },
        );
        let mut tx = Signed::sign(
            Transfer {
                chain_id: CHAIN.into(),
                to: Keypair::insecure_from_label("bob").address(),
                amount: 10,
                nonce: 0,
            },
            &alice,
            CHAIN,
        );
        if corrupt {
            tx.signature.0[3] ^= 1;
        }
        let batch = Batch {
            txs: vec![tx],
            timestamp_ms,
        };
        let vote = Commit {
            view: View(0),
            seq: SeqNum(1),
            digest: batch.digest(),
        };
        let certificate = CommitCertificate {
            view: View(0),
            seq: SeqNum(1),
            batch_digest: batch.digest(),
            votes: keys()[..votes]
                .iter()
                .map(|k| Signed::sign(vote.clone(), k, CHAIN))
                .collect(),
        };
        let cb = CommittedBatch { batch, certificate };
        let block = ledger.apply(CHAIN, &cb);
        (ledger, cb, block)
    }

    #[test]
    fn a_clean_commit_passes() {
        let (ledger, cb, block) = commit_one(false);
        let mut c = checker(100);
        let outcomes = c.on_commit(0, 1, &cb, &block, &ledger);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0].executed);
        c.on_commit(1, 2, &cb, &block, &ledger);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }

    #[test]
    fn double_sign_fires() {
        let mut c = checker(0);
        let k = &keys()[1];
        c.on_send(1, 5, &prepare(k, Digest::sha256(b"a")));
        c.on_send(1, 6, &prepare(k, Digest::sha256(b"a")));
        assert!(c.violations.is_empty(), "a retransmission is fine");
        c.on_send(1, 7, &prepare(k, Digest::sha256(b"b")));
        assert_eq!(c.violations[0].checker, "double-sign");
    }

    #[test]
    fn evidence_against_an_honest_validator_fires() {
        let mut c = checker(0);
        let k = &keys()[2];
        let evidence = Evidence {
            validator: k.public(),
            phase: Phase::Prepare,
            view: View(0),
            seq: SeqNum(1),
            first: prepare(k, Digest::sha256(b"a")),
            second: prepare(k, Digest::sha256(b"b")),
        };
        c.on_evidence(0, 5, &evidence);
        assert_eq!(c.violations[0].checker, "evidence");
        // Against the traitor (r3) it is what evidence is for.
        let mut c = checker(0);
        let evidence = Evidence {
            validator: keys()[3].public(),
            ..evidence
        };
        c.on_evidence(0, 5, &evidence);
        assert!(c.violations.is_empty());
    }

    #[test]
    fn validity_fires_on_a_bad_transaction_signature() {
        let (ledger, cb, block) = commit_one(true);
        let mut c = checker(100);
        c.on_commit(0, 1, &cb, &block, &ledger);
        assert_eq!(c.violations[0].checker, "validity", "{:?}", c.violations);
    }

    #[test]
    fn ledger_fires_when_supply_changes() {
        let (ledger, cb, block) = commit_one(false);
        let mut c = checker(101);
        c.on_commit(0, 1, &cb, &block, &ledger);
        assert_eq!(c.violations[0].checker, "ledger", "{:?}", c.violations);
    }

    #[test]
    fn agreement_and_certificate_fire() {
        let (ledger, cb, block) = commit_one(false);
        let mut c = checker(100);
        c.on_commit(0, 1, &cb, &block, &ledger);
        // Another batch at height 1 (another timestamp), certified by only
        // two validators.
        let (ledger2, other, block2) = commit_batch(false, 2, 2);
        c.on_commit(1, 2, &other, &block2, &ledger2);
        assert_eq!(c.violations[0].checker, "agreement", "{:?}", c.violations);
        // First at its height, the two-vote certificate is refused.
        let mut c = checker(100);
        c.on_commit(1, 2, &other, &block2, &ledger2);
        assert_eq!(c.violations[0].checker, "certificate", "{:?}", c.violations);
    }
}
