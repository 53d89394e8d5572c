//! What one simulated run is made of: validators, traitors, the network,
//! scheduled faults, the client workload, and what must hold at the end.

use phalanx_consensus::traitor::{Behaviour, TraitorLimits, Trigger};
use phalanx_consensus::ConsensusParams;

/// The network outside of faults: every message takes a delay drawn
/// uniformly from `delay_ms_min..=delay_ms_max` (so messages reorder), and
/// may be lost or duplicated.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// Probability that one message to one peer is lost.
    pub loss: f64,
    /// Probability that one message to one peer arrives twice.
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay_ms_min: 1,
            delay_ms_max: 20,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A fault, scheduled in simulated time. Every fault ends (heals, or its
/// replicas restart) by its end time; after the last end no fault is active.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// From `at_ms` to `heal_ms`, messages between validators in different
    /// groups are dropped (also those already in flight). A validator in no
    /// group is cut off from everyone.
    Partition {
        at_ms: u64,
        heal_ms: u64,
        groups: Vec<Vec<u16>>,
    },
    /// From `at_ms` to `heal_ms` the network loses, duplicates and delays
    /// more than usual.
    Turbulence {
        at_ms: u64,
        heal_ms: u64,
        loss: f64,
        duplicate: f64,
        delay_ms_max: u64,
    },
    /// Crashes `node` at `at_ms` and restarts it from its disk at
    /// `restart_ms`. With `after_outputs: Some(k)`, the crash comes in the
    /// middle of the first step at or after `at_ms` that produces more than
    /// `k` outputs: the first `k` are carried out (persisted records are
    /// durable, messages sent), the rest are lost.
    Crash {
        node: u16,
        at_ms: u64,
        restart_ms: u64,
        after_outputs: Option<usize>,
    },
    /// Every validator crashes at `at_ms` and restarts at `restart_ms`.
    CrashAll { at_ms: u64, restart_ms: u64 },
    /// Negative control only: `node` crashes and restarts with its WAL
    /// lost (its blocks kept) — it forgets the votes it signed, which the
    /// protocol forbids. The double-signing checker must notice.
    CrashLosingWal {
        node: u16,
        at_ms: u64,
        restart_ms: u64,
    },
}

impl Fault {
    pub fn start_ms(&self) -> u64 {
        match self {
            Fault::Partition { at_ms, .. }
            | Fault::Turbulence { at_ms, .. }
            | Fault::Crash { at_ms, .. }
            | Fault::CrashAll { at_ms, .. }
            | Fault::CrashLosingWal { at_ms, .. } => *at_ms,
        }
    }

    /// When the fault is over.
    pub fn end_ms(&self) -> u64 {
        match self {
            Fault::Partition { heal_ms, .. } | Fault::Turbulence { heal_ms, .. } => *heal_ms,
            Fault::Crash { restart_ms, .. }
            | Fault::CrashAll { restart_ms, .. }
            | Fault::CrashLosingWal { restart_ms, .. } => *restart_ms,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Partition {
                at_ms,
                heal_ms,
                groups,
            } => format!("partition {groups:?} {at_ms}..{heal_ms} ms"),
            Fault::Turbulence {
                at_ms,
                heal_ms,
                loss,
                duplicate,
                delay_ms_max,
            } => format!(
                "turbulence loss {loss:.2} dup {duplicate:.2} delay ≤{delay_ms_max} ms {at_ms}..{heal_ms} ms"
            ),
            Fault::Crash {
                node,
                at_ms,
                restart_ms,
                after_outputs,
            } => match after_outputs {
                Some(k) => format!("crash r{node} after output {k} at {at_ms}, restart {restart_ms} ms"),
                None => format!("crash r{node} {at_ms}..{restart_ms} ms"),
            },
            Fault::CrashAll { at_ms, restart_ms } => format!("crash all {at_ms}..{restart_ms} ms"),
            Fault::CrashLosingWal {
                node,
                at_ms,
                restart_ms,
            } => format!("crash r{node} losing its WAL {at_ms}..{restart_ms} ms"),
        }
    }
}

/// One traitor: which validator, how it misbehaves, from when, and until
/// when (after `until_ms` it sends nothing at all, like a killed process:
/// a burst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraitorSpec {
    pub node: u16,
    pub behaviour: Behaviour,
    pub trigger: Trigger,
    pub until_ms: Option<u64>,
}

/// The attacker traitors' size budget in the simulator: a quarter MiB
/// instead of the node's 16 MiB, as the simulator's window (32) and
/// timeouts are scaled down. The checks that matter do not depend on the
/// size — a verified message from a traitor must carry no more signatures
/// than the largest honest one and no duplicated entries, and 256 KiB is
/// already twice the largest honest NEW-VIEW at n = 7 — while full-size
/// messages would make each simulated step cost seconds of real ed25519.
pub const SIM_TRAITOR_MESSAGE_BYTES_MAX: u64 = 256 << 10;

/// Signed transfers from funded genesis accounts, gossiped to every live
/// validator at its own random time.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Funded genesis accounts that send transfers.
    pub clients: usize,
    /// Mean new transactions per simulated second, over all clients.
    pub tx_per_sec: f64,
    /// A client submits 1 to this many transactions at once.
    pub burst_max: usize,
    /// Each validator hears of a transaction up to this long after it was
    /// submitted.
    pub gossip_delay_ms_max: u64,
    /// A client resubmits a transaction not executed after this long.
    pub resubmit_ms: u64,
    /// A client has at most this many transactions not yet executed.
    pub unconfirmed_max: usize,
    /// No new transactions after this time (but see `SimConfig::target_height`).
    pub stop_ms: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 4,
            tx_per_sec: 20.0,
            burst_max: 5,
            gossip_delay_ms_max: 30,
            resubmit_ms: 2_000,
            unconfirmed_max: 32,
            stop_ms: 8_000,
        }
    }
}

/// Everything that decides a run. Two runs with equal configs are equal,
/// event for event.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    pub validators: usize,
    pub traitors: Vec<TraitorSpec>,
    pub net: NetConfig,
    pub faults: Vec<Fault>,
    pub workload: WorkloadConfig,
    /// Consensus parameters written into the genesis.
    pub consensus: ConsensusParams,
    /// What attacker traitors may send, in bytes.
    pub traitor_limits: TraitorLimits,
    /// Test-only broken quorum (negative controls).
    pub quorum_override: Option<usize>,
    /// Clients keep submitting until every honest validator reached this
    /// height, and liveness requires it.
    pub target_height: u64,
    /// After the last fault healed and the workload stopped, every honest
    /// validator must execute every transaction within this long.
    pub liveness_bound_ms: u64,
    /// Whether the end-of-run liveness check runs at all.
    pub check_liveness: bool,
    /// Stop at the first violation (sweeps); tests may want to see all.
    pub stop_on_violation: bool,
    /// Print faults, views and violations as they happen.
    pub verbose: bool,
    /// Print every input and output of these validators (debugging).
    pub debug_nodes: Vec<u16>,
    /// Record `(time, validator, outputs)` of every step in the report (to
    /// pick crash points).
    pub record_steps: bool,
    /// The command that replays this run, for violation reports.
    pub replay: Option<String>,
}

/// Consensus parameters scaled for simulated time: short timeouts and a
/// small window, so view changes and checkpoints happen often.
pub fn sim_consensus_params() -> ConsensusParams {
    ConsensusParams {
        checkpoint_interval: 8,
        window: 32,
        batch_txs_max: 64,
        // Small enough for a full-window view change to fit for n ≤ 10.
        batch_bytes_max: 64 * 1024,
        batch_delay_ms: 5,
        pipeline_max: 4,
        propose_timeout_ms: 500,
        view_timeout_ms: 1_000,
        view_timeout_ms_max: 8_000,
        retransmit_ms: 200,
        pending_txs_max: 10_000,
    }
}

impl SimConfig {
    /// n honest validators on a clean network, light load, no faults.
    pub fn new(seed: u64, validators: usize) -> SimConfig {
        SimConfig {
            seed,
            validators,
            traitors: Vec::new(),
            net: NetConfig::default(),
            faults: Vec::new(),
            workload: WorkloadConfig::default(),
            consensus: sim_consensus_params(),
            traitor_limits: TraitorLimits {
                message_bytes_max: SIM_TRAITOR_MESSAGE_BYTES_MAX,
            },
            quorum_override: None,
            target_height: 0,
            liveness_bound_ms: 30_000,
            check_liveness: true,
            stop_on_violation: false,
            verbose: false,
            debug_nodes: Vec::new(),
            record_steps: false,
            replay: None,
        }
    }

    /// When the last fault is over: no fault is active from then on.
    pub fn heal_ms(&self) -> u64 {
        self.faults.iter().map(Fault::end_ms).max().unwrap_or(0)
    }

    /// From when liveness is measured: faults healed and the load stopped.
    pub fn quiet_ms(&self) -> u64 {
        self.heal_ms().max(self.workload.stop_ms)
    }

    /// The latest time the run may reach.
    pub fn deadline_ms(&self) -> u64 {
        self.quiet_ms() + self.liveness_bound_ms
    }

    pub fn f(&self) -> usize {
        self.validators.saturating_sub(1) / 3
    }

    pub fn traitor(&self, node: u16) -> Option<&TraitorSpec> {
        self.traitors.iter().find(|t| t.node == node)
    }

    /// Checks the config makes sense before a run.
    pub fn validate(&self) -> Result<(), String> {
        if self.validators == 0 || self.validators > 64 {
            return Err(format!("{} validators: need 1 to 64", self.validators));
        }
        let n = self.validators as u16;
        for t in &self.traitors {
            if t.node >= n {
                return Err(format!("traitor r{} but only {n} validators", t.node));
            }
            if t.until_ms
                .is_some_and(|u| t.trigger.from_ms.is_some_and(|f| u < f))
            {
                return Err(format!("traitor r{} stops before it starts", t.node));
            }
        }
        let mut nodes: Vec<u16> = self.traitors.iter().map(|t| t.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != self.traitors.len() {
            return Err("a validator is named as a traitor twice".into());
        }
        if self.net.delay_ms_min > self.net.delay_ms_max {
            return Err("network delay min is above max".into());
        }
        for fault in &self.faults {
            if fault.end_ms() < fault.start_ms() {
                return Err(format!("fault ends before it starts: {}", fault.describe()));
            }
            if let Fault::Crash { node, .. } | Fault::CrashLosingWal { node, .. } = fault {
                if *node >= n {
                    return Err(format!("crash of r{node} but only {n} validators"));
                }
            }
        }
        if self.workload.clients == 0 {
            return Err("the workload needs at least one client".into());
        }
        Ok(())
    }
}
