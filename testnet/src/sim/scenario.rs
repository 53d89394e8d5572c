//! A small builder for scenario tests: add nodes, make one a traitor, add
//! faults, run until a height, check.
//!
//! ```no_run
//! use phalanx_testnet::sim::Scenario;
//! use phalanx_consensus::traitor::Behaviour;
//!
//! let report = Scenario::new(4).traitor(0, Behaviour::Silent).until_height(20).run();
//! report.assert_safe_and_live(20);
//! ```

use super::config::{Fault, NetConfig, SimConfig, TraitorSpec};
use super::engine::run;
use super::report::Report;
use phalanx_consensus::traitor::{Behaviour, Trigger};

#[derive(Clone, Debug)]
pub struct Scenario {
    cfg: SimConfig,
}

impl Scenario {
    /// `validators` honest validators, seed 1, a clean network, light load
    /// for 5 s.
    pub fn new(validators: usize) -> Scenario {
        let mut cfg = SimConfig::new(1, validators);
        cfg.workload.stop_ms = 5_000;
        Scenario { cfg }
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.seed = seed;
        self
    }

    pub fn traitor(self, node: u16, behaviour: Behaviour) -> Self {
        self.traitor_from(node, behaviour, Trigger::default())
    }

    pub fn traitor_from(mut self, node: u16, behaviour: Behaviour, trigger: Trigger) -> Self {
        self.cfg.traitors.push(TraitorSpec {
            node,
            behaviour,
            trigger,
            until_ms: None,
        });
        self
    }

    /// A traitor that attacks from `from_ms` to `until_ms` and then sends
    /// nothing at all (a killed attacker): a burst.
    pub fn traitor_burst(
        mut self,
        node: u16,
        behaviour: Behaviour,
        from_ms: u64,
        until_ms: u64,
    ) -> Self {
        self.cfg.traitors.push(TraitorSpec {
            node,
            behaviour,
            trigger: Trigger {
                from_height: None,
                from_ms: Some(from_ms),
            },
            until_ms: Some(until_ms),
        });
        self
    }

    pub fn network(mut self, net: NetConfig) -> Self {
        self.cfg.net = net;
        self
    }

    pub fn partition(mut self, at_ms: u64, heal_ms: u64, groups: &[&[u16]]) -> Self {
        self.cfg.faults.push(Fault::Partition {
            at_ms,
            heal_ms,
            groups: groups.iter().map(|g| g.to_vec()).collect(),
        });
        self
    }

    pub fn turbulence(
        mut self,
        at_ms: u64,
        heal_ms: u64,
        loss: f64,
        duplicate: f64,
        delay_ms_max: u64,
    ) -> Self {
        self.cfg.faults.push(Fault::Turbulence {
            at_ms,
            heal_ms,
            loss,
            duplicate,
            delay_ms_max,
        });
        self
    }

    pub fn crash(mut self, node: u16, at_ms: u64, restart_ms: u64) -> Self {
        self.cfg.faults.push(Fault::Crash {
            node,
            at_ms,
            restart_ms,
            after_outputs: None,
        });
        self
    }

    /// Crash `node` in the middle of its first step at or after `at_ms`
    /// with more than `k` outputs, after carrying out the first `k`.
    pub fn crash_after_outputs(mut self, node: u16, at_ms: u64, k: usize, restart_ms: u64) -> Self {
        self.cfg.faults.push(Fault::Crash {
            node,
            at_ms,
            restart_ms,
            after_outputs: Some(k),
        });
        self
    }

    /// Negative control: crash `node` and restart it without its WAL.
    pub fn crash_losing_wal(mut self, node: u16, at_ms: u64, restart_ms: u64) -> Self {
        self.cfg.faults.push(Fault::CrashLosingWal {
            node,
            at_ms,
            restart_ms,
        });
        self
    }

    pub fn crash_all(mut self, at_ms: u64, restart_ms: u64) -> Self {
        self.cfg.faults.push(Fault::CrashAll { at_ms, restart_ms });
        self
    }

    /// Mean transactions per second, and when clients stop.
    pub fn load(mut self, tx_per_sec: f64, stop_ms: u64) -> Self {
        self.cfg.workload.tx_per_sec = tx_per_sec;
        self.cfg.workload.stop_ms = stop_ms;
        self
    }

    /// Keep the load on until every honest validator reached `height`;
    /// liveness then requires it.
    pub fn until_height(mut self, height: u64) -> Self {
        self.cfg.target_height = height;
        self
    }

    pub fn quorum_override(mut self, quorum: usize) -> Self {
        self.cfg.quorum_override = Some(quorum);
        self
    }

    pub fn check_liveness(mut self, on: bool) -> Self {
        self.cfg.check_liveness = on;
        self
    }

    pub fn liveness_bound_ms(mut self, ms: u64) -> Self {
        self.cfg.liveness_bound_ms = ms;
        self
    }

    pub fn verbose(mut self) -> Self {
        self.cfg.verbose = true;
        self
    }

    /// Adjust anything else.
    pub fn with(mut self, f: impl FnOnce(&mut SimConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn run(self) -> Report {
        run(self.cfg)
    }
}

impl Report {
    /// Panics, with the whole report, unless the run was safe and live and
    /// every honest validator reached `min_height`.
    pub fn assert_safe_and_live(&self, min_height: u64) {
        assert!(self.ok(), "violations:\n{}", self.describe());
        assert!(
            self.min_honest_height() >= min_height,
            "an honest validator is below height {min_height}:\n{}",
            self.describe()
        );
    }
}
