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
    Batch, CheckpointCertificate, Complaint, Message, NewView, NewViewRequest, PrePrepare,
    Rejected, Replica, SeqNum, ValidatorIndex, View, ViewChange, WalEntry,
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
            let target = self.view.next();
            self.start_view_change(target, reason);
            return;
        }
        // In the normal case a timeout is a suspicion, not a departure:
        // complain, keep working, and leave only with 2f + 1.
        self.complain(self.view.next(), reason);
    }

    /// Runs on every retransmit tick: suspects a primary that leaves
    /// requests out or proposes too slowly.
    pub(crate) fn check_primary(&mut self) {
        if let Some(reason) = self.primary_overdue() {
            self.complain(self.view.next(), reason);
        }
    }

    /// We suspect the primary of our view: broadcast a COMPLAINT for
    /// `target` and keep working in our view (BFT-SMaRt's STOP). We leave
    /// only once 2f + 1 validators complained ([`Replica::tally_complaints`]).
    ///
    /// Why not leave at once, as PBFT does: a VIEW-CHANGE, once sent, is
    /// part of the record (it lists what we prepared, and a NEW-VIEW may be
    /// built from it), so after sending one we may never vote in the old
    /// view again. A replica that was cut off for a few seconds and
    /// suspected a primary the others still follow then sat alone in the
    /// next view for good, following the chain only by catch-up: the chain
    /// ran with no fault margin. A complaint carries no state, so it binds
    /// us to nothing: until 2f + 1 agree, we go on voting where we are.
    pub(crate) fn complain(&mut self, target: View, reason: &'static str) {
        if self.mode != Mode::Normal || target <= self.view {
            return;
        }
        if self.complaints.get(&self.me).is_some_and(|v| *v >= target) {
            return;
        }
        let view = self.view;
        self.emit(Event::PrimarySuspected { view, reason });
        self.complaints.insert(self.me, target);
        let signed = self.sign(Complaint { new_view: target });
        self.own_complaint = Some(signed.clone());
        self.broadcast(Message::Complaint(signed));
        self.tally_complaints();
    }

    /// A COMPLAINT from a peer. Complaints are not relayed, so the signer
    /// must be the sender; one is kept per sender (its highest view).
    pub(crate) fn on_complaint(
        &mut self,
        from: ValidatorIndex,
        c: Signed<Complaint>,
    ) -> Result<(), Rejected> {
        if self.index_of(&c.signer) != Some(from) {
            return Err(Rejected::UnknownSigner {
                what: "complaint not signed by its sender",
            });
        }
        let v = c.payload.new_view;
        if v <= self.view {
            return Ok(()); // about a view we have already left
        }
        if v.0 > self.view.0 + VIEW_CHANGES_AHEAD_MAX {
            return Err(Rejected::FutureView {
                view: v,
                current: self.view,
            });
        }
        let entry = self.complaints.entry(from).or_insert(v);
        *entry = (*entry).max(v);
        self.tally_complaints();
        Ok(())
    }

    /// The complaints (and VIEW-CHANGEs, which are stronger complaints)
    /// above our view, one per validator: the view each asked for.
    fn complaint_views(&self) -> Vec<View> {
        let mut by_sender: BTreeMap<ValidatorIndex, View> = self
            .complaints
            .iter()
            .filter(|(_, v)| **v > self.view)
            .map(|(s, v)| (*s, *v))
            .collect();
        for (view, senders) in self.view_changes.range(self.view.next()..) {
            for sender in senders.keys() {
                let e = by_sender.entry(*sender).or_insert(*view);
                *e = (*e).max(*view);
            }
        }
        let mut views: Vec<View> = by_sender.into_values().collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        views
    }

    /// BFT-SMaRt's rules for STOP: with f + 1 complaints (one of them
    /// honest) we complain too, so that every honest replica hears 2f + 1;
    /// with 2f + 1 (f + 1 of them honest, who keep complaining until they
    /// leave) we leave for the highest view that many asked for. Every
    /// honest replica then reaches 2f + 1 too: none is left behind alone.
    pub(crate) fn tally_complaints(&mut self) {
        if self.mode != Mode::Normal {
            return;
        }
        let views = self.complaint_views();
        let quorum = self.cfg.quorum();
        let weak = self.cfg.validators.weak_quorum();
        if views.len() >= quorum {
            let target = views[quorum - 1];
            self.start_view_change(target, "2f + 1 validators complained about the primary");
        } else if views.len() >= weak {
            self.complain(
                views[weak - 1],
                "f + 1 validators complained about the primary",
            );
        }
    }

    /// Resends our complaint while we wait for others to agree.
    pub(crate) fn retransmit_complaint(&mut self) {
        if self.mode != Mode::Normal || self.complained_for().is_none() {
            return;
        }
        if let Some(c) = self.own_complaint.clone() {
            self.broadcast(Message::Complaint(c));
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
        self.complaints.retain(|_, v| *v > target);
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
        self.hold_own_view_change(target, signed.clone());
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
        self.hold_own_view_change(target, signed.clone());
        self.broadcast(Message::ViewChange(signed));
    }

    /// Keeps our own VIEW-CHANGE for `target`, replacing any earlier one.
    fn hold_own_view_change(&mut self, target: View, vc: Signed<ViewChange>) {
        let me = self.me;
        self.view_changes.retain(|_, by_sender| {
            by_sender.remove(&me);
            !by_sender.is_empty()
        });
        self.view_changes.entry(target).or_default().insert(me, vc);
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
                self.serve_new_view(from);
            }
            return Ok(());
        }
        if v.0 > self.view.0 + VIEW_CHANGES_AHEAD_MAX {
            return Err(Rejected::FutureView {
                view: v,
                current: self.view,
            });
        }
        // One VIEW-CHANGE per sender, its highest: a sender that moved on
        // to a later view has left the earlier one, and a traitor can make
        // us hold one of its VIEW-CHANGEs, not one per view of the horizon.
        let held = self
            .view_changes
            .iter()
            .find(|(_, by_sender)| by_sender.contains_key(&signer))
            .map(|(view, _)| *view);
        match held {
            Some(h) if h >= v => return Ok(()),
            Some(h) => {
                if let Some(by_sender) = self.view_changes.get_mut(&h) {
                    by_sender.remove(&signer);
                    if by_sender.is_empty() {
                        self.view_changes.remove(&h);
                    }
                }
            }
            None => {}
        }
        self.view_changes
            .entry(v)
            .or_default()
            .insert(signer, vc.clone());
        self.note_nested_pre_prepares(&vc.payload);
        self.join_higher_view_changes();
        self.tally_complaints();
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
        self.complaints.retain(|_, v| *v > view);
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
        // Votes and reports of views before the previous one are no longer
        // remembered (note_vote keeps only views near ours).
        self.seen_votes.retain(|(_, v, _, _), _| v.0 + 1 >= view.0);
        self.reported.retain(|(_, v, _)| v.0 + 1 >= view.0);
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
        if self
            .new_view
            .as_ref()
            .is_some_and(|nv| nv.payload.view >= r.payload.view)
            && self.mode == Mode::Normal
            && !self.serve_new_view(from)
        {
            return Err(Rejected::RateLimited {
                what: "new-view request",
            });
        }
        Ok(())
    }

    /// Sends our NEW-VIEW to `to`, at most once per retransmit period per
    /// validator (a NEW-VIEW can weigh megabytes: a traitor asking for it
    /// in a loop must not make us send one per request). False if it was
    /// sent too recently.
    fn serve_new_view(&mut self, to: ValidatorIndex) -> bool {
        let Some(nv) = self.new_view.clone() else {
            return true;
        };
        let now = self.now_ms;
        if self
            .new_view_served_ms
            .get(&to)
            .is_some_and(|t| now.saturating_sub(*t) < self.cfg.retransmit_ms)
        {
            return false;
        }
        self.new_view_served_ms.insert(to, now);
        self.send(to, Message::NewView(nv));
        true
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
