//! Catch-up (state transfer, §5.3 in spirit): a replica that is behind —
//! after a restart, a partition, or lost messages — fetches committed
//! batches with their commit certificates from peers, and delivers only
//! those whose certificate it verified (in [`crate::verify_message`]), in
//! order.

use crate::replica::Event;
use crate::{
    CatchUpRequest, CommittedBatch, Message, Rejected, Replica, SeqNum, ValidatorIndex,
    CATCH_UP_BLOCKS_MAX,
};
use phalanx_crypto::Signed;

impl Replica {
    /// Aims catch-up at `target` and asks a peer now if not asked recently.
    pub(crate) fn start_catch_up(&mut self, target: SeqNum) {
        if target <= self.committed {
            return;
        }
        if self.catch_up_target.is_none_or(|t| t < target) {
            self.catch_up_target = Some(target);
            self.catch_up_asked_ms = None;
        }
        self.request_catch_up();
    }

    /// Asks the next peer in turn for the blocks after our committed height.
    pub(crate) fn request_catch_up(&mut self) {
        let Some(target) = self.catch_up_target else {
            return;
        };
        if target <= self.committed {
            self.catch_up_target = None;
            return;
        }
        let now = self.now_ms;
        if self
            .catch_up_asked_ms
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.retransmit_ms)
        {
            return;
        }
        self.catch_up_asked_ms = Some(now);
        let n = self.cfg.validators.len() as u16;
        if n < 2 {
            return;
        }
        self.catch_up_peer = (self.catch_up_peer + 1) % n;
        if self.catch_up_peer == self.me.0 {
            self.catch_up_peer = (self.catch_up_peer + 1) % n;
        }
        let from = self.committed.next();
        let to = SeqNum(target.0.min(self.committed.0 + CATCH_UP_BLOCKS_MAX as u64));
        let request = self.sign(CatchUpRequest { from, to });
        self.emit(Event::CatchingUp { from, to });
        self.send(
            ValidatorIndex(self.catch_up_peer),
            Message::CatchUpRequest(request),
        );
    }

    /// A peer wants blocks: the driver serves them from storage.
    pub(crate) fn on_catch_up_request(
        &mut self,
        from: ValidatorIndex,
        r: Signed<CatchUpRequest>,
    ) -> Result<(), Rejected> {
        let CatchUpRequest { from: first, to } = r.payload;
        if first.0 == 0 || to < first {
            return Err(Rejected::BadCatchUp {
                reason: format!("empty range {first}..={to}"),
            });
        }
        if first > self.committed {
            return Ok(());
        }
        let last = SeqNum(
            to.0.min(self.committed.0)
                .min(first.0 + CATCH_UP_BLOCKS_MAX as u64 - 1),
        );
        self.out.push(crate::Output::ServeCatchUp {
            to: from,
            from: first,
            to_seq: last,
        });
        Ok(())
    }

    /// Verified committed batches from a peer: deliver those next in line.
    pub(crate) fn on_catch_up_response(
        &mut self,
        _from: ValidatorIndex,
        blocks: Vec<CommittedBatch>,
    ) -> Result<(), Rejected> {
        let horizon = self.committed.0 + 4 * self.cfg.window;
        for b in blocks {
            let seq = b.certificate.seq;
            if seq <= self.committed || seq.0 > horizon {
                continue;
            }
            self.highest_seen = self.highest_seen.max(seq);
            self.catch_up_buffer.entry(seq).or_insert(b);
        }
        let before = self.committed;
        self.deliver_ready();
        if self.committed > before {
            // More may be missing: ask again at once.
            self.catch_up_asked_ms = None;
            if self.catch_up_target.is_some_and(|t| t > self.committed) {
                self.request_catch_up();
            }
        }
        Ok(())
    }

    /// On each retransmit tick: are we behind what peers vote on?
    pub(crate) fn check_behind(&mut self) {
        let stalled = self.now_ms.saturating_sub(self.last_delivery_ms) >= self.cfg.retransmit_ms;
        let next_ready = self
            .log
            .get(&self.committed.next())
            .is_some_and(|s| s.prepared);
        if self.highest_seen > self.committed && stalled && !next_ready {
            let target = self.highest_seen;
            self.start_catch_up(target);
        } else {
            self.request_catch_up();
        }
    }
}
