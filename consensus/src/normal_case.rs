//! The normal case (§4.2): pre-prepare, prepare, commit, and in-order
//! delivery of committed batches. The primary pipelines up to
//! `pipeline_max` sequence numbers inside the watermark window.

use crate::replica::Output;
use crate::replica::{Mode, Phase, Slot};
use crate::{
    Batch, Commit, CommittedBatch, Message, PrePrepare, Prepare, PreparedProof, Rejected, Replica,
    SeqNum, ValidatorIndex, View, WalEntry,
};
use phalanx_crypto::{Digest, Signed};

/// Batches in flight beyond which a primary holds a partial batch back for
/// a commit (see [`Replica::maybe_propose_now`]). Measured at 1,000 tx/s on
/// 4 validators sharing 2 cores: proposing every partial batch as soon as
/// the pipeline had room made ~57 blocks/s of ~17 transfers, and per-block
/// costs saturated the machine.
pub const PARTIAL_IN_FLIGHT_MAX: u64 = 2;

impl Replica {
    /// Checks that a normal-case message is for our view and window.
    fn check_view_and_window(
        &mut self,
        from: ValidatorIndex,
        view: View,
        seq: SeqNum,
    ) -> Result<(), Rejected> {
        if view > self.view || (view == self.view && self.mode != Mode::Normal) {
            self.note_peer_view(from, view);
            // Others work in a view we have not entered: what they commit
            // we can fetch meanwhile.
            self.note_peer_height(from, seq);
            return Err(Rejected::FutureView {
                view,
                current: self.view,
            });
        }
        if view < self.view {
            // Others are still working in an older view (we left it alone,
            // or were cut off): what they commit we can fetch.
            self.note_peer_height(from, seq);
            return Err(Rejected::StaleView {
                view,
                current: self.view,
            });
        }
        if !self.in_window(seq) {
            self.note_peer_height(from, seq);
            return Err(Rejected::OutsideWindow {
                seq,
                low: self.low(),
                high: self.high(),
            });
        }
        Ok(())
    }

    fn slot(&mut self, seq: SeqNum) -> &mut Slot {
        let now = self.now_ms;
        self.log.entry(seq).or_insert_with(|| Slot {
            since_ms: now,
            ..Slot::default()
        })
    }

    /// §4.2: a backup accepts a pre-prepare if it is from the primary of
    /// our view, inside the window, and the first for its (view, seq).
    /// `tx_hashes` are the batch's, computed when the message was verified.
    pub(crate) fn on_pre_prepare(
        &mut self,
        from: ValidatorIndex,
        pp: Signed<PrePrepare>,
        batch: Batch,
        tx_hashes: Vec<Digest>,
    ) -> Result<(), Rejected> {
        assert_eq!(tx_hashes.len(), batch.txs.len(), "verified with its hashes");
        let PrePrepare { view, seq, digest } = pp.payload.clone();
        let signer = self.index_of(&pp.signer).ok_or(Rejected::UnknownSigner {
            what: "pre-prepare",
        })?;
        if signer != self.cfg.validators.primary(view) {
            return Err(Rejected::NotPrimary { from: signer, view });
        }
        self.note_vote(
            signer,
            view,
            seq,
            Phase::PrePrepare,
            digest,
            Message::PrePrepare {
                pre_prepare: pp.clone(),
                batch: Batch::null(),
            },
        );
        self.check_view_and_window(from, view, seq)?;
        // Over our limits, a batch could make our VIEW-CHANGE, which must
        // carry it once prepared, too large to send (Config::validate).
        let bytes: u64 = batch.txs.iter().map(crate::tx_len).sum();
        if batch.txs.len() > self.cfg.batch_txs_max || bytes > self.cfg.batch_bytes_max {
            return Err(Rejected::BatchTooLarge {
                txs: batch.txs.len(),
                max: self.cfg.batch_txs_max,
            });
        }
        if let Some(existing) = self.log.get(&seq).and_then(|s| s.digest()) {
            if existing == digest {
                // A retransmission: the primary may have missed our prepare.
                if let Some(p) = self.log[&seq].prepares.get(&self.me).cloned() {
                    self.send(from, Message::Prepare(p));
                }
                return Ok(());
            }
            return Err(Rejected::ConflictingPrePrepare { view, seq });
        }
        if signer == self.me {
            return Ok(()); // our own, echoed back by a traitor
        }
        if self.is_full(&batch) {
            // Saturated: how long transactions waited says nothing about
            // the primary's speed. Start measuring afresh, or a primary
            // that has just cleared a backlog (the last of it waited
            // seconds) is suspected of slowness as soon as its batches
            // stop being full.
            self.last_full_batch_ms = Some(self.now_ms);
            self.propose_delay_ewma_ms = 0;
            self.propose_delay_samples = 0;
        } else {
            self.record_propose_delay(&tx_hashes);
        }
        self.accept_pre_prepare(pp, batch, tx_hashes);
        Ok(())
    }

    /// Stores an accepted pre-prepare, records it durably and, as a backup,
    /// sends our PREPARE. `tx_hashes` are the batch's transactions' hashes.
    pub(crate) fn accept_pre_prepare(
        &mut self,
        pp: Signed<PrePrepare>,
        batch: Batch,
        tx_hashes: Vec<Digest>,
    ) {
        let PrePrepare { view, seq, digest } = pp.payload.clone();
        debug_assert_eq!(view, self.view);
        debug_assert_eq!(tx_hashes.len(), batch.txs.len());
        self.add_in_flight(&tx_hashes);
        self.out.push(Output::Persist(WalEntry::Accepted {
            pre_prepare: pp.clone(),
            batch: batch.clone(),
        }));
        let slot = self.slot(seq);
        slot.pre_prepare = Some((pp, batch));
        slot.tx_hashes = tx_hashes;
        if !self.is_primary() {
            let prepare = Prepare { view, seq, digest };
            if let Some(signed) = self.sign_vote(Phase::Prepare, view, seq, digest, prepare) {
                let me = self.me;
                self.slot(seq).prepares.insert(me, signed.clone());
                self.broadcast(Message::Prepare(signed));
            }
        }
        self.arm_progress_timer();
        self.check_prepared(seq);
    }

    pub(crate) fn on_prepare(
        &mut self,
        from: ValidatorIndex,
        p: Signed<Prepare>,
    ) -> Result<(), Rejected> {
        let Prepare { view, seq, digest } = p.payload.clone();
        let signer = self
            .index_of(&p.signer)
            .ok_or(Rejected::UnknownSigner { what: "prepare" })?;
        self.note_vote(
            signer,
            view,
            seq,
            Phase::Prepare,
            digest,
            Message::Prepare(p.clone()),
        );
        self.check_view_and_window(from, view, seq)?;
        if signer == self.cfg.validators.primary(view) {
            return Err(Rejected::Malformed {
                reason: "the primary does not send prepares".into(),
            });
        }
        self.note_peer_height(signer, seq);
        let slot = self.slot(seq);
        if slot.prepares.contains_key(&signer) {
            return Ok(());
        }
        slot.prepares.insert(signer, p);
        self.check_prepared(seq);
        Ok(())
    }

    pub(crate) fn on_commit(
        &mut self,
        from: ValidatorIndex,
        c: Signed<Commit>,
    ) -> Result<(), Rejected> {
        let Commit { view, seq, digest } = c.payload.clone();
        let signer = self
            .index_of(&c.signer)
            .ok_or(Rejected::UnknownSigner { what: "commit" })?;
        self.note_vote(
            signer,
            view,
            seq,
            Phase::Commit,
            digest,
            Message::Commit(c.clone()),
        );
        if seq <= self.committed && view <= self.view {
            return Ok(()); // already delivered; a late or repeated vote
        }
        self.check_view_and_window(from, view, seq)?;
        self.note_peer_height(signer, seq);
        let slot = self.slot(seq);
        if slot.commits.contains_key(&signer) {
            return Ok(());
        }
        slot.commits.insert(signer, c);
        self.check_committed(seq);
        Ok(())
    }

    /// §4.2 prepared(m, v, n, i): the pre-prepare plus `quorum - 1`
    /// matching prepares from backups. Then we send COMMIT.
    fn check_prepared(&mut self, seq: SeqNum) {
        let quorum = self.cfg.quorum();
        let view = self.view;
        let Some(slot) = self.log.get(&seq) else {
            return;
        };
        if slot.prepared {
            return;
        }
        let Some((pp, batch)) = slot.pre_prepare.clone() else {
            return;
        };
        let digest = pp.payload.digest;
        let prepares: Vec<Signed<Prepare>> = slot
            .prepares
            .values()
            .filter(|p| p.payload.digest == digest)
            .cloned()
            .collect();
        if prepares.len() + 1 < quorum {
            return;
        }
        let proof = PreparedProof {
            pre_prepare: pp,
            batch,
            prepares,
        };
        self.slot(seq).prepared = true;
        self.out
            .push(Output::Persist(WalEntry::Prepared(proof.clone())));
        self.keep_prepared(proof);
        let commit = Commit { view, seq, digest };
        if let Some(signed) = self.sign_vote(Phase::Commit, view, seq, digest, commit) {
            let me = self.me;
            self.slot(seq).commits.insert(me, signed.clone());
            self.broadcast(Message::Commit(signed));
        }
        self.check_committed(seq);
    }

    /// §4.2 committed-local(m, v, n, i): prepared plus `quorum` matching
    /// commits. Delivery then happens in seq order.
    fn check_committed(&mut self, seq: SeqNum) {
        let quorum = self.cfg.quorum();
        let Some(slot) = self.log.get(&seq) else {
            return;
        };
        if slot.committed || !slot.prepared {
            return;
        }
        let Some(digest) = slot.digest() else { return };
        let votes = slot
            .commits
            .values()
            .filter(|c| c.payload.digest == digest)
            .count();
        if votes < quorum {
            return;
        }
        self.slot(seq).committed = true;
        self.deliver_ready();
    }

    /// Hands out every committed batch that is next in order.
    pub(crate) fn deliver_ready(&mut self) {
        loop {
            let next = self.committed.next();
            if let Some(b) = self.catch_up_buffer.remove(&next) {
                let tx_hashes = b.batch.tx_hashes();
                self.deliver(b, tx_hashes);
                continue;
            }
            let ready = self
                .log
                .get(&next)
                .is_some_and(|s| s.committed && s.pre_prepare.is_some());
            if !ready {
                break;
            }
            let cert = self
                .certificate_for(next)
                .expect("committed slot has a pre-prepare");
            let slot = self.log.get_mut(&next).expect("checked");
            let batch = slot.pre_prepare.as_ref().expect("checked").1.clone();
            // Delivered once: the hashes are not needed after this.
            let tx_hashes = std::mem::take(&mut slot.tx_hashes);
            self.deliver(
                CommittedBatch {
                    batch,
                    certificate: cert,
                },
                tx_hashes,
            );
        }
    }

    /// Emits one Commit output and forgets the batch's transactions, whose
    /// hashes are `tx_hashes`.
    pub(crate) fn deliver(&mut self, b: CommittedBatch, tx_hashes: Vec<Digest>) {
        let seq = b.certificate.seq;
        assert_eq!(seq, self.committed.next(), "blocks are delivered in order");
        assert_eq!(
            tx_hashes.len(),
            b.batch.txs.len(),
            "one hash per transaction"
        );
        for hash in tx_hashes {
            self.remove_committed(&hash);
            if self.recent_committed_set.insert(hash) {
                self.recent_committed.push_back(hash);
            }
        }
        while self.recent_committed.len() > self.cfg.pending_txs_max {
            if let Some(old) = self.recent_committed.pop_front() {
                self.recent_committed_set.remove(&old);
            }
        }
        debug_assert_eq!(self.pending.len(), self.pending_set.len());
        self.committed = seq;
        self.highest_seen = self.highest_seen.max(seq);
        self.last_delivery_ms = self.now_ms;
        if b.certificate.view == self.view {
            self.failed_views = 0;
        }
        self.out.push(Output::Commit(b));
        self.reset_progress_timer();
    }

    /// Cuts and proposes batches while we are primary and have room.
    pub(crate) fn maybe_propose(&mut self) {
        self.maybe_propose_now(false);
    }

    /// A full batch goes at once while the pipeline has room. A partial
    /// one waits `batch_delay_ms` from its oldest transaction's arrival
    /// (`deadline_passed`: the batch timer fired) and, while
    /// [`PARTIAL_IN_FLIGHT_MAX`] batches are already in flight, for one of
    /// them to commit — so under load batches grow instead of multiplying
    /// (each costs every replica two rounds of signed votes) — but never
    /// longer than [`Replica::hold_limit_ms`], well inside the time after
    /// which backups suspect a primary of leaving requests out.
    pub(crate) fn maybe_propose_now(&mut self, deadline_passed: bool) {
        if !self.is_primary() || self.mode != Mode::Normal {
            return;
        }
        let mut deadline_passed = deadline_passed;
        loop {
            let in_flight_seqs = self.next_seq.0.saturating_sub(self.committed.0 + 1);
            if self.next_seq > self.high() || in_flight_seqs >= self.cfg.pipeline_max {
                return;
            }
            let (count, full) = self.unproposed_cut();
            let Some(oldest_ms) = self.oldest_unproposed_ms().filter(|_| count > 0) else {
                return;
            };
            if !full {
                let held = in_flight_seqs >= PARTIAL_IN_FLIGHT_MAX;
                let cut_at = if held {
                    oldest_ms + self.hold_limit_ms()
                } else if deadline_passed {
                    self.now_ms
                } else {
                    oldest_ms + self.cfg.batch_delay_ms
                };
                if cut_at > self.now_ms {
                    if self
                        .batch_deadline
                        .is_none_or(|at| at > cut_at || at <= self.now_ms)
                    {
                        self.batch_deadline = Some(cut_at);
                        self.set_timer(crate::Timer::Batch, cut_at);
                    }
                    return;
                }
            }
            self.batch_deadline = None;
            deadline_passed = false;
            let (txs, tx_hashes) = self.unproposed_take(count);
            let batch = Batch {
                txs,
                timestamp_ms: self.now_ms,
            };
            self.propose(batch, tx_hashes);
        }
    }

    /// How long a primary with [`PARTIAL_IN_FLIGHT_MAX`] batches in flight
    /// may hold a partial batch back: a quarter of the propose timeout.
    pub(crate) fn hold_limit_ms(&self) -> u64 {
        (self.cfg.propose_timeout_ms / 4).max(self.cfg.batch_delay_ms)
    }

    /// When the oldest transaction not yet proposed arrived.
    fn oldest_unproposed_ms(&self) -> Option<u64> {
        let number = self.unproposed.first()?;
        self.pending_set
            .get(&self.pending[number].0)
            .map(|arrival| arrival.at_ms)
    }

    /// How many of the pending transactions not yet proposed (oldest first)
    /// the next batch takes, and whether that makes it full (by count or
    /// bytes). Nothing is copied: this runs after every input.
    fn unproposed_cut(&self) -> (usize, bool) {
        let mut count = 0;
        let mut bytes = 0u64;
        for number in &self.unproposed {
            let (_, tx) = &self.pending[number];
            let len = crate::tx_len(tx);
            if bytes + len > self.cfg.batch_bytes_max {
                return (count, true);
            }
            bytes += len;
            count += 1;
            if count >= self.cfg.batch_txs_max {
                return (count, true);
            }
        }
        (count, false)
    }

    /// The first `count` pending transactions not yet proposed and their
    /// hashes, each sender's in nonce order (see [`in_nonce_order`]).
    fn unproposed_take(&self, count: usize) -> (Vec<crate::Transaction>, Vec<Digest>) {
        let taken: Vec<(&crate::Transaction, Digest)> = self
            .unproposed
            .iter()
            .take(count)
            .map(|number| {
                let (hash, tx) = &self.pending[number];
                debug_assert!(!self.in_flight.contains(hash));
                (tx, *hash)
            })
            .collect();
        in_nonce_order(taken)
            .into_iter()
            .map(|(tx, hash)| (tx.clone(), hash))
            .unzip()
    }

    /// §4.2: the primary assigns the next seq to `batch`, whose
    /// transactions' hashes are `tx_hashes`.
    pub(crate) fn propose(&mut self, batch: Batch, tx_hashes: Vec<Digest>) {
        let (view, seq) = (self.view, self.next_seq);
        let digest = batch.digest_of_hashes(&tx_hashes);
        let payload = PrePrepare { view, seq, digest };
        let Some(pp) = self.sign_vote(Phase::PrePrepare, view, seq, digest, payload) else {
            return;
        };
        self.next_seq = seq.next();
        self.broadcast(Message::PrePrepare {
            pre_prepare: pp.clone(),
            batch: batch.clone(),
        });
        self.accept_pre_prepare(pp, batch, tx_hashes);
    }

    /// Aardvark-style check on the primary: how long transactions we knew
    /// waited before it proposed them (`tx_hashes`, a batch's).
    fn record_propose_delay(&mut self, tx_hashes: &[Digest]) {
        let start = self.view_entered_ms;
        let delay = tx_hashes
            .iter()
            .filter_map(|hash| self.pending_set.get(hash))
            .map(|arrived| self.now_ms.saturating_sub(arrived.at_ms.max(start)))
            .max();
        if let Some(d) = delay {
            self.propose_delay_ewma_ms = (3 * self.propose_delay_ewma_ms + d) / 4;
            self.propose_delay_samples = self.propose_delay_samples.saturating_add(1);
        }
    }

    /// Whether `batch` is full: as many transactions as a primary may cut,
    /// or no room for another by bytes. An honest primary proposes full
    /// batches only when transactions queue faster than it commits them.
    fn is_full(&self, batch: &Batch) -> bool {
        let bytes: u64 = batch.txs.iter().map(crate::tx_len).sum();
        batch.txs.len() >= self.cfg.batch_txs_max
            || bytes + crate::TX_BYTES_MAX > self.cfg.batch_bytes_max
    }

    /// Why the primary of our view looks faulty, if it does: it has room to
    /// propose but leaves a known transaction out longer than the propose
    /// timeout (censorship, silence), or proposes too slowly (transactions
    /// wait on average more than half of it from our seeing them to its
    /// pre-prepare: a slow primary).
    ///
    /// Only saturation excuses it: a primary that sent a full batch within
    /// the propose timeout, or has a full pipeline. Transactions then wait
    /// behind full batches however honest it is, and replacing it would
    /// only stop the chain for a view change (measured: at 8,000 tx/s
    /// offered, 9 view changes in 10 s and the chain stalled). Session 5
    /// excused batches half full as well, since under load an honest
    /// primary's batches grow toward full without reaching it; but a slow
    /// primary's own delays make its held batches half full, and excused
    /// for that it stayed in office with every transaction waiting ~1.1 s
    /// (`bench --rate 2000 --traitor 0=slow-primary`, 1 run in 8), and a
    /// censor proposing half-full batches was never caught while load
    /// lasted. With admission keeping the pools of primary and backups
    /// equal, honest primaries at 4,000–16,000 tx/s offered are not
    /// suspected without it.
    pub(crate) fn primary_overdue(&self) -> Option<&'static str> {
        if self.is_primary() || self.mode != Mode::Normal {
            return None;
        }
        let limit = self.cfg.propose_timeout_ms;
        let recent = |at: Option<u64>| at.is_some_and(|at| self.now_ms.saturating_sub(at) <= limit);
        if recent(self.last_full_batch_ms) {
            return None;
        }
        let uncommitted = self.log.range(self.committed.next()..).count() as u64;
        if uncommitted >= self.cfg.pipeline_max {
            return None;
        }
        let start = self.view_entered_ms;
        let oldest_unproposed = self
            .unproposed
            .first()
            .and_then(|number| self.pending_set.get(&self.pending[number].0))
            .map(|arrived| self.now_ms.saturating_sub(arrived.at_ms.max(start)));
        if oldest_unproposed.is_some_and(|age| age > limit) {
            return Some("requests not proposed in time");
        }
        if self.propose_delay_samples >= 4 && self.propose_delay_ewma_ms > limit / 2 {
            return Some("requests proposed too slowly");
        }
        None
    }

    /// Resends what others may have missed: our votes on slots waiting for
    /// longer than a retransmit period, and our last commit.
    pub(crate) fn retransmit_normal(&mut self) {
        let now = self.now_ms;
        let period = self.cfg.retransmit_ms;
        let me = self.me;
        let mut resend = Vec::new();
        for slot in self.log.range(self.committed.next()..).map(|(_, s)| s) {
            if now.saturating_sub(slot.since_ms) < period {
                continue;
            }
            if let Some((pp, batch)) = &slot.pre_prepare {
                if self.cfg.validators.primary(self.view) == me {
                    resend.push(Message::PrePrepare {
                        pre_prepare: pp.clone(),
                        batch: batch.clone(),
                    });
                }
            }
            if let Some(p) = slot.prepares.get(&me) {
                resend.push(Message::Prepare(p.clone()));
            }
            if let Some(c) = slot.commits.get(&me) {
                resend.push(Message::Commit(c.clone()));
            }
        }
        // Our last commit, for a while after it: lets a peer that missed the
        // tail of the log notice that it is behind.
        if now.saturating_sub(self.last_delivery_ms) < 8 * period {
            if let Some(c) = self
                .log
                .get(&self.committed)
                .and_then(|s| s.commits.get(&me))
            {
                resend.push(Message::Commit(c.clone()));
            }
        }
        for m in resend {
            self.broadcast(m);
        }
    }
}

/// Puts each sender's transactions in nonce order, in the places the
/// sender's transactions already hold (other senders' stay where they are).
/// Arrival order is not nonce order when a transfer that failed for its
/// nonce comes back for a retry after its successors arrived: proposed in
/// arrival order, the successors fail too, and a sender recovers one nonce
/// per block (measured after a censoring primary was replaced: 19,863
/// failed transfers against 5,055 executed).
pub(crate) fn in_nonce_order(
    batch: Vec<(&crate::Transaction, Digest)>,
) -> Vec<(&crate::Transaction, Digest)> {
    let mut places: std::collections::BTreeMap<&[u8; 32], Vec<usize>> = Default::default();
    for (i, (tx, _)) in batch.iter().enumerate() {
        places.entry(&tx.signer.0).or_default().push(i);
    }
    let mut order: Vec<usize> = (0..batch.len()).collect();
    for positions in places.values().filter(|p| p.len() > 1) {
        let mut by_nonce = positions.clone();
        by_nonce.sort_by_key(|&i| batch[i].0.payload.nonce);
        for (&place, from) in positions.iter().zip(by_nonce) {
            order[place] = from;
        }
    }
    order.into_iter().map(|i| batch[i]).collect()
}
