//! `phalanx-testnet`: test networks for Phalanx.
//!
//! `up` starts a live local testnet of real processes, `run` plays scenario
//! manifests to a verdict, `generate` writes homes for hand-started nodes,
//! `bench` measures throughput and latency, and `sim` runs the
//! deterministic simulator over a range of seeds.

use clap::{Args, Parser, Subcommand};
use phalanx_testnet::cli;
use phalanx_testnet::sim::{default_threads, sweep, BehaviourChoice, FaultProfile, SweepSpec};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "phalanx-testnet",
    version,
    about = "Phalanx test networks: simulator, traitors, checkers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local testnet of real `phalanx` processes with a live view;
    /// Ctrl-C stops it and prints the verdict.
    Up(cli::UpArgs),
    /// Run scenario manifests (TOML) to a verdict each; non-zero exit if any
    /// ends other than expected.
    Run(cli::RunArgs),
    /// Write a genesis and home directories for validators started by hand.
    Generate(cli::GenerateArgs),
    /// Measure committed throughput and end-to-end latency of a fresh cluster.
    Bench(cli::BenchArgs),
    /// Run the deterministic simulator, one scenario per seed.
    Sim(SimArgs),
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Seeds to run: `A..B` (B excluded) or a single seed.
    #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Number of validators (n = 3f + 1 tolerates f traitors).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Number of traitors.
    #[arg(long, default_value_t = 1)]
    traitors: usize,
    /// Traitor behaviour (silent, equivocate, bad-signature, wrong-digest,
    /// replay, bogus-view-change, flood, censor, slow-primary; the attackers
    /// newview-bomb, padded-view-change, future-votes, gossip-junk,
    /// request-spam) or `random` (one of the first nine).
    #[arg(long, default_value = "random")]
    behaviour: BehaviourChoice,
    /// Faults to inject: none, net (partitions, loss), crash, all.
    #[arg(long, default_value = "all")]
    faults: FaultProfile,
    /// Loaded, faulty part of each run in simulated ms (faults heal by 70 %
    /// of it; then liveness has 30 s).
    #[arg(long, default_value_t = phalanx_testnet::sim::sweep::DEFAULT_DURATION_MS)]
    duration_ms: u64,
    /// Test only: a broken quorum, to see the checkers fire.
    #[arg(long)]
    quorum_override: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print faults, view changes and a report per seed.
    #[arg(long)]
    verbose: bool,
    /// Run every seed to its end instead of stopping at its first
    /// violation, and count every kind of violation.
    #[arg(long)]
    keep_going: bool,
    /// Debugging: print every input and output of these validators
    /// (comma-separated indices; use with a single seed).
    #[arg(long, value_delimiter = ',')]
    debug_nodes: Vec<u16>,
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|e| format!("seed {t:?}: {e}"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a >= b {
                return Err(format!("empty seed range {a}..{b}"));
            }
            Ok(a..b)
        }
        None => {
            let a = parse(s)?;
            Ok(a..a + 1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim(args),
        Command::Up(args) => cli::up(args),
        Command::Run(args) => cli::run(args),
        Command::Generate(args) => cli::generate(args),
        Command::Bench(args) => cli::bench(args),
    }
}

fn sim(args: SimArgs) -> ExitCode {
    if args.validators == 0 {
        eprintln!("error: --validators must be at least 1");
        return ExitCode::from(2);
    }
    if args.traitors > args.validators {
        eprintln!(
            "error: --traitors {} is more than --validators {}",
            args.traitors, args.validators
        );
        return ExitCode::from(2);
    }
    let mut spec = SweepSpec::new(args.validators, args.traitors, args.behaviour, args.faults);
    spec.duration_ms = args.duration_ms;
    spec.quorum_override = args.quorum_override;
    spec.verbose = args.verbose;
    spec.debug_nodes = args.debug_nodes.clone();
    spec.keep_going = args.keep_going;
    let threads = if args.verbose {
        1
    } else {
        args.threads.unwrap_or_else(default_threads)
    };
    let started = Instant::now();
    let verbose = args.verbose;
    let summary = sweep(&spec, args.seeds.clone(), threads, &|report| {
        if verbose {
            print!("{}", report.describe());
        }
    });
    for report in &summary.failed {
        let first = &report.violations[0];
        println!(
            "FAIL seed {}: {} at t={} ms{}: {}{} | replay: {}",
            report.seed,
            first.checker,
            first.time_ms,
            first.node.map(|n| format!(" (r{n})")).unwrap_or_default(),
            first.detail,
            if report.violations.len() > 1 {
                format!(" (+{} more)", report.violations.len() - 1)
            } else {
                String::new()
            },
            spec.replay_command(report.seed)
        );
    }
    if !summary.failed.is_empty() {
        let mut by_checker: std::collections::BTreeMap<&str, u64> = Default::default();
        for report in &summary.failed {
            let mut checkers: Vec<&str> = report.violations.iter().map(|v| v.checker).collect();
            if !args.keep_going {
                checkers.truncate(1);
            }
            checkers.sort_unstable();
            checkers.dedup();
            for c in checkers {
                *by_checker.entry(c).or_default() += 1;
            }
        }
        let parts: Vec<String> = by_checker.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let what = if args.keep_going { "any" } else { "first" };
        println!("failing seeds by {what} violation: {}", parts.join(", "));
    }
    eprintln!(
        "ran {} seeds in {:.1} s on {} threads ({:.0} s simulated)",
        summary.seeds,
        started.elapsed().as_secs_f64(),
        threads,
        summary.simulated_ms as f64 / 1000.0
    );
    println!("{}", summary.line());
    if summary.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
