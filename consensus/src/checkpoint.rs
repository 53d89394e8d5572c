//! Checkpoints and garbage collection (§4.3).
//!
//! Every `checkpoint_interval` blocks each replica signs
//! `CHECKPOINT(seq, block_hash, state_root)` once it has executed `seq`.
//! 2f + 1 matching ones make the checkpoint stable: the log below it is
//! dropped and the watermark window moves up. A quorum for a checkpoint we
//! have not reached tells us we are behind and starts a catch-up.

use crate::replica::{Event, Output};
use crate::{
    Checkpoint, CheckpointCertificate, Message, Rejected, Replica, SeqNum, ValidatorIndex, WalEntry,
};
use phalanx_crypto::{Digest, Signed};

/// How far above our window we keep checkpoint votes, in windows.
const CHECKPOINT_LOOKAHEAD_WINDOWS: u64 = 4;

impl Replica {
    pub(crate) fn on_executed(&mut self, seq: SeqNum, block_hash: Digest, state_root: Digest) {
        if seq <= self.executed {
            return;
        }
        assert!(
            seq <= self.committed,
            "executed a block that was not committed"
        );
        self.executed = seq;
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return;
        }
        self.own_checkpoints.insert(seq, (block_hash, state_root));
        let signed = self.sign(Checkpoint {
            seq,
            block_hash,
            state_root,
        });
        self.checkpoint_votes
            .entry(seq)
            .or_default()
            .insert(self.me, signed.clone());
        self.broadcast(Message::Checkpoint(signed));
        self.check_stable(seq);
    }

    pub(crate) fn on_checkpoint(
        &mut self,
        _from: ValidatorIndex,
        c: Signed<Checkpoint>,
    ) -> Result<(), Rejected> {
        let signer = self
            .index_of(&c.signer)
            .ok_or(Rejected::UnknownSigner { what: "checkpoint" })?;
        let seq = c.payload.seq;
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) || seq.0 == 0 {
            return Err(Rejected::Malformed {
                reason: format!("checkpoint at {seq}, not a checkpoint height"),
            });
        }
        self.note_peer_height(signer, seq);
        if seq <= self.low() {
            return Ok(());
        }
        let horizon = SeqNum(self.high().0 + CHECKPOINT_LOOKAHEAD_WINDOWS * self.cfg.window);
        if seq > horizon {
            self.on_far_checkpoint(signer, c);
            return Ok(());
        }
        let votes = self.checkpoint_votes.entry(seq).or_default();
        if votes.contains_key(&signer) {
            return Ok(());
        }
        votes.insert(signer, c);
        self.check_stable(seq);
        Ok(())
    }

    /// A checkpoint vote beyond the seqs we keep votes for: we are far
    /// behind, or the signer lies. Keep its highest one only (bounded by n),
    /// and once 2f + 1 match, treat them as a quorum at that seq: catch up
    /// to it, and make it stable once executed. Without this a replica cut
    /// off for longer than the look-ahead caught up by blocks but never
    /// moved its window again, so it refused every vote for good.
    fn on_far_checkpoint(&mut self, signer: ValidatorIndex, c: Signed<Checkpoint>) {
        self.note_peer_height(signer, c.payload.seq);
        if self
            .far_checkpoints
            .get(&signer)
            .is_some_and(|old| old.payload.seq >= c.payload.seq)
        {
            return;
        }
        let payload = c.payload.clone();
        self.far_checkpoints.insert(signer, c);
        let matching: Vec<ValidatorIndex> = self
            .far_checkpoints
            .iter()
            .filter(|(_, v)| v.payload == payload)
            .map(|(i, _)| *i)
            .collect();
        if matching.len() < self.cfg.validators.quorum() {
            return;
        }
        let seq = payload.seq;
        for i in matching {
            if let Some(vote) = self.far_checkpoints.remove(&i) {
                self.checkpoint_votes
                    .entry(seq)
                    .or_default()
                    .insert(i, vote);
            }
        }
        self.check_stable(seq);
    }

    /// Resends our vote for our stable checkpoint on every retransmit tick,
    /// so a replica that was cut off while it became stable learns where
    /// the others' windows are.
    pub(crate) fn retransmit_checkpoint(&mut self) {
        let Some(cert) = self.stable.as_ref() else {
            return;
        };
        let mine = cert.votes.iter().find(|v| v.signer == self.key.public());
        let vote = match mine {
            Some(v) => v.clone(),
            None => self.sign(Checkpoint {
                seq: cert.seq,
                block_hash: cert.block_hash,
                state_root: cert.state_root,
            }),
        };
        self.broadcast(Message::Checkpoint(vote));
    }

    /// A quorum of matching checkpoint votes at `seq`: stable if it matches
    /// our own; a reason to catch up if we have not got there.
    pub(crate) fn check_stable(&mut self, seq: SeqNum) {
        if seq <= self.low() {
            return;
        }
        let Some(cert) = self.checkpoint_quorum(seq) else {
            return;
        };
        match self.own_checkpoints.get(&seq) {
            Some((hash, root)) if *hash == cert.block_hash && *root == cert.state_root => {
                self.make_stable(cert);
            }
            Some(_) => {
                // Our executed state differs from a quorum's: our disk or our
                // code is wrong (or more than f validators are). Never adopt
                // it; say so loudly.
                self.emit(Event::StateDiverged { seq });
            }
            None => {
                self.highest_seen = self.highest_seen.max(seq);
                self.proven_height = self.proven_height.max(seq);
                self.start_catch_up(seq);
            }
        }
    }

    /// The quorum certificate for `seq`, if 2f + 1 votes agree.
    fn checkpoint_quorum(&self, seq: SeqNum) -> Option<CheckpointCertificate> {
        let votes = self.checkpoint_votes.get(&seq)?;
        let quorum = self.cfg.validators.quorum();
        for candidate in votes.values() {
            let matching: Vec<Signed<Checkpoint>> = votes
                .values()
                .filter(|v| v.payload == candidate.payload)
                .cloned()
                .collect();
            if matching.len() >= quorum {
                return Some(CheckpointCertificate {
                    seq,
                    block_hash: candidate.payload.block_hash,
                    state_root: candidate.payload.state_root,
                    votes: matching,
                });
            }
        }
        None
    }

    /// Adopts a stable checkpoint we have executed to: moves the window.
    pub(crate) fn make_stable(&mut self, cert: CheckpointCertificate) {
        if cert.seq <= self.low() || cert.seq > self.executed {
            return;
        }
        let seq = cert.seq;
        self.out
            .push(Output::Persist(WalEntry::Stable(cert.clone())));
        self.stable = Some(cert);
        self.collect_garbage(seq);
        self.emit(Event::CheckpointStable { seq });
        if self.next_seq <= seq {
            self.next_seq = seq.next();
        }
    }
}
