//! `newview-bomb`: NEW-VIEWs the traitor has no right to send.
//!
//! Every retransmit tick it sends [`BOMBS_PER_TICK`] NEW-VIEWs to everyone,
//! for views from the current one to [`BOMB_VIEWS_AHEAD`] ahead of which it
//! is *not* the primary, in turn. Each carries one valid pre-prepare — the
//! latest one its replica accepted, signed by a real primary — repeated
//! until the message is [`super::ENVELOPE_BYTES`] short of the size limit:
//! ~116,000 signatures at 16 MiB, every one of which verifies. A verifier
//! that checks signatures before asking "is the sender the primary of that
//! view?" spends seconds on each.

use super::Traitor;
use crate::replica::Output;
use crate::{Message, NewView, PrePrepare, View};
use phalanx_crypto::{codec, Signed};

/// NEW-VIEWs sent to every peer per retransmit tick.
pub const BOMBS_PER_TICK: usize = 2;
/// Bombs target views `current ..= current + BOMB_VIEWS_AHEAD`.
pub const BOMB_VIEWS_AHEAD: u64 = 8;

impl Traitor {
    pub(super) fn newview_bomb_tick(&mut self, out: &mut Vec<Output>) {
        let filler = self.bomb_filler();
        let unit = codec::encoded_len(&filler).max(1);
        let count = self
            .limits
            .message_bytes_max
            .saturating_sub(super::ENVELOPE_BYTES)
            / unit;
        for _ in 0..BOMBS_PER_TICK {
            let Some(view) = self.next_bomb_view() else {
                return;
            };
            let bomb = NewView {
                view,
                view_changes: Vec::new(),
                pre_prepares: vec![filler.clone(); count as usize],
            };
            out.push(Output::Broadcast(Message::NewView(self.sign(bomb))));
        }
    }

    /// The next view, in turn, that the traitor is not the primary of.
    fn next_bomb_view(&mut self) -> Option<View> {
        let base = self.replica.view().0;
        let me = self.replica.id();
        for _ in 0..=BOMB_VIEWS_AHEAD {
            let view = View(base + self.counter % (BOMB_VIEWS_AHEAD + 1));
            self.counter += 1;
            if self.replica.cfg.validators.primary(view) != me {
                return Some(view);
            }
        }
        None
    }

    /// The latest pre-prepare its replica accepted (signed by that view's
    /// primary), or, before there is one, its own for the next height.
    fn bomb_filler(&self) -> Signed<PrePrepare> {
        self.replica
            .log
            .values()
            .rev()
            .find_map(|slot| slot.pre_prepare.as_ref().map(|(pp, _)| pp.clone()))
            .unwrap_or_else(|| {
                self.sign(PrePrepare {
                    view: self.replica.view(),
                    seq: self.replica.committed().next(),
                    digest: crate::Batch::null().digest(),
                })
            })
    }
}
