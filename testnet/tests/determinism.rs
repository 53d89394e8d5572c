//! One seed, one trace: two runs of the same scenario carry out the same
//! outputs at the same times, byte for byte.

use phalanx_testnet::sim::{run, BehaviourChoice, FaultProfile, SweepSpec};

#[test]
fn determinism_same_seed_same_trace() {
    let spec = SweepSpec::new(4, 1, BehaviourChoice::Random, FaultProfile::All);
    for seed in [3, 7] {
        let a = run(spec.config_for(seed));
        let b = run(spec.config_for(seed));
        assert!(
            a.trace_records > 1_000,
            "a trivial trace proves nothing:\n{}",
            a.describe()
        );
        assert_eq!(a.trace_records, b.trace_records, "seed {seed}");
        assert_eq!(
            a.trace_digest, b.trace_digest,
            "seed {seed}: two runs differ"
        );
        assert_eq!(a.heights, b.heights);
    }
    let other = run(spec.config_for(4));
    assert_ne!(
        run(spec.config_for(3)).trace_digest,
        other.trace_digest,
        "different seeds, different traces"
    );
}
