//! `request-spam`: catch-up and NEW-VIEW requests as fast as its timers
//! allow.
//!
//! From its first active retransmit tick it runs its own timer
//! ([`crate::Timer::Traitor`]) at a quarter of the retransmit period, and on
//! each firing sends every peer [`REQUEST_SPAM_PER_TICK`] catch-up requests
//! — each for a full range of old blocks, walking the whole committed
//! chain so the answers come from cold storage — and as many NEW-VIEW
//! requests for the current view (answered with the whole NEW-VIEW by a
//! replica that entered it with one). A replica that serves every request
//! on its consensus loop, without a per-peer limit, spends its time
//! reading and sending blocks nobody needs.

use super::Traitor;
use crate::replica::Output;
use crate::{
    CatchUpRequest, Message, NewViewRequest, SeqNum, Timer, ValidatorIndex, CATCH_UP_BLOCKS_MAX,
};

/// Catch-up requests and NEW-VIEW requests, each, to every peer per firing
/// of its timer.
pub const REQUEST_SPAM_PER_TICK: u64 = 8;
/// The timer runs at `retransmit_ms / SPAM_TICKS_PER_RETRANSMIT`.
pub const SPAM_TICKS_PER_RETRANSMIT: u64 = 4;

impl Traitor {
    /// Starts the fast timer once the traitor is active.
    pub(super) fn request_spam_arm(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if !self.spam_armed {
            self.spam_armed = true;
            out.push(self.spam_timer(now_ms));
        }
    }

    /// The fast timer fired: a volley to every peer, and the next firing.
    pub(super) fn on_spam_timer(&mut self, now_ms: u64, active: bool) -> Vec<crate::Output> {
        if !active {
            self.spam_armed = false;
            return Vec::new();
        }
        let mut out = Vec::new();
        let committed = self.replica.committed().0;
        let view = self.replica.view();
        let peers: Vec<ValidatorIndex> = self.others().collect();
        for _ in 0..REQUEST_SPAM_PER_TICK {
            let request = (committed > 0).then(|| {
                let ranges = committed.div_ceil(CATCH_UP_BLOCKS_MAX as u64);
                let from = 1 + (self.counter % ranges) * CATCH_UP_BLOCKS_MAX as u64;
                self.counter += 1;
                Message::CatchUpRequest(self.sign(CatchUpRequest {
                    from: SeqNum(from),
                    to: SeqNum(committed.max(from)),
                }))
            });
            let new_view = Message::NewViewRequest(self.sign(NewViewRequest { view }));
            for &to in &peers {
                if let Some(r) = &request {
                    out.push(Output::Send {
                        to,
                        message: r.clone(),
                    });
                }
                out.push(Output::Send {
                    to,
                    message: new_view.clone(),
                });
            }
        }
        out.push(self.spam_timer(now_ms));
        out
    }

    fn spam_timer(&self, now_ms: u64) -> Output {
        let period = (self.replica.cfg.retransmit_ms / SPAM_TICKS_PER_RETRANSMIT).max(1);
        Output::SetTimer {
            timer: Timer::Traitor,
            at_ms: now_ms + period,
        }
    }
}
