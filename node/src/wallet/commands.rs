//! The command line: parsing, one function per command, and output —
//! human-readable by default, one JSON object with `--json`. Every failure
//! is one `error: ...` line on stderr (and, with `--json`, an
//! `{"error": {"code", "message"}}` object on stdout) and exit code 1.

use super::client::{AccountInfo, Client};
use super::keystore::{self, EnvOrPrompt, PassphraseSource};
use super::nonce::{self, LastSend, NonceState};
use super::settings::{Flags, Settings};
use super::verify;
use super::WalletError;
use clap::{Parser, Subcommand};
use phalanx_consensus::{tx_hash, Genesis, Transaction, Transfer};
use phalanx_crypto::{Address, Digest, Keypair, PublicKey, Signed};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often `send --wait` asks whether the transaction committed.
pub const WAIT_POLL_MS: u64 = 200;
/// How long `send --wait` lets a transaction stay unknown to the node it
/// asks before sending it again.
pub const RESUBMIT_MS: u64 = 3000;
/// The longest `--timeout` accepted, in seconds.
pub const WAIT_TIMEOUT_S_MAX: u64 = 3600;

#[derive(Parser, Debug)]
#[command(
    name = "phalanx-wallet",
    version,
    about = "A wallet for a Phalanx account: keys, balances, transfers, and finality proofs checked against the genesis validators",
    after_help = "Files: the wallet directory is $PHALANX_WALLET_HOME, else ~/.phalanx-wallet; it holds key.json and an optional config.toml with `nodes = [...]`, `key = \"...\"`, `genesis = \"...\"`.\nA sealed key's passphrase comes from $PHALANX_WALLET_PASSPHRASE, else a prompt."
)]
pub struct Cli {
    /// A node's HTTP API; repeat to give several (each is tried in turn
    /// until one answers). Default: the config's `nodes`, else
    /// http://127.0.0.1:8000.
    #[arg(long = "node", value_name = "URL", global = true)]
    pub nodes: Vec<String>,
    /// The account key file. Default: the config's `key`, else
    /// <wallet dir>/key.json.
    #[arg(long, value_name = "FILE", global = true)]
    pub key: Option<PathBuf>,
    /// The chain's genesis file: needed by `verify`, and when given every
    /// command checks that the node serves this chain.
    #[arg(long, value_name = "FILE", global = true)]
    pub genesis: Option<PathBuf>,
    /// The config file. Default: <wallet dir>/config.toml (optional).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new account key (mode 0600; refuses to overwrite).
    Keygen {
        /// Where to write it. Default: --key, else the config's key, else
        /// <wallet dir>/key.json.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Seal the key with a passphrase (Argon2id + XChaCha20-Poly1305).
        #[arg(long)]
        encrypt: bool,
    },
    /// Print the account's address.
    Address,
    /// An account's balance (default: this wallet's account).
    Balance {
        #[arg(value_name = "ADDRESS")]
        address: Option<String>,
    },
    /// An account's next nonce, committed and after pending transactions.
    Nonce {
        #[arg(value_name = "ADDRESS")]
        address: Option<String>,
    },
    /// Sign and submit a transfer; with --wait, follow it until final.
    Send {
        /// The recipient's address (40 hex characters).
        #[arg(long, value_name = "ADDRESS")]
        to: String,
        /// How much to send (at least 1).
        #[arg(long, value_name = "N", value_parser = parse_amount)]
        amount: u64,
        /// Wait until the transaction is committed, then print its height
        /// and result.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, value_name = "S", default_value_t = 30, value_parser = parse_timeout)]
        timeout: u64,
        /// Use this nonce instead of choosing one (to replace a lost
        /// transaction).
        #[arg(long, value_name = "N")]
        nonce: Option<u64>,
    },
    /// A transaction's status and result.
    Tx {
        #[arg(value_name = "HASH")]
        hash: String,
    },
    /// Check that a transaction is final: its block's commit certificate
    /// against the genesis validators (2f + 1 distinct signatures) and its
    /// Merkle proof against the block's transaction root.
    Verify {
        #[arg(value_name = "HASH")]
        hash: String,
    },
}

fn parse_amount(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "the amount must be a whole number from 1 to {}",
            u64::MAX
        )),
    }
}

fn parse_timeout(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (1..=WAIT_TIMEOUT_S_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "the timeout is whole seconds from 1 to {WAIT_TIMEOUT_S_MAX}"
        )),
    }
}

/// What a command produced: text for people, a JSON object for programs.
pub struct Outcome {
    pub human: String,
    pub json: Value,
}

/// Prints progress lines in human mode (a `send --wait` shows the hash
/// before it waits).
struct Ui {
    json: bool,
}

impl Ui {
    fn progress(&self, line: &str) {
        if !self.json {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    }
}

/// Parses `args` (program name first), runs the command, prints, and
/// returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return 0;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprint!("{e}");
                return 1;
            }
            // clap's message is several lines; the user gets its first.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see phalanx-wallet --help)");
            return 1;
        }
    };
    let json = cli.json;
    match run(cli, &EnvOrPrompt) {
        Ok(out) => {
            if json {
                println!("{}", out.json);
            } else {
                println!("{}", out.human);
            }
            0
        }
        Err(e) => {
            let message = one_line(&e.to_string());
            if json {
                println!(
                    "{}",
                    json!({"error": {"code": e.code(), "message": message}})
                );
            }
            eprintln!("error: {message}");
            1
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one parsed command.
pub fn run(cli: Cli, passphrase: &dyn PassphraseSource) -> Result<Outcome, WalletError> {
    let settings = Settings::resolve(Flags {
        nodes: cli.nodes,
        key: cli.key,
        genesis: cli.genesis,
        config: cli.config,
    })?;
    let ui = Ui { json: cli.json };
    match cli.command {
        Command::Keygen { out, encrypt } => keygen(&settings, out, encrypt, passphrase),
        Command::Address => address(&settings, passphrase),
        Command::Balance { address } => account(&settings, address, false),
        Command::Nonce { address } => account(&settings, address, true),
        Command::Send {
            to,
            amount,
            wait,
            timeout,
            nonce,
        } => send(
            &settings,
            passphrase,
            &ui,
            SendArgs {
                to,
                amount,
                wait,
                timeout_s: timeout,
                nonce,
            },
        ),
        Command::Tx { hash } => tx(&settings, &hash),
        Command::Verify { hash } => verify_cmd(&settings, &hash),
    }
}

fn parse_address(text: &str) -> Result<Address, WalletError> {
    Address::from_hex(text).map_err(|_| {
        WalletError::Usage(format!("bad address {text:?}: expected 40 hex characters"))
    })
}

fn parse_hash(text: &str) -> Result<Digest, WalletError> {
    let t = text.trim().trim_start_matches("0x");
    if t.len() != 64 {
        return Err(WalletError::Usage(format!(
            "bad transaction hash {text:?}: expected 64 hex characters"
        )));
    }
    Digest::from_hex(t).map_err(|_| {
        WalletError::Usage(format!(
            "bad transaction hash {text:?}: expected 64 hex characters"
        ))
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn keygen(
    settings: &Settings,
    out: Option<PathBuf>,
    encrypt: bool,
    passphrase: &dyn PassphraseSource,
) -> Result<Outcome, WalletError> {
    let path = out.unwrap_or_else(|| settings.key.clone());
    let key = Keypair::generate();
    keystore::write_new(&path, &key, encrypt.then_some(passphrase))?;
    let address = key.address().to_hex();
    let sealed = if encrypt {
        "sealed with your passphrase"
    } else {
        "not encrypted; use --encrypt to seal it with a passphrase"
    };
    Ok(Outcome {
        human: format!(
            "wrote {} (mode 0600, {sealed})\naddress {address}",
            path.display()
        ),
        json: json!({
            "key_file": path.display().to_string(),
            "address": address,
            "public_key": key.public().to_hex(),
            "encrypted": encrypt,
        }),
    })
}

fn address(settings: &Settings, passphrase: &dyn PassphraseSource) -> Result<Outcome, WalletError> {
    // Opened, not just read: a sealed file whose public key was swapped
    // must not hand out someone else's address.
    let key = keystore::load(&settings.key, passphrase)?;
    let address = key.address().to_hex();
    Ok(Outcome {
        human: address.clone(),
        json: json!({"address": address, "public_key": key.public().to_hex()}),
    })
}

/// The account's public key without opening a sealed file: for read-only
/// queries, which need no passphrase.
fn own_public_key(settings: &Settings) -> Result<PublicKey, WalletError> {
    keystore::public_key_of(&settings.key)
}

/// When a genesis is given, the node must serve its chain.
fn check_node_chain(
    settings: &Settings,
    client: &Client,
) -> Result<(String, Option<Genesis>), WalletError> {
    let (info, _) = client.chain()?;
    let genesis = settings.genesis()?;
    if let Some(g) = &genesis {
        if info.chain_id != g.chain_id {
            return Err(WalletError::WrongChain {
                detail: format!(
                    "node {} serves chain {:?}, the genesis file is chain {:?}",
                    info.node, info.chain_id, g.chain_id
                ),
            });
        }
        let want = g.hash().to_hex();
        if info.genesis_hash != want {
            return Err(WalletError::WrongChain {
                detail: format!(
                    "node {} serves chain {:?} from another genesis (hash {}, the genesis file's is {want})",
                    info.node, info.chain_id, info.genesis_hash
                ),
            });
        }
    }
    Ok((info.chain_id, genesis))
}

fn account(
    settings: &Settings,
    address: Option<String>,
    nonce_only: bool,
) -> Result<Outcome, WalletError> {
    let address = match address {
        Some(a) => parse_address(&a)?,
        None => own_public_key(settings)?.address(),
    };
    let client = Client::new(settings.nodes.clone());
    let (chain_id, _) = check_node_chain(settings, &client)?;
    let info = client.account(&address)?;
    if info.is_unknown() {
        return Err(WalletError::UnknownAccount {
            address: address.to_hex(),
            chain_id,
        });
    }
    let json = json!({
        "address": address.to_hex(),
        "balance": info.balance,
        "nonce": info.nonce,
        "pending_nonce": info.pending_nonce,
        "chain_id": chain_id,
        "node": info.node,
    });
    let human = if nonce_only {
        let pending = info.pending_nonce.saturating_sub(info.nonce);
        format!(
            "nonce {} (next after {pending} pending: {})",
            info.nonce, info.pending_nonce
        )
    } else {
        format!("balance {}", info.balance)
    };
    Ok(Outcome { human, json })
}

struct SendArgs {
    to: String,
    amount: u64,
    wait: bool,
    timeout_s: u64,
    nonce: Option<u64>,
}

fn send(
    settings: &Settings,
    passphrase: &dyn PassphraseSource,
    ui: &Ui,
    args: SendArgs,
) -> Result<Outcome, WalletError> {
    let to = parse_address(&args.to)?;
    let key = keystore::load(&settings.key, passphrase)?;
    let from = key.address();
    if to == from {
        return Err(WalletError::Usage(
            "--to is this wallet's own address; a transfer to self always fails".into(),
        ));
    }
    let client = Client::new(settings.nodes.clone());
    let (chain_id, _) = check_node_chain(settings, &client)?;
    let account = client.account(&from)?;
    if account.is_unknown() {
        return Err(WalletError::UnknownAccount {
            address: from.to_hex(),
            chain_id,
        });
    }
    if account.balance < args.amount {
        return Err(WalletError::InsufficientBalance {
            have: account.balance,
            need: args.amount,
        });
    }
    let state_path = nonce::state_path(&settings.key);
    let nonce = match args.nonce {
        Some(n) => n,
        None => choose_nonce(&client, &account, &state_path, &chain_id)?,
    };
    let tx = Signed::sign(
        Transfer {
            chain_id: chain_id.clone(),
            to,
            amount: args.amount,
            nonce,
        },
        &key,
        &chain_id,
    );
    let hash = tx_hash(&tx);
    let (node_hash, node) = client.submit(&tx).map_err(|e| match e {
        WalletError::Rejected { code, message, .. } if code == "wrong_chain_id" => {
            WalletError::WrongChain { detail: message }
        }
        other => other,
    })?;
    if node_hash != hash {
        return Err(WalletError::BadResponse {
            node,
            reason: format!("it names the transaction {node_hash}, its hash is {hash}"),
        });
    }
    let state = NonceState {
        chain_id: chain_id.clone(),
        address: from,
        next_nonce: nonce + 1,
        last_hash: hash,
        sent_at_ms: now_ms(),
    };
    if let Err(e) = nonce::store(&state_path, &state) {
        // The transfer is out; only the next send's nonce choice suffers.
        eprintln!("warning: could not record the nonce: {e}");
    }
    let mut json = json!({
        "hash": hash.to_hex(),
        "chain_id": chain_id,
        "from": from.to_hex(),
        "to": to.to_hex(),
        "amount": args.amount,
        "nonce": nonce,
        "node": node,
        "status": "pending",
    });
    let sent = format!(
        "sent {hash}: {} from {from} to {to}, nonce {nonce}, via {node}",
        args.amount
    );
    if !args.wait {
        return Ok(Outcome { human: sent, json });
    }
    ui.progress(&sent);
    let (height, position, result) = wait_committed(&client, &tx, &hash, args.timeout_s)?;
    json["status"] = json!("committed");
    json["height"] = json!(height);
    json["position"] = json!(position);
    json["result"] = result.clone();
    if result["status"] != "executed" {
        return Err(WalletError::TxFailed {
            hash: hash.to_hex(),
            height,
            reason: result["reason"]
                .as_str()
                .unwrap_or("unknown reason")
                .to_string(),
        });
    }
    Ok(Outcome {
        human: format!("committed at height {height} (position {position}): executed"),
        json,
    })
}

fn choose_nonce(
    client: &Client,
    account: &AccountInfo,
    state_path: &std::path::Path,
    chain_id: &str,
) -> Result<u64, WalletError> {
    let remembered = nonce::load(state_path, chain_id, &account.address);
    let last = match nonce::remembered_ahead(account, remembered.as_ref()) {
        Some(state) => Some(last_send(client, &state.last_hash)?),
        None => None,
    };
    Ok(nonce::choose(account, remembered.as_ref(), last, now_ms()))
}

fn last_send(client: &Client, hash: &Digest) -> Result<LastSend, WalletError> {
    let reply = client.transaction(hash, false)?;
    Ok(match reply.body["status"].as_str() {
        Some("pending") => LastSend::Pending,
        Some("committed") if reply.body["result"]["status"] == "executed" => LastSend::Executed,
        Some("committed") => LastSend::Failed,
        _ => LastSend::Unknown,
    })
}

/// Polls until `hash` is committed: (height, position, result).
/// Polls until `tx` commits. A node that accepted it may crash before it
/// gossips it, and a faulty primary may commit it ahead of an earlier
/// nonce (a failure that does not use it up): while no node knows it, or
/// it failed that way, it is sent again every [`RESUBMIT_MS`] (idempotent:
/// it has one hash).
fn wait_committed(
    client: &Client,
    tx: &Transaction,
    hash: &Digest,
    timeout_s: u64,
) -> Result<(u64, u64, Value), WalletError> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut resubmit_at = Instant::now() + Duration::from_millis(RESUBMIT_MS);
    let mut status: String;
    loop {
        match client.transaction(hash, false) {
            Ok(reply) => {
                let body = &reply.body;
                status = body["status"].as_str().unwrap_or("missing").to_string();
                // Failed only because its nonce was ahead (an earlier one
                // was missing): not final, it may still execute.
                let retryable = body["result"]["may_execute_later"] == true;
                if retryable {
                    status = "failed for now (nonce ahead), resubmitting".into();
                }
                if (status == "unknown" || retryable) && Instant::now() >= resubmit_at {
                    // Refusals (duplicate, already committed) are answers too.
                    let _ = client.submit(tx);
                    resubmit_at = Instant::now() + Duration::from_millis(RESUBMIT_MS);
                }
                if status == "committed" && !retryable {
                    let height =
                        body["height"]
                            .as_u64()
                            .ok_or_else(|| WalletError::BadResponse {
                                node: reply.node.clone(),
                                reason: "a committed transaction without a height".into(),
                            })?;
                    let position = body["position"].as_u64().unwrap_or(0);
                    return Ok((height, position, body["result"].clone()));
                }
            }
            // A node may be down for a moment; others are tried, and the
            // deadline bounds the whole wait.
            Err(WalletError::Unreachable { .. }) => status = "no node answered".into(),
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(WalletError::Timeout {
                hash: hash.to_hex(),
                seconds: timeout_s,
                status,
            });
        }
        std::thread::sleep(Duration::from_millis(WAIT_POLL_MS));
    }
}

fn result_text(result: &Value) -> String {
    match result["status"].as_str() {
        Some("executed") => "executed".into(),
        Some("failed") => format!(
            "failed: {}",
            result["reason"].as_str().unwrap_or("unknown reason")
        ),
        _ => format!("unknown result {result}"),
    }
}

fn tx(settings: &Settings, hash: &str) -> Result<Outcome, WalletError> {
    let hash = parse_hash(hash)?;
    let client = Client::new(settings.nodes.clone());
    check_node_chain(settings, &client)?;
    let reply = client.transaction(&hash, false)?;
    let mut json = reply.body.clone();
    json["node"] = json!(reply.node);
    let human = match reply.body["status"].as_str() {
        Some("committed") => format!(
            "committed at height {} (position {}, block {}): {}",
            reply.body["height"],
            reply.body["position"],
            reply.body["block_hash"].as_str().unwrap_or("?"),
            result_text(&reply.body["result"])
        ),
        Some("pending") => format!("pending: {hash} is waiting to be put in a block"),
        _ => {
            return Err(WalletError::UnknownTransaction {
                hash: hash.to_hex(),
                node: reply.node,
            })
        }
    };
    Ok(Outcome { human, json })
}

fn verify_cmd(settings: &Settings, hash: &str) -> Result<Outcome, WalletError> {
    let hash = parse_hash(hash)?;
    let genesis = settings.require_genesis("verify")?;
    let client = Client::new(settings.nodes.clone());
    let (info, _) = client.chain()?;
    verify::check_chain(&genesis, &info.chain_id, &info.genesis_hash)?;
    let reply = client.transaction(&hash, true)?;
    match reply.body["status"].as_str() {
        Some("committed") => {}
        Some("pending") => {
            return Err(WalletError::NotFinal {
                hash: hash.to_hex(),
                status: "pending".into(),
            })
        }
        _ => {
            return Err(WalletError::UnknownTransaction {
                hash: hash.to_hex(),
                node: reply.node,
            })
        }
    }
    let fin = verify::verify_response(&genesis, &hash, &reply.body)?;
    let t = &fin.transaction;
    let human = format!(
        "final: transaction {} is in block {} (hash {}) at position {}\n  \
         certificate: view {}, seq {}, batch digest {}, signed by {} of {} validators ({}); 2f + 1 = {}\n  \
         proof: leads from the transaction hash to the block's tx_root {}\n  \
         transaction: {} from {} to {}, nonce {}, chain {:?}\n  \
         result, as the node reports it (not covered by the certificate): {}",
        fin.hash,
        fin.height,
        fin.block_hash,
        fin.position,
        fin.view,
        fin.height,
        fin.batch_digest,
        fin.signers.len(),
        fin.validators,
        fin.signers.join(", "),
        fin.quorum,
        fin.tx_root,
        t.payload.amount,
        t.signer.address(),
        t.payload.to,
        t.payload.nonce,
        fin.chain_id,
        result_text(&fin.result),
    );
    let mut json = serde_json::to_value(&fin).expect("a verdict serializes");
    json["final"] = json!(true);
    json["node"] = json!(reply.node);
    Ok(Outcome { human, json })
}
