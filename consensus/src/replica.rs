//! The replica: the state the protocol steps share, the entry point
//! [`Replica::handle`], and the guard against double-signing.

use crate::tx_set::{TxHashKey, TxMap, TxSet};
use crate::{
    tx_hash, Batch, CheckpointCertificate, CommitCertificate, CommittedBatch, Message, NewView,
    PrePrepare, Prepare, PreparedProof, Rejected, SeqNum, Transaction, ValidatorIndex,
    ValidatorSet, VerifiedMessage, View, ViewChange,
};
use phalanx_crypto::{Digest, Keypair, Signed, SignedPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Consensus parameters, shared by every validator through the genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub chain_id: String,
    pub validators: ValidatorSet,
    /// A checkpoint every this many blocks (§4.3).
    pub checkpoint_interval: u64,
    /// High watermark = low watermark + this (§4.2); a multiple of the
    /// checkpoint interval.
    pub window: u64,
    /// The primary cuts a batch at this many transactions…
    pub batch_txs_max: usize,
    /// …or this many bytes…
    pub batch_bytes_max: u64,
    /// …or this long after the first pending transaction arrived.
    pub batch_delay_ms: u64,
    /// The most sequence numbers a primary has proposed but not committed.
    pub pipeline_max: u64,
    /// A backup that knows a request the primary has not proposed for this
    /// long suspects the primary (a slow or censoring primary, Aardvark §4).
    pub propose_timeout_ms: u64,
    /// Wait this long for a pre-prepared batch to commit, or for a NEW-VIEW,
    /// before moving to the next view. Doubles while views keep failing.
    pub view_timeout_ms: u64,
    pub view_timeout_ms_max: u64,
    /// How often to resend our uncommitted votes (covers lost messages).
    pub retransmit_ms: u64,
    /// The most pending transactions a replica holds.
    pub pending_txs_max: usize,
    /// Test-only: a quorum other than `2f + 1`, to show that the checkers
    /// catch a broken protocol. Refused unless the chain is a test network.
    #[serde(default)]
    pub quorum_override: Option<usize>,
}

/// Why a consensus config is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Config {
    /// Defaults tuned for a LAN or loopback testnet. The batch byte limit
    /// is the largest (up to 512 KiB) for which a view change of a full
    /// window of full batches fits one message ([`Config::new_view_bytes_max`]).
    pub fn new(chain_id: impl Into<String>, validators: ValidatorSet) -> Config {
        let n = validators.len();
        let window = 32;
        Config {
            chain_id: chain_id.into(),
            validators,
            checkpoint_interval: 16,
            window,
            batch_txs_max: 1024,
            batch_bytes_max: batch_bytes_fitting(n, window).min(512 * 1024),
            batch_delay_ms: 5,
            pipeline_max: 8,
            propose_timeout_ms: 1000,
            view_timeout_ms: 2000,
            view_timeout_ms_max: 30_000,
            retransmit_ms: 500,
            pending_txs_max: 100_000,
            quorum_override: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return bad("chain_id", "must be 1 to 64 characters");
        }
        if self.checkpoint_interval == 0 {
            return bad("checkpoint_interval", "must be at least 1");
        }
        if self.window < 2 * self.checkpoint_interval
            || !self.window.is_multiple_of(self.checkpoint_interval)
        {
            return bad(
                "window",
                "must be a multiple of checkpoint_interval and at least twice it",
            );
        }
        if self.batch_txs_max == 0 || self.batch_txs_max > crate::BATCH_TXS_MAX {
            return bad("batch_txs_max", "must be between 1 and 8192");
        }
        if self.batch_bytes_max < crate::TX_BYTES_MAX
            || self.batch_bytes_max > crate::MESSAGE_BYTES_MAX / 4
        {
            return bad(
                "batch_bytes_max",
                "must hold the largest transaction and fit a quarter of a message",
            );
        }
        if self.new_view_bytes_max() > crate::MESSAGE_BYTES_MAX {
            return Err(ConfigError::Invalid {
                field: "batch_bytes_max",
                reason: format!(
                    "a NEW-VIEW of a full window ({}) of full batches ({} bytes) from {} validators \
                     would be {} bytes, over the {}-byte message limit: at most {} bytes per batch \
                     with this window",
                    self.window,
                    self.batch_bytes_max,
                    self.validators.len(),
                    self.new_view_bytes_max(),
                    crate::MESSAGE_BYTES_MAX,
                    batch_bytes_fitting(self.validators.len(), self.window)
                ),
            });
        }
        if self.pipeline_max == 0 || self.pipeline_max > self.window {
            return bad("pipeline_max", "must be between 1 and window");
        }
        if self.view_timeout_ms == 0 || self.view_timeout_ms_max < self.view_timeout_ms {
            return bad(
                "view_timeout_ms",
                "must be positive and at most view_timeout_ms_max",
            );
        }
        if self.propose_timeout_ms == 0 || self.retransmit_ms == 0 {
            return bad("propose_timeout_ms", "timeouts must be positive");
        }
        Ok(())
    }

    pub(crate) fn quorum(&self) -> usize {
        self.quorum_override
            .unwrap_or_else(|| self.validators.quorum())
    }

    /// The largest encoded VIEW-CHANGE an honest replica sends: a stable
    /// checkpoint certificate and a prepared proof of a full batch for
    /// every seq of the window. Backups refuse batches over
    /// `batch_bytes_max` or `batch_txs_max`, so nothing larger is prepared.
    pub fn view_change_bytes_max(&self) -> u64 {
        view_change_bytes(
            self.validators.len() as u64,
            self.window,
            self.batch_bytes_max,
        )
    }

    /// The largest encoded NEW-VIEW an honest primary sends: 2f + 1 of the
    /// largest VIEW-CHANGEs and a re-issued pre-prepare per seq. `validate`
    /// refuses parameters for which it exceeds the message limit.
    pub fn new_view_bytes_max(&self) -> u64 {
        new_view_bytes(
            self.validators.len() as u64,
            self.window,
            self.batch_bytes_max,
        )
    }
}

/// Encoded sizes of the parts of a view change (canonical bincode: 8-byte
/// lengths and integers, fixed-size keys, digests and signatures).
const SIGNED_VOTE_BYTES: u64 = (8 + 8 + 32) + 32 + 64;
const SIGNED_CHECKPOINT_BYTES: u64 = (8 + 32 + 32) + 32 + 64;
const SIGNATURE_BYTES: u64 = 32 + 64;

fn view_change_bytes(n: u64, window: u64, batch_bytes: u64) -> u64 {
    let batch = 8 + batch_bytes + 8;
    let proof = SIGNED_VOTE_BYTES + batch + 8 + n.saturating_sub(1) * SIGNED_VOTE_BYTES;
    let checkpoint = 1 + (8 + 32 + 32) + 8 + n * SIGNED_CHECKPOINT_BYTES;
    4 + 8 + checkpoint + 8 + window * proof + SIGNATURE_BYTES
}

fn new_view_bytes(n: u64, window: u64, batch_bytes: u64) -> u64 {
    let quorum = 2 * ((n.max(1) - 1) / 3) + 1;
    4 + 8
        + 8
        + quorum * view_change_bytes(n, window, batch_bytes)
        + 8
        + window * SIGNED_VOTE_BYTES
        + SIGNATURE_BYTES
}

/// The largest batch size (a multiple of 1 KiB) for which the largest
/// NEW-VIEW fits the message limit.
pub fn batch_bytes_fitting(n: usize, window: u64) -> u64 {
    let fixed = new_view_bytes(n as u64, window, 0);
    let quorum = 2 * ((n.max(1) as u64 - 1) / 3) + 1;
    let per_byte = quorum * window;
    let room = crate::MESSAGE_BYTES_MAX.saturating_sub(fixed) / per_byte.max(1);
    room / 1024 * 1024
}

/// The three vote phases, and the others a validator signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    PrePrepare,
    Prepare,
    Commit,
}

/// A durable record the replica needs to restart without contradicting
/// itself. The node writes them synced before carrying out later outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalEntry {
    /// We signed `phase` for `(view, seq, digest)`: never sign another digest.
    Voted {
        phase: Phase,
        view: View,
        seq: SeqNum,
        digest: Digest,
    },
    /// The pre-prepare and batch we accepted (or proposed) for a slot.
    Accepted {
        pre_prepare: Signed<PrePrepare>,
        batch: Batch,
    },
    /// We hold a prepared certificate: it must survive into view changes.
    Prepared(PreparedProof),
    /// We left for `view` (sent VIEW-CHANGE) or entered it (NEW-VIEW).
    View { view: View, entered: bool },
    /// A stable checkpoint.
    Stable(CheckpointCertificate),
    /// The NEW-VIEW we entered its view with, so that after a restart we
    /// can still hand it to a peer that missed it.
    NewView(Box<Signed<NewView>>),
}

impl WalEntry {
    /// The sequence number the entry belongs to; `None` for view records,
    /// which are kept until replaced.
    pub fn seq(&self) -> Option<SeqNum> {
        match self {
            WalEntry::Voted { seq, .. } => Some(*seq),
            WalEntry::Accepted { pre_prepare, .. } => Some(pre_prepare.payload.seq),
            WalEntry::Prepared(p) => Some(p.pre_prepare.payload.seq),
            WalEntry::View { .. } | WalEntry::Stable(_) => None,
            // Kept until a stable checkpoint passes what it re-issued.
            WalEntry::NewView(nv) => Some(
                nv.payload
                    .pre_prepares
                    .iter()
                    .map(|p| p.payload.seq)
                    .max()
                    .unwrap_or(SeqNum(0))
                    .max(SeqNum(1)),
            ),
        }
    }
}

/// Timers the replica asks its driver to run. Setting one replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// The primary cuts a batch.
    Batch,
    /// Progress is overdue: move to the next view.
    Progress,
    /// Resend our uncommitted votes.
    Retransmit,
    /// Reserved for traitor behaviours that delay their output.
    Traitor,
}

/// Proof that one validator signed two different things for one
/// `(view, seq, phase)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub validator: phalanx_crypto::PublicKey,
    pub phase: Phase,
    pub view: View,
    pub seq: SeqNum,
    pub first: Message,
    pub second: Message,
}

/// Something worth a log line or a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ViewChangeStarted {
        to: View,
        /// Why: a suspected primary, no commit or NEW-VIEW in time, or
        /// f + 1 others already asking for a later view.
        reason: &'static str,
    },
    NewViewEntered {
        view: View,
        primary: ValidatorIndex,
    },
    CheckpointStable {
        seq: SeqNum,
    },
    CatchingUp {
        from: SeqNum,
        to: SeqNum,
    },
    /// Our executed state at `seq` differs from a checkpoint quorum's.
    StateDiverged {
        seq: SeqNum,
    },
    /// We suspect the primary of our view.
    PrimarySuspected {
        view: View,
        reason: &'static str,
    },
}

/// What the replica is told.
#[derive(Clone, Debug)]
pub enum Input {
    /// A verified message from a peer.
    Message(VerifiedMessage),
    /// Client transactions, already checked (signature, chain, size) by the
    /// mempool, in arrival order.
    Transactions(Vec<Transaction>),
    /// A timer fired.
    Timer(Timer),
    /// The driver executed the committed block `seq`.
    Executed {
        seq: SeqNum,
        block_hash: Digest,
        state_root: Digest,
    },
    /// Committed transactions that failed but may still execute
    /// ([`crate::TxResult::may_execute_later`]): a copy of one may be queued
    /// again, although it was committed.
    MayRetry(Vec<Digest>),
}

/// What the replica asks its driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write durably (synced) before carrying out anything after it.
    Persist(WalEntry),
    /// Records below this seq are no longer needed.
    PruneWal {
        below: SeqNum,
    },
    Send {
        to: ValidatorIndex,
        message: Message,
    },
    /// To every other validator.
    Broadcast(Message),
    /// Execute and store the next block, in seq order, exactly once.
    Commit(CommittedBatch),
    /// A peer asked for committed blocks: serve them from storage.
    ServeCatchUp {
        to: ValidatorIndex,
        from: SeqNum,
        to_seq: SeqNum,
    },
    SetTimer {
        timer: Timer,
        at_ms: u64,
    },
    Evidence(Box<Evidence>),
    Rejected {
        from: ValidatorIndex,
        reason: Rejected,
    },
    Event(Event),
}

/// Where the replica is in the view-change protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    /// Sent VIEW-CHANGE for `view`, waiting for its NEW-VIEW.
    ViewChanging,
}

/// One sequence number's progress in the current view.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    pub pre_prepare: Option<(Signed<PrePrepare>, Batch)>,
    /// The hashes of the pre-prepared batch's transactions, computed once
    /// when it was accepted and used again when it is delivered.
    pub tx_hashes: Vec<Digest>,
    pub prepares: BTreeMap<ValidatorIndex, Signed<Prepare>>,
    pub commits: BTreeMap<ValidatorIndex, Signed<crate::Commit>>,
    pub prepared: bool,
    pub committed: bool,
    /// When this slot was first touched, for retransmission.
    pub since_ms: u64,
}

impl Slot {
    pub fn digest(&self) -> Option<Digest> {
        self.pre_prepare.as_ref().map(|(pp, _)| pp.payload.digest)
    }
}

/// When a pending transaction arrived: the time, and its place in arrival
/// order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arrival {
    pub at_ms: u64,
    pub number: u64,
}

/// A PBFT replica. See the crate documentation.
pub struct Replica {
    pub(crate) cfg: Config,
    pub(crate) key: Keypair,
    pub(crate) me: ValidatorIndex,
    pub(crate) now_ms: u64,
    pub(crate) out: Vec<Output>,

    pub(crate) view: View,
    pub(crate) mode: Mode,
    /// Slots of the current view, by seq, above the low watermark.
    pub(crate) log: BTreeMap<SeqNum, Slot>,
    /// Best prepared certificate per seq across views (the set P, §4.4).
    pub(crate) prepared: BTreeMap<SeqNum, PreparedProof>,
    /// Our signed votes: (view, seq, phase) → digest. Never contradicted.
    pub(crate) guard: BTreeMap<(View, SeqNum, Phase), Digest>,

    /// Highest seq handed out as a Commit output.
    pub(crate) committed: SeqNum,
    /// Highest seq the driver reported executed, with its block hash.
    pub(crate) executed: SeqNum,
    /// The primary's next seq to assign.
    pub(crate) next_seq: SeqNum,

    pub(crate) stable: Option<CheckpointCertificate>,
    /// Our own checkpoint per seq: (block hash, state root).
    pub(crate) own_checkpoints: BTreeMap<SeqNum, (Digest, Digest)>,
    /// Checkpoint votes by seq, then by signer.
    pub(crate) checkpoint_votes:
        BTreeMap<SeqNum, BTreeMap<ValidatorIndex, Signed<crate::Checkpoint>>>,

    /// VIEW-CHANGE messages by target view, then sender: at most one per
    /// sender (its highest), so a sender can make us hold one VIEW-CHANGE.
    pub(crate) view_changes: BTreeMap<View, BTreeMap<ValidatorIndex, Signed<ViewChange>>>,
    /// The highest view each validator (us included) complained for, above
    /// our view: at most one entry per validator.
    pub(crate) complaints: BTreeMap<ValidatorIndex, View>,
    /// Our own complaint, resent while we wait for others to agree.
    pub(crate) own_complaint: Option<Signed<crate::Complaint>>,
    /// The NEW-VIEW we entered the current view with (None in view 0).
    pub(crate) new_view: Option<Signed<NewView>>,
    /// Consecutive failed views: the view timeout is base × 2^this.
    pub(crate) failed_views: u32,
    /// When the progress timer fires, or `None` when nothing is awaited.
    pub(crate) progress_deadline: Option<u64>,
    pub(crate) batch_deadline: Option<u64>,
    pub(crate) retransmit_armed: bool,
    /// Highest view seen in f + 1 distinct validators' messages, per sender.
    pub(crate) peer_views: BTreeMap<ValidatorIndex, View>,

    /// Transactions known but not yet committed, by arrival number (so in
    /// arrival order), with their hashes.
    pub(crate) pending: BTreeMap<u64, (Digest, Transaction)>,
    /// Pending transaction hashes with their arrival time and number.
    pub(crate) pending_set: TxMap<Arrival>,
    /// The arrival number the next pending transaction gets.
    pub(crate) next_arrival: u64,
    /// Transactions in batches pre-prepared but not committed.
    pub(crate) in_flight: TxSet,
    /// The arrival numbers of pending transactions not in flight, oldest
    /// first: what the primary proposes next. Kept alongside `pending` so
    /// that cutting a batch or committing one never scans every pending
    /// transaction. Changes only with `pending` and `in_flight`.
    pub(crate) unproposed: BTreeSet<u64>,
    /// Recently committed transactions (bounded), so a late copy of one is
    /// not queued again.
    pub(crate) recent_committed: VecDeque<Digest>,
    pub(crate) recent_committed_set: TxSet,
    /// When we entered the current view (proposal delays count from here).
    pub(crate) view_entered_ms: u64,
    /// Smoothed delay from first seeing a transaction to its pre-prepare,
    /// and how many samples it holds (Aardvark-style slow-primary check).
    pub(crate) propose_delay_ewma_ms: u64,
    pub(crate) propose_delay_samples: u32,
    /// When the primary of this view last sent us a full batch (see
    /// [`Replica::primary_overdue`]).
    pub(crate) last_full_batch_ms: Option<u64>,
    /// When we last handed out a Commit, and the highest seq peers vote on.
    pub(crate) last_delivery_ms: u64,
    /// The highest seq proven committed or certified (by 2f + 1
    /// signatures, or by our own commit): a catch-up target.
    pub(crate) highest_seen: SeqNum,
    /// The highest seq each validator voted on: a claim, not a proof. The
    /// (f + 1)-th highest is vouched for by an honest one, so one traitor
    /// claiming any height cannot set our catch-up target.
    pub(crate) peer_heights: BTreeMap<ValidatorIndex, SeqNum>,
    /// Each validator's highest checkpoint vote above the seqs we keep
    /// votes for: one per validator, so a replica far behind can still
    /// assemble a quorum for where the others are.
    pub(crate) far_checkpoints: BTreeMap<ValidatorIndex, Signed<crate::Checkpoint>>,

    /// The first signed vote seen per (signer, view, seq, phase), for evidence.
    pub(crate) seen_votes: BTreeMap<(ValidatorIndex, View, SeqNum, Phase), Message>,
    /// Validators already reported, per (view, phase): one record each.
    pub(crate) reported: BTreeSet<(ValidatorIndex, View, Phase)>,
    /// The catch-up target and when we last asked.
    pub(crate) catch_up_target: Option<SeqNum>,
    pub(crate) catch_up_asked_ms: Option<u64>,
    pub(crate) catch_up_peer: u16,
    /// The highest block asked for by the ranges in flight.
    pub(crate) catch_up_requested: SeqNum,
    /// Doublings of the wait before missing ranges are asked again.
    pub(crate) catch_up_backoff: u32,
    /// The highest height proven committed by 2f + 1 signatures (a
    /// checkpoint quorum or a commit certificate) that we have seen.
    pub(crate) proven_height: SeqNum,
    /// When we last sent each validator a NEW-VIEW it asked for (or that a
    /// late VIEW-CHANGE of its called for): at most one per retransmit period.
    pub(crate) new_view_served_ms: BTreeMap<ValidatorIndex, u64>,
    /// Catch-up ranges served to each validator in the current period:
    /// (period start, ranges).
    pub(crate) catch_up_served: BTreeMap<ValidatorIndex, (u64, u64)>,
    /// Committed batches received out of order during catch-up.
    pub(crate) catch_up_buffer: BTreeMap<SeqNum, CommittedBatch>,
}

impl Replica {
    /// A fresh replica at genesis.
    pub fn new(cfg: Config, key: Keypair) -> Result<Replica, ConfigError> {
        Self::restore(cfg, key, Vec::new(), SeqNum(0))
    }

    /// A replica rebuilt from its write-ahead records and the height of the
    /// last block its driver stored. It never signs anything that
    /// contradicts a recorded vote.
    pub fn restore(
        cfg: Config,
        key: Keypair,
        wal: Vec<WalEntry>,
        committed: SeqNum,
    ) -> Result<Replica, ConfigError> {
        cfg.validate()?;
        let me = cfg
            .validators
            .index_of(&key.public())
            .ok_or_else(|| ConfigError::Invalid {
                field: "key",
                reason: format!("{} is not a genesis validator", key.public()),
            })?;
        let tx_hash_key = TxHashKey::new(&key);
        let mut r = Replica {
            cfg,
            key,
            me,
            now_ms: 0,
            out: Vec::new(),
            view: View(0),
            mode: Mode::Normal,
            log: BTreeMap::new(),
            prepared: BTreeMap::new(),
            guard: BTreeMap::new(),
            committed,
            executed: committed,
            next_seq: committed.next(),
            stable: None,
            own_checkpoints: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            complaints: BTreeMap::new(),
            own_complaint: None,
            new_view: None,
            failed_views: 0,
            progress_deadline: None,
            batch_deadline: None,
            retransmit_armed: false,
            peer_views: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_set: tx_hash_key.map(),
            next_arrival: 0,
            in_flight: tx_hash_key.set(),
            unproposed: BTreeSet::new(),
            recent_committed: VecDeque::new(),
            recent_committed_set: tx_hash_key.set(),
            view_entered_ms: 0,
            propose_delay_ewma_ms: 0,
            propose_delay_samples: 0,
            last_full_batch_ms: None,
            last_delivery_ms: 0,
            highest_seen: committed,
            peer_heights: BTreeMap::new(),
            far_checkpoints: BTreeMap::new(),
            seen_votes: BTreeMap::new(),
            reported: BTreeSet::new(),
            catch_up_target: None,
            catch_up_asked_ms: None,
            catch_up_peer: 0,
            catch_up_requested: SeqNum(0),
            catch_up_backoff: 0,
            proven_height: committed,
            catch_up_buffer: BTreeMap::new(),
            new_view_served_ms: BTreeMap::new(),
            catch_up_served: BTreeMap::new(),
        };
        r.replay_wal(wal);
        Ok(r)
    }

    fn replay_wal(&mut self, wal: Vec<WalEntry>) {
        let mut entered = View(0);
        let mut left = View(0);
        let mut accepted = Vec::new();
        for entry in wal {
            match entry {
                WalEntry::Voted {
                    phase,
                    view,
                    seq,
                    digest,
                } => {
                    self.guard.insert((view, seq, phase), digest);
                }
                WalEntry::Accepted { pre_prepare, batch } => accepted.push((pre_prepare, batch)),
                WalEntry::Prepared(p) => self.keep_prepared(p),
                WalEntry::View { view, entered: e } => {
                    if e {
                        entered = entered.max(view);
                    } else {
                        left = left.max(view);
                    }
                }
                WalEntry::NewView(nv) => {
                    if self
                        .new_view
                        .as_ref()
                        .is_none_or(|old| old.payload.view < nv.payload.view)
                    {
                        self.new_view = Some(*nv);
                    }
                }
                WalEntry::Stable(cert) => {
                    if self.stable.as_ref().is_none_or(|s| s.seq < cert.seq) {
                        self.stable = Some(cert);
                    }
                }
            }
        }
        self.view = entered.max(left);
        if self
            .new_view
            .as_ref()
            .is_some_and(|nv| nv.payload.view != self.view)
        {
            self.new_view = None;
        }
        self.mode = if left > entered {
            Mode::ViewChanging
        } else {
            Mode::Normal
        };
        let low = self.low();
        self.prepared.retain(|seq, _| *seq > low);
        if self.mode == Mode::Normal {
            for (pp, batch) in accepted {
                let (view, seq) = (pp.payload.view, pp.payload.seq);
                if view == self.view && seq > low {
                    let tx_hashes = batch.tx_hashes();
                    self.add_in_flight(&tx_hashes);
                    let slot = self.log.entry(seq).or_default();
                    slot.pre_prepare = Some((pp, batch));
                    slot.tx_hashes = tx_hashes;
                }
            }
        }
        if self.mode == Mode::Normal {
            self.restore_own_votes();
        }
        // A primary never re-assigns a seq it pre-prepared in this view.
        let proposed_here = self
            .guard
            .keys()
            .filter(|(v, _, phase)| *v == self.view && *phase == Phase::PrePrepare)
            .map(|(_, seq, _)| *seq)
            .max()
            .unwrap_or(SeqNum(0));
        self.next_seq = self.committed.max(proposed_here).max(low).next();
    }

    /// Rebuilds our own PREPARE and COMMIT messages of the current view from
    /// the recorded votes, so that they are retransmitted after a restart.
    /// ed25519 signing is deterministic: the signatures are the ones sent
    /// before.
    fn restore_own_votes(&mut self) {
        let view = self.view;
        let low = self.low();
        let votes: Vec<(SeqNum, Phase, Digest)> = self
            .guard
            .iter()
            .filter(|((v, seq, _), _)| *v == view && *seq > low)
            .map(|((_, seq, phase), d)| (*seq, *phase, *d))
            .collect();
        let me = self.me;
        for (seq, phase, digest) in votes {
            match phase {
                Phase::Prepare => {
                    let p = self.sign(Prepare { view, seq, digest });
                    self.log.entry(seq).or_default().prepares.insert(me, p);
                }
                Phase::Commit => {
                    let c = self.sign(crate::Commit { view, seq, digest });
                    let slot = self.log.entry(seq).or_default();
                    slot.commits.insert(me, c);
                    slot.prepared = true;
                }
                Phase::PrePrepare => {}
            }
        }
    }

    /// The single entry point. `now_ms` is monotonic time from the driver.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.retransmit_armed {
            // The first input after start or restart: start the timers, and
            // resume a view change we were in.
            self.retransmit_armed = true;
            self.set_timer(Timer::Retransmit, self.now_ms + self.cfg.retransmit_ms);
            if self.mode == Mode::ViewChanging {
                self.send_view_change();
            }
            self.arm_progress_timer();
        }
        match input {
            Input::Message(m) => self.on_message(m),
            Input::Transactions(txs) => self.on_transactions(txs),
            Input::Timer(t) => self.on_timer(t),
            Input::Executed {
                seq,
                block_hash,
                state_root,
            } => self.on_executed(seq, block_hash, state_root),
            Input::MayRetry(hashes) => {
                for hash in &hashes {
                    self.recent_committed_set.remove(hash);
                }
            }
        }
        self.maybe_propose();
        std::mem::take(&mut self.out)
    }

    fn on_message(&mut self, m: VerifiedMessage) {
        let from = m.from;
        let (message, tx_hashes) = m.into_parts();
        let result = match message {
            Message::PrePrepare { pre_prepare, batch } => {
                self.on_pre_prepare(from, pre_prepare, batch, tx_hashes)
            }
            Message::Prepare(p) => self.on_prepare(from, p),
            Message::Commit(c) => self.on_commit(from, c),
            Message::Checkpoint(c) => self.on_checkpoint(from, c),
            Message::ViewChange(vc) => self.on_view_change(from, vc),
            Message::Complaint(c) => self.on_complaint(from, c),
            Message::NewView(nv) => self.on_new_view(from, nv),
            Message::NewViewRequest(r) => self.on_new_view_request(from, r),
            Message::CatchUpRequest(r) => self.on_catch_up_request(from, r),
            Message::CatchUpResponse(blocks) => self.on_catch_up_response(from, blocks),
        };
        if let Err(reason) = result {
            self.out.push(Output::Rejected { from, reason });
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Batch => {
                self.batch_deadline = None;
                self.maybe_propose_now(true);
            }
            Timer::Progress => {
                if self.progress_deadline.is_some_and(|d| d <= self.now_ms) {
                    self.progress_deadline = None;
                    self.on_progress_timeout();
                }
            }
            Timer::Retransmit => {
                self.set_timer(Timer::Retransmit, self.now_ms + self.cfg.retransmit_ms);
                self.retransmit_normal();
                self.retransmit_view_change();
                self.retransmit_complaint();
                self.retransmit_checkpoint();
                self.check_behind();
                self.sync_view();
                self.check_primary();
            }
            Timer::Traitor => {}
        }
    }

    fn on_transactions(&mut self, txs: Vec<Transaction>) {
        for tx in txs {
            if self.pending.len() >= self.cfg.pending_txs_max {
                break;
            }
            let hash = tx_hash(&tx);
            if self.in_flight.contains(&hash)
                || self.pending_set.contains_key(&hash)
                || self.recent_committed_set.contains(&hash)
            {
                continue;
            }
            let number = self.next_arrival;
            self.next_arrival += 1;
            let arrival = Arrival {
                at_ms: self.now_ms,
                number,
            };
            self.pending_set.insert(hash, arrival);
            self.pending.insert(number, (hash, tx));
            self.unproposed.insert(number);
        }
        debug_assert_eq!(self.pending.len(), self.pending_set.len());
    }

    // ---- accessors for drivers, tests and checkers ----

    pub fn id(&self) -> ValidatorIndex {
        self.me
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn is_view_changing(&self) -> bool {
        self.mode == Mode::ViewChanging
    }

    /// How many VIEW-CHANGEs of others we hold (for tests and diagnostics):
    /// at most one per validator.
    pub fn view_changes_held(&self) -> usize {
        self.view_changes
            .values()
            .flat_map(|by_sender| by_sender.keys())
            .filter(|sender| **sender != self.me)
            .count()
    }

    /// The view we complained for (suspecting our primary) while still
    /// working in the current one, if any.
    pub fn complained_for(&self) -> Option<View> {
        self.complaints
            .get(&self.me)
            .copied()
            .filter(|v| *v > self.view)
    }

    pub fn primary(&self) -> ValidatorIndex {
        self.cfg.validators.primary(self.view)
    }

    pub fn is_primary(&self) -> bool {
        self.primary() == self.me
    }

    pub fn committed(&self) -> SeqNum {
        self.committed
    }

    pub fn low_watermark(&self) -> SeqNum {
        self.low()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_catching_up(&self) -> bool {
        self.catch_up_target.is_some_and(|t| t > self.committed)
    }

    /// How many blocks this replica lacks by proof: a checkpoint quorum or
    /// a certified block above its height. (A single peer's vote can claim
    /// any height; it starts catch-up but proves nothing.)
    pub fn blocks_behind(&self) -> u64 {
        self.proven_height.0.saturating_sub(self.committed.0)
    }

    /// When the replica will give up on the current view, if it is waiting.
    pub fn progress_deadline_ms(&self) -> Option<u64> {
        self.progress_deadline
    }

    /// Uncommitted slots of the current view (for diagnostics).
    pub fn uncommitted_slots(&self) -> Vec<(SeqNum, bool, bool)> {
        self.log
            .iter()
            .filter(|(_, s)| !s.committed)
            .map(|(seq, s)| (*seq, s.pre_prepare.is_some(), s.prepared))
            .collect()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stable_checkpoint(&self) -> Option<&CheckpointCertificate> {
        self.stable.as_ref()
    }

    // ---- shared helpers for the protocol modules ----

    pub(crate) fn low(&self) -> SeqNum {
        self.stable.as_ref().map(|c| c.seq).unwrap_or(SeqNum(0))
    }

    pub(crate) fn high(&self) -> SeqNum {
        SeqNum(self.low().0 + self.cfg.window)
    }

    pub(crate) fn in_window(&self, seq: SeqNum) -> bool {
        seq > self.low() && seq <= self.high()
    }

    pub(crate) fn set_timer(&mut self, timer: Timer, at_ms: u64) {
        self.out.push(Output::SetTimer { timer, at_ms });
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.out.push(Output::Event(event));
    }

    pub(crate) fn broadcast(&mut self, message: Message) {
        self.out.push(Output::Broadcast(message));
    }

    pub(crate) fn send(&mut self, to: ValidatorIndex, message: Message) {
        if to != self.me {
            self.out.push(Output::Send { to, message });
        }
    }

    pub(crate) fn index_of(&self, key: &phalanx_crypto::PublicKey) -> Option<ValidatorIndex> {
        self.cfg.validators.index_of(key)
    }

    /// Signs a vote unless that would contradict an earlier one; records it
    /// (Persist output) before the caller sends it.
    pub(crate) fn sign_vote<M: SignedPayload>(
        &mut self,
        phase: Phase,
        view: View,
        seq: SeqNum,
        digest: Digest,
        payload: M,
    ) -> Option<Signed<M>> {
        match self.guard.get(&(view, seq, phase)) {
            Some(d) if *d != digest => {
                // Our own logic asked to contradict a recorded vote. Refusing
                // keeps us safe; it can only follow from a restart that lost
                // volatile state, never from honest operation.
                return None;
            }
            Some(_) => {}
            None => {
                self.guard.insert((view, seq, phase), digest);
                self.out.push(Output::Persist(WalEntry::Voted {
                    phase,
                    view,
                    seq,
                    digest,
                }));
            }
        }
        Some(Signed::sign(payload, &self.key, &self.cfg.chain_id))
    }

    pub(crate) fn sign<M: SignedPayload>(&self, payload: M) -> Signed<M> {
        Signed::sign(payload, &self.key, &self.cfg.chain_id)
    }

    /// Marks transactions as part of a pre-prepared batch: no longer to be
    /// proposed.
    pub(crate) fn add_in_flight(&mut self, tx_hashes: &[Digest]) {
        for hash in tx_hashes {
            self.in_flight.insert(*hash);
            if let Some(arrival) = self.pending_set.get(hash) {
                self.unproposed.remove(&arrival.number);
            }
        }
    }

    /// Forgets a committed transaction: neither pending nor in flight.
    pub(crate) fn remove_committed(&mut self, hash: &Digest) {
        self.in_flight.remove(hash);
        if let Some(arrival) = self.pending_set.remove(hash) {
            self.pending.remove(&arrival.number);
            self.unproposed.remove(&arrival.number);
        }
    }

    /// Replaces the whole in-flight set (on a view change) and recomputes
    /// which pending transactions are unproposed. O(pending), so only for
    /// view changes.
    pub(crate) fn reset_in_flight(&mut self, in_flight: impl IntoIterator<Item = Digest>) {
        self.in_flight.clear();
        self.in_flight.extend(in_flight);
        self.unproposed = self
            .pending
            .iter()
            .filter(|(_, (hash, _))| !self.in_flight.contains(hash))
            .map(|(number, _)| *number)
            .collect();
    }

    pub(crate) fn keep_prepared(&mut self, p: PreparedProof) {
        let seq = p.pre_prepare.payload.seq;
        let view = p.pre_prepare.payload.view;
        if self
            .prepared
            .get(&seq)
            .is_none_or(|old| old.pre_prepare.payload.view < view)
        {
            self.prepared.insert(seq, p);
        }
    }

    /// The current view timeout: base × 2^failed views, capped.
    pub(crate) fn view_timeout_ms(&self) -> u64 {
        let factor = 1u64 << self.failed_views.min(20);
        self.cfg
            .view_timeout_ms
            .saturating_mul(factor)
            .min(self.cfg.view_timeout_ms_max)
    }

    /// Arms the progress timer if something is awaited and it is not armed.
    pub(crate) fn arm_progress_timer(&mut self) {
        if self.progress_deadline.is_some() {
            return;
        }
        // Slots at or below the committed height are settled, even if a
        // NEW-VIEW re-issued them and their commits are no longer counted.
        let awaiting = self
            .log
            .range(self.committed.next()..)
            .any(|(_, s)| s.pre_prepare.is_some() && !s.committed)
            || self.mode == Mode::ViewChanging;
        if awaiting {
            let at = self.now_ms + self.view_timeout_ms();
            self.progress_deadline = Some(at);
            self.set_timer(Timer::Progress, at);
        }
    }

    /// Restarts the progress timer after progress.
    pub(crate) fn reset_progress_timer(&mut self) {
        self.progress_deadline = None;
        self.arm_progress_timer();
    }

    /// Records a vote for evidence; returns evidence if it conflicts with
    /// one seen before from the same signer.
    pub(crate) fn note_vote(
        &mut self,
        signer: ValidatorIndex,
        view: View,
        seq: SeqNum,
        phase: Phase,
        digest: Digest,
        message: Message,
    ) {
        // Only votes inside the window and near our view are remembered:
        // a traitor voting on every seq far ahead, or in every view of the
        // horizon, cannot grow this table. What we remember is bounded by
        // n × window × 3 phases × the views kept (ours, the one before and
        // the one after).
        if !self.in_window(seq) || view.0 > self.view.0 + 1 || view.0 + 1 < self.view.0 {
            return;
        }
        let key = (signer, view, seq, phase);
        match self.seen_votes.get(&key) {
            None => {
                self.seen_votes.insert(key, message);
            }
            Some(first) if vote_digest(first) != Some(digest) => {
                // One evidence record per (validator, view, phase): one
                // proof is enough, and a traitor signing conflicting pairs
                // for every seq must not write a record for each.
                if self.reported.insert((signer, view, phase)) {
                    let validator = *self.cfg.validators.key(signer).expect("known signer");
                    self.out.push(Output::Evidence(Box::new(Evidence {
                        validator,
                        phase,
                        view,
                        seq,
                        first: first.clone(),
                        second: message,
                    })));
                }
            }
            Some(_) => {}
        }
    }

    /// Drops everything at or below a new low watermark (§4.3).
    pub(crate) fn collect_garbage(&mut self, low: SeqNum) {
        self.log.retain(|s, _| *s > low);
        self.prepared.retain(|s, _| *s > low);
        self.guard.retain(|(_, s, _), _| *s > low);
        self.seen_votes.retain(|(_, _, s, _), _| *s > low);
        self.own_checkpoints.retain(|s, _| *s >= low);
        self.checkpoint_votes.retain(|s, _| *s > low);
        self.far_checkpoints.retain(|_, v| v.payload.seq > low);
        self.catch_up_buffer.retain(|s, _| *s > self.committed);
        self.out.push(Output::PruneWal { below: low.next() });
    }

    /// For tests: the digest this replica signed for a vote, if any.
    pub fn signed_vote(&self, view: View, seq: SeqNum, phase: Phase) -> Option<Digest> {
        self.guard.get(&(view, seq, phase)).copied()
    }

    pub(crate) fn certificate_for(&self, seq: SeqNum) -> Option<CommitCertificate> {
        let slot = self.log.get(&seq)?;
        let digest = slot.digest()?;
        let votes: Vec<_> = slot
            .commits
            .values()
            .filter(|c| c.payload.digest == digest && c.payload.view == self.view)
            .cloned()
            .collect();
        Some(CommitCertificate {
            view: self.view,
            seq,
            batch_digest: digest,
            votes,
        })
    }
}

/// The digest a vote message refers to.
pub(crate) fn vote_digest(m: &Message) -> Option<Digest> {
    match m {
        Message::PrePrepare { pre_prepare, .. } => Some(pre_prepare.payload.digest),
        Message::Prepare(p) => Some(p.payload.digest),
        Message::Commit(c) => Some(c.payload.digest),
        _ => None,
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("view", &self.view)
            .field("mode", &self.mode)
            .field("committed", &self.committed)
            .field("low", &self.low())
            .finish()
    }
}
