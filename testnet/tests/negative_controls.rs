//! Every checker must be seen to fire: break the protocol on purpose and
//! the simulator must report it.

use phalanx_consensus::traitor::Behaviour;
use phalanx_testnet::sim::{Report, Scenario};

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

fn broken_runs(build: impl Fn(u64) -> Scenario) -> Vec<Report> {
    SEEDS
        .iter()
        .map(|&seed| build(seed).check_liveness(false).load(20.0, 3_000).run())
        .collect()
}

fn summary(reports: &[Report]) -> String {
    reports
        .iter()
        .map(Report::describe)
        .collect::<Vec<_>>()
        .join("")
}

/// f + 1 = 2 colluding equivocators in n = 4: they can make two honest
/// groups commit different batches at one height.
#[test]
fn negative_control_two_colluding_equivocators() {
    let reports = broken_runs(|seed| {
        Scenario::new(4)
            .seed(seed)
            .traitor(0, Behaviour::Equivocate)
            .traitor(1, Behaviour::Equivocate)
    });
    assert!(
        reports.iter().any(|r| r.has_violation("agreement")),
        "two colluding equivocators went unnoticed:\n{}",
        summary(&reports)
    );
}

/// A quorum of 2f instead of 2f + 1 with an equivocating primary: prepared
/// and committed certificates no longer intersect in an honest validator.
#[test]
fn negative_control_quorum_2f() {
    let reports = broken_runs(|seed| {
        Scenario::new(4)
            .seed(seed)
            .quorum_override(2)
            .traitor(0, Behaviour::Equivocate)
    });
    assert!(
        reports
            .iter()
            .any(|r| r.has_violation("agreement") || r.has_violation("certificate")),
        "a 2f quorum went unnoticed:\n{}",
        summary(&reports)
    );
    assert!(
        reports.iter().any(|r| r.has_violation("agreement")),
        "a 2f quorum with an equivocating primary must split honest validators:\n{}",
        summary(&reports)
    );
}

/// A primary that loses its WAL in a crash forgets which batches it
/// pre-prepared, and proposes different ones for the same seqs in the same
/// view: the double-signing checker must catch it.
#[test]
fn negative_control_wal_lost_double_signs() {
    let reports = broken_runs(|seed| {
        Scenario::new(4)
            .seed(seed)
            .crash_losing_wal(0, 1_000, 1_050)
    });
    assert!(
        reports.iter().any(|r| r.has_violation("double-sign")),
        "an amnesiac primary went unnoticed:\n{}",
        summary(&reports)
    );
}
