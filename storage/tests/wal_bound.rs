//! The WAL bound on a running cluster: after many checkpoints, crashes and
//! view changes every store holds at most one stable-checkpoint record,
//! two view records and one NEW-VIEW, while the WAL as it was before the
//! bound keeps one of each per checkpoint and per view; and a replica
//! restored from the bounded WAL is the one restored from the unbounded
//! WAL (same view, mode, stable checkpoint, and the same answers to the
//! same inputs).

mod cluster;

use cluster::{Cluster, CHAIN};
use phalanx_consensus::{
    verify_message, ConsensusParams, Input, Message, NewViewRequest, Replica, SeqNum, Timer,
    ValidatorIndex, VerifyContext, WalEntry,
};
use phalanx_crypto::Signed;
use phalanx_storage::{MemStore, Store};
use std::sync::Arc;

fn params() -> ConsensusParams {
    ConsensusParams {
        checkpoint_interval: 4,
        window: 8,
        batch_txs_max: 4,
        batch_delay_ms: 5,
        pipeline_max: 4,
        propose_timeout_ms: 500,
        view_timeout_ms: 1000,
        view_timeout_ms_max: 8000,
        retransmit_ms: 200,
        ..ConsensusParams::default()
    }
}

fn cluster() -> Cluster {
    let stores: Vec<Arc<dyn Store>> = (0..4)
        .map(|_| Arc::new(MemStore::new()) as Arc<dyn Store>)
        .collect();
    Cluster::new(params(), stores)
}

/// (stable, view entered, view left, new-view) records in a WAL.
fn kept_once(wal: &[WalEntry]) -> [usize; 4] {
    let mut counts = [0; 4];
    for e in wal {
        match e {
            WalEntry::Stable(_) => counts[0] += 1,
            WalEntry::View { entered: true, .. } => counts[1] += 1,
            WalEntry::View { entered: false, .. } => counts[2] += 1,
            WalEntry::NewView(_) => counts[3] += 1,
            _ => {}
        }
    }
    counts
}

/// Restores replica `i` from its bounded store and from the unbounded WAL
/// and checks they are the same replica: same state, and the same outputs
/// for a retransmit tick and for a peer asking for the NEW-VIEW.
fn assert_same_restore(c: &Cluster, i: usize, when: &str) {
    let bounded = c.stores[i].load_wal().unwrap();
    let unbounded = c.unbounded_wal[i].clone();
    let counts = kept_once(&bounded);
    assert!(
        counts.iter().all(|n| *n <= 1),
        "{when}: replica {i} keeps {counts:?} stable/entered/left/new-view records"
    );
    let height = c.height(i);
    let restore = |wal: Vec<WalEntry>| {
        Replica::restore(c.cfg.clone(), c.keys[i].clone(), wal, height).unwrap()
    };
    let (mut a, mut b) = (restore(bounded), restore(unbounded));
    assert_eq!(a.view(), b.view(), "{when}: replica {i} view");
    assert_eq!(
        a.is_view_changing(),
        b.is_view_changing(),
        "{when}: replica {i} mode"
    );
    assert_eq!(
        a.stable_checkpoint(),
        b.stable_checkpoint(),
        "{when}: replica {i} stable checkpoint"
    );
    assert_eq!(a.low_watermark(), b.low_watermark());
    let now = c.now;
    assert_eq!(
        a.handle(now, Input::Timer(Timer::Retransmit)),
        b.handle(now, Input::Timer(Timer::Retransmit)),
        "{when}: replica {i} first outputs"
    );
    let asker = (i + 1) % c.n();
    let request = Signed::sign(NewViewRequest { view: a.view() }, &c.keys[asker], CHAIN);
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &c.cfg.validators,
        window: c.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let verified = || {
        verify_message(
            ValidatorIndex(asker as u16),
            Message::NewViewRequest(request.clone()),
            &ctx,
        )
        .unwrap()
    };
    assert_eq!(
        a.handle(now + 1, Input::Message(verified())),
        b.handle(now + 1, Input::Message(verified())),
        "{when}: replica {i} answer to a NEW-VIEW request"
    );
}

fn assert_all_restore_alike(c: &Cluster, when: &str) {
    for i in 0..c.n() {
        assert_same_restore(c, i, when);
    }
}

/// Runs rounds until every live replica has executed `height`.
fn run_to_height(c: &mut Cluster, height: u64) {
    for _ in 0..10_000 {
        let behind = (0..c.n())
            .filter(|i| c.replicas[*i].is_some() && !c.isolated.contains(i))
            .any(|i| c.height(i).0 < height);
        if !behind {
            return;
        }
        c.round(4, 20);
    }
    panic!(
        "no progress to height {height}: {:?}",
        (0..c.n()).map(|i| c.height(i)).collect::<Vec<_>>()
    );
}

#[test]
fn n4_checkpoints_crashes_and_view_changes_keep_the_wal_bounded_and_restore_alike() {
    let mut c = cluster();
    let mut target = 0;
    for epoch in 0..8 {
        // Five checkpoints of progress.
        target += 5 * params().checkpoint_interval;
        run_to_height(&mut c, target);
        assert_all_restore_alike(&c, &format!("epoch {epoch}, height {target}"));
        // The primary crashes: the others change view without it; it
        // comes back from its (bounded) store and catches up.
        let primary = c.common_primary();
        let view_before = c.replica((primary + 1) % 4).view();
        c.crash(primary);
        for _ in 0..2_000 {
            if (0..4)
                .filter(|i| *i != primary)
                .all(|i| c.replica(i).view() > view_before && !c.replica(i).is_view_changing())
            {
                break;
            }
            c.round(4, 50);
        }
        assert_all_restore_alike(&c, &format!("epoch {epoch}, primary {primary} down"));
        c.restart(primary);
    }
    // One replica cut off suspects the primary. Since complaints (session
    // 7) it complains and stays in its view instead of leaving alone: the
    // restore must agree on that state too.
    target += 2 * params().checkpoint_interval;
    run_to_height(&mut c, target);
    let loner = (c.common_primary() + 1) % 4;
    c.isolated.insert(loner);
    for _ in 0..200 {
        c.round(4, 50);
    }
    assert!(
        !c.replica(loner).is_view_changing() && c.replica(loner).complained_for().is_some(),
        "the loner complained and stayed in its view"
    );
    assert_all_restore_alike(&c, "one replica cut off");
    c.assert_agreement();

    let checkpoints = target / params().checkpoint_interval;
    let unbounded = kept_once(&c.unbounded_wal[0]);
    assert!(
        unbounded[0] as u64 >= checkpoints / 2 && unbounded[1] >= 8,
        "the unbounded WAL grows with checkpoints and views: {unbounded:?} after {checkpoints} checkpoints"
    );
    for i in 0..4 {
        let wal = c.stores[i].load_wal().unwrap();
        // Apart from the four records above, only votes and proofs above
        // the stable checkpoint: at most a window of seqs, a few records each.
        let low = c.replica(i).low_watermark();
        for e in &wal {
            if let Some(seq) = e.seq() {
                assert!(
                    seq > low || matches!(e, WalEntry::NewView(_)),
                    "{e:?} at or below {low}"
                );
            }
        }
        assert!(
            low >= SeqNum(target - 2 * params().window),
            "replica {i} low {low}"
        );
    }
}
