//! Minimal scenarios for consensus bugs the simulator found. Each names the
//! behaviour that must hold; each failed when written (see the module docs
//! of `phalanx_testnet::sim` and the report that came with them). They stay
//! as regression tests once fixed.

use phalanx_testnet::sim::Scenario;

/// The primary crashes for 500 ms under load and restarts just before the
/// backups move to view 1. It missed seq 12's commits in view 0 and commits
/// the same batch again from the NEW-VIEW's re-issued pre-prepare in view 1.
/// Its block must still be the same block: the header must not depend on
/// the view a replica happened to commit in (`BlockHeader::view` comes from
/// `certificate.view`). Otherwise honest hash chains fork and checkpoints
/// (which sign the block hash) can no longer gather a quorum.
#[test]
fn same_batch_same_block_whatever_the_commit_view() {
    let report = Scenario::new(4)
        .seed(1)
        .crash(0, 1_400, 1_900)
        .load(20.0, 4_000)
        .run();
    assert!(!report.has_violation("block-hash"), "{}", report.describe());
    report.assert_safe_and_live(1);
}

/// A 2|2 split: both halves time out and start view changes. Everyone
/// crashes while view-changing and restarts. `Replica::restore` comes back
/// in `ViewChanging` mode, but its VIEW-CHANGE (volatile `view_changes`) is
/// gone, so `retransmit_view_change` sends nothing, and no progress timer is
/// armed: after the split heals nobody ever sends anything that moves the
/// view. The network must recover.
#[test]
fn crash_all_during_view_change_recovers() {
    let report = Scenario::new(4)
        .seed(1)
        .partition(1_000, 4_000, &[&[0, 1], &[2, 3]])
        .crash_all(3_000, 3_100)
        .load(20.0, 5_000)
        .run();
    report.assert_safe_and_live(1);
}

/// Everyone crashes with a full pipeline (4 pre-prepared, unprepared
/// slots; one transaction per batch at 100 tx/s) and restarts in view 0.
/// The restored slots hold their pre-prepares, but the replicas' own
/// prepares were only recorded as `WalEntry::Voted` and are never re-sent;
/// a backup answers the primary's retransmitted pre-prepare with nothing
/// (`on_pre_prepare`: "a retransmission"); no progress timer is armed after
/// `restore`; and `primary_overdue` does not suspect a primary whose
/// pipeline is full. Nothing ever commits again.
#[test]
fn crash_all_with_a_full_pipeline_recovers() {
    let report = Scenario::new(4)
        .seed(2)
        .crash_all(1_300, 1_500)
        .load(100.0, 3_000)
        .with(|c| c.consensus.batch_txs_max = 1)
        .run();
    report.assert_safe_and_live(1);
}

/// A backup is cut off for 3 s and starts view changes alone (1, 2, …).
/// After healing the others are still in view 0; its view-0 messages are
/// rejected as stale before `highest_seen` is updated, and the only other
/// catch-up trigger is a checkpoint quorum, so when the load stops soon
/// after healing it never fetches the blocks it missed.
#[test]
fn partition_1_3_minority_catches_up_after_load_stops() {
    let report = Scenario::new(4)
        .seed(31)
        .partition(2_000, 5_000, &[&[0, 1, 2], &[3]])
        .load(20.0, 5_500)
        .run();
    report.assert_safe_and_live(1);
}

/// The same lonely view change, with load continuing so the minority does
/// catch up through checkpoints — but it stays in its own higher view,
/// out of the normal case. Then one of the others crashes: with f = 1 the
/// remaining three must keep committing, which needs the former minority
/// back in the view.
#[test]
fn partition_1_3_minority_rejoins_the_view() {
    let (crash, restart) = (7_000, 10_000);
    let report = Scenario::new(4)
        .seed(31)
        .partition(2_000, 5_000, &[&[0, 1, 2], &[3]])
        .crash(1, crash, restart)
        .load(20.0, 11_000)
        .run();
    let during = report.height_at(0, restart) - report.height_at(0, crash + 1_000);
    assert!(
        during > 0,
        "r0, r2, r3 committed nothing while r1 was down:\n{}",
        report.describe()
    );
    report.assert_safe_and_live(1);
}
