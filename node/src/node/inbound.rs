//! Inbound queues, bounded in messages and in bytes per sender, and the
//! admission of transaction gossip.
//!
//! Consensus messages and gossip wait in a [`FairInbound`] queue per kind:
//! one queue per sender, served round robin (Aardvark), so a validator that
//! floods gets its share of the verifier and of memory, never another's.
//! A sender over its share (messages or bytes) has its newest messages
//! dropped and counted, not buffered.
//!
//! Gossip is checked before it spreads: a gossip message is forwarded by
//! gossipsub only once [`admit_gossip`] found it well-formed, within
//! [`GOSSIP_TXS_MAX`] transactions, and every transaction correctly signed.
//! A relay whose gossip carried a bad signature or was malformed loses its
//! gossip share for [`GOSSIP_PENALTY`]: its gossip is dropped unchecked.
//! Honest relays forward only what they checked, so only the validator that
//! made the junk is ever penalised.

use crate::mempool::SubmitError;
use crate::network::{GossipId, GossipVerdict, GOSSIP_BYTES_MAX, GOSSIP_TXS_MAX};
use crate::node::Shared;
use phalanx_consensus::{Transaction, ValidatorIndex};
use phalanx_crypto::codec;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Consensus messages queued per sender, waiting for verification.
pub(super) const INBOUND_PER_PEER_MAX: usize = 1024;
/// A message identical to one of a sender's last this many queued ones is
/// dropped as a duplicate.
const INBOUND_DEDUP_WINDOW: usize = 16;
/// Gossip messages queued per relay, waiting for admission.
const GOSSIP_PER_PEER_MAX: usize = 64;
/// Bytes of gossip queued per relay: four maximal gossip messages.
const GOSSIP_PER_PEER_BYTES_MAX: usize = 4 * GOSSIP_BYTES_MAX;
/// Gossip messages admitted in one submission, at most.
pub(super) const GOSSIP_ADMIT_MESSAGES_MAX: usize = 64;
/// Gossip transactions admitted in one submission: once a lot holds this
/// many, it is submitted (so at most this plus one message's worth). With
/// the single gossip task, this is gossip's share of each turn of the
/// mempool's verifier; clients' requests queued meanwhile share the turn.
pub(super) const GOSSIP_ADMIT_TXS_MAX: usize = 4 * GOSSIP_TXS_MAX;
/// How long a relay whose gossip carried a bad signature (or was malformed)
/// has its gossip dropped unchecked.
pub(super) const GOSSIP_PENALTY: Duration = Duration::from_secs(30);

/// How much one [`FairInbound`] may hold.
#[derive(Clone, Copy, Debug)]
pub(super) struct QueueLimits {
    pub per_sender_count: usize,
    pub per_sender_bytes: usize,
    /// Identical copies among a sender's last this many are dropped.
    pub dedup_window: usize,
}

impl QueueLimits {
    /// Consensus messages: two of the largest per sender, so one maximal
    /// message (a NEW-VIEW) always fits behind another. At most
    /// `(n - 1) × 2 × max_message_bytes` in all.
    pub fn consensus(max_message_bytes: usize) -> QueueLimits {
        QueueLimits {
            per_sender_count: INBOUND_PER_PEER_MAX,
            per_sender_bytes: 2 * max_message_bytes,
            dedup_window: INBOUND_DEDUP_WINDOW,
        }
    }

    /// Transaction gossip (named by content: gossipsub drops copies).
    pub fn gossip() -> QueueLimits {
        QueueLimits {
            per_sender_count: GOSSIP_PER_PEER_MAX,
            per_sender_bytes: GOSSIP_PER_PEER_BYTES_MAX,
            dedup_window: 0,
        }
    }
}

/// Something queued, with its size.
pub(super) trait Weighed {
    fn bytes(&self) -> usize;
}

impl Weighed for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len()
    }
}

/// A gossip message waiting for admission.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GossipItem {
    pub id: GossipId,
    pub bytes: Vec<u8>,
}

impl Weighed for GossipItem {
    fn bytes(&self) -> usize {
        self.bytes.len()
    }
}

#[derive(Default)]
struct SenderQueue<T> {
    items: VecDeque<T>,
    bytes: usize,
}

/// Messages waiting, one queue per sender, served round robin (as Aardvark
/// does): a validator that floods gets its share of the verifier, not all
/// of it; its duplicates are dropped, and past its share in messages or
/// bytes its newest messages are dropped — never another validator's.
pub(super) struct FairInbound<T> {
    limits: QueueLimits,
    queues: BTreeMap<ValidatorIndex, SenderQueue<T>>,
    /// The sender served last.
    last: Option<ValidatorIndex>,
    bytes: usize,
}

impl<T: Weighed + PartialEq> FairInbound<T> {
    pub fn new(limits: QueueLimits) -> FairInbound<T> {
        FairInbound {
            limits,
            queues: BTreeMap::new(),
            last: None,
            bytes: 0,
        }
    }

    /// Queues a message, or gives it back with the reason it was dropped
    /// (a duplicate, or over the sender's share).
    pub fn push(&mut self, from: ValidatorIndex, item: T) -> Result<(), (&'static str, T)> {
        let q = self.queues.entry(from).or_insert_with(|| SenderQueue {
            items: VecDeque::new(),
            bytes: 0,
        });
        if q.items
            .iter()
            .rev()
            .take(self.limits.dedup_window)
            .any(|b| *b == item)
        {
            return Err(("inbound_duplicate", item));
        }
        if q.items.len() >= self.limits.per_sender_count {
            return Err(("inbound_queue_full", item));
        }
        let len = item.bytes();
        if q.bytes + len > self.limits.per_sender_bytes {
            return Err(("inbound_bytes_full", item));
        }
        q.bytes += len;
        self.bytes += len;
        q.items.push_back(item);
        Ok(())
    }

    /// The next message, from the first sender after the last one served
    /// that has any.
    pub fn pop(&mut self) -> Option<(ValidatorIndex, T)> {
        let after = self.last;
        let waiting = || self.queues.iter().filter(|(_, q)| !q.items.is_empty());
        let next = waiting()
            .map(|(from, _)| *from)
            .find(|from| after.is_none_or(|last| *from > last))
            .or_else(|| waiting().map(|(from, _)| *from).next())?;
        self.last = Some(next);
        let q = self.queues.get_mut(&next)?;
        let item = q.items.pop_front()?;
        q.bytes -= item.bytes();
        self.bytes -= item.bytes();
        Some((next, item))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(|q| q.items.is_empty())
    }

    /// Bytes queued, from every sender.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes queued from one sender.
    #[cfg(test)]
    pub fn bytes_from(&self, from: ValidatorIndex) -> usize {
        self.queues.get(&from).map_or(0, |q| q.bytes)
    }
}

/// Relays whose gossip is dropped unchecked, and until when.
#[derive(Default)]
pub(super) struct GossipPenalties {
    until: BTreeMap<ValidatorIndex, Instant>,
}

impl GossipPenalties {
    pub fn is_penalised(&self, from: ValidatorIndex, now: Instant) -> bool {
        self.until.get(&from).is_some_and(|until| *until > now)
    }

    pub fn penalise(&mut self, from: ValidatorIndex, now: Instant) {
        self.until.insert(from, now + GOSSIP_PENALTY);
    }
}

/// What the node made of one gossip message.
fn verdict_of(results: &[Result<phalanx_crypto::Digest, SubmitError>]) -> GossipVerdict {
    let bad = results.iter().any(|r| {
        matches!(
            r,
            Err(SubmitError::BadSignature
                | SubmitError::WrongChain { .. }
                | SubmitError::TooLarge { .. })
        )
    });
    // Not checked: the pool was full before the signature check, or the
    // check itself failed. Unknown is not good: do not forward it.
    let unchecked = results.iter().any(|r| {
        matches!(
            r,
            Err(SubmitError::MempoolFull { .. }
                | SubmitError::VerifierFailed
                | SubmitError::Storage(_))
        )
    });
    if bad {
        GossipVerdict::Reject
    } else if unchecked {
        GossipVerdict::Ignore
    } else {
        GossipVerdict::Accept
    }
}

/// Takes the next lot of gossip to admit: up to
/// [`GOSSIP_ADMIT_MESSAGES_MAX`] messages and about
/// [`GOSSIP_ADMIT_TXS_MAX`] transactions, round robin over relays. Messages
/// from a penalised relay are dropped unchecked; malformed ones (not a
/// transaction list, or more than [`GOSSIP_TXS_MAX`]) are rejected and
/// their relay penalised. Returns the decoded messages, each with its relay.
pub(super) fn take_gossip_lot(
    queue: &mut FairInbound<GossipItem>,
    penalties: &mut GossipPenalties,
    now: Instant,
    mut verdict: impl FnMut(GossipId, GossipVerdict, &'static str),
) -> Vec<(ValidatorIndex, GossipId, Vec<Transaction>)> {
    let mut lot = Vec::new();
    let mut txs = 0;
    while lot.len() < GOSSIP_ADMIT_MESSAGES_MAX && txs < GOSSIP_ADMIT_TXS_MAX {
        let Some((from, item)) = queue.pop() else {
            break;
        };
        if penalties.is_penalised(from, now) {
            verdict(item.id, GossipVerdict::Ignore, "gossip_relay_penalised");
            continue;
        }
        match decode_gossip(&item.bytes) {
            Ok(decoded) => {
                txs += decoded.len();
                lot.push((from, item.id, decoded));
            }
            Err(e) => {
                debug!(from = from.0, "malformed transaction gossip: {e}");
                warn!(
                    relay = from.0,
                    "malformed transaction gossip: its gossip is dropped for {:?}", GOSSIP_PENALTY
                );
                penalties.penalise(from, now);
                verdict(item.id, GossipVerdict::Reject, "malformed_gossip");
            }
        }
    }
    lot
}

/// Decodes one gossip message: a list of at most [`GOSSIP_TXS_MAX`]
/// transactions in at most [`GOSSIP_BYTES_MAX`] bytes.
pub(super) fn decode_gossip(bytes: &[u8]) -> Result<Vec<Transaction>, String> {
    let txs: Vec<Transaction> =
        codec::decode(bytes, GOSSIP_BYTES_MAX as u64).map_err(|e| e.to_string())?;
    if txs.len() > GOSSIP_TXS_MAX {
        return Err(format!(
            "{} transactions, at most {GOSSIP_TXS_MAX} per gossip message",
            txs.len()
        ));
    }
    Ok(txs)
}

/// Admits a lot of gossip in one mempool submission (one signature batch),
/// then reports a verdict per message: forwarded only if every transaction
/// was well-formed and correctly signed. A relay whose message carried a
/// bad one is penalised.
pub(super) async fn admit_gossip(
    shared: &Shared,
    lot: Vec<(ValidatorIndex, GossipId, Vec<Transaction>)>,
    penalties: &mut GossipPenalties,
) {
    let lens: Vec<usize> = lot.iter().map(|(_, _, txs)| txs.len()).collect();
    let mut relays = Vec::with_capacity(lot.len());
    let mut all = Vec::new();
    for (from, id, txs) in lot {
        relays.push((from, id));
        all.extend(txs);
    }
    let admission = if all.is_empty() {
        Default::default()
    } else {
        shared.mempool.submit(all).await
    };
    for v in admission.verdicts.iter().filter_map(|v| v.as_ref().err()) {
        shared.metrics.reject_tx(v.code());
    }
    let mut verdicts = admission.verdicts.into_iter();
    let now = Instant::now();
    for ((from, id), len) in relays.into_iter().zip(lens) {
        let mine: Vec<_> = verdicts.by_ref().take(len).collect();
        let verdict = if mine.len() == len {
            verdict_of(&mine)
        } else {
            GossipVerdict::Ignore
        };
        if verdict == GossipVerdict::Reject {
            warn!(
                relay = from.0,
                "transaction gossip with a bad signature: its gossip is dropped for {:?}",
                GOSSIP_PENALTY
            );
            shared.metrics.reject_message("gossip_bad_transaction");
            penalties.penalise(from, now);
        }
        shared.network.report_gossip(id, verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_inbound_serves_senders_in_turn_and_bounds_a_flooder() {
        let mut q = FairInbound::new(QueueLimits::consensus(1 << 20));
        let (honest, flooder) = (ValidatorIndex(1), ValidatorIndex(3));
        for i in 0..(INBOUND_PER_PEER_MAX + 10) as u32 {
            let pushed = q.push(flooder, i.to_le_bytes().to_vec());
            assert_eq!(pushed.is_ok(), (i as usize) < INBOUND_PER_PEER_MAX);
        }
        let last = (INBOUND_PER_PEER_MAX as u32 - 1).to_le_bytes().to_vec();
        assert_eq!(q.push(flooder, last).unwrap_err().0, "inbound_duplicate");
        q.push(honest, b"a".to_vec()).unwrap();
        q.push(honest, b"b".to_vec()).unwrap();
        assert_eq!(
            q.push(honest, b"b".to_vec()).unwrap_err().0,
            "inbound_duplicate"
        );
        // Round robin: the honest sender is not stuck behind the flood.
        let order: Vec<ValidatorIndex> = (0..4).map(|_| q.pop().unwrap().0).collect();
        assert_eq!(order, vec![honest, flooder, honest, flooder]);
        assert_eq!(q.pop().unwrap().0, flooder);
    }

    #[test]
    fn a_sender_of_16_mib_messages_holds_at_most_32_mib() {
        const MIB16: usize = 16 << 20;
        let mut q = FairInbound::new(QueueLimits::consensus(MIB16));
        let (honest, flooder) = (ValidatorIndex(1), ValidatorIndex(3));
        // Distinct maximal messages (the last byte differs): 1,024 of them
        // would be 16 GiB under a count bound alone.
        let mut dropped = 0;
        for i in 0..8u8 {
            let mut m = vec![0u8; MIB16];
            m[MIB16 - 1] = i;
            match q.push(flooder, m) {
                Ok(()) => {}
                Err((reason, _)) => {
                    assert_eq!(reason, "inbound_bytes_full");
                    dropped += 1;
                }
            }
        }
        assert_eq!(dropped, 6, "two maximal messages fit, six are dropped");
        assert_eq!(q.bytes_from(flooder), 2 * MIB16);
        // Another sender's maximal message still gets in.
        q.push(honest, vec![1u8; MIB16]).unwrap();
        assert_eq!(q.bytes(), 3 * MIB16);
        // Served, the flooder's share is free again.
        assert_eq!(q.pop().unwrap().0, honest);
        assert_eq!(q.pop().unwrap().0, flooder);
        assert_eq!(q.bytes(), MIB16);
        q.push(flooder, vec![2u8; MIB16]).unwrap();
    }
}
