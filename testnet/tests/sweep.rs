//! The seed sweep: 500 seeds, n = 4, one traitor with a random behaviour
//! and trigger, random network and crash faults, zero violations.

use phalanx_testnet::sim::{default_threads, sweep, BehaviourChoice, FaultProfile, SweepSpec};
use std::time::Instant;

#[test]
fn seed_sweep_500() {
    let spec = SweepSpec::new(4, 1, BehaviourChoice::Random, FaultProfile::All);
    let started = Instant::now();
    let summary = sweep(&spec, 0..500, default_threads(), &|_| {});
    eprintln!(
        "{} in {:.1} s",
        summary.line(),
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<String> = summary
        .failed
        .iter()
        .map(|r| {
            format!(
                "{}\n  replay: {}",
                r.violations[0],
                spec.replay_command(r.seed)
            )
        })
        .collect();
    assert_eq!(summary.seeds, 500);
    assert!(
        summary.blocks > 500 * 20,
        "too little progress: {}",
        summary.line()
    );
    assert!(
        failures.is_empty(),
        "{} of 500 seeds failed ({}):\n{}",
        failures.len(),
        summary.line(),
        failures.join("\n")
    );
}
