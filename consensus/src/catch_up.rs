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

/// How many ranges of [`CATCH_UP_BLOCKS_MAX`] blocks a replica that is
/// behind keeps asked for at once, never past the blocks it buffers
/// (`4 × window` past its committed height).
pub const CATCH_UP_RANGES_IN_FLIGHT: usize = 4;

/// Missing ranges are asked again after `retransmit_ms`, doubled after each
/// time nothing came, up to `retransmit_ms << CATCH_UP_BACKOFF_MAX`.
const CATCH_UP_BACKOFF_MAX: u32 = 3;

impl Replica {
    /// Aims catch-up at `target` and asks peers for what is not already
    /// asked for.
    pub(crate) fn start_catch_up(&mut self, target: SeqNum) {
        if target <= self.committed {
            return;
        }
        if self.catch_up_target.is_none_or(|t| t < target) {
            self.catch_up_target = Some(target);
        }
        self.request_catch_up();
    }

    /// Keeps up to [`CATCH_UP_RANGES_IN_FLIGHT`] ranges of blocks after our
    /// committed height asked for, each from the next peer in turn, so a
    /// replica far behind is not bound by one round trip per range. When
    /// nothing was delivered for a retransmit period (doubling while nothing
    /// comes), every range still missing is asked again, from other peers:
    /// a silent or lying peer only delays its ranges.
    pub(crate) fn request_catch_up(&mut self) {
        let Some(target) = self.catch_up_target else {
            return;
        };
        if target <= self.committed {
            self.catch_up_target = None;
            self.catch_up_requested = self.committed;
            return;
        }
        let n = self.cfg.validators.len() as u16;
        if n < 2 {
            return;
        }
        let now = self.now_ms;
        // Answers are heavy (up to 64 blocks, each verified): asking again
        // every retransmit period while they queue would only queue more.
        let wait = self.cfg.retransmit_ms << self.catch_up_backoff;
        let stalled = self
            .catch_up_asked_ms
            .is_none_or(|t| now.saturating_sub(t) >= wait);
        if stalled && self.catch_up_requested > self.committed {
            self.catch_up_backoff = (self.catch_up_backoff + 1).min(CATCH_UP_BACKOFF_MAX);
        }
        if stalled || self.catch_up_requested < self.committed {
            self.catch_up_requested = self.committed;
        }
        // Up to RANGES ranges of at most CATCH_UP_BLOCKS_MAX, within the horizon.
        let span = (self.catch_up_horizon().0 - self.committed.0)
            .min((CATCH_UP_RANGES_IN_FLIGHT * CATCH_UP_BLOCKS_MAX) as u64);
        let range = span.div_ceil(CATCH_UP_RANGES_IN_FLIGHT as u64).max(1);
        let ceiling = SeqNum(target.0.min(self.committed.0 + span));
        while self.catch_up_requested < ceiling {
            self.catch_up_peer = (self.catch_up_peer + 1) % n;
            if self.catch_up_peer == self.me.0 {
                self.catch_up_peer = (self.catch_up_peer + 1) % n;
            }
            let from = self.catch_up_requested.next();
            let to = SeqNum(ceiling.0.min(from.0 + range - 1));
            let request = self.sign(CatchUpRequest { from, to });
            self.emit(Event::CatchingUp { from, to });
            self.send(
                ValidatorIndex(self.catch_up_peer),
                Message::CatchUpRequest(request),
            );
            self.catch_up_requested = to;
            self.catch_up_asked_ms = Some(now);
        }
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
        // An honest replica keeps CATCH_UP_RANGES_IN_FLIGHT ranges asked
        // for at once, spread over its peers; more ranges than that from
        // one validator in one retransmit period is a flood, answered no
        // further this period.
        let now = self.now_ms;
        let period = self.cfg.retransmit_ms;
        let served = self.catch_up_served.entry(from).or_insert((now, 0));
        if now.saturating_sub(served.0) >= period {
            *served = (now, 0);
        }
        if served.1 >= CATCH_UP_RANGES_IN_FLIGHT as u64 {
            return Err(Rejected::RateLimited {
                what: "catch-up request",
            });
        }
        served.1 += 1;
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
        let horizon = self.catch_up_horizon();
        for b in blocks {
            let seq = b.certificate.seq;
            // Verified: its certificate proves the chain is this high.
            self.proven_height = self.proven_height.max(seq);
            if seq <= self.committed || seq > horizon {
                continue;
            }
            self.highest_seen = self.highest_seen.max(seq);
            self.catch_up_buffer.entry(seq).or_insert(b);
        }
        let before = self.committed;
        self.deliver_ready();
        if self.committed > before {
            // Progress: the ranges in flight are not stalled; top them up.
            self.catch_up_asked_ms = Some(self.now_ms);
            self.catch_up_backoff = 0;
            self.request_catch_up();
        }
        Ok(())
    }

    /// A validator voted on `seq`: it claims the chain reaches about there.
    pub(crate) fn note_peer_height(&mut self, from: ValidatorIndex, seq: SeqNum) {
        if from == self.me {
            return;
        }
        let h = self.peer_heights.entry(from).or_insert(seq);
        *h = (*h).max(seq);
    }

    /// The highest seq that f + 1 validators (so at least one honest one)
    /// have voted on: one traitor's vote for a height far ahead cannot make
    /// us chase it, or report ourselves as catching up to it.
    pub(crate) fn claimed_height(&self) -> SeqNum {
        let mut heights: Vec<SeqNum> = self.peer_heights.values().copied().collect();
        heights.sort_unstable_by(|a, b| b.cmp(a));
        heights
            .get(self.cfg.validators.weak_quorum() - 1)
            .copied()
            .unwrap_or(SeqNum(0))
    }

    /// The highest block a replica buffers ahead of its committed height.
    fn catch_up_horizon(&self) -> SeqNum {
        SeqNum(self.committed.0 + 4 * self.cfg.window)
    }

    /// On each retransmit tick: are we behind what peers vote on?
    pub(crate) fn check_behind(&mut self) {
        let stalled = self.now_ms.saturating_sub(self.last_delivery_ms) >= self.cfg.retransmit_ms;
        let next_ready = self
            .log
            .get(&self.committed.next())
            .is_some_and(|s| s.prepared);
        // A prepared next slot is about to commit — unless its commits
        // were lost (we were cut off while the others committed it): after
        // a few periods with no delivery, fetch it instead of waiting.
        let long_stalled =
            self.now_ms.saturating_sub(self.last_delivery_ms) >= 4 * self.cfg.retransmit_ms;
        let target = self.highest_seen.max(self.claimed_height());
        if target > self.committed && stalled && (!next_ready || long_stalled) {
            self.start_catch_up(target);
        } else {
            self.request_catch_up();
        }
    }
}
