//! `gossip-junk`: transaction gossip near the size limit, full of
//! well-formed transfers with wrong signatures.
//!
//! The traitor wrapper is pure consensus and sends no gossip itself: every
//! retransmit tick it queues [`JUNK_MESSAGES_PER_TICK`] gossip messages,
//! each a list of transfers encoding to [`super::ENVELOPE_BYTES`] short of
//! the size limit (~110,000 transfers at 16 MiB), and the driver publishes
//! them ([`super::Participant::take_gossip`]; `phalanx-node` calls it after
//! every step, the simulator too).
//!
//! Each transfer carries the right chain id, a valid sender key (one of
//! [`JUNK_SENDERS`]) and a signature that *is* a valid signature — of the
//! same sender's transfer with nonce 0 — so it decodes, passes every cheap
//! check, and fails only at the last step of ed25519 verification: full
//! price for the verifier. Nonces never repeat across messages (no cache
//! or duplicate check saves the verifier), and nothing is signed per
//! transfer, so the traitor spends almost nothing.

use super::Traitor;
use crate::{Transaction, Transfer};
use phalanx_crypto::{codec, Address, Keypair, Signed};

/// Junk gossip messages per retransmit tick. One is already seconds of
/// ed25519 per peer per tick at 16 MiB; more only piled up in the
/// traitor's own gossip queues (measured: two per tick, an 8 s `bench
/// --traitor 0=gossip-junk` on a dev build, the traitor's RSS 7.4 GiB, the
/// honest nodes' ~0.5 GiB; one per tick: traitor 3.2 GiB, honest 2.5-2.8
/// GiB, 6 of 200 tx/s committed — dev build on a loaded machine).
pub const JUNK_MESSAGES_PER_TICK: usize = 1;
/// Distinct (valid) sender keys the junk claims.
pub const JUNK_SENDERS: u64 = 8;

impl Traitor {
    pub(super) fn gossip_junk_tick(&mut self) {
        let templates: Vec<Transaction> = (0..JUNK_SENDERS)
            .map(|k| {
                let key = Keypair::insecure_from_label(&format!("gossip-junk-{k}"));
                Signed::sign(
                    Transfer {
                        chain_id: self.chain_id.clone(),
                        to: Address([0x6a; 20]),
                        amount: 1,
                        nonce: 0,
                    },
                    &key,
                    &self.chain_id,
                )
            })
            .collect();
        let unit = codec::encoded_len(&templates[0]).max(1);
        let count = self
            .limits
            .message_bytes_max
            .saturating_sub(super::ENVELOPE_BYTES)
            / unit;
        for _ in 0..JUNK_MESSAGES_PER_TICK {
            let first = self.counter * count + 1;
            self.counter += 1;
            let txs = (0..count)
                .map(|i| {
                    let nonce = first + i;
                    let mut tx = templates[(nonce % JUNK_SENDERS) as usize].clone();
                    tx.payload.nonce = nonce;
                    tx
                })
                .collect();
            self.push_gossip(txs);
        }
    }
}
