//! View changes (§4.4, with the liveness rules of §4.5.2).
//!
//! A replica that waits too long for progress — a pre-prepared batch that
//! does not commit, a request the primary leaves out, a NEW-VIEW that does
//! not come — moves to the next view and sends VIEW-CHANGE with its stable
//! checkpoint and its prepared certificates. The new primary gathers 2f + 1
//! and sends NEW-VIEW, re-issuing a pre-prepare for every seq between the
//! highest stable checkpoint and the highest prepared seq: the prepared
//! batch with the highest view, or the null batch. Backups recompute that
//! set from the same VIEW-CHANGEs and accept only if it matches.

use crate::replica::{Event, Mode, Output, Phase};
use crate::{
    Batch, CheckpointCertificate, Message, NewView, NewViewRequest, PrePrepare, Rejected, Replica,
    SeqNum, ValidatorIndex, View, ViewChange, WalEntry,
};
use phalanx_crypto::{Digest, Signed};
use std::collections::BTreeMap;

/// How far ahead of our view we keep VIEW-CHANGE messages.
const VIEW_CHANGES_AHEAD_MAX: u64 = 64;

/// What a NEW-VIEW must re-issue, computed from its VIEW-CHANGE set.
pub(crate) struct Reissue {
    /// The highest stable checkpoint in the set (min-s).
    pub checkpoint: Option<CheckpointCertificate>,
    /// Seq → (digest, batch) for every seq in (min-s, max-s].
    pub entries: BTreeMap<SeqNum, (Digest, Batch)>,
}

/// §4.4: min-s is the highest stable checkpoint; for each seq above it up
/// to the highest prepared one, the prepared batch with the highest view
/// wins, and a gap gets the null batch.
pub(crate) fn reissue(vcs: &[Signed<ViewChange>], window: u64) -> Reissue {
    let checkpoint = vcs
        .iter()
        .filter_map(|vc| vc.payload.checkpoint.as_ref())
        .max_by_key(|c| c.seq)
        .cloned();
    let min_s = checkpoint.as_ref().map(|c| c.seq).unwrap_or(SeqNum(0));
    let mut best: BTreeMap<SeqNum, (View, Digest, Batch)> = BTreeMap::new();
    for vc in vcs {
        for p in &vc.payload.prepared {
            let pp = &p.pre_prepare.payload;
            if pp.seq <= min_s || pp.seq.0 > min_s.0 + window {
                continue;
            }
            let better = best.get(&pp.seq).is_none_or(|(v, _, _)| pp.view > *v);
            if better {
                best.insert(pp.seq, (pp.view, pp.digest, p.batch.clone()));
            }
        }
    }
    let max_s = best.keys().next_back().copied().unwrap_or(min_s);
    let null = Batch::null();
    let null_digest = null.digest();
    let mut entries = BTreeMap::new();
    for n in (min_s.0 + 1)..=max_s.0 {
        let entry = match best.remove(&SeqNum(n)) {
            Some((_, d, b)) => (d, b),
            None => (null_digest, null.clone()),
        };
        entries.insert(SeqNum(n), entry);
    }
    Reissue {
        checkpoint,
        entries,
    }
}

impl Replica {
    pub(crate) fn on_progress_timeout(&mut self) {
        let reason = match self.mode {
            Mode::ViewChanging => "no NEW-VIEW within the view timeout",
            Mode::Normal => "no commit within the view timeout",
        };
        if self.mode == Mode::ViewChanging {
            // §4.4: move on to the next view only if 2f + 1 wanted this one
            // and its primary failed to produce a NEW-VIEW. A replica that
            // left alone (cut off, or wrong about the primary) waits here,
            // resending its VIEW-CHANGE, for the others to need a view
            // change too; meanwhile it catches up on what they commit.
            // A VIEW-CHANGE for a later view counts too: its sender went
            // through this one.
            let supporters: std::collections::BTreeSet<ValidatorIndex> = self
                .view_changes
                .range(self.view..)
                .flat_map(|(_, by_sender)| by_sender.keys().copied())
                .collect();
            if supporters.len() < self.cfg.quorum() {
                self.arm_progress_timer();
                return;
            }
            self.failed_views = self.failed_views.saturating_add(1);
        }
        let target = self.view.next();
        self.start_view_change(target, reason);
    }

    /// Runs on every retransmit tick: suspects a primary that leaves
    /// requests out or proposes too slowly.
    pub(crate) fn check_primary(&mut self) {
        if let Some(reason) = self.primary_overdue() {
            let view = self.view;
            self.emit(Event::PrimarySuspected { view, reason });
            self.start_view_change(view.next(), "suspected the primary");
        }
    }

    /// §4.4: move to `target` and send VIEW-CHANGE.
    pub(crate) fn start_view_change(&mut self, target: View, reason: &'static str) {
        if target < self.view || (target == self.view && self.mode == Mode::ViewChanging) {
            return;
        }
        if target == self.view && self.mode == Mode::Normal {
            return;
        }
        self.view = target;
        self.mode = Mode::ViewChanging;
        self.log.clear();
        self.reset_in_flight([]);
        self.batch_deadline = None;
        let low = self.low();
        let vc = ViewChange {
            new_view: target,
            checkpoint: self.stable.clone(),
            prepared: self
                .prepared
                .range(low.next()..)
                .map(|(_, p)| p.clone())
                .collect(),
        };
        self.out.push(Output::Persist(WalEntry::View {
            view: target,
            entered: false,
        }));
        let signed = self.sign(vc);
        self.view_changes
            .entry(target)
            .or_default()
            .insert(self.me, signed.clone());
        self.broadcast(Message::ViewChange(signed));
        self.emit(Event::ViewChangeStarted { to: target, reason });
        self.progress_deadline = None;
        self.arm_progress_timer();
        self.try_send_new_view();
    }

    /// Signs and broadcasts our VIEW-CHANGE for the current view, with our
    /// stable checkpoint and every prepared certificate above it.
    pub(crate) fn send_view_change(&mut self) {
        let target = self.view;
        let low = self.low();
        let vc = ViewChange {
            new_view: target,
            checkpoint: self.stable.clone(),
            prepared: self
                .prepared
                .range(low.next()..)
                .map(|(_, p)| p.clone())
                .collect(),
        };
        let signed = self.sign(vc);
        self.view_changes
            .entry(target)
            .or_default()
            .insert(self.me, signed.clone());
        self.broadcast(Message::ViewChange(signed));
    }

    pub(crate) fn on_view_change(
        &mut self,
        from: ValidatorIndex,
        vc: Signed<ViewChange>,
    ) -> Result<(), Rejected> {
        let signer = self.index_of(&vc.signer).ok_or(Rejected::UnknownSigner {
            what: "view-change",
        })?;
        let v = vc.payload.new_view;
        if v < self.view || (v == self.view && self.mode == Mode::Normal) {
            // A late VIEW-CHANGE for a view we are already in: help the
            // sender with the NEW-VIEW we entered it with.
            if v == self.view {
                if let Some(nv) = self.new_view.clone() {
                    self.send(from, Message::NewView(nv));
                }
            }
            return Ok(());
        }
        if v.0 > self.view.0 + VIEW_CHANGES_AHEAD_MAX {
            return Err(Rejected::FutureView {
                view: v,
                current: self.view,
            });
        }
        let by_view = self.view_changes.entry(v).or_default();
        if by_view.contains_key(&signer) {
            return Ok(());
        }
        by_view.insert(signer, vc.clone());
        self.note_nested_pre_prepares(&vc.payload);
        self.join_higher_view_changes();
        self.try_send_new_view();
        Ok(())
    }

    /// Pre-prepares carried in prepared proofs are signed by their primary:
    /// one that contradicts a pre-prepare we hold is evidence of
    /// equivocation.
    fn note_nested_pre_prepares(&mut self, vc: &ViewChange) {
        for p in &vc.prepared {
            let pp = &p.pre_prepare;
            if let Some(primary) = self.index_of(&pp.signer) {
                let message = Message::PrePrepare {
                    pre_prepare: pp.clone(),
                    batch: Batch::null(),
                };
                let (view, seq, digest) = (pp.payload.view, pp.payload.seq, pp.payload.digest);
                self.note_vote(primary, view, seq, Phase::PrePrepare, digest, message);
            }
        }
    }

    /// §4.5.2: f + 1 validators asking for views above ours include an
    /// honest one, so join the smallest such view rather than wait.
    fn join_higher_view_changes(&mut self) {
        let current = self.view;
        let mut highest: BTreeMap<ValidatorIndex, View> = BTreeMap::new();
        for (view, by_sender) in self.view_changes.range(current.next()..) {
            for sender in by_sender.keys() {
                if *sender != self.me {
                    highest.insert(*sender, *view);
                }
            }
        }
        if highest.len() >= self.cfg.validators.weak_quorum() {
            let smallest = *highest.values().min().expect("non-empty");
            self.start_view_change(smallest, "f + 1 others asked for a later view");
        }
    }

    /// As the new primary with 2f + 1 VIEW-CHANGEs for our view: NEW-VIEW.
    fn try_send_new_view(&mut self) {
        if self.mode != Mode::ViewChanging || !self.is_primary() {
            return;
        }
        let view = self.view;
        let quorum = self.cfg.quorum();
        let Some(by_sender) = self.view_changes.get(&view) else {
            return;
        };
        if by_sender.len() < quorum {
            return;
        }
        // The first `quorum` by validator index: deterministic. Every one
        // was fully checked by `verify_message` before it got here.
        let vcs: Vec<Signed<ViewChange>> = by_sender.values().take(quorum).cloned().collect();
        let plan = reissue(&vcs, self.cfg.window);
        let mut pre_prepares = Vec::new();
        for (seq, (digest, _)) in &plan.entries {
            let payload = PrePrepare {
                view,
                seq: *seq,
                digest: *digest,
            };
            match self.sign_vote(Phase::PrePrepare, view, *seq, *digest, payload) {
                Some(pp) => pre_prepares.push(pp),
                None => return, // would contradict ourselves; let the view time out
            }
        }
        let nv = self.sign(NewView {
            view,
            view_changes: vcs,
            pre_prepares,
        });
        self.broadcast(Message::NewView(nv.clone()));
        self.enter_view(nv, plan);
    }

    pub(crate) fn on_new_view(
        &mut self,
        _from: ValidatorIndex,
        nv: Signed<NewView>,
    ) -> Result<(), Rejected> {
        let invalid = |reason: String| Rejected::InvalidNewView { reason };
        let v = nv.payload.view;
        if v < self.view || (v == self.view && self.mode == Mode::Normal) {
            return Ok(()); // old or already entered
        }
        let signer = self
            .index_of(&nv.signer)
            .ok_or(Rejected::UnknownSigner { what: "new-view" })?;
        if signer != self.cfg.validators.primary(v) || v == View(0) {
            return Err(Rejected::NotPrimary {
                from: signer,
                view: v,
            });
        }
        let quorum = self.cfg.quorum();
        let mut senders = std::collections::BTreeSet::new();
        for vc in &nv.payload.view_changes {
            if vc.payload.new_view != v {
                return Err(invalid(format!(
                    "contains a view-change for {}",
                    vc.payload.new_view
                )));
            }
            let sender = self
                .index_of(&vc.signer)
                .ok_or_else(|| invalid("view-change from a non-validator".into()))?;
            if !senders.insert(sender) {
                return Err(invalid("two view-changes from one validator".into()));
            }
        }
        if senders.len() < quorum {
            return Err(invalid(format!(
                "{} view-changes, need {quorum}",
                senders.len()
            )));
        }
        let plan = reissue(&nv.payload.view_changes, self.cfg.window);
        let issued = &nv.payload.pre_prepares;
        if issued.len() != plan.entries.len() {
            return Err(invalid(format!(
                "{} pre-prepares, the view-changes call for {}",
                issued.len(),
                plan.entries.len()
            )));
        }
        for (pp, (seq, (digest, _))) in issued.iter().zip(&plan.entries) {
            let want = PrePrepare {
                view: v,
                seq: *seq,
                digest: *digest,
            };
            if pp.payload != want || pp.signer != nv.signer {
                return Err(invalid(format!(
                    "pre-prepare for {seq} does not match the view-changes"
                )));
            }
        }
        self.enter_view(nv, plan);
        Ok(())
    }

    /// Enters the view of a valid NEW-VIEW: adopt its checkpoint, accept its
    /// pre-prepares (sending PREPAREs as a backup), resume the normal case.
    fn enter_view(&mut self, nv: Signed<NewView>, plan: Reissue) {
        let view = nv.payload.view;
        self.view = view;
        self.mode = Mode::Normal;
        self.view_entered_ms = self.now_ms;
        self.propose_delay_ewma_ms = 0;
        self.propose_delay_samples = 0;
        self.last_full_batch_ms = None;
        self.log.clear();
        self.reset_in_flight([]);
        self.out.push(Output::Persist(WalEntry::View {
            view,
            entered: true,
        }));
        if let Some(cert) = plan.checkpoint {
            self.learn_checkpoint(cert);
        }
        let max_s = plan.entries.keys().next_back().copied();
        for (pp, (_, (_, batch))) in nv.payload.pre_prepares.iter().zip(plan.entries) {
            if pp.payload.seq <= self.low() {
                continue;
            }
            let tx_hashes = batch.tx_hashes();
            self.accept_pre_prepare(pp.clone(), batch, tx_hashes);
        }
        // Only slots we have not committed: a re-proposed batch we already
        // executed must not pin its transactions in flight, or one that
        // failed for its nonce could never be proposed again.
        let in_flight: Vec<Digest> = self
            .log
            .range(self.committed.next()..)
            .flat_map(|(_, s)| s.tx_hashes.iter().copied())
            .collect();
        self.reset_in_flight(in_flight);
        self.next_seq = max_s
            .unwrap_or(SeqNum(0))
            .max(self.committed)
            .max(self.low())
            .next();
        self.view_changes.retain(|v, _| *v > view);
        self.out
            .push(Output::Persist(WalEntry::NewView(Box::new(nv.clone()))));
        self.new_view = Some(nv);
        self.progress_deadline = None;
        self.arm_progress_timer();
        let primary = self.primary();
        self.emit(Event::NewViewEntered { view, primary });
    }

    /// A checkpoint certificate learned from a NEW-VIEW: adopt it if we have
    /// executed that far, otherwise remember its votes and catch up.
    fn learn_checkpoint(&mut self, cert: CheckpointCertificate) {
        let seq = cert.seq;
        if seq <= self.low() {
            return;
        }
        for vote in &cert.votes {
            if let Some(i) = self.index_of(&vote.signer) {
                self.checkpoint_votes
                    .entry(seq)
                    .or_default()
                    .insert(i, vote.clone());
            }
        }
        if self.own_checkpoints.contains_key(&seq) {
            self.check_stable(seq);
        } else {
            // Slots at or below the checkpoint are settled: fetch them.
            self.highest_seen = self.highest_seen.max(seq);
            self.start_catch_up(seq);
        }
    }

    /// A validator working in a view we have no NEW-VIEW for.
    pub(crate) fn note_peer_view(&mut self, from: ValidatorIndex, view: View) {
        let entry = self.peer_views.entry(from).or_default();
        *entry = (*entry).max(view);
    }

    /// If f + 1 validators work in views above ours, ask them for the
    /// NEW-VIEW of the highest view at least f + 1 of them have reached.
    pub(crate) fn sync_view(&mut self) {
        let current = self.view;
        let mut above: Vec<View> = self
            .peer_views
            .values()
            .copied()
            .filter(|v| *v > current || (*v == current && self.mode == Mode::ViewChanging))
            .collect();
        if above.len() < self.cfg.validators.weak_quorum() {
            return;
        }
        above.sort_unstable_by(|a, b| b.cmp(a));
        let target = above[self.cfg.validators.weak_quorum() - 1];
        let request = self.sign(NewViewRequest { view: target });
        self.broadcast(Message::NewViewRequest(request));
    }

    pub(crate) fn on_new_view_request(
        &mut self,
        from: ValidatorIndex,
        r: Signed<NewViewRequest>,
    ) -> Result<(), Rejected> {
        if let Some(nv) = &self.new_view {
            if nv.payload.view >= r.payload.view && self.mode == Mode::Normal {
                let nv = nv.clone();
                self.send(from, Message::NewView(nv));
            }
        }
        Ok(())
    }

    /// Resends our VIEW-CHANGE while we wait for a NEW-VIEW.
    pub(crate) fn retransmit_view_change(&mut self) {
        if self.mode != Mode::ViewChanging {
            return;
        }
        if let Some(vc) = self
            .view_changes
            .get(&self.view)
            .and_then(|m| m.get(&self.me))
        {
            let vc = vc.clone();
            self.broadcast(Message::ViewChange(vc));
        }
    }
}
