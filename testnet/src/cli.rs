//! The process-testnet subcommands of `phalanx-testnet`: `up`, `run`,
//! `generate` and `bench`.

use crate::cluster::{Cluster, ClusterSpec, TraitorSpec};
use crate::process::{drive, run_manifest, Launch, Testnet};
use clap::Args;
use phalanx_consensus::traitor::Behaviour;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `up` offers background load before going quiet.
const UP_LOAD_SECONDS: u64 = 3600;

/// `NODE=BEHAVIOUR`, e.g. `3=equivocate`.
pub fn parse_traitor(s: &str) -> Result<TraitorSpec, String> {
    let (node, behaviour) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NODE=BEHAVIOUR, got {s:?}"))?;
    let node: usize = node
        .trim()
        .parse()
        .map_err(|_| format!("bad node index in {s:?}"))?;
    let behaviour: Behaviour = behaviour.parse().map_err(|e| format!("{e}"))?;
    Ok(TraitorSpec {
        node,
        behaviour: behaviour.to_string(),
        from_height: None,
    })
}

fn check_traitors(validators: usize, traitors: &[TraitorSpec]) -> Result<(), String> {
    for t in traitors {
        if t.node >= validators {
            return Err(format!(
                "traitor node {} does not exist (validators 0..{})",
                t.node, validators
            ));
        }
    }
    let f = (validators.max(1) - 1) / 3;
    if traitors.len() > f {
        eprintln!(
            "warning: {} traitors with {validators} validators (f = {f}): safety is not guaranteed",
            traitors.len()
        );
    }
    Ok(())
}

fn default_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("phalanx-{name}-{}", std::process::id()))
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Make a validator a traitor: NODE=BEHAVIOUR (repeatable); see
    /// `bench --help` for the behaviours.
    #[arg(long = "traitor", value_parser = parse_traitor)]
    pub traitors: Vec<TraitorSpec>,
    /// Where keys, genesis, homes and logs go (default: a fresh temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Background transfers per second, so there is something to order.
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
}

pub fn up(args: UpArgs) -> ExitCode {
    if let Err(e) = check_traitors(args.validators, &args.traitors) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let dir = args.dir.unwrap_or_else(|| default_dir("testnet"));
    println!(
        "starting {} validators in {} ...",
        args.validators,
        dir.display()
    );
    let launch = Launch {
        validators: args.validators,
        traitors: args.traitors,
        accounts: 20,
        dir: dir.clone(),
        proxied: true,
        local_consensus: vec![
            ("view_timeout_ms".into(), "2000".into()),
            ("propose_timeout_ms".into(), "1000".into()),
        ],
        log_level: "info".into(),
    };
    let mut net = match Testnet::launch(&launch) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        net.runtime.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let first_honest = net.honest_running().first().copied().unwrap_or(0);
    let node0 = net.cluster.api_url(first_honest);
    let help = format!(
        "Try it from another terminal (Ctrl-C here stops the testnet and prints the verdict):\n\
         \x20 W=\"{wallet} --node {node0} --genesis {genesis}\"\n\
         \x20 $W --key {faucet} balance                       # the faucet's balance\n\
         \x20 $W keygen --out {dir}/alice.key.json             # a new account\n\
         \x20 $W --key {faucet} send --to $($W --key {dir}/alice.key.json address) --amount 1000 --wait\n\
         \x20 $W --key {dir}/alice.key.json balance\n\
         \x20 $W verify <TX HASH>                              # check finality against the genesis validators\n\
         Logs: {dir}/v*.log",
        wallet = crate::cluster::wallet_bin()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "phalanx-wallet".into()),
        genesis = dir.join("genesis.json").display(),
        faucet = net.faucet_key_path.display(),
        dir = dir.display(),
    );
    println!("{help}\n");
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(2);
    let mut last_height = 0u64;
    let mut last_tick = Instant::now();
    let stop2 = stop.clone();
    let run = drive(
        &mut net,
        args.rate,
        Duration::from_secs(UP_LOAD_SECONDS),
        1,
        |net, elapsed| {
            if stop2.load(Ordering::SeqCst) {
                println!(
                    "\nstopping: waiting up to {} s for acknowledged transactions to execute ...",
                    crate::process::DRAIN_MAX.as_secs()
                );
                return false;
            }
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                let table = net.status_table();
                let height = net
                    .cluster
                    .heights()
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(0);
                let dt = last_tick.elapsed().as_secs_f64().max(0.001);
                let bps = (height.saturating_sub(last_height)) as f64 / dt;
                last_height = height;
                last_tick = Instant::now();
                if tty {
                    print!("\x1b[H\x1b[2J{help}\n\n");
                }
                println!(
                    "phalanx testnet — up {:>4}s — offered {} tx/s — {:.1} blocks/s\n{}",
                    elapsed.as_secs(),
                    args.rate,
                    bps,
                    table
                );
            }
            let _ = started;
            true
        },
    );
    println!("judging the run from every honest node ...");
    let verdict = net.judge("up", &run, 1, true);
    net.stop();
    print!("{}", verdict.table());
    println!("{}", verdict.line());
    if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario manifests (TOML); all run one after another.
    #[arg(required = true)]
    pub manifests: Vec<PathBuf>,
    /// Write every verdict as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where the testnets live (default: a fresh temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub verbose: bool,
}

/// How many runs a negative control gets to produce its violation. The
/// traitors' fork is a race they usually win (4 of 6 single runs on the
/// 2-core machine): an honest node that falls a block behind
/// catches up from a traitor's certified chain instead of committing its
/// own version. What the control proves is that the checkers fire when the
/// violation happens, so it may take a few runs to make it happen.
const NEGATIVE_CONTROL_ATTEMPTS: usize = 4;

pub fn run(args: RunArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| default_dir("run"));
    let mut verdicts = Vec::new();
    let mut failures = 0;
    for path in &args.manifests {
        println!("== {} ==", path.display());
        let expect_fail = crate::manifest::Manifest::load(path)
            .map(|m| m.expect.verdict_fails)
            .unwrap_or(false);
        let attempts = if expect_fail {
            NEGATIVE_CONTROL_ATTEMPTS
        } else {
            1
        };
        let mut outcome = run_manifest(path, &dir, args.verbose);
        for attempt in 2..=attempts {
            match &outcome {
                Ok(v) if v.passed() => {
                    print!("{}", v.table());
                    println!("{}", v.line());
                    println!(
                        "negative control: no violation this time (the traitors lost the race); attempt {attempt} of {attempts}"
                    );
                    outcome = run_manifest(path, &dir, args.verbose);
                }
                _ => break,
            }
        }
        match outcome {
            Ok(v) => {
                print!("{}", v.table());
                println!("{}", v.line());
                let ok = v.passed() != expect_fail;
                if expect_fail {
                    if ok {
                        println!(
                            "negative control: the checkers caught the violation, as expected"
                        );
                    } else {
                        println!("negative control: NOT caught: no run of {attempts} produced a violation");
                    }
                }
                if !ok {
                    failures += 1;
                }
                verdicts.push(v);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failures += 1;
            }
        }
    }
    if let Some(report) = args.report {
        let json = serde_json::to_string_pretty(&verdicts).unwrap_or_default();
        if let Err(e) = std::fs::write(&report, json) {
            eprintln!("error: {}: {e}", report.display());
            failures += 1;
        }
    }
    // "passed" = ended as its manifest expects (a negative control
    // passes by failing its verdict).
    println!(
        "scenarios: {} passed, {} failed",
        args.manifests.len() - failures,
        failures
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    #[arg(long)]
    pub out: PathBuf,
    /// The address validators listen on and dial.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 26000)]
    pub p2p_port_base: u16,
    #[arg(long, default_value_t = 8000)]
    pub api_port_base: u16,
    #[arg(long)]
    pub chain_id: Option<String>,
}

pub fn generate(args: GenerateArgs) -> ExitCode {
    let mut spec = ClusterSpec::new(args.validators, &args.out);
    spec.host = args.host.clone();
    if let Some(c) = args.chain_id {
        spec.chain_id = c;
    }
    let faucet = phalanx_crypto::Keypair::generate();
    spec.accounts = vec![(faucet.address(), crate::process::FAUCET_BALANCE)];
    let p2p: Vec<u16> = (0..args.validators as u16)
        .map(|i| args.p2p_port_base + i)
        .collect();
    let api: Vec<u16> = (0..args.validators as u16)
        .map(|i| args.api_port_base + i)
        .collect();
    match Cluster::generate_with_ports(spec, Some((p2p, api))) {
        Ok(c) => {
            let faucet_path = args.out.join("faucet.key.json");
            let _ = std::fs::remove_file(&faucet_path);
            if let Err(e) = phalanx_crypto::write_key_file(&faucet_path, &faucet) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            println!(
                "wrote genesis {} and {} homes:",
                args.out.join("genesis.json").display(),
                c.len()
            );
            for (i, home) in c.homes.iter().enumerate() {
                println!(
                    "  phalanx run --home {}    # api {}",
                    home.display(),
                    c.api_url(i)
                );
            }
            println!("faucet key: {}", faucet_path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Seconds of offered load per measurement.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Offered transfers per second (open loop).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Ramp the offered rate up to find the highest one committed tx/s keeps up with.
    #[arg(long)]
    pub find_max: bool,
    /// Make a validator a traitor: NODE=BEHAVIOUR (repeatable). Behaviours:
    /// silent, equivocate, bad-signature, wrong-digest, replay,
    /// bogus-view-change, flood, censor, slow-primary, and the attackers
    /// newview-bomb, padded-view-change, future-votes, gossip-junk,
    /// request-spam.
    #[arg(long = "traitor", value_parser = parse_traitor)]
    pub traitors: Vec<TraitorSpec>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Load-generator connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The nodes' log level (their logs are `<dir>/rate-R/vN.log`): `warn`
    /// keeps logging out of the figures; `info` or `debug` to trace a run.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(((utime + stime) / ticks, hwm))
}

#[derive(serde::Serialize, Debug, Clone)]
pub struct BenchFigures {
    pub validators: usize,
    pub offered_tps: u64,
    pub committed_tps: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub view_changes: u64,
    pub cpu_percent_per_node: Vec<f64>,
    pub rss_mib_peak_per_node: Vec<f64>,
    pub acknowledged: u64,
    pub duration_s: f64,
}

fn bench_once(args: &BenchArgs, rate: u64) -> Result<BenchFigures, String> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| default_dir("bench"))
        .join(format!("rate-{rate}"));
    eprintln!("  nodes, their data and logs: {}", dir.display());
    let accounts = ((rate / 50) as usize).clamp(20, 2000);
    let launch = Launch {
        validators: args.validators,
        traitors: args.traitors.clone(),
        accounts,
        dir,
        proxied: false,
        local_consensus: vec![
            ("view_timeout_ms".into(), "2000".into()),
            ("propose_timeout_ms".into(), "1000".into()),
        ],
        log_level: args.log_level.clone(),
    };
    let mut net = Testnet::launch(&launch)?;
    let pids: Vec<Option<u32>> = (0..net.cluster.len()).map(|i| net.cluster.pid(i)).collect();
    let before: Vec<Option<(f64, u64)>> = pids.iter().map(|p| p.and_then(proc_usage)).collect();
    let start = Instant::now();
    let mut last = Instant::now();
    let run = drive(
        &mut net,
        rate,
        Duration::from_secs(args.duration),
        args.connections,
        |net, elapsed| {
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                let h: Vec<String> = net
                    .cluster
                    .heights()
                    .iter()
                    .map(|h| h.map(|x| x.to_string()).unwrap_or("-".into()))
                    .collect();
                eprintln!(
                    "  [{:>3}s] offered {rate} tx/s, heights [{}]",
                    elapsed.as_secs(),
                    h.join(", ")
                );
            }
            true
        },
    );
    let wall = start.elapsed().as_secs_f64();
    let after: Vec<Option<(f64, u64)>> = pids.iter().map(|p| p.and_then(proc_usage)).collect();
    let view_changes = net
        .honest_running()
        .first()
        .and_then(|i| net.cluster.api(*i).get("/v1/status").ok())
        .and_then(|s| s["view"].as_u64())
        .unwrap_or(0);
    net.stop();
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) => 100.0 * (a.0 - b.0) / wall,
            _ => 0.0,
        })
        .collect();
    let rss: Vec<f64> = after
        .iter()
        .map(|a| a.map(|x| x.1 as f64 / 1024.0).unwrap_or(0.0))
        .collect();
    let mut lat = run.latencies_ms.clone();
    Ok(BenchFigures {
        validators: args.validators,
        offered_tps: rate,
        committed_tps: run.committed_in_window as f64 / run.duration_s.max(0.001),
        latency_ms_p50: crate::load::percentile(&mut lat, 50.0),
        latency_ms_p90: crate::load::percentile(&mut lat, 90.0),
        latency_ms_p99: crate::load::percentile(&mut lat, 99.0),
        view_changes,
        cpu_percent_per_node: cpu,
        rss_mib_peak_per_node: rss,
        acknowledged: run.acknowledged.len() as u64,
        duration_s: run.duration_s,
    })
}

pub fn bench(args: BenchArgs) -> ExitCode {
    if let Err(e) = check_traitors(args.validators, &args.traitors) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let rates: Vec<u64> = if args.find_max {
        let mut r = vec![];
        let mut x = 1000;
        while x <= 64_000 {
            r.push(x);
            x *= 2;
        }
        r
    } else {
        vec![args.rate]
    };
    let mut results = Vec::new();
    for rate in rates {
        eprintln!(
            "bench: {} validators, offering {rate} tx/s for {} s ...",
            args.validators, args.duration
        );
        match bench_once(&args, rate) {
            Ok(f) => {
                let keeps_up = f.committed_tps >= 0.9 * rate as f64;
                results.push(f);
                if args.find_max && !keeps_up {
                    break;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let best = results
        .iter()
        .filter(|f| !args.find_max || f.committed_tps >= 0.9 * f.offered_tps as f64)
        .max_by(|a, b| {
            a.committed_tps
                .partial_cmp(&b.committed_tps)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .or(results.last())
        .cloned();
    for f in &results {
        eprintln!(
            "  offered {:>6} tx/s → committed {:>8.1} tx/s, p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, view changes {}",
            f.offered_tps, f.committed_tps, f.latency_ms_p50, f.latency_ms_p90, f.latency_ms_p99, f.view_changes
        );
    }
    if let Some(path) = &args.json {
        let _ = std::fs::write(
            path,
            serde_json::to_string_pretty(&results).unwrap_or_default(),
        );
    }
    match best {
        Some(f) => {
            let cpu = f.cpu_percent_per_node.iter().sum::<f64>()
                / f.cpu_percent_per_node.len().max(1) as f64;
            let rss = f.rss_mib_peak_per_node.iter().cloned().fold(0.0, f64::max);
            println!(
                "bench: {:.0} tx/s committed, p50 {:.0} ms, p99 {:.0} ms, cpu {:.0}%, rss {:.0} MiB",
                f.committed_tps, f.latency_ms_p50, f.latency_ms_p99, cpu, rss
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}
