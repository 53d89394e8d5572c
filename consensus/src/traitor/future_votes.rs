//! `future-votes`: votes for sequence numbers far above the window, and
//! conflicting vote pairs by the hundred every retransmit tick.
//!
//! Every tick, to everyone:
//! - [`FAR_PAIRS_PER_TICK`] pairs of conflicting PREPAREs or COMMITs for
//!   sequence numbers far above the high watermark, each at a height never
//!   used before (a replica that records a vote before checking its window
//!   stores them all, and reports every pair as evidence);
//! - [`FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK`] conflicting pairs inside the
//!   window, walking every (view, seq, phase) of the current view and the
//!   next [`FUTURE_VOTES_VIEWS_AHEAD`] — thousands of distinct evidence keys
//!   within a few ticks;
//! - [`FAR_CHECKPOINTS_PER_TICK`] CHECKPOINTs at checkpoint heights a
//!   million blocks ahead and more (one unproven claim used to set the
//!   catch-up target for good).
//!
//! Digests are hashes of a counter: nothing is random, and the traitor
//! keeps nothing but the counter.

use super::Traitor;
use crate::replica::Output;
use crate::{Checkpoint, Commit, Message, Prepare, SeqNum, View};
use phalanx_crypto::Digest;

/// Conflicting pairs inside the window, per tick.
pub const FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK: u64 = 512;
/// Conflicting pairs far above the window, per tick.
pub const FAR_PAIRS_PER_TICK: u64 = 64;
/// Checkpoints far above the window, per tick.
pub const FAR_CHECKPOINTS_PER_TICK: u64 = 4;
/// In-window pairs walk views `current ..= current + this - 1`.
pub const FUTURE_VOTES_VIEWS_AHEAD: u64 = 64;
/// Far votes are at least this many blocks above the high watermark.
const FAR_BLOCKS: u64 = 1_000_000;

impl Traitor {
    pub(super) fn future_votes_tick(&mut self, out: &mut Vec<Output>) {
        let view = self.replica.view().0;
        let (low, high) = (self.replica.low().0, self.replica.high().0);
        let window = self.replica.cfg.window.max(1);
        let tick = self.counter;
        self.counter += 1;
        for j in 0..FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK {
            let i = tick * FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK + j;
            let seq = SeqNum(low + 1 + (i / 2) % window);
            let v = View(view + (i / (2 * window)) % FUTURE_VOTES_VIEWS_AHEAD);
            self.conflicting_pair(out, v, seq, i.is_multiple_of(2), i);
        }
        for j in 0..FAR_PAIRS_PER_TICK {
            let i = tick * FAR_PAIRS_PER_TICK + j;
            let seq = SeqNum(high + FAR_BLOCKS + i * window);
            self.conflicting_pair(out, View(view), seq, i.is_multiple_of(2), u64::MAX - i);
        }
        let interval = self.replica.cfg.checkpoint_interval.max(1);
        for j in 0..FAR_CHECKPOINTS_PER_TICK {
            let i = tick * FAR_CHECKPOINTS_PER_TICK + j;
            let seq = SeqNum((high + FAR_BLOCKS * (1 + i)) / interval * interval);
            let checkpoint = self.sign(Checkpoint {
                seq,
                block_hash: junk_digest(b"block", i),
                state_root: junk_digest(b"state", i),
            });
            out.push(Output::Broadcast(Message::Checkpoint(checkpoint)));
        }
    }

    /// Two votes for one (view, seq, phase) with different digests.
    fn conflicting_pair(
        &self,
        out: &mut Vec<Output>,
        view: View,
        seq: SeqNum,
        prepare: bool,
        i: u64,
    ) {
        for side in [b"left", b"rght"] {
            let digest = junk_digest(side, i);
            let message = if prepare {
                Message::Prepare(self.sign(Prepare { view, seq, digest }))
            } else {
                Message::Commit(self.sign(Commit { view, seq, digest }))
            };
            out.push(Output::Broadcast(message));
        }
    }
}

fn junk_digest(tag: &[u8], i: u64) -> Digest {
    Digest::sha256(&[tag, &i.to_le_bytes()].concat())
}
