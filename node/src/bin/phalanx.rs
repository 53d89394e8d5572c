//! `phalanx`: run a Phalanx validator.

use clap::{Parser, Subcommand};
use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::{CommittedBatch, SeqNum};
use phalanx_crypto::{load_key_file, write_key_file, Keypair};
use phalanx_node::config::{load_genesis, Home, LogFormat, NodeConfig};
use phalanx_node::node::{self, NodeError};
use phalanx_storage::{RocksOptions, RocksStore, Store};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "phalanx",
    version,
    about = "A Byzantine-fault-tolerant replicated ledger validator (PBFT over libp2p, RocksDB)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a validator key file (mode 0600).
    Keygen {
        /// Where to write the key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Lay out a home directory: config/node.toml, config/genesis.json, the key, data/.
    Init {
        #[arg(long)]
        home: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// This validator's key file (from `phalanx keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The HTTP API address (default 127.0.0.1:8000).
        #[arg(long)]
        api_listen: Option<std::net::SocketAddr>,
        /// The libp2p listen address (default: this validator's genesis address).
        #[arg(long)]
        p2p_listen: Option<String>,
    },
    /// Run the validator until SIGINT or SIGTERM.
    Run {
        #[arg(long)]
        home: PathBuf,
        /// Override the log format from node.toml.
        #[arg(long, value_parser = ["human", "json"])]
        log_format: Option<String>,
    },
    /// Check the whole stored chain offline: hash links, certificates
    /// against the genesis validators, Merkle roots, replayed state.
    VerifyLedger {
        #[arg(long)]
        home: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keygen(out),
        Command::Init {
            home,
            genesis,
            key,
            api_listen,
            p2p_listen,
        } => init(Home::new(home), genesis, key, api_listen, p2p_listen),
        Command::Run { home, log_format } => run(Home::new(home), log_format),
        Command::VerifyLedger { home } => verify_ledger(Home::new(home)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: PathBuf) -> Result<(), NodeError> {
    let key = Keypair::generate();
    write_key_file(&out, &key)?;
    println!("wrote {}", out.display());
    println!("public key: {}", key.public());
    Ok(())
}

fn init(
    home: Home,
    genesis_path: PathBuf,
    key_path: PathBuf,
    api_listen: Option<std::net::SocketAddr>,
    p2p_listen: Option<String>,
) -> Result<(), NodeError> {
    let genesis = load_genesis(&genesis_path)?;
    let key = load_key_file(&key_path)?;
    let Some(me) = genesis.validator_set().index_of(&key.public()) else {
        return Err(NodeError::Invalid(format!(
            "{}: key {} is not one of the validators in {}",
            key_path.display(),
            key.public(),
            genesis_path.display()
        )));
    };
    if home.node_toml().exists() {
        return Err(NodeError::Invalid(format!(
            "{} already exists: {} is already initialised",
            home.node_toml().display(),
            home.root.display()
        )));
    }
    let io = |p: &std::path::Path, e: std::io::Error| {
        NodeError::Invalid(format!("{}: {e}", p.display()))
    };
    std::fs::create_dir_all(home.config_dir()).map_err(|e| io(&home.config_dir(), e))?;
    std::fs::create_dir_all(home.data_dir()).map_err(|e| io(&home.data_dir(), e))?;
    let mut config = NodeConfig::default();
    config.p2p.listen =
        p2p_listen.unwrap_or_else(|| genesis.validators[me.as_usize()].p2p_address.clone());
    if let Some(a) = api_listen {
        config.api.listen = a;
    }
    std::fs::write(home.node_toml(), config.render()).map_err(|e| io(&home.node_toml(), e))?;
    let text =
        serde_json::to_string_pretty(&genesis).map_err(|e| NodeError::Invalid(e.to_string()))?;
    std::fs::write(home.genesis_json(), text + "\n").map_err(|e| io(&home.genesis_json(), e))?;
    write_key_file(&home.key_json(), &key)?;
    // Validate what we wrote, as `run` will.
    NodeConfig::load(&home.node_toml())?;
    println!(
        "initialised {} as validator {} ({})",
        home.root.display(),
        me.0,
        genesis.validators[me.as_usize()].name
    );
    println!("  chain id:  {}", genesis.chain_id);
    println!("  config:    {}", home.node_toml().display());
    println!("  start it:  phalanx run --home {}", home.root.display());
    Ok(())
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn run(home: Home, log_format: Option<String>) -> Result<(), NodeError> {
    let loaded = node::load_home(&home)?;
    let format = match log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => loaded.config.log.format,
    };
    init_logging(format, &loaded.config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Invalid(format!("tokio runtime: {e}")))?;
    runtime.block_on(node::run(loaded, shutdown_signal()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

fn verify_ledger(home: Home) -> Result<(), NodeError> {
    let genesis = load_genesis(&home.genesis_json())?;
    let store = RocksStore::open(&home.db_dir(), &RocksOptions::default())?;
    if store.genesis_hash()? != Some(genesis.hash()) {
        return Err(NodeError::Invalid(format!(
            "{}: the stored chain was not started from {}",
            home.db_dir().display(),
            home.genesis_json().display()
        )));
    }
    let validators = genesis.validator_set();
    let height = store.height()?;
    let mut ledger = MemoryLedger::from_genesis(&genesis);
    let fail = |h: u64, why: String| {
        NodeError::Invalid(format!("verify-ledger: FAILED at height {h}: {why}"))
    };
    for h in 1..=height.0 {
        let block = match store.block(SeqNum(h)) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(fail(h, "block missing".into())),
            Err(e) => return Err(fail(h, e.to_string())),
        };
        let cert = match store.certificate(SeqNum(h)) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(fail(h, "commit certificate missing".into())),
            Err(e) => return Err(fail(h, e.to_string())),
        };
        if block.header.prev_hash != ledger.last_hash {
            return Err(fail(
                h,
                "prev_hash does not link to the previous block".into(),
            ));
        }
        block.check_contents().map_err(|e| fail(h, e.to_string()))?;
        if cert.seq != block.header.height || cert.batch_digest != block.header.batch_digest {
            return Err(fail(h, "certificate is for another block".into()));
        }
        cert.verify(&validators, &genesis.chain_id)
            .map_err(|e| fail(h, format!("commit certificate: {e}")))?;
        let replayed = ledger.apply(
            &genesis.chain_id,
            &CommittedBatch {
                batch: block.batch(),
                certificate: cert,
            },
        );
        if replayed.header.state_root != block.header.state_root {
            return Err(fail(
                h,
                "replayed state root differs from the stored one".into(),
            ));
        }
        if replayed.results != block.results || replayed.hash() != block.hash() {
            return Err(fail(h, "replayed block differs from the stored one".into()));
        }
    }
    if ledger.total_supply() != genesis.total_supply() {
        return Err(fail(height.0, "total supply changed".into()));
    }
    for cp in store.latest_checkpoint()?.into_iter() {
        cp.verify(&validators, &genesis.chain_id)
            .map_err(|e| fail(cp.seq.0, format!("checkpoint certificate: {e}")))?;
    }
    if store.state_root()? != ledger.state_root {
        return Err(fail(
            height.0,
            "stored state root differs from the replayed one".into(),
        ));
    }
    println!(
        "verify-ledger: OK: {} blocks, hash chain, {} commit certificates, Merkle roots and replayed state root {} all check",
        height.0,
        height.0,
        ledger.state_root.short()
    );
    Ok(())
}
