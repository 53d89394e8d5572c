//! The simulation engine: an event queue over simulated milliseconds, the
//! validators with their simulated disks, and the driver that carries out
//! each replica's outputs in order.
//!
//! Events are ordered by `(time, sequence number)`, the sequence number
//! counting schedulings, so ties break the same way on every run. All
//! randomness comes from one ChaCha8 stream seeded by the run's seed.

use super::checker::{Checker, Violation};
use super::config::{Fault, SimConfig};
use super::cost;
use super::describe::{describe_input, describe_output, output_kind};
use super::network::{Fate, Network};
use super::report::{Report, Stats};
use super::trace::Trace;
use super::workload::Workload;
use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::traitor::{Participant, Traitor};
use phalanx_consensus::{
    tx_hash, verify_message, CommittedBatch, Config, Event as ReplicaEvent, Genesis,
    GenesisValidator, Input, Message, Output, Replica, SeqNum, Timer, Transaction, Transfer,
    ValidatorIndex, VerifiedMessage, VerifyContext, WalEntry, CATCH_UP_BLOCKS_MAX,
};
use phalanx_crypto::{codec, AnyKey, Digest, Keypair, Signed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

/// The chain id of every simulated network.
pub const SIM_CHAIN_ID: &str = "phalanx-sim";
/// How often the driver checks whether the run is done.
const PROBE_MS: u64 = 100;
/// How often clients resubmit what has not executed.
const RESUBMIT_TICK_MS: u64 = 500;
/// Verified messages kept for reuse (by sender and bytes).
const VERIFY_CACHE_MAX: usize = 20_000;

thread_local! {
    /// Simulated time of the running simulation, for panic reports.
    static SIM_NOW_MS: Cell<u64> = const { Cell::new(0) };
}

/// The simulated time at which the simulation on this thread last stepped.
pub fn current_sim_time_ms() -> u64 {
    SIM_NOW_MS.with(|c| c.get())
}

enum Event {
    Deliver {
        from: u16,
        to: u16,
        bytes: Arc<Vec<u8>>,
        hash: Digest,
    },
    Timer {
        node: u16,
        timer: Timer,
        token: u64,
    },
    Gossip {
        node: u16,
        txs: Arc<Vec<Transaction>>,
    },
    Boot {
        node: u16,
    },
    ClientTick,
    ResubmitTick,
    Probe,
    FaultStart(usize),
    FaultEnd(usize),
}

struct Scheduled {
    at: u64,
    id: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}

/// One validator: its volatile replica (None while crashed) and its disk.
struct Node {
    key: Keypair,
    participant: Option<Participant>,
    /// The durable consensus records (synced writes).
    wal: Vec<WalEntry>,
    /// Executed state and the committed batches: on disk, survive crashes.
    ledger: MemoryLedger,
    batches: Vec<CommittedBatch>,
    /// Hashes of committed transactions (the node's tx index).
    committed_txs: HashSet<Digest>,
    commit_times: Vec<(u64, u64)>,
    /// Pending timers: kind → token of the live scheduling.
    timers: BTreeMap<Timer, u64>,
    /// Crash after this many outputs of a step.
    crash_point: Option<usize>,
}

impl Node {
    fn up(&self) -> bool {
        self.participant.is_some()
    }
}

/// A simulation in progress. Build with [`Sim::new`], run with [`Sim::run`].
pub struct Sim {
    cfg: SimConfig,
    consensus: Config,
    genesis_hash: Digest,
    rng: ChaCha8Rng,
    now_ms: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_id: u64,
    next_token: u64,
    nodes: Vec<Node>,
    net: Network,
    workload: Workload,
    checker: Checker,
    trace: Trace,
    stats: Stats,
    verify_cache: HashMap<(u16, Digest), Result<VerifiedMessage, &'static str>>,
    /// Outputs carried out in the current step (crash points count these).
    step_outputs: usize,
    steps: Vec<(u64, u16, usize)>,
    done_ms: Option<u64>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Result<Sim, String> {
        cfg.validate()?;
        let n = cfg.validators;
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::insecure_from_label(&format!("sim-validator-{i}")))
            .collect();
        let workload = Workload::new(cfg.workload.clone(), SIM_CHAIN_ID);
        let genesis = Genesis {
            chain_id: SIM_CHAIN_ID.into(),
            genesis_time_ms: 0,
            test_network: true,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator {
                    name: format!("r{i}"),
                    public_key: k.public(),
                    p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                })
                .collect(),
            consensus: cfg.consensus.clone(),
            accounts: workload.genesis_accounts(),
        };
        genesis.validate().map_err(|e| e.to_string())?;
        let mut consensus = genesis.consensus_config();
        consensus.quorum_override = cfg.quorum_override;
        let honest: Vec<bool> = (0..n as u16).map(|i| cfg.traitor(i).is_none()).collect();
        let checker = Checker::new(
            cfg.seed,
            SIM_CHAIN_ID,
            genesis.validator_set(),
            genesis.hash(),
            genesis.total_supply(),
            honest,
        );
        let nodes = keys
            .into_iter()
            .map(|key| Node {
                key,
                participant: None,
                wal: Vec::new(),
                ledger: MemoryLedger::from_genesis(&genesis),
                batches: Vec::new(),
                committed_txs: HashSet::new(),
                commit_times: Vec::new(),
                timers: BTreeMap::new(),
                crash_point: None,
            })
            .collect();
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            net: Network::new(cfg.net.clone(), n),
            consensus,
            genesis_hash: genesis.hash(),
            now_ms: 0,
            queue: BinaryHeap::new(),
            next_id: 0,
            next_token: 0,
            nodes,
            workload,
            checker,
            trace: Trace::default(),
            stats: Stats::default(),
            verify_cache: HashMap::new(),
            step_outputs: 0,
            steps: Vec::new(),
            done_ms: None,
            cfg,
        };
        for i in 0..n {
            let replica = Replica::new(sim.consensus.clone(), sim.nodes[i].key.clone())
                .map_err(|e| e.to_string())?;
            sim.nodes[i].participant = Some(sim.participant(i as u16, replica));
            sim.schedule(0, Event::Boot { node: i as u16 });
        }
        for i in 0..sim.cfg.faults.len() {
            let (start, end) = (sim.cfg.faults[i].start_ms(), sim.cfg.faults[i].end_ms());
            sim.schedule(start, Event::FaultStart(i));
            sim.schedule(end, Event::FaultEnd(i));
        }
        sim.schedule(1, Event::ClientTick);
        sim.schedule(RESUBMIT_TICK_MS, Event::ResubmitTick);
        sim.schedule(PROBE_MS, Event::Probe);
        Ok(sim)
    }

    fn participant(&self, node: u16, replica: Replica) -> Participant {
        match self.cfg.traitor(node) {
            Some(t) => Traitor::new(replica, t.behaviour, t.trigger)
                .with_limits(self.cfg.traitor_limits)
                .until_ms(t.until_ms)
                .into(),
            None => Participant::honest(replica),
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse(Scheduled {
            at: at.max(self.now_ms),
            id,
            event,
        }));
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if self.cfg.verbose {
            println!("[seed {} t={:>6}] {}", self.cfg.seed, self.now_ms, line());
        }
    }

    /// Runs to the end: until every honest validator executed every
    /// transaction after the faults healed, or the liveness deadline.
    pub fn run(mut self) -> Report {
        let deadline = self.cfg.deadline_ms();
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > deadline {
                self.now_ms = deadline;
                break;
            }
            self.now_ms = next.at;
            SIM_NOW_MS.with(|c| c.set(self.now_ms));
            self.dispatch(next.event);
            if self.done_ms.is_some() {
                break;
            }
            if self.cfg.stop_on_violation && !self.checker.violations.is_empty() {
                break;
            }
        }
        if self.done_ms.is_none() && self.cfg.check_liveness && self.checker.violations.is_empty() {
            // Either the network as a whole did not get everything
            // committed, or it did and some honest validator lags behind.
            let agreed_all =
                self.workload.unconfirmed() == 0 && self.checker.height() >= self.cfg.target_height;
            let checker = if agreed_all { "catch-up" } else { "liveness" };
            let detail = self.liveness_detail();
            self.checker.report(checker, 0, self.now_ms, None, detail);
        }
        self.report()
    }

    fn report(mut self) -> Report {
        let honest: Vec<bool> = (0..self.nodes.len() as u16)
            .map(|i| self.checker.is_honest(i))
            .collect();
        Report {
            seed: self.cfg.seed,
            violations: std::mem::take(&mut self.checker.violations),
            trace_digest: self.trace.digest(),
            trace_records: self.trace.records,
            heights: self.nodes.iter().map(|n| n.ledger.height).collect(),
            views: self
                .nodes
                .iter()
                .map(|n| n.participant.as_ref().map(|p| p.replica().view().0))
                .collect(),
            view_changing: self
                .nodes
                .iter()
                .map(|n| {
                    n.participant
                        .as_ref()
                        .is_some_and(|p| p.replica().is_view_changing())
                })
                .collect(),
            catching_up: self
                .nodes
                .iter()
                .map(|n| {
                    n.participant
                        .as_ref()
                        .is_some_and(|p| p.replica().is_catching_up())
                })
                .collect(),
            honest,
            agreed_height: self.checker.height(),
            txs_created: self.workload.created,
            txs_unconfirmed: self.workload.unconfirmed(),
            end_ms: self.now_ms,
            done_ms: self.done_ms,
            commit_times: self.nodes.iter().map(|n| n.commit_times.clone()).collect(),
            steps: std::mem::take(&mut self.steps),
            replay: self.cfg.replay.clone(),
            stats: self.stats,
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                to,
                bytes,
                hash,
            } => self.deliver(from, to, &bytes, hash),
            Event::Timer { node, timer, token } => {
                let n = &mut self.nodes[node as usize];
                if n.up() && n.timers.get(&timer) == Some(&token) {
                    n.timers.remove(&timer);
                    self.step(node, Input::Timer(timer));
                }
            }
            Event::Gossip { node, txs } => {
                if self.nodes[node as usize].up() {
                    let admitted = self.admit(node, &txs);
                    if !admitted.is_empty() {
                        self.step(node, Input::Transactions(admitted));
                    }
                }
            }
            Event::Boot { node } => {
                if self.nodes[node as usize].up() {
                    // The driver's first input after (re)start: arms the
                    // replica's retransmit timer, so a network that restarted
                    // all at once gets going again.
                    self.step(node, Input::Transactions(Vec::new()));
                }
            }
            Event::ClientTick => self.client_tick(),
            Event::ResubmitTick => {
                let txs = self.workload.due_for_resubmit(self.now_ms);
                if !txs.is_empty() {
                    self.gossip(txs);
                }
                self.schedule(self.now_ms + RESUBMIT_TICK_MS, Event::ResubmitTick);
            }
            Event::Probe => {
                if self.is_done() {
                    self.done_ms = Some(self.now_ms);
                } else {
                    self.schedule(self.now_ms + PROBE_MS, Event::Probe);
                }
            }
            Event::FaultStart(i) => self.fault_start(i),
            Event::FaultEnd(i) => self.fault_end(i),
        }
    }

    // ---- workload ----

    fn load_running(&self) -> bool {
        self.now_ms < self.cfg.workload.stop_ms || self.min_honest_height() < self.cfg.target_height
    }

    fn client_tick(&mut self) {
        if !self.load_running() {
            return;
        }
        let txs = self.workload.burst(self.now_ms, &mut self.rng);
        if !txs.is_empty() {
            self.gossip(txs);
        }
        let mean = self.workload.mean_gap_ms();
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let gap = (-mean * u.ln()).round().clamp(1.0, 60_000.0) as u64;
        self.schedule(self.now_ms + gap, Event::ClientTick);
    }

    /// Every live validator hears of `txs`, each at its own time.
    fn gossip(&mut self, txs: Vec<Transaction>) {
        let txs = Arc::new(txs);
        let max = self.cfg.workload.gossip_delay_ms_max;
        for node in 0..self.nodes.len() as u16 {
            if self.nodes[node as usize].up() {
                let delay = self.rng.gen_range(0..=max);
                self.schedule(
                    self.now_ms + delay,
                    Event::Gossip {
                        node,
                        txs: txs.clone(),
                    },
                );
            }
        }
    }

    /// The node's mempool admission, as `phalanx-node` does it: refuse a
    /// transaction already committed, or whose nonce is behind its
    /// account's. (Signatures, chain id and size are right by construction.)
    fn admit(&mut self, node: u16, txs: &[Transaction]) -> Vec<Transaction> {
        let n = &self.nodes[node as usize];
        let admitted: Vec<Transaction> = txs
            .iter()
            .filter(|tx| {
                let nonce = n
                    .ledger
                    .accounts
                    .get(&tx.signer.address())
                    .map(|a| a.nonce)
                    .unwrap_or(0);
                tx.payload.nonce >= nonce && !n.committed_txs.contains(&tx_hash(tx))
            })
            .cloned()
            .collect();
        self.stats.mempool_refused += (txs.len() - admitted.len()) as u64;
        admitted
    }

    fn min_honest_height(&self) -> u64 {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.checker.is_honest(*i as u16))
            .map(|(_, n)| n.ledger.height)
            .min()
            .unwrap_or(0)
    }

    /// Faults over, load stopped, and every honest validator (up) has
    /// executed every transaction and reached the target height — and
    /// takes part: it is not sitting alone in a view change (a chain that
    /// grows while one honest validator sits out has lost its fault margin).
    fn is_done(&self) -> bool {
        if self.now_ms < self.cfg.quiet_ms() || self.load_running() {
            return false;
        }
        let expected: Vec<_> = self.workload.expected_nonces().collect();
        let views: std::collections::BTreeSet<(u64, bool)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.checker.is_honest(*i as u16))
            .filter_map(|(_, n)| n.participant.as_ref())
            .map(|p| (p.replica().view().0, p.replica().is_view_changing()))
            .collect();
        // Not view-changing. (Being in a lower view than the others is not
        // required: on an idle chain nothing tells a replica that missed
        // a NEW-VIEW about the later view until the next vote; it then
        // asks for it — sweep seed 263.)
        if views.iter().any(|(_, changing)| *changing) {
            return false;
        }
        self.nodes.iter().enumerate().all(|(i, n)| {
            if !self.checker.is_honest(i as u16) {
                return true;
            }
            n.up()
                && n.ledger.height >= self.cfg.target_height
                && expected.iter().all(|(address, nonce)| {
                    n.ledger.accounts.get(address).map(|a| a.nonce).unwrap_or(0) == *nonce
                })
        })
    }

    fn liveness_detail(&self) -> String {
        let mut parts = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.checker.is_honest(i as u16) {
                continue;
            }
            let state = match &n.participant {
                None => "down".to_string(),
                Some(p) => {
                    let r = p.replica();
                    format!(
                        "view {}{}{}, pending {}",
                        r.view(),
                        if r.is_view_changing() {
                            " (changing)"
                        } else {
                            ""
                        },
                        if r.is_catching_up() {
                            " catching up"
                        } else {
                            ""
                        },
                        r.pending_len()
                    )
                }
            };
            parts.push(format!("r{i} height {} {state}", n.ledger.height));
        }
        format!(
            "not done {} ms after faults healed and load stopped (target height {}, agreed height {}, {} of {} txs unconfirmed): {}",
            self.cfg.liveness_bound_ms,
            self.cfg.target_height,
            self.checker.height(),
            self.workload.unconfirmed(),
            self.workload.created,
            parts.join("; ")
        )
    }

    // ---- faults ----

    fn fault_start(&mut self, i: usize) {
        let fault = self.cfg.faults[i].clone();
        self.log(|| format!("fault start: {}", fault.describe()));
        match fault {
            Fault::Partition { groups, .. } => {
                self.net.start_partition(i, &groups);
                self.stats.faults_injected += 1;
            }
            Fault::Turbulence {
                loss,
                duplicate,
                delay_ms_max,
                ..
            } => {
                self.net.start_turbulence(i, loss, duplicate, delay_ms_max);
                self.stats.faults_injected += 1;
            }
            Fault::Crash {
                node,
                after_outputs: None,
                ..
            } => {
                if self.nodes[node as usize].up() {
                    self.crash(node);
                    self.stats.faults_injected += 1;
                }
            }
            Fault::Crash {
                node,
                after_outputs: Some(k),
                ..
            } => {
                if self.nodes[node as usize].up() {
                    self.nodes[node as usize].crash_point = Some(k);
                    self.stats.faults_injected += 1;
                }
            }
            Fault::CrashAll { .. } => {
                for node in 0..self.nodes.len() as u16 {
                    if self.nodes[node as usize].up() {
                        self.crash(node);
                    }
                }
                self.stats.faults_injected += 1;
            }
            Fault::CrashLosingWal { node, .. } => {
                if self.nodes[node as usize].up() {
                    self.crash(node);
                    self.nodes[node as usize].wal.clear();
                    self.stats.faults_injected += 1;
                }
            }
        }
    }

    fn fault_end(&mut self, i: usize) {
        let fault = self.cfg.faults[i].clone();
        match fault {
            Fault::Partition { .. } => self.net.heal_partition(i),
            Fault::Turbulence { .. } => self.net.end_turbulence(i),
            Fault::Crash { node, .. } | Fault::CrashLosingWal { node, .. } => {
                self.nodes[node as usize].crash_point = None;
                self.restart(node);
            }
            Fault::CrashAll { .. } => {
                for node in 0..self.nodes.len() as u16 {
                    self.restart(node);
                }
            }
        }
        self.log(|| format!("fault end: {}", fault.describe()));
    }

    /// Drops the replica's volatile state and its timers. Its disk stays.
    fn crash(&mut self, node: u16) {
        let n = &mut self.nodes[node as usize];
        n.participant = None;
        n.timers.clear();
        n.crash_point = None;
        self.stats.crashes += 1;
        self.trace.record(self.now_ms, node, "crash", &[]);
        let height = n.ledger.height;
        let wal = n.wal.len();
        self.log(|| format!("r{node} crashed (height {height}, {wal} WAL records)"));
    }

    /// Rebuilds the replica from its WAL and its committed height.
    fn restart(&mut self, node: u16) {
        if self.nodes[node as usize].up() {
            return;
        }
        let n = &self.nodes[node as usize];
        let committed = SeqNum(n.ledger.height);
        let replica = match Replica::restore(
            self.consensus.clone(),
            n.key.clone(),
            n.wal.clone(),
            committed,
        ) {
            Ok(r) => r,
            Err(e) => {
                let detail = format!("r{node} cannot restart: {e}");
                self.checker
                    .report("restart", node as u64, self.now_ms, Some(node), detail);
                return;
            }
        };
        let view = replica.view();
        self.nodes[node as usize].participant = Some(self.participant(node, replica));
        self.stats.restarts += 1;
        self.trace
            .record(self.now_ms, node, "restart", &committed.0.to_le_bytes());
        self.log(|| format!("r{node} restarted at height {committed}, view {view}"));
        self.schedule(self.now_ms, Event::Boot { node });
    }

    // ---- network ----

    fn deliver(&mut self, from: u16, to: u16, bytes: &[u8], hash: Digest) {
        if !self.nodes[to as usize].up() {
            self.stats.messages_to_down += 1;
            return;
        }
        if self.net.is_cut(from, to) {
            self.stats.messages_cut += 1;
            return;
        }
        self.stats.messages_delivered += 1;
        let verdict = match self.verify_cache.get(&(from, hash)) {
            Some(v) => {
                self.stats.verify_cache_hits += 1;
                v.clone()
            }
            None => {
                let v = self.verify(from, bytes);
                if self.verify_cache.len() >= VERIFY_CACHE_MAX {
                    self.verify_cache.clear();
                }
                self.verify_cache.insert((from, hash), v.clone());
                v
            }
        };
        match verdict {
            Ok(m) => {
                if !self.checker.is_honest(from) && self.checker.is_honest(to) {
                    self.charge_traitor_message(m.message());
                }
                self.step(to, Input::Message(m))
            }
            Err(reason) => *self.stats.verify_rejected.entry(reason).or_default() += 1,
        }
    }

    /// Records what a traitor's message, verified by an honest validator,
    /// cost it in signature checks.
    fn charge_traitor_message(&mut self, message: &Message) {
        let count = cost::signatures(message);
        *self
            .stats
            .traitor_verified
            .entry(message.kind())
            .or_default() += 1;
        self.stats.traitor_signatures_verified_max =
            self.stats.traitor_signatures_verified_max.max(count.total);
        self.stats.traitor_signatures_repeated += count.repeated;
    }

    /// Decodes and verifies bytes from `from` exactly as a node would.
    fn verify(&self, from: u16, bytes: &[u8]) -> Result<VerifiedMessage, &'static str> {
        let message = Message::decode(bytes).map_err(|r| r.reason())?;
        let ctx = VerifyContext {
            chain_id: &self.consensus.chain_id,
            validators: &self.consensus.validators,
            window: self.consensus.window,
            horizon: None,
            known_good_txs: None,
        };
        verify_message(ValidatorIndex(from), message, &ctx).map_err(|r| r.reason())
    }

    /// Puts one message on the wire to each of `to`.
    fn send(&mut self, from: u16, to: &[u16], message: &Message) {
        let bytes = Arc::new(message.encode());
        let hash = Digest::sha256(&bytes);
        for &dest in to {
            self.trace.record(
                self.now_ms,
                from,
                "send",
                &[&dest.to_le_bytes()[..], &hash.0].concat(),
            );
            self.stats.messages_sent += 1;
            match self.net.fate(&mut self.rng, from, dest) {
                Fate::Cut => self.stats.messages_cut += 1,
                Fate::Lost => self.stats.messages_lost += 1,
                Fate::Arrives(delays) => {
                    if delays.len() > 1 {
                        self.stats.messages_duplicated += 1;
                    }
                    for d in delays {
                        self.schedule(
                            self.now_ms + d,
                            Event::Deliver {
                                from,
                                to: dest,
                                bytes: bytes.clone(),
                                hash,
                            },
                        );
                    }
                }
            }
        }
    }

    // ---- the driver ----

    /// Gives one input to a live replica and carries out its outputs.
    fn step(&mut self, node: u16, input: Input) {
        self.step_outputs = 0;
        let Some(p) = self.nodes[node as usize].participant.as_mut() else {
            return;
        };
        let debug = self.cfg.debug_nodes.contains(&node);
        let described = if debug {
            describe_input(&input)
        } else {
            String::new()
        };
        let outputs = p.handle(self.now_ms, input);
        if debug {
            let r = p.replica();
            println!(
                "[t={:>6}] r{node} view {} committed {} slots {:?} <- {described}",
                self.now_ms,
                r.view(),
                r.committed(),
                r.uncommitted_slots()
            );
            for o in &outputs {
                println!("           -> {}", describe_output(o));
            }
        }
        self.carry_out(node, outputs);
        self.publish_traitor_gossip(node);
        if self.cfg.record_steps {
            self.steps.push((self.now_ms, node, self.step_outputs));
        }
    }

    /// Publishes what a traitor queued for transaction gossip, as a node
    /// does after every step. Its peers' admission checks every signature,
    /// as `phalanx-node`'s mempool does (the verdict depends only on the
    /// bytes, so it is computed once per message, not once per peer); only
    /// what passes reaches their replicas, through the usual gossip path.
    fn publish_traitor_gossip(&mut self, node: u16) {
        let Some(p) = self.nodes[node as usize].participant.as_mut() else {
            return;
        };
        for txs in p.take_gossip() {
            let peers = (0..self.nodes.len() as u16)
                .filter(|i| *i != node && self.nodes[*i as usize].up())
                .count() as u64;
            self.stats.traitor_gossip_txs += txs.len() as u64;
            let total = txs.len();
            let valid: Vec<Transaction> =
                Signed::<Transfer>::verify_all(txs, SIM_CHAIN_ID, &AnyKey)
                    .into_iter()
                    .filter_map(|v| v.ok().map(|v| v.into_signed()))
                    .filter(|tx| tx.payload.chain_id == SIM_CHAIN_ID)
                    .collect();
            self.stats.traitor_gossip_refused += (total - valid.len()) as u64 * peers;
            self.trace.record(
                self.now_ms,
                node,
                "gossip",
                &[
                    &(total as u64).to_le_bytes()[..],
                    &(valid.len() as u64).to_le_bytes(),
                ]
                .concat(),
            );
            if valid.is_empty() {
                continue;
            }
            let valid = Arc::new(valid);
            let max = self.cfg.workload.gossip_delay_ms_max;
            for peer in 0..self.nodes.len() as u16 {
                if peer != node && self.nodes[peer as usize].up() {
                    let delay = self.rng.gen_range(0..=max);
                    self.schedule(
                        self.now_ms + delay,
                        Event::Gossip {
                            node: peer,
                            txs: valid.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Carries out outputs in order. Returns false if the replica crashed
    /// part-way (at a crash point).
    fn carry_out(&mut self, node: u16, outputs: Vec<Output>) -> bool {
        for output in outputs {
            let n = &self.nodes[node as usize];
            if n.crash_point == Some(self.step_outputs) {
                let k = self.step_outputs;
                self.log(|| {
                    format!(
                        "r{node} crashes before output {k}: {}",
                        output_kind(&output)
                    )
                });
                self.crash(node);
                self.stats.mid_output_crashes += 1;
                return false;
            }
            self.step_outputs += 1;
            if !self.carry_out_one(node, output) {
                return false;
            }
        }
        true
    }

    fn carry_out_one(&mut self, node: u16, output: Output) -> bool {
        let now = self.now_ms;
        let honest = self.checker.is_honest(node);
        match output {
            Output::Persist(entry) => {
                self.trace
                    .record(now, node, "persist", &codec::encode(&entry));
                self.nodes[node as usize].wal.push(entry);
            }
            Output::PruneWal { below } => {
                self.trace
                    .record(now, node, "prune", &below.0.to_le_bytes());
                self.nodes[node as usize]
                    .wal
                    .retain(|e| e.seq().is_none_or(|s| s >= below));
            }
            Output::Send { to, message } => {
                if honest {
                    self.checker.on_send(node, now, &message);
                    if matches!(message, Message::NewView(_)) && !self.checker.is_honest(to.0) {
                        *self.stats.new_views_to_traitors.entry(node).or_default() += 1;
                    }
                }
                if (to.0 as usize) < self.nodes.len() {
                    self.send(node, &[to.0], &message);
                }
            }
            Output::Broadcast(message) => {
                if honest {
                    self.checker.on_send(node, now, &message);
                }
                let others: Vec<u16> = (0..self.nodes.len() as u16)
                    .filter(|i| *i != node)
                    .collect();
                self.send(node, &others, &message);
            }
            Output::Commit(cb) => return self.commit(node, cb),
            Output::ServeCatchUp { to, from, to_seq } => {
                self.serve_catch_up(node, to.0, from, to_seq)
            }
            Output::SetTimer { timer, at_ms } => {
                self.trace.record(
                    now,
                    node,
                    "timer",
                    &[&[timer as u8][..], &at_ms.to_le_bytes()].concat(),
                );
                let token = self.next_token;
                self.next_token += 1;
                self.nodes[node as usize].timers.insert(timer, token);
                self.schedule(at_ms, Event::Timer { node, timer, token });
            }
            Output::Evidence(e) => {
                self.stats.evidence += 1;
                if honest {
                    *self.stats.evidence_by_node.entry(node).or_default() += 1;
                }
                self.trace.record(
                    now,
                    node,
                    "evidence",
                    &[&e.validator.0[..], &e.seq.0.to_le_bytes()].concat(),
                );
                if honest {
                    self.checker.on_evidence(node, now, &e);
                }
            }
            Output::Rejected { from, reason } => {
                *self.stats.rejected.entry(reason.reason()).or_default() += 1;
                self.trace.record(
                    now,
                    node,
                    "rejected",
                    &[&from.0.to_le_bytes()[..], reason.reason().as_bytes()].concat(),
                );
            }
            Output::Event(e) => self.on_replica_event(node, e),
        }
        true
    }

    fn on_replica_event(&mut self, node: u16, e: ReplicaEvent) {
        let honest = self.checker.is_honest(node);
        self.trace
            .record(self.now_ms, node, "event", format!("{e:?}").as_bytes());
        match e {
            ReplicaEvent::NewViewEntered { view, primary } => {
                if honest {
                    self.stats
                        .views_entered
                        .entry(view.0)
                        .or_insert(self.now_ms);
                }
                self.log(|| format!("r{node} entered view {view} (primary {primary:?})"));
            }
            ReplicaEvent::ViewChangeStarted { to, reason } => {
                self.stats.view_changes_started += 1;
                self.log(|| format!("r{node} starts view change to {to}: {reason}"));
            }
            ReplicaEvent::StateDiverged { seq } if honest => {
                let detail =
                    format!("r{node}: executed state at {seq} differs from a checkpoint quorum's");
                self.checker.report(
                    "checkpoint-diverged",
                    seq.0,
                    self.now_ms,
                    Some(node),
                    detail,
                );
            }
            ReplicaEvent::PrimarySuspected { view, reason } => {
                self.log(|| format!("r{node} suspects the primary of view {view}: {reason}"));
            }
            _ => {}
        }
    }

    /// Executes a committed batch on the replica's ledger, stores it, and
    /// tells the replica at once.
    fn commit(&mut self, node: u16, cb: CommittedBatch) -> bool {
        let now = self.now_ms;
        let seq = cb.certificate.seq;
        self.trace.record(
            now,
            node,
            "commit",
            &[&seq.0.to_le_bytes()[..], &cb.certificate.batch_digest.0].concat(),
        );
        self.stats.commit_outputs += 1;
        let n = &mut self.nodes[node as usize];
        if seq.0 != n.ledger.height + 1 {
            let detail = format!(
                "r{node} was asked to commit {seq} at height {}",
                n.ledger.height
            );
            self.checker
                .report("commit-order", node as u64, now, Some(node), detail);
            return true;
        }
        let block = n.ledger.apply(SIM_CHAIN_ID, &cb);
        let (block_hash, state_root) = (block.hash(), block.header.state_root);
        if self.checker.is_honest(node) {
            let n = &self.nodes[node as usize];
            for o in self.checker.on_commit(node, now, &cb, &block, &n.ledger) {
                if o.executed {
                    self.workload.confirm(&o.sender, o.nonce);
                } else {
                    self.workload.failed(&o.sender, o.nonce, &o.hash);
                }
            }
        }
        let n = &mut self.nodes[node as usize];
        n.committed_txs.extend(block.txs.iter().map(tx_hash));
        n.commit_times.push((now, seq.0));
        n.batches.push(cb);
        let Some(p) = self.nodes[node as usize].participant.as_mut() else {
            return false;
        };
        let outputs = p.handle(
            now,
            Input::Executed {
                seq,
                block_hash,
                state_root,
            },
        );
        self.carry_out(node, outputs)
    }

    /// Answers a catch-up request from this validator's stored batches.
    fn serve_catch_up(&mut self, node: u16, to: u16, from: SeqNum, to_seq: SeqNum) {
        let n = &self.nodes[node as usize];
        let stored = n.batches.len() as u64;
        let first = from.0.max(1);
        let last = to_seq
            .0
            .min(stored)
            .min(first + CATCH_UP_BLOCKS_MAX as u64 - 1);
        self.trace.record(
            self.now_ms,
            node,
            "serve",
            &[
                &to.to_le_bytes()[..],
                &first.to_le_bytes(),
                &last.to_le_bytes(),
            ]
            .concat(),
        );
        if first > last || (to as usize) >= self.nodes.len() {
            return;
        }
        let blocks: Vec<CommittedBatch> = n.batches[(first - 1) as usize..last as usize].to_vec();
        self.stats.catch_up_served += 1;
        if self.checker.is_honest(node) && !self.checker.is_honest(to) {
            *self
                .stats
                .catch_up_served_to_traitors
                .entry(node)
                .or_default() += 1;
        }
        self.send(node, &[to], &Message::CatchUpResponse(blocks));
    }

    /// The genesis hash of this network (for tests).
    pub fn genesis_hash(&self) -> Digest {
        self.genesis_hash
    }
}

/// Runs one configuration; a panic anywhere (in a replica's assertions or
/// the driver) becomes a `panic` violation instead of ending the process.
pub fn run(cfg: SimConfig) -> Report {
    let seed = cfg.seed;
    let replay = cfg.replay.clone();
    let n = cfg.validators;
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(cfg).map(Sim::run)));
    let failed = |checker: &'static str, detail: String| Report {
        seed,
        violations: vec![Violation {
            checker,
            seed,
            time_ms: current_sim_time_ms(),
            node: None,
            detail,
        }],
        trace_digest: Digest::ZERO,
        trace_records: 0,
        heights: vec![0; n],
        honest: vec![true; n],
        views: vec![None; n],
        view_changing: vec![false; n],
        catching_up: vec![false; n],
        agreed_height: 0,
        stats: Stats::default(),
        txs_created: 0,
        txs_unconfirmed: 0,
        end_ms: current_sim_time_ms(),
        done_ms: None,
        commit_times: vec![Vec::new(); n],
        steps: Vec::new(),
        replay: replay.clone(),
    };
    match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => failed("config", e),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            failed("panic", message)
        }
    }
}
