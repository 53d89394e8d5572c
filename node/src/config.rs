//! The node's home directory and `config/node.toml`.
//!
//! Every setting has a default; the file written by `phalanx init` lists
//! them all with comments. Unknown fields are errors, so a typo never goes
//! unnoticed, and every error names the file and the field.

use phalanx_consensus::traitor::Behaviour;
use phalanx_consensus::{Config as ConsensusConfig, Genesis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where a node keeps its files.
#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn node_toml(&self) -> PathBuf {
        self.config_dir().join("node.toml")
    }
    pub fn genesis_json(&self) -> PathBuf {
        self.config_dir().join("genesis.json")
    }
    pub fn key_json(&self) -> PathBuf {
        self.config_dir().join("key.json")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir().join("db")
    }
}

/// A config or genesis problem, naming the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// The libp2p address to listen on.
    pub listen: String,
    /// Dial addresses that override the genesis file's, by validator name
    /// (e.g. to go through a proxy).
    pub peers: BTreeMap<String, String>,
    pub max_message_bytes: usize,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "/ip4/0.0.0.0/tcp/26000".into(),
            peers: BTreeMap::new(),
            max_message_bytes: phalanx_consensus::MESSAGE_BYTES_MAX as usize,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The most transactions in one submission.
    pub max_batch_txs: usize,
    /// A client must send a request's whole header within this time, or
    /// the connection is closed. It is also the longest a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout_ms: u64,
    /// From the header to the response head: reading the body and
    /// handling it. Over it, 408 `request_timeout`. Event streams are not
    /// cut: their response head is sent at once.
    pub request_timeout_ms: u64,
    /// Open connections at most; further ones wait in the kernel's accept
    /// queue (they cost the node no file descriptor). Keep it well below
    /// the process's file-descriptor limit (RocksDB keeps up to 256).
    pub max_connections: usize,
    /// Open connections from one IP address at most; further ones are
    /// answered 503 `too_many_connections` and closed.
    pub max_connections_per_ip: usize,
    /// `/v1/events` subscribers at most; further ones get 503
    /// `too_many_subscribers`.
    pub max_event_subscribers: usize,
    /// An event stream with no block to send gets a comment this often,
    /// so proxies keep it and a dead client is noticed.
    pub event_keepalive_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8000".parse().expect("valid default"),
            max_body_bytes: 4 << 20,
            max_batch_txs: 4096,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            max_connections: 512,
            max_connections_per_ip: 128,
            max_event_subscribers: 128,
            event_keepalive_ms: 15_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// How far above an account's next nonce a transaction may be.
    pub nonce_ahead_max: u64,
    /// The most transactions one sender may have in the pool (ready and
    /// held together): its share, small beside `max_txs`.
    pub sender_txs_max: usize,
    /// The most transactions one sender may have held behind a missing
    /// earlier nonce.
    pub sender_held_max: usize,
    /// A transaction held back because an earlier nonce of its sender is
    /// missing is dropped after this many seconds (the client resubmits).
    pub nonce_gap_timeout_s: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            // A few seconds of work at the measured peak (docs/PERFORMANCE.md).
            max_txs: 20_000,
            max_bytes: 64 << 20,
            // A wallet pipelining transfers at 50 tx/s with a second of
            // commit latency has ~50 in flight; 10,000 gave one key with
            // no funds half of the pool (issue 16).
            nonce_ahead_max: 64,
            // Filling the 20,000-slot pool takes 313 funded accounts
            // (each pending transfer needs its amount, at least 1, covered),
            // and filling it with held work 1,250.
            sender_txs_max: 64,
            sender_held_max: 16,
            nonce_gap_timeout_s: 60,
        }
    }
}

/// Node-local consensus timing; the protocol parameters that must agree
/// (checkpoint interval, window) come from the genesis file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConsensusConfig {
    pub batch_txs_max: Option<usize>,
    pub batch_delay_ms: Option<u64>,
    pub pipeline_max: Option<u64>,
    pub propose_timeout_ms: Option<u64>,
    pub view_timeout_ms: Option<u64>,
    pub view_timeout_ms_max: Option<u64>,
    pub retransmit_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// fsync every applied block (votes are always synced).
    pub sync_blocks: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { sync_blocks: true }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "phalanx_node=debug,info".
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// A traitor behaviour: test networks only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ByzantineConfig {
    pub behaviour: String,
    pub from_height: Option<u64>,
}

/// `config/node.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub p2p: P2pConfig,
    pub api: ApiConfig,
    pub mempool: MempoolConfig,
    pub consensus: LocalConsensusConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub byzantine: Option<ByzantineConfig>,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| {
            // toml's message names the field and the line; keep it on one line.
            ConfigError::invalid(path, e.to_string().replace('\n', " ").trim().to_string())
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, why: &str| ConfigError::invalid(path, format!("{field}: {why}"));
        if self.p2p.listen.parse::<libp2p::Multiaddr>().is_err() {
            return Err(bad(
                "p2p.listen",
                "not a multiaddr like /ip4/0.0.0.0/tcp/26000",
            ));
        }
        for (name, addr) in &self.p2p.peers {
            if addr.parse::<libp2p::Multiaddr>().is_err() {
                return Err(bad(&format!("p2p.peers.{name}"), "not a multiaddr"));
            }
        }
        if self.p2p.max_message_bytes < 1024 {
            return Err(bad("p2p.max_message_bytes", "must be at least 1024"));
        }
        if self.api.max_body_bytes < 1024 {
            return Err(bad("api.max_body_bytes", "must be at least 1024"));
        }
        if self.api.max_batch_txs == 0 {
            return Err(bad("api.max_batch_txs", "must be at least 1"));
        }
        for (field, ms) in [
            (
                "api.header_read_timeout_ms",
                self.api.header_read_timeout_ms,
            ),
            ("api.request_timeout_ms", self.api.request_timeout_ms),
            ("api.event_keepalive_ms", self.api.event_keepalive_ms),
        ] {
            if !(10..=3_600_000).contains(&ms) {
                return Err(bad(field, "must be between 10 and 3600000 (one hour)"));
            }
        }
        if self.api.max_connections == 0 {
            return Err(bad("api.max_connections", "must be at least 1"));
        }
        if !(1..=self.api.max_connections).contains(&self.api.max_connections_per_ip) {
            return Err(bad(
                "api.max_connections_per_ip",
                "must be between 1 and api.max_connections",
            ));
        }
        if self.api.max_event_subscribers >= self.api.max_connections {
            return Err(bad(
                "api.max_event_subscribers",
                "must be below api.max_connections, so streams cannot take every connection",
            ));
        }
        if self.mempool.max_txs == 0 || self.mempool.max_bytes == 0 {
            return Err(bad("mempool", "max_txs and max_bytes must be positive"));
        }
        if self.mempool.nonce_gap_timeout_s == 0 {
            return Err(bad("mempool", "nonce_gap_timeout_s must be positive"));
        }
        let m = &self.mempool;
        if m.sender_held_max == 0
            || m.sender_held_max > m.sender_txs_max
            || m.sender_txs_max > m.max_txs
        {
            return Err(bad(
                "mempool",
                "need 1 <= sender_held_max <= sender_txs_max <= max_txs",
            ));
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::EnvFilter>() {
            return Err(bad("log.level", &format!("not a tracing filter: {e}")));
        }
        if let Some(b) = &self.byzantine {
            b.behaviour
                .parse::<Behaviour>()
                .map_err(|e| bad("byzantine.behaviour", &e.to_string()))?;
        }
        Ok(())
    }

    /// The consensus config: the genesis parameters with local timing.
    pub fn consensus_config(&self, genesis: &Genesis) -> ConsensusConfig {
        let mut c = genesis.consensus_config();
        let l = &self.consensus;
        if let Some(v) = l.batch_txs_max {
            c.batch_txs_max = v;
        }
        if let Some(v) = l.batch_delay_ms {
            c.batch_delay_ms = v;
        }
        if let Some(v) = l.pipeline_max {
            c.pipeline_max = v;
        }
        if let Some(v) = l.propose_timeout_ms {
            c.propose_timeout_ms = v;
        }
        if let Some(v) = l.view_timeout_ms {
            c.view_timeout_ms = v;
        }
        if let Some(v) = l.view_timeout_ms_max {
            c.view_timeout_ms_max = v;
        }
        if let Some(v) = l.retransmit_ms {
            c.retransmit_ms = v;
        }
        c
    }

    /// The commented file `phalanx init` writes.
    pub fn render(&self) -> String {
        let peers = if self.p2p.peers.is_empty() {
            "# [p2p.peers]\n# v1 = \"/ip4/10.0.0.2/tcp/26000\"\n".to_string()
        } else {
            let mut s = "[p2p.peers]\n".to_string();
            for (k, v) in &self.p2p.peers {
                s.push_str(&format!("{k} = \"{v}\"\n"));
            }
            s
        };
        let byzantine = match &self.byzantine {
            None => "# [byzantine]\n# behaviour = \"equivocate\"\n# from_height = 5\n".to_string(),
            Some(b) => format!(
                "[byzantine]\nbehaviour = \"{}\"\n{}",
                b.behaviour,
                b.from_height
                    .map(|h| format!("from_height = {h}\n"))
                    .unwrap_or_default()
            ),
        };
        format!(
            r#"# Phalanx node configuration. Every field is optional; these are the defaults.

[p2p]
# The libp2p address this validator listens on.
listen = "{listen}"
# The largest consensus message accepted from a peer, in bytes.
max_message_bytes = {max_message_bytes}
# Where to dial other validators, overriding the genesis file (by name).
{peers}
[api]
# The HTTP API (JSON) and /metrics. Keep it on localhost unless you mean it.
listen = "{api_listen}"
max_body_bytes = {max_body_bytes}
# The most transactions accepted in one POST /v1/transactions.
max_batch_txs = {max_batch_txs}
# A request's header must arrive within this time, else the connection is
# closed; also the longest a keep-alive connection may sit idle.
header_read_timeout_ms = {header_read_timeout_ms}
# Reading the body and handling it, until the response head (408 after).
request_timeout_ms = {request_timeout_ms}
# Open connections at most (more wait in the kernel's accept queue), and
# from one IP address (more are answered 503). Keep max_connections well
# below the file-descriptor limit (`ulimit -n`): RocksDB keeps up to 256.
max_connections = {max_connections}
max_connections_per_ip = {max_connections_per_ip}
# /v1/events subscribers at most (503 after), and how often an idle stream
# gets a keep-alive comment.
max_event_subscribers = {max_event_subscribers}
event_keepalive_ms = {event_keepalive_ms}

[mempool]
# Past this backlog, submissions are refused (503 mempool_full) before
# their signatures are checked, so overload costs lookups, not CPU.
max_txs = {max_txs}
max_bytes = {max_bytes}
# Transactions whose nonce is further ahead of the account's are refused.
nonce_ahead_max = {nonce_ahead_max}
# One sender's share: its transactions in the pool, and those of them held
# behind a missing earlier nonce (429 sender_limit / sender_held_limit).
# A transfer is admitted only if the sender's balance covers it and all
# its others in the pool, so each pooled transaction is backed by funds.
sender_txs_max = {sender_txs_max}
sender_held_max = {sender_held_max}
# Transactions wait for their sender's earlier nonces before they are
# proposed; one whose gap is not filled within this many seconds is dropped.
nonce_gap_timeout_s = {nonce_gap_timeout_s}

[consensus]
# Local timing; protocol parameters that must agree are in genesis.json.
# batch_txs_max = 1024
# batch_delay_ms = 5
# pipeline_max = 8
# propose_timeout_ms = 1000
# view_timeout_ms = 2000
# view_timeout_ms_max = 30000
# retransmit_ms = 500

[storage]
# fsync every applied block. Votes are always synced before they are sent.
sync_blocks = {sync_blocks}

[log]
# "human" or "json"
format = "{format}"
level = "{level}"

# Test networks only (the genesis must say test_network = true): make this
# validator a traitor. Behaviours: silent, equivocate, bad-signature,
# wrong-digest, replay, bogus-view-change, flood, censor, slow-primary,
# newview-bomb, padded-view-change, future-votes, gossip-junk, request-spam.
{byzantine}"#,
            listen = self.p2p.listen,
            max_message_bytes = self.p2p.max_message_bytes,
            peers = peers,
            api_listen = self.api.listen,
            max_body_bytes = self.api.max_body_bytes,
            max_batch_txs = self.api.max_batch_txs,
            header_read_timeout_ms = self.api.header_read_timeout_ms,
            request_timeout_ms = self.api.request_timeout_ms,
            max_connections = self.api.max_connections,
            max_connections_per_ip = self.api.max_connections_per_ip,
            max_event_subscribers = self.api.max_event_subscribers,
            event_keepalive_ms = self.api.event_keepalive_ms,
            max_txs = self.mempool.max_txs,
            max_bytes = self.mempool.max_bytes,
            nonce_ahead_max = self.mempool.nonce_ahead_max,
            sender_txs_max = self.mempool.sender_txs_max,
            sender_held_max = self.mempool.sender_held_max,
            nonce_gap_timeout_s = self.mempool.nonce_gap_timeout_s,
            sync_blocks = self.storage.sync_blocks,
            format = match self.log.format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            },
            level = self.log.level,
            byzantine = byzantine,
        )
    }
}

/// Reads and validates a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let genesis: Genesis = serde_json::from_str(&text)
        .map_err(|e| ConfigError::invalid(path, format!("not a valid genesis file: {e}")))?;
    genesis
        .validate()
        .map_err(|e| ConfigError::invalid(path, format!("{}: {}", e.field, e.reason)))?;
    for v in &genesis.validators {
        if v.p2p_address.parse::<libp2p::Multiaddr>().is_err() {
            return Err(ConfigError::invalid(
                path,
                format!("validators.{}.p2p_address: not a multiaddr", v.name),
            ));
        }
    }
    Ok(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_defaults_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let mut c = NodeConfig::default();
        c.p2p
            .peers
            .insert("v1".into(), "/ip4/127.0.0.1/tcp/1".into());
        c.byzantine = Some(ByzantineConfig {
            behaviour: "silent".into(),
            from_height: Some(3),
        });
        std::fs::write(&path, c.render()).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), c);
        std::fs::write(&path, NodeConfig::default().render()).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), NodeConfig::default());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        for (text, needle) in [
            ("[api]\nlisten = \"nope\"\n", "listen"),
            ("[api]\nlistne = \"127.0.0.1:1\"\n", "listne"),
            ("[p2p]\nlisten = \"tcp://x\"\n", "p2p.listen"),
            (
                "[byzantine]\nbehaviour = \"sneaky\"\n",
                "byzantine.behaviour",
            ),
            ("[mempool]\nmax_txs = -1\n", "max_txs"),
            ("[mempool]\nsender_held_max = 0\n", "sender_held_max"),
            (
                "[mempool]\nmax_txs = 10\nsender_txs_max = 11\n",
                "sender_txs_max",
            ),
            ("[api]\nheader_read_timeout_ms = 0\n", "api.header_read_timeout_ms"),
            ("[api]\nmax_connections = 0\n", "api.max_connections"),
            (
                "[api]\nmax_connections = 8\nmax_connections_per_ip = 9\nmax_event_subscribers = 2\n",
                "api.max_connections_per_ip",
            ),
            (
                "[api]\nmax_connections = 8\nmax_connections_per_ip = 4\nmax_event_subscribers = 8\n",
                "api.max_event_subscribers",
            ),
            ("[log]\nlevel = \"phalanx_node=loud\"\n", "log.level"),
            ("[log]\nlevel = \"phalanx_node=[\"\n", "log.level"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = NodeConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains("node.toml"), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
