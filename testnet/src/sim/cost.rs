//! What a message costs a verifier: the signatures it carries, and how
//! many of them repeat an entry already in it.
//!
//! [`phalanx_consensus::verify_message`] checks every signature of a
//! message it accepts, so for an accepted message this is exactly the
//! signature checks it cost. The simulator charges traitors' accepted
//! messages with it (see [`super::report::Stats`]): a message from one key
//! that made an honest node check more signatures than the largest honest
//! message carries ([`honest_signatures_max`]), or any repeated entry, is
//! work the verifier should have refused before checking a signature
//! (issue 15, "cost before trust").

use phalanx_consensus::{CheckpointCertificate, Message, PreparedProof, ViewChange};
use phalanx_crypto::{Signature, Signed};
use std::collections::HashSet;

/// Signatures a message carries, and how many entries of one list repeat
/// an earlier entry of the same list (the same signed vote twice in a
/// proof, the same pre-prepare twice in a NEW-VIEW…). The same certificate
/// quoted in several VIEW-CHANGEs of one NEW-VIEW is not a repetition:
/// honest NEW-VIEWs do that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureCount {
    pub total: u64,
    pub repeated: u64,
}

impl SignatureCount {
    /// Counts one list of signed entries, and its repetitions.
    fn list<'a>(&mut self, signatures: impl IntoIterator<Item = &'a Signature>) {
        let signatures: Vec<&Signature> = signatures.into_iter().collect();
        self.total += signatures.len() as u64;
        self.repeats(signatures);
    }

    /// Counts the repetitions in one list whose signatures are counted
    /// elsewhere (as part of the entries they sign).
    fn repeats<'a>(&mut self, signatures: impl IntoIterator<Item = &'a Signature>) {
        let mut seen: HashSet<[u8; 64]> = HashSet::new();
        for s in signatures {
            if !seen.insert(s.0) {
                self.repeated += 1;
            }
        }
    }
}

/// Counts every signature in `message` that verifying it checks: outer,
/// nested votes, certificates, and a pre-prepare's transactions.
pub fn signatures(message: &Message) -> SignatureCount {
    let mut count = SignatureCount::default();
    match message {
        Message::PrePrepare { pre_prepare, batch } => {
            count.list([&pre_prepare.signature]);
            count.list(batch.txs.iter().map(|tx| &tx.signature));
        }
        Message::Prepare(s) => count.list([&s.signature]),
        Message::Commit(s) => count.list([&s.signature]),
        Message::Checkpoint(s) => count.list([&s.signature]),
        Message::NewViewRequest(s) => count.list([&s.signature]),
        Message::Complaint(s) => count.list([&s.signature]),
        Message::CatchUpRequest(s) => count.list([&s.signature]),
        Message::ViewChange(vc) => view_change(vc, &mut count),
        Message::NewView(nv) => {
            count.list([&nv.signature]);
            count.repeats(nv.payload.view_changes.iter().map(|vc| &vc.signature));
            for vc in &nv.payload.view_changes {
                view_change(vc, &mut count);
            }
            count.list(nv.payload.pre_prepares.iter().map(|pp| &pp.signature));
        }
        Message::CatchUpResponse(blocks) => {
            for b in blocks {
                count.list(b.certificate.votes.iter().map(|v| &v.signature));
            }
        }
    }
    count
}

fn view_change(vc: &Signed<ViewChange>, count: &mut SignatureCount) {
    count.list([&vc.signature]);
    if let Some(cert) = &vc.payload.checkpoint {
        checkpoint(cert, count);
    }
    count.repeats(vc.payload.prepared.iter().map(|p| &p.pre_prepare.signature));
    for p in &vc.payload.prepared {
        proof(p, count);
    }
}

fn checkpoint(cert: &CheckpointCertificate, count: &mut SignatureCount) {
    count.list(cert.votes.iter().map(|v| &v.signature));
}

fn proof(p: &PreparedProof, count: &mut SignatureCount) {
    count.list([&p.pre_prepare.signature]);
    count.list(p.prepares.iter().map(|v| &v.signature));
}

/// The most signatures an honest message can carry: a NEW-VIEW with a
/// quorum of VIEW-CHANGEs, each with a checkpoint certificate (at most `n`
/// votes) and a prepared proof (a pre-prepare and at most `n - 1`
/// prepares) for every seq of the window, plus a re-issued pre-prepare per
/// seq. (A pre-prepare's transactions are bounded by the batch limit
/// instead, and a catch-up response by its block count.)
pub fn honest_signatures_max(n: usize, window: u64) -> u64 {
    let f = n.saturating_sub(1) / 3;
    let quorum = (2 * f + 1) as u64;
    let n = n as u64;
    let per_view_change = 1 + n + window * n;
    1 + quorum * per_view_change + window
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::{NewView, PrePrepare, SeqNum, View};
    use phalanx_crypto::{Digest, Keypair};

    #[test]
    fn repeated_entries_are_counted() {
        let key = Keypair::insecure_from_label("cost");
        let pp = Signed::sign(
            PrePrepare {
                view: View(0),
                seq: SeqNum(1),
                digest: Digest::sha256(b"x"),
            },
            &key,
            "c",
        );
        let nv = Signed::sign(
            NewView {
                view: View(1),
                view_changes: Vec::new(),
                pre_prepares: vec![pp; 5],
            },
            &key,
            "c",
        );
        let count = signatures(&Message::NewView(nv.clone()));
        assert_eq!(
            count,
            SignatureCount {
                total: 6,
                repeated: 4
            }
        );
        // The same NEW-VIEW quoted twice in a list is a repetition; the
        // same entries in two different lists are not.
        let vc = Signed::sign(
            phalanx_consensus::ViewChange {
                new_view: View(1),
                checkpoint: None,
                prepared: Vec::new(),
            },
            &key,
            "c",
        );
        let twice = Signed::sign(
            NewView {
                view: View(1),
                view_changes: vec![vc.clone(), vc],
                pre_prepares: Vec::new(),
            },
            &key,
            "c",
        );
        assert_eq!(
            signatures(&Message::NewView(twice)),
            SignatureCount {
                total: 3,
                repeated: 1
            }
        );
    }

    #[test]
    fn honest_bound_grows_with_quorum_and_window() {
        // n = 4: quorum 3, a VIEW-CHANGE 1 + 4 + 32 × 4 = 133, NEW-VIEW
        // 1 + 3 × 133 + 32.
        assert_eq!(honest_signatures_max(4, 32), 432);
        assert!(honest_signatures_max(7, 32) > honest_signatures_max(4, 32));
    }
}
