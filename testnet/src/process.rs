//! Process testnets: real `phalanx` validators on loopback behind the
//! testnet's TCP proxies, a workload through the HTTP API, scheduled
//! faults, and a verdict. Backs `phalanx-testnet up`, `run` and `bench`.

use crate::cluster::{Api, Cluster, ClusterSpec, TraitorSpec};
use crate::load::{self, SharedLog, Targets, Tracker};
use crate::manifest::{Action, Manifest};
use crate::proxy::ProxyMesh;
use crate::verdict::{self, Verdict};
use phalanx_crypto::{write_key_file, Keypair};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The faucet's opening balance.
pub const FAUCET_BALANCE: u64 = 1_000_000_000_000;
/// The most transfers pre-signed for one run.
const PRESIGNED_MAX: u64 = 2_000_000;

/// How long a run waits, after its load, for acknowledged transactions
/// to commit.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);

/// Each workload account's opening balance.
pub const ACCOUNT_BALANCE: u64 = 1_000_000_000;

/// How to launch a testnet.
#[derive(Clone, Debug)]
pub struct Launch {
    pub validators: usize,
    pub traitors: Vec<TraitorSpec>,
    pub accounts: usize,
    pub dir: PathBuf,
    pub proxied: bool,
    pub local_consensus: Vec<(String, String)>,
    pub log_level: String,
}

/// A running testnet.
pub struct Testnet {
    pub cluster: Cluster,
    pub mesh: Option<ProxyMesh>,
    pub runtime: tokio::runtime::Runtime,
    pub faucet: Keypair,
    pub faucet_key_path: PathBuf,
    pub accounts: Vec<Keypair>,
    pub traitors: Vec<TraitorSpec>,
    /// When the load of the current run started (set by [`drive`]).
    pub run_started: Option<Instant>,
    /// The perturbations applied so far, for the participation check.
    pub applied: Vec<verdict::Applied>,
}

impl Testnet {
    pub fn launch(l: &Launch) -> Result<Testnet, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&l.dir).map_err(|e| format!("{}: {e}", l.dir.display()))?;
        let faucet = Keypair::generate();
        let faucet_key_path = l.dir.join("faucet.key.json");
        let _ = std::fs::remove_file(&faucet_key_path);
        write_key_file(&faucet_key_path, &faucet).map_err(|e| e.to_string())?;
        let accounts: Vec<Keypair> = (0..l.accounts).map(|_| Keypair::generate()).collect();
        let mut spec = ClusterSpec::new(l.validators, &l.dir);
        spec.traitors = l.traitors.clone();
        spec.accounts = std::iter::once((faucet.address(), FAUCET_BALANCE))
            .chain(accounts.iter().map(|a| (a.address(), ACCOUNT_BALANCE)))
            .collect();
        spec.local_consensus = l.local_consensus.clone();
        spec.log_level = l.log_level.clone();
        let mut p2p = Vec::new();
        let mut api = Vec::new();
        for _ in 0..l.validators {
            p2p.push(crate::cluster::free_port().map_err(|e| e.to_string())?);
            api.push(crate::cluster::free_port().map_err(|e| e.to_string())?);
        }
        let mesh = if l.proxied {
            let mesh = runtime
                .block_on(ProxyMesh::start("127.0.0.1", &p2p))
                .map_err(|e| format!("start proxies: {e}"))?;
            spec.dial_override = Some(mesh.dial_ports());
            Some(mesh)
        } else {
            None
        };
        let mut cluster =
            Cluster::generate_with_ports(spec, Some((p2p, api))).map_err(|e| e.to_string())?;
        cluster.start_all().map_err(|e| e.to_string())?;
        cluster
            .wait_healthy(Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        Ok(Testnet {
            cluster,
            mesh,
            runtime,
            faucet,
            faucet_key_path,
            accounts,
            traitors: l.traitors.clone(),
            run_started: None,
            applied: Vec::new(),
        })
    }

    pub fn is_traitor(&self, i: usize) -> bool {
        self.traitors.iter().any(|t| t.node == i)
    }

    /// Honest validators that are running.
    pub fn honest_running(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..self.cluster.len() {
            if !self.is_traitor(i) && self.cluster.is_running(i) {
                out.push(i);
            }
        }
        out
    }

    /// API URLs of honest validators that are running.
    pub fn honest_targets(&mut self) -> Vec<String> {
        self.honest_running()
            .into_iter()
            .map(|i| self.cluster.api_url(i))
            .collect()
    }

    /// The primary most honest nodes report.
    pub fn current_primary(&self) -> Option<usize> {
        (0..self.cluster.len())
            .filter(|i| !self.is_traitor(*i))
            .find_map(|i| self.cluster.api(i).get("/v1/status").ok()?["primary"].as_u64())
            .map(|p| p as usize)
    }

    /// One line per node: height, view, primary, peers, mempool, evidence.
    pub fn status_table(&mut self) -> String {
        let mut out = String::from(
            "node  role        height  view  primary  peers  mempool  evidence  state\n",
        );
        for i in 0..self.cluster.len() {
            let role = match self.traitors.iter().find(|t| t.node == i) {
                Some(t) => t.behaviour.clone(),
                None => "honest".into(),
            };
            let running = self.cluster.is_running(i);
            let api = self.cluster.api(i);
            match api.get("/v1/status") {
                Ok(s) => {
                    let evidence = api
                        .get("/v1/evidence")
                        .ok()
                        .and_then(|e| e["evidence"].as_array().map(|a| a.len()))
                        .unwrap_or(0);
                    let state = if s["catching_up"].as_bool() == Some(true) {
                        "catching up"
                    } else if s["view_changing"].as_bool() == Some(true) {
                        "view change"
                    } else {
                        "ok"
                    };
                    out.push_str(&format!(
                        "v{:<4} {:<11} {:>6}  {:>4}  {:>7}  {:>5}  {:>7}  {:>8}  {}\n",
                        i,
                        role,
                        // JSON values ignore widths: print them as text.
                        s["height"].to_string(),
                        s["view"].to_string(),
                        s["primary"].to_string(),
                        s["peers_connected"].to_string(),
                        s["mempool_txs"].to_string(),
                        evidence,
                        state
                    ));
                }
                Err(_) => out.push_str(&format!(
                    "v{:<4} {:<11} {:>6}  {:>4}  {:>7}  {:>5}  {:>7}  {:>8}  {}\n",
                    i,
                    role,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    if running { "not answering" } else { "down" }
                )),
            }
        }
        out
    }

    /// Judges the run from every honest node's API.
    pub fn judge(
        &mut self,
        scenario: &str,
        run: &RunLog,
        min_height: u64,
        require_evidence: bool,
    ) -> Verdict {
        let honest: Vec<(usize, Api)> = self
            .honest_running()
            .into_iter()
            .map(|i| (i, self.cluster.api(i)))
            .collect();
        let max_view = honest
            .iter()
            .filter_map(|(_, a)| a.get("/v1/status").ok()?["view"].as_u64())
            .max()
            .unwrap_or(0);
        let n = self.cluster.len() as u64;
        let equivocators: Vec<usize> = self
            .traitors
            .iter()
            .filter(|t| t.behaviour == "equivocate")
            .filter(|t| (0..=max_view).any(|v| v % n == t.node as u64))
            .map(|t| t.node)
            .collect();
        let accounts = std::iter::once(self.faucet.address())
            .chain(self.accounts.iter().map(|a| a.address()))
            .map(|a| a.to_hex())
            .collect();
        let participation = verdict::ParticipationInputs {
            honest: (0..self.cluster.len())
                .filter(|i| !self.is_traitor(*i))
                .collect(),
            schedule: verdict::fault_schedule(&self.applied, self.cluster.len()),
            height_seen_s: run.height_seen_s.clone(),
            observed_s: run.observed_s,
            bound_s: verdict::PARTICIPATION_BOUND_S,
        };
        verdict::judge(verdict::Inputs {
            scenario: scenario.to_string(),
            genesis: &self.cluster.genesis,
            honest,
            equivocators,
            require_evidence,
            min_height,
            acknowledged: run.acknowledged.clone(),
            submitted: run.submitted,
            latencies_ms: run.latencies_ms.clone(),
            duration_s: run.duration_s,
            committed_in_window: run.committed_in_window,
            resubmitted: run.resubmitted,
            accounts,
            participation: Some(participation),
        })
    }

    pub fn stop(&mut self) {
        self.cluster.stop_all();
    }
}

/// What the client side measured.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    pub acknowledged: Vec<String>,
    pub submitted: u64,
    pub latencies_ms: Vec<f64>,
    pub duration_s: f64,
    pub committed_in_window: u64,
    /// Transactions the client sent again because they had not committed.
    pub resubmitted: u64,
    /// `height_seen_s[h - 1]`: seconds after the load started when some
    /// honest node first reported height `h`.
    pub height_seen_s: Vec<f64>,
    /// Seconds after the load started when the heights stopped being
    /// watched (the end of the drain).
    pub observed_s: f64,
}

/// Offers load while `during` runs (it gets the testnet and the elapsed
/// time every 100 ms and returns false to stop early), then waits for
/// acknowledged transactions to commit.
pub fn drive(
    net: &mut Testnet,
    rate: u64,
    duration: Duration,
    connections: usize,
    mut during: impl FnMut(&mut Testnet, Duration) -> bool,
) -> RunLog {
    let chain = net.cluster.genesis.chain_id.clone();
    // Pre-signed up front, bounded: a long `up` session simply stops
    // offering load when they run out.
    let count = (rate
        .saturating_mul(duration.as_secs().max(1))
        .saturating_add(rate))
    .min(PRESIGNED_MAX) as usize;
    let txs = Arc::new(load::presign(&chain, &net.accounts, count));
    let targets: Targets = Arc::new(RwLock::new(net.honest_targets()));
    let mut tracker = Tracker::start(targets.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let log: SharedLog = Arc::default();
    let start = Instant::now();
    net.run_started = Some(start);
    net.applied.clear();
    let honest_urls: Vec<String> = (0..net.cluster.len())
        .filter(|i| !net.is_traitor(*i))
        .map(|i| net.cluster.api_url(i))
        .collect();
    let mut watch = load::HeightWatch::start(honest_urls, start);
    let loader = {
        let (txs, targets, stop, log) = (txs.clone(), targets.clone(), stop.clone(), log.clone());
        std::thread::spawn(move || {
            load::offer(txs, rate, duration, targets, connections, stop, log)
        })
    };
    let stop_resubmitting = Arc::new(AtomicBool::new(false));
    let resubmitter = {
        let (targets, committed, log, stop) = (
            targets.clone(),
            tracker.committed.clone(),
            log.clone(),
            stop_resubmitting.clone(),
        );
        std::thread::spawn(move || load::resubmit(txs, targets, committed, log, stop))
    };
    let committed_at_start = tracker.txs.load(Ordering::SeqCst);
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(100));
        *targets.write().unwrap_or_else(|p| p.into_inner()) = net.honest_targets();
        if !during(net, start.elapsed()) {
            stop.store(true, Ordering::SeqCst);
            break;
        }
    }
    let _ = loader.join();
    let elapsed = start.elapsed();
    let committed_in_window = tracker.txs.load(Ordering::SeqCst) - committed_at_start;
    // Let the acknowledged ones land (bounded), resubmitting what is missing.
    let deadline = Instant::now() + DRAIN_MAX;
    loop {
        *targets.write().unwrap_or_else(|p| p.into_inner()) = net.honest_targets();
        let done = {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            let c = tracker.committed.lock().unwrap_or_else(|p| p.into_inner());
            log.acknowledged.iter().all(|h| c.contains_key(h))
        };
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_resubmitting.store(true, Ordering::SeqCst);
    let _ = resubmitter.join();
    tracker.stop();
    let height_seen_s = watch.stop();
    let observed_s = start.elapsed().as_secs_f64();
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let committed = tracker.committed.lock().unwrap_or_else(|p| p.into_inner());
    let latencies_ms = log
        .acknowledged
        .iter()
        .filter_map(|h| {
            let sent = log.submitted.get(h)?;
            let seen = committed.get(h)?;
            Some(seen.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    RunLog {
        acknowledged: log.acknowledged.clone(),
        submitted: log.submitted.len() as u64,
        latencies_ms,
        duration_s: elapsed.as_secs_f64(),
        committed_in_window,
        resubmitted: log.resubmitted,
        height_seen_s,
        observed_s,
    }
}

/// Runs a manifest to its verdict.
pub fn run_manifest(path: &Path, dir: &Path, verbose: bool) -> Result<Verdict, String> {
    let m = Manifest::load(path).map_err(|e| e.to_string())?;
    let name = m.name(path);
    let mut local = vec![("retransmit_ms".to_string(), "200".to_string())];
    local.push((
        "view_timeout_ms".into(),
        m.network.view_timeout_ms.unwrap_or(1500).to_string(),
    ));
    local.push((
        "propose_timeout_ms".into(),
        m.network.propose_timeout_ms.unwrap_or(1000).to_string(),
    ));
    let launch = Launch {
        validators: m.network.validators,
        traitors: m
            .traitors
            .iter()
            .map(|t| TraitorSpec {
                node: t.node,
                behaviour: t
                    .behaviour
                    .parse::<phalanx_consensus::traitor::Behaviour>()
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                from_height: t.from_height,
            })
            .collect(),
        accounts: m.workload.accounts,
        dir: dir.join(&name),
        proxied: true,
        local_consensus: local,
        log_level: "info".into(),
    };
    let mut net = Testnet::launch(&launch)?;
    let mut pending: Vec<_> = m.perturbations.clone();
    pending.sort_by(|a, b| {
        a.at_s
            .partial_cmp(&b.at_s)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut pending = std::collections::VecDeque::from(pending);
    let mut last_print = Instant::now();
    let run = drive(
        &mut net,
        m.workload.rate,
        Duration::from_secs(m.workload.duration_s),
        2,
        |net, elapsed| {
            while pending
                .front()
                .is_some_and(|p| p.at_s <= elapsed.as_secs_f64())
            {
                let p = pending.pop_front().expect("checked");
                let mut nodes = p.nodes.clone();
                if p.target.as_deref() == Some("primary") {
                    nodes = net.current_primary().into_iter().collect();
                }
                println!(
                    "[{:>5.1}s] {:?} {:?}{}",
                    elapsed.as_secs_f64(),
                    p.action,
                    if p.groups.is_empty() {
                        nodes.clone()
                    } else {
                        p.groups.iter().flatten().copied().collect()
                    },
                    if p.ms > 0 {
                        format!(" {} ms", p.ms)
                    } else {
                        String::new()
                    }
                );
                apply(net, p.action, &nodes, &p.groups, p.ms);
            }
            if verbose && last_print.elapsed() >= Duration::from_secs(2) {
                last_print = Instant::now();
                let heights: Vec<String> = net
                    .cluster
                    .heights()
                    .iter()
                    .map(|h| h.map(|x| x.to_string()).unwrap_or("-".into()))
                    .collect();
                println!(
                    "[{:>5.1}s] heights [{}]",
                    elapsed.as_secs_f64(),
                    heights.join(", ")
                );
            }
            true
        },
    );
    // Heal before judging: resume paused nodes, end partitions.
    if let Some(mesh) = &net.mesh {
        mesh.heal();
    }
    std::thread::sleep(Duration::from_secs(3));
    let require_evidence = m.expect.evidence.unwrap_or(true);
    let verdict = net.judge(&name, &run, m.expect.min_height, require_evidence);
    net.stop();
    Ok(verdict)
}

/// Applies one perturbation, and records it for the verdict.
pub fn apply(net: &mut Testnet, action: Action, nodes: &[usize], groups: &[Vec<usize>], ms: u64) {
    net.applied.push(verdict::Applied {
        at_s: net
            .run_started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0),
        action,
        nodes: nodes.to_vec(),
        groups: groups.to_vec(),
    });
    let result: Result<(), String> = (|| {
        match action {
            Action::Kill => {
                for &n in nodes {
                    net.cluster.kill(n).map_err(|e| e.to_string())?;
                }
            }
            Action::Restart => {
                for &n in nodes {
                    net.cluster.kill(n).map_err(|e| e.to_string())?;
                    net.cluster.start(n).map_err(|e| e.to_string())?;
                }
            }
            Action::Pause => {
                for &n in nodes {
                    net.cluster.pause(n).map_err(|e| e.to_string())?;
                }
            }
            Action::Resume => {
                for &n in nodes {
                    net.cluster.resume(n).map_err(|e| e.to_string())?;
                }
            }
            Action::Partition => {
                if let Some(mesh) = &net.mesh {
                    mesh.partition(groups);
                }
            }
            Action::Heal => {
                if let Some(mesh) = &net.mesh {
                    mesh.heal();
                }
            }
            Action::Delay => {
                if let Some(mesh) = &net.mesh {
                    mesh.delay(nodes, ms);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("perturbation {action:?} failed: {e}");
    }
}
