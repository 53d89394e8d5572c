//! The messages validators exchange, and the one function that turns their
//! wire form into something the replica accepts.
//!
//! Each vote payload is signed on its own (`Signed<Prepare>` …) so that
//! votes can be collected into certificates and checked by anyone with the
//! genesis file. [`verify_message`] checks every signature a message holds,
//! nested ones included, and the batch's digest and transactions; only its
//! output, a [`VerifiedMessage`], reaches [`crate::Replica::handle`].

use crate::block::{CertError, CheckpointCertificate, CommitCertificate};
use crate::{Batch, SeqNum, Transfer, ValidatorIndex, ValidatorSet, View, TX_BYTES_MAX};
use phalanx_crypto::{codec, AnyKey, Digest, KeySet, Signed, SignedPayload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The largest message accepted from a peer, encoded.
pub const MESSAGE_BYTES_MAX: u64 = 16 << 20;
/// The most transactions in one batch.
pub const BATCH_TXS_MAX: usize = 8192;
/// The most blocks in one catch-up response.
pub const CATCH_UP_BLOCKS_MAX: usize = 64;

/// §4.2: the primary assigns `digest` to `seq` in `view`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    pub view: View,
    pub seq: SeqNum,
    pub digest: Digest,
}

/// §4.2: a backup accepted the pre-prepare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub view: View,
    pub seq: SeqNum,
    pub digest: Digest,
}

/// §4.2: the sender has a prepared certificate for `(view, seq, digest)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub view: View,
    pub seq: SeqNum,
    pub digest: Digest,
}

/// §4.3: the sender executed up to `seq` and reached this block and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: SeqNum,
    pub block_hash: Digest,
    pub state_root: Digest,
}

/// A pre-prepare with its batch and 2f matching prepares from others: proof
/// that `(view, seq, digest)` prepared somewhere (§4.4, the set P).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedProof {
    pub pre_prepare: Signed<PrePrepare>,
    pub batch: Batch,
    pub prepares: Vec<Signed<Prepare>>,
}

/// §4.4: the sender moves to `new_view`, with its stable checkpoint and
/// what it prepared above it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub new_view: View,
    /// The sender's stable checkpoint, `None` meaning genesis (seq 0).
    pub checkpoint: Option<CheckpointCertificate>,
    pub prepared: Vec<PreparedProof>,
}

/// §4.4: the new primary's proof that 2f + 1 validators moved to `view`,
/// and the pre-prepares it re-issues (the set O).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view: View,
    pub view_changes: Vec<Signed<ViewChange>>,
    pub pre_prepares: Vec<Signed<PrePrepare>>,
}

/// The sender suspects the primary of the view before `new_view` and
/// would leave it (BFT-SMaRt's STOP). Unlike a VIEW-CHANGE it carries no
/// state and commits the sender to nothing: it keeps working in its view
/// until 2f + 1 validators have complained, so a replica that suspects a
/// primary the others still follow is never stranded by its own suspicion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    pub new_view: View,
}

/// Asks a peer for the NEW-VIEW of `view`, by a validator that saw others
/// working in a view it has no NEW-VIEW for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewViewRequest {
    pub view: View,
}

/// Asks a peer for committed blocks `from..=to` with their certificates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpRequest {
    pub from: SeqNum,
    pub to: SeqNum,
}

/// A committed batch with the certificate that proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBatch {
    pub batch: Batch,
    pub certificate: CommitCertificate,
}

macro_rules! payload_domain {
    ($($ty:ident => $tag:literal),* $(,)?) => {
        $(impl SignedPayload for $ty {
            const DOMAIN: &'static str = $tag;
        })*
    };
}

payload_domain!(
    PrePrepare => "phalanx/pre-prepare/v1",
    Prepare => "phalanx/prepare/v1",
    Commit => "phalanx/commit/v1",
    Checkpoint => "phalanx/checkpoint/v1",
    ViewChange => "phalanx/view-change/v1",
    Complaint => "phalanx/complaint/v1",
    NewView => "phalanx/new-view/v1",
    NewViewRequest => "phalanx/new-view-request/v1",
    CatchUpRequest => "phalanx/catch-up-request/v1",
);

/// A message as it travels between validators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    PrePrepare {
        pre_prepare: Signed<PrePrepare>,
        batch: Batch,
    },
    Prepare(Signed<Prepare>),
    Commit(Signed<Commit>),
    Checkpoint(Signed<Checkpoint>),
    ViewChange(Signed<ViewChange>),
    Complaint(Signed<Complaint>),
    NewView(Signed<NewView>),
    NewViewRequest(Signed<NewViewRequest>),
    CatchUpRequest(Signed<CatchUpRequest>),
    /// Self-certifying: every batch carries its commit certificate.
    CatchUpResponse(Vec<CommittedBatch>),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::PrePrepare { .. } => "pre-prepare",
            Message::Prepare(_) => "prepare",
            Message::Commit(_) => "commit",
            Message::Checkpoint(_) => "checkpoint",
            Message::ViewChange(_) => "view-change",
            Message::Complaint(_) => "complaint",
            Message::NewView(_) => "new-view",
            Message::NewViewRequest(_) => "new-view-request",
            Message::CatchUpRequest(_) => "catch-up-request",
            Message::CatchUpResponse(_) => "catch-up-response",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a message from a peer, bounded by [`MESSAGE_BYTES_MAX`].
    pub fn decode(bytes: &[u8]) -> Result<Message, Rejected> {
        codec::decode(bytes, MESSAGE_BYTES_MAX).map_err(|e| Rejected::Malformed {
            reason: e.to_string(),
        })
    }
}

/// A message whose every signature, digest and transaction was checked
/// against the validator set. Only [`verify_message`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedMessage {
    /// The validator the transport says sent it (libp2p authenticates this;
    /// the simulator knows it).
    pub from: ValidatorIndex,
    message: Message,
    /// For a pre-prepare, the hashes of its batch's transactions, computed
    /// while checking it, so the replica does not hash them again.
    tx_hashes: Vec<Digest>,
}

impl VerifiedMessage {
    pub fn message(&self) -> &Message {
        &self.message
    }

    pub fn into_message(self) -> Message {
        self.message
    }

    /// The message and, for a pre-prepare, its transactions' hashes.
    pub(crate) fn into_parts(self) -> (Message, Vec<Digest>) {
        (self.message, self.tx_hashes)
    }
}

/// Why a message or one of its parts was refused. Counted by reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed message: {reason}")]
    Malformed { reason: String },
    #[error("bad signature on {what}")]
    BadSignature { what: &'static str },
    #[error("{what} signed by a key that is not a validator")]
    UnknownSigner { what: &'static str },
    #[error("batch digest {claimed} does not match the batch ({actual})")]
    DigestMismatch { claimed: Digest, actual: Digest },
    #[error("transaction {index} in the batch: {reason}")]
    BadTransaction { index: usize, reason: String },
    #[error("batch of {txs} transactions is over the limit of {max}")]
    BatchTooLarge { txs: usize, max: usize },
    #[error("certificate: {0}")]
    BadCertificate(#[from] CertError),
    #[error("view {view} is older than the current view {current}")]
    StaleView { view: View, current: View },
    #[error("view {view} is ahead of the current view {current}")]
    FutureView { view: View, current: View },
    #[error("seq {seq} is outside the window ({low}, {high}]")]
    OutsideWindow {
        seq: SeqNum,
        low: SeqNum,
        high: SeqNum,
    },
    #[error("pre-prepare from {from:?}, who is not the primary of view {view}")]
    NotPrimary { from: ValidatorIndex, view: View },
    #[error("a different pre-prepare for ({view}, {seq}) was already accepted")]
    ConflictingPrePrepare { view: View, seq: SeqNum },
    #[error("invalid view change: {reason}")]
    InvalidViewChange { reason: String },
    #[error("invalid new view: {reason}")]
    InvalidNewView { reason: String },
    #[error("duplicate message")]
    Duplicate,
    #[error("catch-up response: {reason}")]
    BadCatchUp { reason: String },
    #[error("{what} from this validator over its rate")]
    RateLimited { what: &'static str },
}

impl Rejected {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Malformed { .. } => "malformed",
            Rejected::BadSignature { .. } => "bad_signature",
            Rejected::UnknownSigner { .. } => "unknown_signer",
            Rejected::DigestMismatch { .. } => "digest_mismatch",
            Rejected::BadTransaction { .. } => "bad_transaction",
            Rejected::BatchTooLarge { .. } => "batch_too_large",
            Rejected::BadCertificate(_) => "bad_certificate",
            Rejected::StaleView { .. } => "stale_view",
            Rejected::FutureView { .. } => "future_view",
            Rejected::OutsideWindow { .. } => "outside_window",
            Rejected::NotPrimary { .. } => "not_primary",
            Rejected::ConflictingPrePrepare { .. } => "conflicting_pre_prepare",
            Rejected::InvalidViewChange { .. } => "invalid_view_change",
            Rejected::InvalidNewView { .. } => "invalid_new_view",
            Rejected::Duplicate => "duplicate",
            Rejected::BadCatchUp { .. } => "bad_catch_up",
            Rejected::RateLimited { .. } => "rate_limited",
        }
    }
}

/// What [`verify_message`] needs to know.
pub struct VerifyContext<'a> {
    pub chain_id: &'a str,
    pub validators: &'a ValidatorSet,
    /// The watermark window (genesis `window`): bounds how many prepared
    /// proofs and re-issued pre-prepares a view change may carry.
    pub window: u64,
    /// Where the receiving replica is, if the caller knows: messages far
    /// outside it are refused before any signature is checked.
    pub horizon: Option<Horizon>,
    /// Transactions known to be correctly signed already (e.g. admitted to
    /// this node's mempool), by hash; their signatures are not checked again.
    pub known_good_txs: Option<&'a dyn Fn(&Digest) -> bool>,
}

/// The receiver's view and low watermark, as last seen by its verifier.
/// It may lag the replica by a few steps, so the checks leave a margin:
/// they only refuse what the replica would certainly refuse too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    pub view: View,
    pub low: SeqNum,
}

/// How far ahead of the receiver's view a VIEW-CHANGE, COMPLAINT or
/// NEW-VIEW is considered (the replica keeps VIEW-CHANGEs that far ahead).
pub const VIEWS_AHEAD_MAX: u64 = 64;

/// The most signatures [`verify_message`] checks for one message from a
/// validator, with `n` validators and watermark window `window` (transfers
/// in a pre-prepare aside: they are bounded by [`BATCH_TXS_MAX`] and
/// checked at most once per node): a NEW-VIEW of n VIEW-CHANGEs, each with
/// a checkpoint certificate (n votes) and `window` prepared proofs of n
/// signatures, plus `window` re-issued pre-prepares and its own signature.
pub fn signature_checks_max(n: usize, window: u64) -> usize {
    let vc = 1 + n + window as usize * n;
    1 + n * vc + window as usize
}

fn check_one<M: SignedPayload + Clone>(
    s: &Signed<M>,
    what: &'static str,
    ctx: &VerifyContext<'_>,
) -> Result<(), Rejected> {
    if !ctx.validators.contains_key(&s.signer) {
        return Err(Rejected::UnknownSigner { what });
    }
    s.clone()
        .verify(ctx.chain_id, ctx.validators)
        .map(|_| ())
        .map_err(|_| Rejected::BadSignature { what })
}

/// Checks a batch: size, every transaction's chain id and signature, and
/// that it hashes to `claimed`.
pub fn verify_batch(
    batch: &Batch,
    claimed: &Digest,
    ctx: &VerifyContext<'_>,
) -> Result<(), Rejected> {
    verify_batch_hashes(batch, claimed, ctx).map(|_| ())
}

/// The hashes of a batch's transactions, if it is within the size limit
/// and they hash to `claimed`.
fn batch_hashes_matching(batch: &Batch, claimed: &Digest) -> Result<Vec<Digest>, Rejected> {
    if batch.txs.len() > BATCH_TXS_MAX {
        return Err(Rejected::BatchTooLarge {
            txs: batch.txs.len(),
            max: BATCH_TXS_MAX,
        });
    }
    let tx_hashes = batch.tx_hashes();
    let actual = batch.digest_of_hashes(&tx_hashes);
    if actual != *claimed {
        return Err(Rejected::DigestMismatch {
            claimed: *claimed,
            actual,
        });
    }
    Ok(tx_hashes)
}

/// [`verify_batch`], returning the transactions' hashes it computed.
fn verify_batch_hashes(
    batch: &Batch,
    claimed: &Digest,
    ctx: &VerifyContext<'_>,
) -> Result<Vec<Digest>, Rejected> {
    let tx_hashes = batch_hashes_matching(batch, claimed)?;
    let mut to_check = Vec::new();
    let mut positions = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, (tx, hash)) in batch.txs.iter().zip(&tx_hashes).enumerate() {
        if tx.payload.chain_id != ctx.chain_id {
            return Err(Rejected::BadTransaction {
                index,
                reason: "wrong chain id".into(),
            });
        }
        if crate::tx_len(tx) > TX_BYTES_MAX {
            return Err(Rejected::BadTransaction {
                index,
                reason: "transaction too large".into(),
            });
        }
        if !seen.insert(*hash) {
            return Err(Rejected::BadTransaction {
                index,
                reason: "duplicate transaction in batch".into(),
            });
        }
        if ctx.known_good_txs.is_some_and(|known| known(hash)) {
            continue;
        }
        to_check.push(tx.clone());
        positions.push(index);
    }
    let verdicts = Signed::<Transfer>::verify_all(to_check, ctx.chain_id, &AnyKey);
    for (verdict, index) in verdicts.iter().zip(positions) {
        if let Err(e) = verdict {
            return Err(Rejected::BadTransaction {
                index,
                reason: e.to_string(),
            });
        }
    }
    Ok(tx_hashes)
}

/// Checks a prepared proof: the primary's pre-prepare, 2f prepares from
/// other validators, and a batch matching their digest.
///
/// As in [`verify_committed`], the transactions' signatures are not checked
/// again: of the 2f validators that prepared the digest at least f are
/// honest (at least one when f ≥ 1), and an honest validator prepares only
/// a batch whose every transaction it verified ([`verify_batch`]). Checking
/// them again cost a NEW-VIEW after a slow primary (three VIEW-CHANGEs of
/// ~11 prepared batches of ~500 transfers) ~17,000 signature checks; the
/// NEW-VIEW then reached the backups after their view timeout, and the view
/// changes cascaded (measured: 1 run in 5 of `bench --rate 2000 --traitor
/// 0=slow-primary` fell to 450–1,170 tx/s).
fn precheck_prepared(p: &PreparedProof, ctx: &VerifyContext<'_>) -> Result<usize, Rejected> {
    let invalid = |reason: &str| Rejected::InvalidViewChange {
        reason: reason.to_string(),
    };
    let pp = &p.pre_prepare.payload;
    if ctx.validators.index_of(&p.pre_prepare.signer) != Some(ctx.validators.primary(pp.view)) {
        return Err(invalid(
            "prepared pre-prepare not signed by that view's primary",
        ));
    }
    if p.prepares.len() >= ctx.validators.len() {
        return Err(invalid(
            "more prepares than validators other than the primary",
        ));
    }
    let want = Prepare {
        view: pp.view,
        seq: pp.seq,
        digest: pp.digest,
    };
    // 2f prepares from distinct validators other than the primary.
    let mut signers = BTreeSet::new();
    for prepare in &p.prepares {
        if prepare.payload != want {
            return Err(invalid("prepare does not match its pre-prepare"));
        }
        if prepare.signer == p.pre_prepare.signer {
            return Err(invalid("prepare from the primary itself"));
        }
        if !ctx.validators.contains_key(&prepare.signer) {
            return Err(Rejected::UnknownSigner {
                what: "prepared prepare",
            });
        }
        if !signers.insert(prepare.signer) {
            return Err(invalid("two prepares from one validator"));
        }
    }
    if signers.len() < 2 * ctx.validators.f() {
        return Err(invalid(
            "prepared proof has fewer than 2f distinct prepares",
        ));
    }
    Ok(1 + p.prepares.len())
}

/// Checks a prepared proof's signatures and batch (after its precheck).
fn verify_prepared(p: &PreparedProof, ctx: &VerifyContext<'_>) -> Result<(), Rejected> {
    check_one(&p.pre_prepare, "prepared pre-prepare", ctx)?;
    for prepare in &p.prepares {
        check_one(prepare, "prepared prepare", ctx)?;
    }
    batch_hashes_matching(&p.batch, &p.pre_prepare.payload.digest).map(|_| ())
}

/// The checks of a VIEW-CHANGE's body that need no signature: at most
/// `window` prepared proofs, for distinct seqs inside the window above its
/// checkpoint, each within bounds. Returns how many signatures the body
/// carries (checked afterwards by [`verify_view_change_body`]).
fn precheck_view_change_body(vc: &ViewChange, ctx: &VerifyContext<'_>) -> Result<usize, Rejected> {
    let invalid = |reason: String| Rejected::InvalidViewChange { reason };
    let mut checks = 0;
    let low = match &vc.checkpoint {
        Some(cert) => {
            if cert.votes.len() > ctx.validators.len() {
                return Err(invalid(format!(
                    "checkpoint certificate with {} votes",
                    cert.votes.len()
                )));
            }
            checks += cert.votes.len();
            cert.seq
        }
        None => SeqNum(0),
    };
    if vc.prepared.len() as u64 > ctx.window {
        return Err(invalid(format!(
            "{} prepared proofs, the window is {}",
            vc.prepared.len(),
            ctx.window
        )));
    }
    let mut seqs = BTreeSet::new();
    for p in &vc.prepared {
        let pp = &p.pre_prepare.payload;
        if pp.view >= vc.new_view {
            return Err(invalid(format!(
                "prepared in view {} ≥ new view {}",
                pp.view, vc.new_view
            )));
        }
        if pp.seq <= low || pp.seq.0 > low.0.saturating_add(ctx.window) {
            return Err(invalid(format!(
                "prepared seq {} outside the window above checkpoint {}",
                pp.seq, low
            )));
        }
        if !seqs.insert(pp.seq) {
            return Err(invalid(format!("two prepared proofs for seq {}", pp.seq)));
        }
        checks += precheck_prepared(p, ctx)?;
    }
    Ok(checks)
}

/// Checks everything inside a VIEW-CHANGE except its outer signature.
pub(crate) fn verify_view_change_body(
    vc: &ViewChange,
    ctx: &VerifyContext<'_>,
) -> Result<(), Rejected> {
    precheck_view_change_body(vc, ctx)?;
    if let Some(cert) = &vc.checkpoint {
        cert.verify(ctx.validators, ctx.chain_id)?;
    }
    for p in &vc.prepared {
        verify_prepared(p, ctx)?;
    }
    Ok(())
}

/// The checks of a whole message that need no signature: is this kind
/// allowed from this sender, is it within the receiver's horizon, are its
/// vectors within bounds derived from n and the window, no duplicates.
/// Returns how many signatures [`verify_message`] will then check (never
/// more than [`signature_checks_max`], transfers aside).
pub fn precheck_message(
    from: ValidatorIndex,
    message: &Message,
    ctx: &VerifyContext<'_>,
) -> Result<usize, Rejected> {
    let Some(sender) = ctx.validators.key(from) else {
        return Err(Rejected::UnknownSigner { what: "sender" });
    };
    // Votes and requests are never relayed: signed by their sender.
    let own = |signer: &phalanx_crypto::PublicKey, what: &'static str| {
        if signer == sender {
            Ok(1)
        } else {
            Err(Rejected::UnknownSigner { what })
        }
    };
    let views_ahead = |view: View| match ctx.horizon {
        Some(h) if view < h.view => Err(Rejected::StaleView {
            view,
            current: h.view,
        }),
        Some(h) if view.0 > h.view.0.saturating_add(VIEWS_AHEAD_MAX) => Err(Rejected::FutureView {
            view,
            current: h.view,
        }),
        _ => Ok(()),
    };
    match message {
        Message::PrePrepare { pre_prepare, batch } => {
            let pp = &pre_prepare.payload;
            if ctx.validators.primary(pp.view) != from {
                return Err(Rejected::NotPrimary {
                    from,
                    view: pp.view,
                });
            }
            if let Some(h) = ctx.horizon {
                // One view of margin: the verifier's horizon may lag.
                if pp.view < h.view || pp.view.0 > h.view.0 + 1 {
                    return Err(Rejected::FutureView {
                        view: pp.view,
                        current: h.view,
                    });
                }
                let high = h.low.0.saturating_add(2 * ctx.window);
                if pp.seq <= h.low || pp.seq.0 > high {
                    return Err(Rejected::OutsideWindow {
                        seq: pp.seq,
                        low: h.low,
                        high: SeqNum(high),
                    });
                }
            }
            if batch.txs.len() > BATCH_TXS_MAX {
                return Err(Rejected::BatchTooLarge {
                    txs: batch.txs.len(),
                    max: BATCH_TXS_MAX,
                });
            }
            own(&pre_prepare.signer, "pre-prepare not signed by its sender")
        }
        Message::Prepare(s) => own(&s.signer, "prepare not signed by its sender"),
        Message::Commit(s) => own(&s.signer, "commit not signed by its sender"),
        Message::Checkpoint(s) => own(&s.signer, "checkpoint not signed by its sender"),
        Message::NewViewRequest(s) => own(&s.signer, "request not signed by its sender"),
        Message::CatchUpRequest(s) => own(&s.signer, "request not signed by its sender"),
        Message::Complaint(s) => {
            views_ahead(s.payload.new_view)?;
            own(&s.signer, "complaint not signed by its sender")
        }
        Message::ViewChange(s) => {
            views_ahead(s.payload.new_view)?;
            own(&s.signer, "view-change not signed by its sender")?;
            Ok(1 + precheck_view_change_body(&s.payload, ctx)?)
        }
        Message::NewView(s) => {
            let nv = &s.payload;
            // Relayed by anyone, but signed only by the new view's primary.
            if nv.view == View(0)
                || ctx.validators.index_of(&s.signer) != Some(ctx.validators.primary(nv.view))
            {
                return Err(Rejected::NotPrimary {
                    from: ctx.validators.index_of(&s.signer).unwrap_or(from),
                    view: nv.view,
                });
            }
            views_ahead(nv.view)?;
            let invalid = |reason: String| Rejected::InvalidNewView { reason };
            if nv.view_changes.len() > ctx.validators.len() {
                return Err(invalid(format!(
                    "{} view-changes from {} validators",
                    nv.view_changes.len(),
                    ctx.validators.len()
                )));
            }
            if nv.pre_prepares.len() as u64 > ctx.window {
                return Err(invalid(format!(
                    "{} pre-prepares, the window is {}",
                    nv.pre_prepares.len(),
                    ctx.window
                )));
            }
            let mut checks = 1;
            let mut senders = BTreeSet::new();
            for vc in &nv.view_changes {
                if vc.payload.new_view != nv.view {
                    return Err(invalid(format!(
                        "contains a view-change for {}",
                        vc.payload.new_view
                    )));
                }
                if !ctx.validators.contains_key(&vc.signer) || !senders.insert(vc.signer) {
                    return Err(invalid("view-changes not from distinct validators".into()));
                }
                checks += 1 + precheck_view_change_body(&vc.payload, ctx)?;
            }
            let mut seqs = BTreeSet::new();
            for pp in &nv.pre_prepares {
                if pp.signer != s.signer
                    || pp.payload.view != nv.view
                    || !seqs.insert(pp.payload.seq)
                {
                    return Err(invalid(
                        "re-issued pre-prepares must be the primary's, for the view, one per seq"
                            .into(),
                    ));
                }
                checks += 1;
            }
            Ok(checks)
        }
        Message::CatchUpResponse(blocks) => {
            if blocks.len() > CATCH_UP_BLOCKS_MAX {
                return Err(Rejected::BadCatchUp {
                    reason: format!("{} blocks, limit {}", blocks.len(), CATCH_UP_BLOCKS_MAX),
                });
            }
            let mut checks = 0;
            for b in blocks {
                if b.certificate.votes.len() > ctx.validators.len() {
                    return Err(Rejected::BadCatchUp {
                        reason: format!("a certificate with {} votes", b.certificate.votes.len()),
                    });
                }
                checks += b.certificate.votes.len();
            }
            Ok(checks)
        }
    }
}

/// Turns a message from `from` into a [`VerifiedMessage`], or says why not:
/// [`precheck_message`] first, then the signatures, batches and certificates.
/// Pure and thread-safe: the node runs it off the consensus loop.
pub fn verify_message(
    from: ValidatorIndex,
    message: Message,
    ctx: &VerifyContext<'_>,
) -> Result<VerifiedMessage, Rejected> {
    // Cheap checks first: a message refused here costs no signature check.
    precheck_message(from, &message, ctx)?;
    let mut tx_hashes = Vec::new();
    match &message {
        Message::PrePrepare { pre_prepare, batch } => {
            check_one(pre_prepare, "pre-prepare", ctx)?;
            tx_hashes = verify_batch_hashes(batch, &pre_prepare.payload.digest, ctx)?;
        }
        Message::Prepare(s) => check_one(s, "prepare", ctx)?,
        Message::Commit(s) => check_one(s, "commit", ctx)?,
        Message::Checkpoint(s) => check_one(s, "checkpoint", ctx)?,
        Message::NewViewRequest(s) => check_one(s, "new-view request", ctx)?,
        Message::Complaint(s) => check_one(s, "complaint", ctx)?,
        Message::CatchUpRequest(s) => check_one(s, "catch-up request", ctx)?,
        Message::ViewChange(s) => {
            check_one(s, "view-change", ctx)?;
            verify_view_change_body(&s.payload, ctx)?;
        }
        Message::NewView(s) => {
            check_one(s, "new-view", ctx)?;
            for vc in &s.payload.view_changes {
                check_one(vc, "view-change in new-view", ctx)?;
                verify_view_change_body(&vc.payload, ctx)?;
            }
            for pp in &s.payload.pre_prepares {
                check_one(pp, "pre-prepare in new-view", ctx)?;
            }
        }
        Message::CatchUpResponse(blocks) => {
            for b in blocks {
                verify_committed(b, ctx)?;
            }
        }
    }
    Ok(VerifiedMessage {
        from,
        message,
        tx_hashes,
    })
}

/// Checks a committed batch: certificate valid, batch matches it.
///
/// The transactions' signatures are not checked again: 2f + 1 validators
/// signed this digest, so at least f + 1 honest ones accepted the batch,
/// and an honest validator prepares only a batch whose every transaction
/// it verified ([`verify_batch`]). The digest binds every byte of every
/// transaction, signature included. (Checking them all again made a
/// replica catching up spend two thirds of its time in ed25519.)
pub fn verify_committed(b: &CommittedBatch, ctx: &VerifyContext<'_>) -> Result<(), Rejected> {
    b.certificate.verify(ctx.validators, ctx.chain_id)?;
    batch_hashes_matching(&b.batch, &b.certificate.batch_digest).map(|_| ())
}
