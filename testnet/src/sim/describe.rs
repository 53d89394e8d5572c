//! One-line descriptions of replica inputs and outputs, for `--verbose`
//! and `--debug-nodes`.

use phalanx_consensus::{Input, Message, Output, WalEntry};

pub fn describe_message(m: &Message) -> String {
    match m {
        Message::PrePrepare {
            pre_prepare: p,
            batch,
        } => format!(
            "pre-prepare v{} #{} {} ({} txs)",
            p.payload.view.0,
            p.payload.seq.0,
            p.payload.digest.short(),
            batch.txs.len()
        ),
        Message::Prepare(p) => format!(
            "prepare v{} #{} {} by {}",
            p.payload.view.0,
            p.payload.seq.0,
            p.payload.digest.short(),
            p.signer.short()
        ),
        Message::Commit(p) => format!(
            "commit v{} #{} {} by {}",
            p.payload.view.0,
            p.payload.seq.0,
            p.payload.digest.short(),
            p.signer.short()
        ),
        Message::Checkpoint(c) => format!(
            "checkpoint #{} {}",
            c.payload.seq.0,
            c.payload.block_hash.short()
        ),
        Message::ViewChange(vc) => format!(
            "view-change to v{} (checkpoint {:?}, {} prepared)",
            vc.payload.new_view.0,
            vc.payload.checkpoint.as_ref().map(|c| c.seq.0),
            vc.payload.prepared.len()
        ),
        Message::Complaint(c) => format!(
            "complaint for v{} by {}",
            c.payload.new_view.0,
            c.signer.short()
        ),
        Message::NewView(nv) => format!(
            "new-view v{} ({} pre-prepares)",
            nv.payload.view.0,
            nv.payload.pre_prepares.len()
        ),
        Message::NewViewRequest(r) => format!("new-view-request v{}", r.payload.view.0),
        Message::CatchUpRequest(r) => {
            format!("catch-up-request {}..={}", r.payload.from.0, r.payload.to.0)
        }
        Message::CatchUpResponse(b) => format!(
            "catch-up-response {:?}",
            b.iter().map(|b| b.certificate.seq.0).collect::<Vec<_>>()
        ),
    }
}

pub fn describe_input(i: &Input) -> String {
    match i {
        Input::Message(m) => format!("from r{}: {}", m.from.0, describe_message(m.message())),
        Input::Transactions(t) => format!("{} txs", t.len()),
        Input::Timer(t) => format!("timer {t:?}"),
        Input::Executed { seq, .. } => format!("executed #{}", seq.0),
        Input::MayRetry(h) => format!("{} may retry", h.len()),
    }
}

pub fn describe_output(o: &Output) -> String {
    match o {
        Output::Persist(e) => {
            let kind = match e {
                WalEntry::Voted { phase, .. } => format!("voted {phase:?}"),
                WalEntry::Accepted { .. } => "accepted".into(),
                WalEntry::Prepared(_) => "prepared".into(),
                WalEntry::View { view, entered } => format!("view {} entered {entered}", view.0),
                WalEntry::Stable(c) => format!("stable {}", c.seq.0),
                WalEntry::NewView(nv) => format!("new-view {}", nv.payload.view.0),
            };
            format!("persist {kind} seq {:?}", e.seq())
        }
        Output::PruneWal { below } => format!("prune below {}", below.0),
        Output::Send { to, message } => format!("send r{}: {}", to.0, describe_message(message)),
        Output::Broadcast(m) => format!("broadcast: {}", describe_message(m)),
        Output::Commit(cb) => format!(
            "commit #{} {}",
            cb.certificate.seq.0,
            cb.certificate.batch_digest.short()
        ),
        Output::ServeCatchUp { to, from, to_seq } => {
            format!("serve r{} {}..={}", to.0, from.0, to_seq.0)
        }
        Output::SetTimer { timer, at_ms } => format!("timer {timer:?} at {at_ms}"),
        Output::Evidence(e) => format!("evidence {:?} v{} #{}", e.phase, e.view.0, e.seq.0),
        Output::Rejected { from, reason } => format!("rejected from r{}: {reason}", from.0),
        Output::Event(e) => format!("event {e:?}"),
    }
}

pub fn output_kind(o: &Output) -> &'static str {
    match o {
        Output::Persist(_) => "persist",
        Output::PruneWal { .. } => "prune-wal",
        Output::Send { .. } => "send",
        Output::Broadcast(_) => "broadcast",
        Output::Commit(_) => "commit",
        Output::ServeCatchUp { .. } => "serve-catch-up",
        Output::SetTimer { .. } => "set-timer",
        Output::Evidence(_) => "evidence",
        Output::Rejected { .. } => "rejected",
        Output::Event(_) => "event",
    }
}
