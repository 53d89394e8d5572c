//! `padded-view-change`: VIEW-CHANGEs for each of the next
//! [`PADDED_VIEW_CHANGE_VIEWS_AHEAD`] views, every retransmit tick.
//!
//! Each carries the traitor's real stable checkpoint and the prepared
//! proofs its replica holds (so it is as valid as an honest one), and one
//! proof is padded with a prepare repeated — its own when it may send one
//! for that view (it is not that view's primary), otherwise another
//! validator's it received — up to `message_bytes_max /`
//! [`PADDED_SHARE`] per VIEW-CHANGE. A verifier that counts distinct
//! signers after checking every entry checks each copy; a replica that
//! keeps every sender's VIEW-CHANGE for every future view stores 64 of them
//! per tick.

use super::Traitor;
use crate::replica::Output;
use crate::{Message, Prepare, View, ViewChange};
use phalanx_crypto::codec;

/// How many views ahead it sends VIEW-CHANGEs for, every tick.
pub const PADDED_VIEW_CHANGE_VIEWS_AHEAD: u64 = 64;
/// Each VIEW-CHANGE is padded to `message_bytes_max / PADDED_SHARE`: the
/// 64 of one tick together are about four times the size limit (64 MiB a
/// tick to every peer at the node's 16 MiB), enough to cost a verifier
/// ~30 s of signature checks per tick while the traitor's own memory for
/// one tick stays a few limits.
pub const PADDED_SHARE: u64 = 16;
/// Room for the VIEW-CHANGE's envelope (message tag, outer signature).
const VIEW_CHANGE_ENVELOPE_BYTES: u64 = 256;

impl Traitor {
    pub(super) fn padded_view_change_tick(&mut self, out: &mut Vec<Output>) {
        let base = self.padded_view_change_base();
        let view = self.replica.view().0;
        for ahead in 1..=PADDED_VIEW_CHANGE_VIEWS_AHEAD {
            let vc = ViewChange {
                new_view: View(view + ahead),
                ..base.clone()
            };
            out.push(Output::Broadcast(Message::ViewChange(self.sign(vc))));
        }
    }

    /// The traitor's honest VIEW-CHANGE content, with one prepared proof
    /// padded. Without a prepared proof there is nothing to pad: the
    /// VIEW-CHANGEs then cost by their number alone.
    fn padded_view_change_base(&self) -> ViewChange {
        let mut vc = ViewChange {
            new_view: self.replica.view().next(),
            checkpoint: self.replica.stable.clone(),
            prepared: self.replica.prepared.values().cloned().collect(),
        };
        let budget = self.limits.message_bytes_max / PADDED_SHARE;
        let base_len = codec::encoded_len(&vc) + VIEW_CHANGE_ENVELOPE_BYTES;
        let me = self.replica.id();
        let validators = &self.replica.cfg.validators;
        let Some(proof) = vc.prepared.iter_mut().find(|p| !p.prepares.is_empty()) else {
            return vc;
        };
        let pp = &proof.pre_prepare.payload;
        let filler = if validators.primary(pp.view) == me {
            proof.prepares[0].clone()
        } else {
            self.sign(Prepare {
                view: pp.view,
                seq: pp.seq,
                digest: pp.digest,
            })
        };
        let unit = codec::encoded_len(&filler).max(1);
        let count = budget.saturating_sub(base_len) / unit;
        proof
            .prepares
            .extend(std::iter::repeat_n(filler, count as usize));
        vc
    }
}
