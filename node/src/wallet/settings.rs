//! Where the wallet finds things: flags first, then the config file, then
//! defaults under the wallet directory (`$PHALANX_WALLET_HOME`, else
//! `~/.phalanx-wallet`).
//!
//! The config file (`<wallet dir>/config.toml` unless `--config` names
//! another) is optional:
//!
//! ```toml
//! nodes = ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
//! key = "/home/me/.phalanx-wallet/key.json"
//! genesis = "/home/me/testnet/genesis.json"
//! ```
//!
//! Relative paths in it are relative to the file's directory.

use super::WalletError;
use phalanx_consensus::Genesis;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The environment variable naming the wallet directory.
pub const HOME_ENV: &str = "PHALANX_WALLET_HOME";
/// The node asked when neither a flag nor the config names one.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8000";
/// The most nodes a wallet will try in turn.
pub const NODES_MAX: usize = 64;
/// The largest config or genesis file read.
pub const FILE_BYTES_MAX: u64 = 4 << 20;

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub nodes: Vec<String>,
    pub key: Option<PathBuf>,
    pub genesis: Option<PathBuf>,
}

/// What the flags said, before defaults.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub nodes: Vec<String>,
    pub key: Option<PathBuf>,
    pub genesis: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub wallet_dir: PathBuf,
    pub nodes: Vec<String>,
    pub key: PathBuf,
    pub genesis: Option<PathBuf>,
}

/// The wallet directory.
pub fn wallet_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(HOME_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".phalanx-wallet")
}

fn read_bounded(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > FILE_BYTES_MAX {
        return Err(format!(
            "{what} is {} bytes, the limit is {FILE_BYTES_MAX}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

impl Settings {
    /// Flags over config over defaults. A config file named with
    /// `--config` must exist; the default one may be absent.
    pub fn resolve(flags: Flags) -> Result<Settings, WalletError> {
        let wallet_dir = wallet_dir();
        let (config_path, required) = match &flags.config {
            Some(p) => (p.clone(), true),
            None => (wallet_dir.join("config.toml"), false),
        };
        let config = if required || config_path.is_file() {
            let bad = |reason: String| WalletError::Config {
                path: config_path.clone(),
                reason,
            };
            let text = read_bounded(&config_path, "the config file").map_err(bad)?;
            let mut c: ConfigFile =
                toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
            let base = config_path.parent().unwrap_or(Path::new("."));
            c.key = c.key.map(|k| base.join(k));
            c.genesis = c.genesis.map(|g| base.join(g));
            c
        } else {
            ConfigFile::default()
        };
        let mut nodes = if flags.nodes.is_empty() {
            config.nodes
        } else {
            flags.nodes
        };
        if nodes.is_empty() {
            nodes.push(DEFAULT_NODE.to_string());
        }
        if nodes.len() > NODES_MAX {
            return Err(WalletError::Usage(format!(
                "{} nodes given, at most {NODES_MAX} are tried",
                nodes.len()
            )));
        }
        let nodes = nodes
            .into_iter()
            .map(|n| normalise_url(&n))
            .collect::<Result<Vec<_>, _>>()?;
        let key = flags
            .key
            .or(config.key)
            .unwrap_or_else(|| wallet_dir.join("key.json"));
        Ok(Settings {
            nodes,
            key,
            genesis: flags.genesis.or(config.genesis),
            wallet_dir,
        })
    }

    /// The genesis file, if one was given.
    pub fn genesis(&self) -> Result<Option<Genesis>, WalletError> {
        self.genesis.as_deref().map(load_genesis).transpose()
    }

    /// The genesis file, which this command cannot do without.
    pub fn require_genesis(&self, command: &str) -> Result<Genesis, WalletError> {
        self.genesis()?.ok_or_else(|| {
            WalletError::Usage(format!(
                "`{command}` needs the chain's genesis file: pass --genesis FILE or set genesis = \"...\" in {}",
                self.wallet_dir.join("config.toml").display()
            ))
        })
    }
}

/// Accepts `host:port` and `http://host:port[/]`; refuses other schemes
/// (this wallet speaks plain HTTP to a node it is told about).
fn normalise_url(url: &str) -> Result<String, WalletError> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(WalletError::Usage("an empty --node URL".into()));
    }
    if url.starts_with("https://") {
        return Err(WalletError::Usage(format!(
            "--node {url}: https is not supported; use http:// (the node's API is plain HTTP)"
        )));
    }
    if url.starts_with("http://") {
        return Ok(url.to_string());
    }
    if url.contains("://") {
        return Err(WalletError::Usage(format!(
            "--node {url}: expected http://HOST:PORT"
        )));
    }
    Ok(format!("http://{url}"))
}

/// Reads and checks a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis, WalletError> {
    let bad = |reason: String| WalletError::Genesis(format!("{}: {reason}", path.display()));
    let text = read_bounded(path, "the genesis file").map_err(bad)?;
    let genesis: Genesis =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a genesis file: {e}")))?;
    genesis
        .validate()
        .map_err(|e| bad(format!("{}: {}", e.field, e.reason)))?;
    Ok(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_normalised() {
        assert_eq!(
            normalise_url("127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(normalise_url("http://h:1/").unwrap(), "http://h:1");
        assert!(normalise_url("https://h:1").is_err());
        assert!(normalise_url("ftp://h").is_err());
        assert!(normalise_url(" ").is_err());
    }

    #[test]
    fn config_supplies_defaults_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "nodes = [\"127.0.0.1:1\"]\nkey = \"k.json\"\ngenesis = \"g.json\"\n",
        )
        .unwrap();
        let s = Settings::resolve(Flags {
            config: Some(path.clone()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(s.nodes, vec!["http://127.0.0.1:1"]);
        assert_eq!(s.key, dir.path().join("k.json"));
        assert_eq!(s.genesis, Some(dir.path().join("g.json")));
        let s = Settings::resolve(Flags {
            config: Some(path.clone()),
            nodes: vec!["http://x:2".into()],
            key: Some("/other".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(s.nodes, vec!["http://x:2"]);
        assert_eq!(s.key, PathBuf::from("/other"));
        std::fs::write(&path, "nodez = []\n").unwrap();
        let err = Settings::resolve(Flags {
            config: Some(path),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(matches!(err, WalletError::Config { .. }), "{err}");
    }
}
