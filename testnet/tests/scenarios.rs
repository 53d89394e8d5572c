//! Multi-node scenarios, named by size and fault. Each runs the simulator
//! deterministically (fixed seed) and asserts safety and progress.

use phalanx_consensus::traitor::{Behaviour, Trigger};
use phalanx_testnet::sim::{Report, Scenario};

/// Blocks every honest validator must reach in the n = 4 scenarios.
const HEIGHT: u64 = 30;

/// n = 4 with validator 0 — the primary of view 0 — as the traitor, so
/// behaviours that only matter as primary are exercised.
fn n4_f1(behaviour: Behaviour) -> Report {
    let report = Scenario::new(4)
        .seed(11)
        .traitor(0, behaviour)
        .until_height(HEIGHT)
        .run();
    report.assert_safe_and_live(HEIGHT);
    report
}

#[test]
fn n4_f1_silent() {
    let report = n4_f1(Behaviour::Silent);
    assert!(
        report.view_changes() >= 1,
        "a silent primary is replaced:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_equivocate() {
    n4_f1(Behaviour::Equivocate);
}

#[test]
fn n4_f1_bad_signature() {
    let report = n4_f1(Behaviour::BadSignature);
    assert!(
        report
            .stats
            .verify_rejected
            .get("bad_signature")
            .copied()
            .unwrap_or(0)
            > 0,
        "bad signatures are rejected before the replica:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_wrong_digest() {
    let report = n4_f1(Behaviour::WrongDigest);
    assert!(
        report
            .stats
            .verify_rejected
            .get("digest_mismatch")
            .copied()
            .unwrap_or(0)
            > 0,
        "pre-prepares with a wrong digest are rejected:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_replay() {
    n4_f1(Behaviour::Replay);
}

#[test]
fn n4_f1_bogus_view_change() {
    let report = n4_f1(Behaviour::BogusViewChange);
    assert_eq!(
        report.view_changes(),
        0,
        "one validator cannot force a view change:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_flood() {
    n4_f1(Behaviour::Flood);
}

#[test]
fn n4_f1_censor() {
    let report = n4_f1(Behaviour::Censor);
    assert!(
        report.view_changes() >= 1,
        "a censoring primary is replaced:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_slow_primary() {
    n4_f1(Behaviour::SlowPrimary);
}

#[test]
fn n4_f1_traitor_as_backup_every_behaviour() {
    // The polite nine; the attackers (issue 15) have their own scenarios,
    // with the checks their attack classes need, in tests/attackers.rs.
    for behaviour in Behaviour::POLITE {
        let report = Scenario::new(4)
            .seed(12)
            .traitor(2, behaviour)
            .until_height(HEIGHT)
            .run();
        assert!(report.ok(), "{behaviour} as backup:\n{}", report.describe());
        report.assert_safe_and_live(HEIGHT);
    }
}

#[test]
fn n7_f2_two_traitors() {
    let report = Scenario::new(7)
        .seed(21)
        .traitor(0, Behaviour::Equivocate)
        .traitor(1, Behaviour::Silent)
        .until_height(HEIGHT)
        .run();
    report.assert_safe_and_live(HEIGHT);
}

#[test]
fn partition_1_3_heals() {
    let (start, heal) = (2_000, 5_000);
    let report = Scenario::new(4)
        .seed(31)
        .partition(start, heal, &[&[0, 1, 2], &[3]])
        .until_height(HEIGHT)
        .run();
    // The minority commits nothing while cut off...
    assert_eq!(
        report.height_at(3, start),
        report.height_at(3, heal),
        "r3 committed while cut off:\n{}",
        report.describe()
    );
    // ...the majority does...
    assert!(
        report.height_at(0, heal) > report.height_at(0, start),
        "{}",
        report.describe()
    );
    // ...and the minority catches up after healing.
    report.assert_safe_and_live(HEIGHT);
}

#[test]
fn partition_2_2_heals() {
    let (start, heal) = (2_000, 5_000);
    let report = Scenario::new(4)
        .seed(32)
        .partition(start, heal, &[&[0, 1], &[2, 3]])
        .until_height(HEIGHT)
        .run();
    // No side has a quorum: nothing commits (after in-flight votes land).
    for node in 0..4 {
        assert_eq!(
            report.height_at(node, start + 100),
            report.height_at(node, heal),
            "r{node} committed without a quorum:\n{}",
            report.describe()
        );
    }
    report.assert_safe_and_live(HEIGHT);
}

#[test]
fn crash_restart_one_at_a_time() {
    let report = Scenario::new(4)
        .seed(41)
        .crash(1, 1_000, 2_000)
        .crash(2, 2_500, 3_500)
        .crash(3, 4_000, 5_000)
        .crash(0, 5_500, 6_500)
        .load(20.0, 7_000)
        .until_height(40)
        .run();
    assert_eq!(report.stats.crashes, 4, "{}", report.describe());
    report.assert_safe_and_live(40);
}

#[test]
fn crash_restart_all_at_once() {
    let report = Scenario::new(4)
        .seed(42)
        .crash_all(2_000, 2_500)
        .crash_all(4_000, 4_100)
        .until_height(40)
        .run();
    assert_eq!(report.stats.crashes, 8, "{}", report.describe());
    report.assert_safe_and_live(40);
}

#[test]
fn slow_primary_is_replaced() {
    let report = Scenario::new(4)
        .seed(51)
        .traitor(0, Behaviour::SlowPrimary)
        .until_height(HEIGHT)
        .run();
    report.assert_safe_and_live(HEIGHT);
    assert!(
        report.view_changes() >= 1,
        "no view change:\n{}",
        report.describe()
    );
    let views: Vec<u64> = report.views.iter().flatten().copied().collect();
    assert!(
        views.iter().all(|v| v % 4 != 0),
        "the slow primary r0 leads again at the end: {views:?}\n{}",
        report.describe()
    );
    // Commits continue after the first view change.
    let first_new_view_ms = *report
        .stats
        .views_entered
        .values()
        .min()
        .expect("a view change");
    for node in 1..4 {
        assert!(
            report.height_at(node, report.end_ms) > report.height_at(node, first_new_view_ms),
            "r{node} committed nothing after the view change:\n{}",
            report.describe()
        );
    }
}

/// A slow primary under load holds its partial batches while its slow
/// pre-prepares are in flight, so they grow past half full — the size that
/// counts as busy — without the primary doing more work. It is still
/// replaced for proposing too slowly (measured on the real cluster: left in
/// office, it kept every transaction waiting ~1.1 s).
#[test]
fn slow_primary_under_load_is_replaced() {
    let report = Scenario::new(4)
        .seed(52)
        .traitor_from(
            0,
            Behaviour::SlowPrimary,
            Trigger {
                from_height: None,
                from_ms: Some(2_000),
            },
        )
        .with(|c| c.workload.clients = 16)
        .load(400.0, 8_000)
        .until_height(HEIGHT)
        .run();
    report.assert_safe_and_live(HEIGHT);
    let replaced_ms = report.stats.views_entered.values().min().copied();
    assert!(
        // Since complaints (session 7) a backup's suspicion alone does not
        // move it: the view changes once 2f + 1 have complained. Measured on
        // this seed: replaced at 5,026 ms (4,000 before complaints).
        replaced_ms.is_some_and(|at| at <= 5_500),
        "r0 turned slow at 2,000 ms and left office at {replaced_ms:?} (load until 8,000)\n{}",
        report.describe()
    );
}
