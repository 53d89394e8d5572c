//! Byzantine behaviours for tests and test networks.
//!
//! A [`Traitor`] wraps an honest [`Replica`] and rewrites what it sends (and,
//! for `censor`, what it is told). The simulator and the process testnet
//! both drive validators through [`Participant`], so one behaviour is
//! written once and exercised in both. A node refuses to run a traitor
//! unless its genesis marks the chain as a test network.
//!
//! The first nine behaviours are *polite*: they send what an honest replica
//! would, slightly wrong. The five *attackers* (issue 15) send whatever one
//! validator's key can sign that costs the honest nodes the most, each in
//! its own file: [`newview_bomb`], [`padded_view_change`], [`future_votes`],
//! [`gossip_junk`], [`request_spam`]. Every behaviour is deterministic (no
//! clock, no randomness: what it sends follows from its inputs), and keeps
//! a bounded state of its own.

mod future_votes;
mod gossip_junk;
mod newview_bomb;
mod padded_view_change;
mod request_spam;

pub use future_votes::{FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK, FUTURE_VOTES_VIEWS_AHEAD};
pub use padded_view_change::PADDED_VIEW_CHANGE_VIEWS_AHEAD;
pub use request_spam::REQUEST_SPAM_PER_TICK;

use crate::replica::{Input, Output};
use crate::{
    tx_hash, Batch, Commit, Message, PrePrepare, Prepare, Replica, SeqNum, Timer, Transaction,
    ValidatorIndex, ViewChange, MESSAGE_BYTES_MAX,
};
use phalanx_crypto::{Digest, Keypair, Signed, SignedPayload};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// A named Byzantine behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// Sends nothing at all.
    Silent,
    /// As primary: different pre-prepares to different backups. As backup:
    /// conflicting prepares and commits to different peers.
    Equivocate,
    /// Every signature it sends is corrupted.
    BadSignature,
    /// As primary: pre-prepares whose digest is not the batch's. As backup:
    /// votes for digests nobody proposed.
    WrongDigest,
    /// Re-sends its old messages (old views, seqs below the window).
    Replay,
    /// Asks for view changes nobody needs, some with forged proofs.
    BogusViewChange,
    /// Sends every message many times, plus large junk messages.
    Flood,
    /// As primary: leaves half of the transactions out of its batches.
    Censor,
    /// As primary: holds each pre-prepare until just before backups would
    /// suspect it (Aardvark's slow primary).
    SlowPrimary,
    /// NEW-VIEWs for views it is not the primary of (the current one and
    /// the next few), each one valid pre-prepare repeated until the message
    /// is near the size limit. Correctly signed.
    NewviewBomb,
    /// VIEW-CHANGEs for each of the next 64 views, their prepared proofs
    /// padded with one prepare repeated. Correctly signed.
    PaddedViewChange,
    /// Prepares, commits and checkpoints for sequence numbers far above the
    /// window, and conflicting vote pairs by the hundred every tick.
    FutureVotes,
    /// Transaction gossip near the size limit, full of well-formed
    /// transfers with wrong signatures (through the driver's gossip hook,
    /// [`Participant::take_gossip`]).
    GossipJunk,
    /// Catch-up requests for big ranges of old blocks and NEW-VIEW
    /// requests, many to every peer, several times per retransmit period.
    RequestSpam,
}

impl Behaviour {
    pub const ALL: [Behaviour; 14] = [
        Behaviour::Silent,
        Behaviour::Equivocate,
        Behaviour::BadSignature,
        Behaviour::WrongDigest,
        Behaviour::Replay,
        Behaviour::BogusViewChange,
        Behaviour::Flood,
        Behaviour::Censor,
        Behaviour::SlowPrimary,
        Behaviour::NewviewBomb,
        Behaviour::PaddedViewChange,
        Behaviour::FutureVotes,
        Behaviour::GossipJunk,
        Behaviour::RequestSpam,
    ];

    /// The behaviours that send what an honest replica would, slightly
    /// wrong (sessions 1-6).
    pub const POLITE: [Behaviour; 9] = [
        Behaviour::Silent,
        Behaviour::Equivocate,
        Behaviour::BadSignature,
        Behaviour::WrongDigest,
        Behaviour::Replay,
        Behaviour::BogusViewChange,
        Behaviour::Flood,
        Behaviour::Censor,
        Behaviour::SlowPrimary,
    ];

    /// One behaviour per attack class of issue 15: the most one key can
    /// cost the honest nodes.
    pub const ATTACKERS: [Behaviour; 5] = [
        Behaviour::NewviewBomb,
        Behaviour::PaddedViewChange,
        Behaviour::FutureVotes,
        Behaviour::GossipJunk,
        Behaviour::RequestSpam,
    ];

    pub fn is_attacker(&self) -> bool {
        Behaviour::ATTACKERS.contains(self)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Behaviour::Silent => "silent",
            Behaviour::Equivocate => "equivocate",
            Behaviour::BadSignature => "bad-signature",
            Behaviour::WrongDigest => "wrong-digest",
            Behaviour::Replay => "replay",
            Behaviour::BogusViewChange => "bogus-view-change",
            Behaviour::Flood => "flood",
            Behaviour::Censor => "censor",
            Behaviour::SlowPrimary => "slow-primary",
            Behaviour::NewviewBomb => "newview-bomb",
            Behaviour::PaddedViewChange => "padded-view-change",
            Behaviour::FutureVotes => "future-votes",
            Behaviour::GossipJunk => "gossip-junk",
            Behaviour::RequestSpam => "request-spam",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown behaviour name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown traitor behaviour {0:?}; known: {known}", known = known_names())]
pub struct UnknownBehaviour(pub String);

/// Every behaviour's name, comma-separated (for error and help texts).
pub fn known_names() -> String {
    Behaviour::ALL.map(|b| b.name()).join(", ")
}

impl std::str::FromStr for Behaviour {
    type Err = UnknownBehaviour;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == norm)
            .ok_or_else(|| UnknownBehaviour(s.to_string()))
    }
}

/// When a traitor turns: at a committed height, at a time, or both (the
/// later of the two). The default is from the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trigger {
    pub from_height: Option<SeqNum>,
    pub from_ms: Option<u64>,
}

/// What the traitor may send, in bytes. The node's defaults are the
/// protocol's limits; the simulator scales them down as it scales the
/// window and the timeouts (see `testnet::sim::config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraitorLimits {
    /// The largest message (or gossip message) the traitor builds,
    /// encoded: its peers' `p2p.max_message_bytes`.
    pub message_bytes_max: u64,
}

impl Default for TraitorLimits {
    fn default() -> Self {
        TraitorLimits {
            message_bytes_max: MESSAGE_BYTES_MAX,
        }
    }
}

/// Room left below `message_bytes_max` for the envelope around what an
/// attacker repeats (enum tags, length prefixes, outer signature).
const ENVELOPE_BYTES: u64 = 4096;
/// Gossip messages the traitor holds for a driver that has not taken them:
/// past this the oldest is dropped (its own memory stays bounded).
const GOSSIP_OUTBOX_MAX: usize = 4;

/// How many junk messages a flood adds per message it sends.
const FLOOD_COPIES: usize = 8;
/// Transactions in a flood's junk pre-prepare.
const FLOOD_JUNK_TXS: usize = 256;
/// Old messages a replayer remembers.
const REPLAY_HISTORY_MAX: usize = 256;

/// An honest replica with a Byzantine behaviour on top.
pub struct Traitor {
    replica: Replica,
    behaviour: Behaviour,
    trigger: Trigger,
    key: Keypair,
    chain_id: String,
    n: u16,
    /// Own sent messages, for replay.
    history: VecDeque<Message>,
    /// Pre-prepares held back by a slow primary: (release time, output).
    delayed: VecDeque<(u64, Output)>,
    /// Equivocation pairs: any digest of a batch → (even-group, odd-group)
    /// digest, with the alternative pre-prepare batches.
    pairs: BTreeMap<Digest, (Digest, Digest)>,
    alt_batches: BTreeMap<Digest, Batch>,
    counter: u64,
    limits: TraitorLimits,
    /// From this time on it sends nothing (a stopped attacker).
    until_ms: Option<u64>,
    /// Transaction gossip for the driver to publish ([`Self::take_gossip`]).
    gossip: VecDeque<Vec<Transaction>>,
    /// Whether a request spammer's fast timer is set.
    spam_armed: bool,
}

impl Traitor {
    pub fn new(replica: Replica, behaviour: Behaviour, trigger: Trigger) -> Traitor {
        let key = replica.key.clone();
        let chain_id = replica.cfg.chain_id.clone();
        let n = replica.cfg.validators.len() as u16;
        Traitor {
            replica,
            behaviour,
            trigger,
            key,
            chain_id,
            n,
            history: VecDeque::new(),
            delayed: VecDeque::new(),
            pairs: BTreeMap::new(),
            alt_batches: BTreeMap::new(),
            counter: 0,
            limits: TraitorLimits::default(),
            until_ms: None,
            gossip: VecDeque::new(),
            spam_armed: false,
        }
    }

    /// Builds its messages within `limits` instead of the protocol's.
    pub fn with_limits(mut self, limits: TraitorLimits) -> Traitor {
        self.limits = limits;
        self
    }

    /// Stops at `until_ms`: from then on it sends nothing at all, as if its
    /// process were killed (a burst). `None`: never stops.
    pub fn until_ms(mut self, until_ms: Option<u64>) -> Traitor {
        self.until_ms = until_ms;
        self
    }

    /// Transaction gossip the traitor wants published, oldest first. A
    /// node publishes each as one gossip message; the simulator delivers it
    /// to every other validator's admission.
    pub fn take_gossip(&mut self) -> Vec<Vec<Transaction>> {
        self.gossip.drain(..).collect()
    }

    fn push_gossip(&mut self, txs: Vec<Transaction>) {
        if self.gossip.len() >= GOSSIP_OUTBOX_MAX {
            self.gossip.pop_front();
        }
        self.gossip.push_back(txs);
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    fn stopped(&self, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|t| now_ms >= t)
    }

    fn active(&self, now_ms: u64) -> bool {
        self.trigger.from_ms.is_none_or(|t| now_ms >= t)
            && self
                .trigger
                .from_height
                .is_none_or(|h| self.replica.committed() >= h)
    }

    fn sign<M: SignedPayload>(&self, payload: M) -> Signed<M> {
        Signed::sign(payload, &self.key, &self.chain_id)
    }

    fn others(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        let me = self.replica.id();
        (0..self.n).map(ValidatorIndex).filter(move |i| *i != me)
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        if self.stopped(now_ms) {
            return self.handle_stopped(now_ms, input);
        }
        let active = self.active(now_ms);
        let is_retransmit_tick = matches!(input, Input::Timer(Timer::Retransmit));
        let input = match input {
            Input::Transactions(txs) if active && self.behaviour == Behaviour::Censor => {
                Input::Transactions(
                    txs.into_iter()
                        .filter(|tx| tx_hash(tx).0[0] % 2 == 1)
                        .collect(),
                )
            }
            Input::Timer(Timer::Traitor) if self.behaviour == Behaviour::RequestSpam => {
                return self.on_spam_timer(now_ms, active);
            }
            Input::Timer(Timer::Traitor) => return self.release_delayed(now_ms),
            Input::Message(m) => {
                if let Message::PrePrepare { batch, .. } = m.message() {
                    self.learn_pair(batch);
                }
                Input::Message(m)
            }
            other => other,
        };
        let outputs = self.replica.handle(now_ms, input);
        if !active {
            return outputs;
        }
        let mut rewritten = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Send { to, message } => {
                    self.rewrite(now_ms, vec![to], message, &mut rewritten)
                }
                Output::Broadcast(message) => {
                    let all: Vec<_> = self.others().collect();
                    self.rewrite(now_ms, all, message, &mut rewritten)
                }
                Output::ServeCatchUp { .. } if self.behaviour == Behaviour::Silent => {}
                other => rewritten.push(other),
            }
        }
        if is_retransmit_tick {
            self.on_tick(now_ms, &mut rewritten);
        }
        rewritten
    }

    /// After `until_ms`: the replica keeps its state (so the checkers can
    /// read it) but nothing leaves, not even catch-up answers.
    fn handle_stopped(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.gossip.clear();
        self.delayed.clear();
        if matches!(input, Input::Timer(Timer::Traitor)) {
            return Vec::new();
        }
        self.replica
            .handle(now_ms, input)
            .into_iter()
            .filter(|o| {
                !matches!(
                    o,
                    Output::Send { .. } | Output::Broadcast(_) | Output::ServeCatchUp { .. }
                )
            })
            .collect()
    }

    /// Rewrites one outgoing message to `to` according to the behaviour.
    fn rewrite(
        &mut self,
        now_ms: u64,
        to: Vec<ValidatorIndex>,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        self.remember(&message);
        let send = |out: &mut Vec<Output>, to: ValidatorIndex, message: Message| {
            out.push(Output::Send { to, message })
        };
        match self.behaviour {
            Behaviour::Silent => {}
            Behaviour::BadSignature => {
                let bad = corrupt_signature(message);
                for r in to {
                    send(out, r, bad.clone());
                }
            }
            Behaviour::WrongDigest => {
                let wrong = self.wrong_digest(message);
                for r in to {
                    send(out, r, wrong.clone());
                }
            }
            Behaviour::Equivocate => {
                for r in to {
                    let m = self.equivocal_for(r, &message);
                    send(out, r, m);
                }
            }
            Behaviour::Replay => {
                for r in to {
                    send(out, r, message.clone());
                    if let Some(old) = self.pick_old() {
                        send(out, r, old);
                    }
                }
            }
            Behaviour::Flood => {
                for r in to {
                    for _ in 0..FLOOD_COPIES {
                        send(out, r, message.clone());
                    }
                }
            }
            Behaviour::SlowPrimary if matches!(message, Message::PrePrepare { .. }) => {
                let hold = self.replica.cfg.propose_timeout_ms * 9 / 10;
                let release = now_ms + hold;
                for r in to {
                    self.delayed.push_back((
                        release,
                        Output::Send {
                            to: r,
                            message: message.clone(),
                        },
                    ));
                }
                out.push(Output::SetTimer {
                    timer: Timer::Traitor,
                    at_ms: self.delayed.front().map(|(t, _)| *t).unwrap_or(release),
                });
            }
            Behaviour::SlowPrimary
            | Behaviour::Censor
            | Behaviour::BogusViewChange
            | Behaviour::NewviewBomb
            | Behaviour::PaddedViewChange
            | Behaviour::FutureVotes
            | Behaviour::GossipJunk
            | Behaviour::RequestSpam => {
                for r in to {
                    send(out, r, message.clone());
                }
            }
        }
    }

    /// Extra messages on every retransmit tick.
    fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        self.counter += 1;
        match self.behaviour {
            Behaviour::BogusViewChange => {
                let target = self.replica.view().next();
                let honest_looking = self.sign(ViewChange {
                    new_view: target,
                    checkpoint: None,
                    prepared: Vec::new(),
                });
                let forged = self.sign(ViewChange {
                    new_view: crate::View(target.0 + 1 + self.counter % 3),
                    checkpoint: None,
                    prepared: vec![crate::PreparedProof {
                        pre_prepare: self.sign(PrePrepare {
                            view: self.replica.view(),
                            seq: self.replica.committed().next(),
                            digest: Digest::sha256(&self.counter.to_le_bytes()),
                        }),
                        batch: Batch::null(),
                        prepares: Vec::new(),
                    }],
                });
                out.push(Output::Broadcast(Message::ViewChange(honest_looking)));
                out.push(Output::Broadcast(Message::ViewChange(forged)));
            }
            Behaviour::Flood => {
                let junk = self.junk_pre_prepare();
                for _ in 0..FLOOD_COPIES {
                    out.push(Output::Broadcast(junk.clone()));
                }
            }
            Behaviour::Replay => {
                for _ in 0..4 {
                    if let Some(old) = self.pick_old() {
                        out.push(Output::Broadcast(old));
                    }
                }
            }
            Behaviour::NewviewBomb => self.newview_bomb_tick(out),
            Behaviour::PaddedViewChange => self.padded_view_change_tick(out),
            Behaviour::FutureVotes => self.future_votes_tick(out),
            Behaviour::GossipJunk => self.gossip_junk_tick(),
            Behaviour::RequestSpam => self.request_spam_arm(now_ms, out),
            Behaviour::Silent
            | Behaviour::Equivocate
            | Behaviour::BadSignature
            | Behaviour::WrongDigest
            | Behaviour::Censor
            | Behaviour::SlowPrimary => {}
        }
    }

    fn release_delayed(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while self.delayed.front().is_some_and(|(t, _)| *t <= now_ms) {
            if let Some((_, o)) = self.delayed.pop_front() {
                out.push(o);
            }
        }
        if let Some((t, _)) = self.delayed.front() {
            out.push(Output::SetTimer {
                timer: Timer::Traitor,
                at_ms: *t,
            });
        }
        out
    }

    fn remember(&mut self, message: &Message) {
        if self.history.len() >= REPLAY_HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(message.clone());
    }

    fn pick_old(&mut self) -> Option<Message> {
        if self.history.is_empty() {
            return None;
        }
        self.counter = self
            .counter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (self.counter >> 33) as usize % self.history.len();
        Some(self.history[i].clone())
    }

    /// The two versions of a batch an equivocator uses: timestamps `2k`
    /// (to even-numbered validators) and `2k + 1` (to odd ones). Colluding
    /// equivocators derive the same pair from either version.
    fn learn_pair(&mut self, batch: &Batch) {
        let base = batch.timestamp_ms & !1;
        let even = Batch {
            txs: batch.txs.clone(),
            timestamp_ms: base,
        };
        let odd = Batch {
            txs: batch.txs.clone(),
            timestamp_ms: base + 1,
        };
        let (de, d_odd) = (even.digest(), odd.digest());
        self.pairs.insert(de, (de, d_odd));
        self.pairs.insert(d_odd, (de, d_odd));
        self.alt_batches.insert(de, even);
        self.alt_batches.insert(d_odd, odd);
    }

    /// The version of `message` that validator `to` gets from an
    /// equivocator.
    fn equivocal_for(&mut self, to: ValidatorIndex, message: &Message) -> Message {
        let odd = to.0 % 2 == 1;
        let pick = |pairs: &BTreeMap<Digest, (Digest, Digest)>, d: &Digest| {
            pairs.get(d).map(|(e, o)| if odd { *o } else { *e })
        };
        match message {
            Message::PrePrepare { pre_prepare, batch } => {
                self.learn_pair(batch);
                let p = &pre_prepare.payload;
                let Some(d) = pick(&self.pairs, &p.digest) else {
                    return message.clone();
                };
                let batch = self.alt_batches[&d].clone();
                Message::PrePrepare {
                    pre_prepare: self.sign(PrePrepare {
                        view: p.view,
                        seq: p.seq,
                        digest: d,
                    }),
                    batch,
                }
            }
            Message::Prepare(s) => match pick(&self.pairs, &s.payload.digest) {
                Some(d) => Message::Prepare(self.sign(Prepare {
                    digest: d,
                    ..s.payload.clone()
                })),
                None => message.clone(),
            },
            Message::Commit(s) => match pick(&self.pairs, &s.payload.digest) {
                Some(d) => Message::Commit(self.sign(Commit {
                    digest: d,
                    ..s.payload.clone()
                })),
                None => message.clone(),
            },
            other => other.clone(),
        }
    }

    fn wrong_digest(&self, message: Message) -> Message {
        let skew = |d: &Digest| Digest::sha256(&d.0);
        match message {
            Message::PrePrepare { pre_prepare, batch } => Message::PrePrepare {
                pre_prepare: self.sign(PrePrepare {
                    digest: skew(&pre_prepare.payload.digest),
                    ..pre_prepare.payload
                }),
                batch,
            },
            Message::Prepare(s) => Message::Prepare(self.sign(Prepare {
                digest: skew(&s.payload.digest),
                ..s.payload
            })),
            Message::Commit(s) => Message::Commit(self.sign(Commit {
                digest: skew(&s.payload.digest),
                ..s.payload
            })),
            other => other,
        }
    }

    /// A large pre-prepare whose digest does not match its batch.
    fn junk_pre_prepare(&self) -> Message {
        let filler = Keypair::insecure_from_label("flood-filler");
        let txs = (0..FLOOD_JUNK_TXS as u64)
            .map(|i| {
                let mut tx = Signed::sign(
                    crate::Transfer {
                        chain_id: self.chain_id.clone(),
                        to: phalanx_crypto::Address([7; 20]),
                        amount: 1,
                        nonce: i,
                    },
                    &filler,
                    &self.chain_id,
                );
                tx.signature.0[0] ^= 1;
                tx
            })
            .collect();
        Message::PrePrepare {
            pre_prepare: self.sign(PrePrepare {
                view: self.replica.view(),
                seq: self.replica.committed().next(),
                digest: Digest::sha256(b"flood"),
            }),
            batch: Batch {
                txs,
                timestamp_ms: self.counter,
            },
        }
    }
}

/// Flips a bit of the outer signature, whatever the message.
fn corrupt_signature(message: Message) -> Message {
    fn flip<M>(mut s: Signed<M>) -> Signed<M> {
        s.signature.0[7] ^= 0x20;
        s
    }
    match message {
        Message::PrePrepare { pre_prepare, batch } => Message::PrePrepare {
            pre_prepare: flip(pre_prepare),
            batch,
        },
        Message::Prepare(s) => Message::Prepare(flip(s)),
        Message::Commit(s) => Message::Commit(flip(s)),
        Message::Checkpoint(s) => Message::Checkpoint(flip(s)),
        Message::ViewChange(s) => Message::ViewChange(flip(s)),
        Message::Complaint(s) => Message::Complaint(flip(s)),
        Message::NewView(s) => Message::NewView(flip(s)),
        Message::NewViewRequest(s) => Message::NewViewRequest(flip(s)),
        Message::CatchUpRequest(s) => Message::CatchUpRequest(flip(s)),
        Message::CatchUpResponse(mut blocks) => {
            for b in &mut blocks {
                if let Some(v) = b.certificate.votes.first_mut() {
                    v.signature.0[7] ^= 0x20;
                }
            }
            Message::CatchUpResponse(blocks)
        }
    }
}

/// A validator as a driver sees it: honest, or a traitor.
pub enum Participant {
    Honest(Box<Replica>),
    Traitor(Box<Traitor>),
}

impl Participant {
    pub fn honest(replica: Replica) -> Participant {
        Participant::Honest(Box::new(replica))
    }

    pub fn traitor(replica: Replica, behaviour: Behaviour, trigger: Trigger) -> Participant {
        Participant::Traitor(Box::new(Traitor::new(replica, behaviour, trigger)))
    }

    /// Transaction gossip a traitor wants published (see
    /// [`Traitor::take_gossip`]); always empty for an honest validator.
    /// Drivers call it after every [`Participant::handle`].
    pub fn take_gossip(&mut self) -> Vec<Vec<Transaction>> {
        match self {
            Participant::Honest(_) => Vec::new(),
            Participant::Traitor(t) => t.take_gossip(),
        }
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        match self {
            Participant::Honest(r) => r.handle(now_ms, input),
            Participant::Traitor(t) => t.handle(now_ms, input),
        }
    }

    pub fn replica(&self) -> &Replica {
        match self {
            Participant::Honest(r) => r,
            Participant::Traitor(t) => t.replica(),
        }
    }

    pub fn is_traitor(&self) -> bool {
        matches!(self, Participant::Traitor(_))
    }

    pub fn behaviour(&self) -> Option<Behaviour> {
        match self {
            Participant::Honest(_) => None,
            Participant::Traitor(t) => Some(t.behaviour()),
        }
    }
}

impl From<Traitor> for Participant {
    fn from(t: Traitor) -> Participant {
        Participant::Traitor(Box::new(t))
    }
}

#[cfg(test)]
mod tests;
