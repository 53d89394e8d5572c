//! Seed sweeps: one scenario per seed, with traitors and a fault schedule
//! drawn from the seed, run on all cores, summarised in one line.

use super::config::{Fault, SimConfig, TraitorSpec};
use super::engine::run;
use super::report::Report;
use phalanx_consensus::traitor::{Behaviour, Trigger};
use phalanx_consensus::SeqNum;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The default length of the faulty, loaded part of a sweep run.
pub const DEFAULT_DURATION_MS: u64 = 6_000;

/// Which behaviour traitors get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BehaviourChoice {
    Named(Behaviour),
    /// Drawn from the seed, per traitor.
    Random,
}

impl FromStr for BehaviourChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("random") {
            return Ok(BehaviourChoice::Random);
        }
        s.parse::<Behaviour>()
            .map(BehaviourChoice::Named)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for BehaviourChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BehaviourChoice::Named(b) => f.write_str(b.name()),
            BehaviourChoice::Random => f.write_str("random"),
        }
    }
}

/// Which kinds of fault a sweep injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultProfile {
    None,
    /// Partitions and lossy, duplicating, slow periods.
    Net,
    /// Crashes one at a time, mid-output crashes, and all at once.
    Crash,
    All,
}

impl FromStr for FaultProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(FaultProfile::None),
            "net" => Ok(FaultProfile::Net),
            "crash" => Ok(FaultProfile::Crash),
            "all" => Ok(FaultProfile::All),
            other => Err(format!(
                "unknown fault profile {other:?}; known: none, net, crash, all"
            )),
        }
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultProfile::None => "none",
            FaultProfile::Net => "net",
            FaultProfile::Crash => "crash",
            FaultProfile::All => "all",
        })
    }
}

/// What a sweep runs for every seed.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub validators: usize,
    pub traitors: usize,
    pub behaviour: BehaviourChoice,
    pub faults: FaultProfile,
    /// The loaded, faulty part of a run; faults heal by 70 % of it.
    pub duration_ms: u64,
    pub quorum_override: Option<usize>,
    pub verbose: bool,
    pub debug_nodes: Vec<u16>,
    /// Run each seed to its end instead of stopping at the first violation
    /// (to see everything that goes wrong, not just the first thing).
    pub keep_going: bool,
}

impl SweepSpec {
    pub fn new(
        validators: usize,
        traitors: usize,
        behaviour: BehaviourChoice,
        faults: FaultProfile,
    ) -> SweepSpec {
        SweepSpec {
            validators,
            traitors,
            behaviour,
            faults,
            duration_ms: DEFAULT_DURATION_MS,
            quorum_override: None,
            verbose: false,
            debug_nodes: Vec::new(),
            keep_going: false,
        }
    }

    /// The command that replays `seed` exactly.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut s = format!(
            "phalanx-testnet sim --seeds {seed}..{} --validators {} --traitors {} --behaviour {} --faults {}",
            seed + 1,
            self.validators,
            self.traitors,
            self.behaviour,
            self.faults
        );
        if self.duration_ms != DEFAULT_DURATION_MS {
            s.push_str(&format!(" --duration-ms {}", self.duration_ms));
        }
        if let Some(q) = self.quorum_override {
            s.push_str(&format!(" --quorum-override {q}"));
        }
        s
    }

    /// The scenario of one seed. The schedule is drawn from its own RNG
    /// stream, so it does not shift when the run's own draws change.
    pub fn config_for(&self, seed: u64) -> SimConfig {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        let mut cfg = SimConfig::new(seed, self.validators);
        cfg.workload.stop_ms = self.duration_ms;
        cfg.quorum_override = self.quorum_override;
        cfg.verbose = self.verbose;
        cfg.debug_nodes = self.debug_nodes.clone();
        cfg.stop_on_violation = !self.keep_going;
        cfg.replay = Some(self.replay_command(seed));
        cfg.traitors = self.draw_traitors(&mut rng);
        let heal_by = self.duration_ms * 7 / 10;
        cfg.faults = match self.faults {
            FaultProfile::None => Vec::new(),
            FaultProfile::Net => self.draw_net_faults(&mut rng, heal_by),
            FaultProfile::Crash => self.draw_crash_faults(&mut rng, heal_by),
            FaultProfile::All => {
                let mut f = self.draw_net_faults(&mut rng, heal_by);
                f.extend(self.draw_crash_faults(&mut rng, heal_by));
                f
            }
        };
        cfg
    }

    fn draw_traitors(&self, rng: &mut ChaCha8Rng) -> Vec<TraitorSpec> {
        let n = self.validators as u16;
        let k = self.traitors.min(self.validators);
        let mut nodes: Vec<u16> = (0..n).collect();
        nodes.shuffle(rng);
        nodes.truncate(k);
        // Half the time the primary of view 0 is among them: many
        // behaviours only matter as primary.
        if k > 0 && !nodes.contains(&0) && rng.gen_bool(0.5) {
            nodes[0] = 0;
        }
        nodes.sort_unstable();
        nodes
            .into_iter()
            .map(|node| {
                let behaviour = match self.behaviour {
                    BehaviourChoice::Named(b) => b,
                    // The polite nine only, as before issue 15: the
                    // attackers get their own scenarios (tests/attackers.rs)
                    // until the defences they need are in.
                    BehaviourChoice::Random => {
                        Behaviour::POLITE[rng.gen_range(0..Behaviour::POLITE.len())]
                    }
                };
                let trigger = match rng.gen_range(0..10) {
                    0..=5 => Trigger::default(),
                    6 | 7 => Trigger {
                        from_height: None,
                        from_ms: Some(rng.gen_range(0..=self.duration_ms / 2)),
                    },
                    _ => Trigger {
                        from_height: Some(SeqNum(rng.gen_range(1..=30))),
                        from_ms: None,
                    },
                };
                TraitorSpec {
                    node,
                    behaviour,
                    trigger,
                    until_ms: None,
                }
            })
            .collect()
    }

    fn window(rng: &mut ChaCha8Rng, heal_by: u64, len_min: u64, len_max: u64) -> (u64, u64) {
        let latest_start = heal_by.saturating_sub(len_min).max(301);
        let at = rng.gen_range(300..latest_start);
        let end = (at + rng.gen_range(len_min..=len_max)).min(heal_by.max(at + 1));
        (at, end)
    }

    fn draw_net_faults(&self, rng: &mut ChaCha8Rng, heal_by: u64) -> Vec<Fault> {
        let n = self.validators as u16;
        let count = rng.gen_range(1..=3);
        (0..count)
            .map(|_| {
                let (at_ms, heal_ms) = Self::window(rng, heal_by, 200, 3_000);
                match rng.gen_range(0..4) {
                    0 => {
                        let cut = rng.gen_range(0..n);
                        Fault::Partition {
                            at_ms,
                            heal_ms,
                            groups: vec![(0..n).filter(|i| *i != cut).collect()],
                        }
                    }
                    1 => {
                        let mut nodes: Vec<u16> = (0..n).collect();
                        nodes.shuffle(rng);
                        let half = nodes.split_off(nodes.len() / 2);
                        Fault::Partition {
                            at_ms,
                            heal_ms,
                            groups: vec![nodes, half],
                        }
                    }
                    2 => {
                        let mut groups = vec![Vec::new(), Vec::new(), Vec::new()];
                        for i in 0..n {
                            groups[rng.gen_range(0..3)].push(i);
                        }
                        Fault::Partition {
                            at_ms,
                            heal_ms,
                            groups,
                        }
                    }
                    _ => Fault::Turbulence {
                        at_ms,
                        heal_ms,
                        loss: rng.gen_range(0.0..0.3),
                        duplicate: rng.gen_range(0.0..0.2),
                        delay_ms_max: rng.gen_range(20..=300),
                    },
                }
            })
            .collect()
    }

    fn draw_crash_faults(&self, rng: &mut ChaCha8Rng, heal_by: u64) -> Vec<Fault> {
        let n = self.validators as u16;
        let count = rng.gen_range(1..=3);
        (0..count)
            .map(|_| match rng.gen_range(0..5) {
                0 | 1 => {
                    let (at_ms, restart_ms) = Self::window(rng, heal_by, 100, 3_000);
                    Fault::Crash {
                        node: rng.gen_range(0..n),
                        at_ms,
                        restart_ms,
                        after_outputs: None,
                    }
                }
                2 | 3 => {
                    let (at_ms, restart_ms) = Self::window(rng, heal_by, 200, 2_000);
                    Fault::Crash {
                        node: rng.gen_range(0..n),
                        at_ms,
                        restart_ms,
                        after_outputs: Some(rng.gen_range(0..10)),
                    }
                }
                _ => {
                    let (at_ms, restart_ms) = Self::window(rng, heal_by, 50, 1_500);
                    Fault::CrashAll { at_ms, restart_ms }
                }
            })
            .collect()
    }
}

/// Totals over a sweep.
#[derive(Clone, Debug, Default)]
pub struct SweepSummary {
    pub seeds: u64,
    pub blocks: u64,
    pub view_changes: u64,
    pub faults: u64,
    pub violations: u64,
    /// Reports of the seeds with a violation, by seed.
    pub failed: Vec<Report>,
    /// Simulated milliseconds over all seeds.
    pub simulated_ms: u64,
}

impl SweepSummary {
    pub fn line(&self) -> String {
        format!(
            "sim: seeds {}, blocks committed {}, view changes {}, faults injected {}, violations {}",
            self.seeds, self.blocks, self.view_changes, self.faults, self.violations
        )
    }
}

/// Runs every seed in `seeds` on `threads` threads. `on_report` sees each
/// report as it finishes (in completion order).
pub fn sweep(
    spec: &SweepSpec,
    seeds: Range<u64>,
    threads: usize,
    on_report: &(dyn Fn(&Report) + Sync),
) -> SweepSummary {
    let next = AtomicU64::new(seeds.start);
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let report = run(spec.config_for(seed));
                on_report(&report);
                reports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(report);
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|r| r.seed);
    let mut summary = SweepSummary::default();
    for r in reports {
        summary.seeds += 1;
        summary.blocks += r.agreed_height;
        summary.view_changes += r.view_changes();
        summary.faults += r.stats.faults_injected;
        summary.simulated_ms += r.end_ms;
        if !r.ok() {
            summary.violations += r.violations.len() as u64;
            summary.failed.push(r);
        }
    }
    summary
}

/// Threads for a sweep: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
