//! Real `phalanx` processes on loopback: generate keys, genesis and home
//! directories, start, stop, kill (SIGKILL), pause (SIGSTOP) and resume
//! validators, and talk to their HTTP APIs. Used by the process testnet,
//! the benchmark, and the node's and wallet's integration tests.

use phalanx_consensus::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator};
use phalanx_crypto::{write_key_file, Address, Keypair};
use serde_json::Value;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors from orchestrating processes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("http {url}: {message}")]
    Http { url: String, message: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A traitor in a cluster.
#[derive(Clone, Debug)]
pub struct TraitorSpec {
    pub node: usize,
    pub behaviour: String,
    pub from_height: Option<u64>,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub validators: usize,
    pub chain_id: String,
    pub dir: PathBuf,
    pub traitors: Vec<TraitorSpec>,
    /// Opening balances.
    pub accounts: Vec<(Address, u64)>,
    pub params: ConsensusParams,
    /// Extra lines for every node's `[consensus]` section (local timing).
    pub local_consensus: Vec<(String, String)>,
    /// Host for listen and dial addresses.
    pub host: String,
    /// `p2p_ports[i]` is where validator i listens; `dial[i][j]` is the port
    /// validator i dials to reach j (a proxy, or j's own port).
    pub dial_override: Option<Vec<Vec<u16>>>,
    pub log_level: String,
}

impl ClusterSpec {
    pub fn new(validators: usize, dir: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            validators,
            chain_id: "phalanx-testnet".into(),
            dir: dir.into(),
            traitors: Vec::new(),
            accounts: Vec::new(),
            params: ConsensusParams::for_validators(validators),
            local_consensus: Vec::new(),
            host: "127.0.0.1".into(),
            dial_override: None,
            log_level: "info".into(),
        }
    }
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("local addr"))?.port())
}

/// The `phalanx` binary: `$PHALANX_BIN`, else next to the running
/// executable (target/<profile>/ or target/<profile>/deps/).
pub fn phalanx_bin() -> Result<PathBuf, ClusterError> {
    find_bin("PHALANX_BIN", "phalanx")
}

/// The `phalanx-wallet` binary, found like [`phalanx_bin`].
pub fn wallet_bin() -> Result<PathBuf, ClusterError> {
    find_bin("PHALANX_WALLET_BIN", "phalanx-wallet")
}

fn find_bin(env: &str, name: &str) -> Result<PathBuf, ClusterError> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io("current exe"))?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ClusterError::Failed(format!(
        "cannot find the `{name}` binary next to {}; build it first (cargo build --bins) or set {env}",
        exe.display()
    )))
}

/// A generated cluster and its running processes.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub genesis: Genesis,
    pub keys: Vec<Keypair>,
    pub homes: Vec<PathBuf>,
    pub api_ports: Vec<u16>,
    pub p2p_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    bin: PathBuf,
}

impl Cluster {
    /// Writes keys, genesis and one home per validator under `spec.dir`.
    pub fn generate(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        Self::generate_with_ports(spec, None)
    }

    /// As [`Cluster::generate`], with chosen (p2p, api) ports.
    pub fn generate_with_ports(
        spec: ClusterSpec,
        ports: Option<(Vec<u16>, Vec<u16>)>,
    ) -> Result<Cluster, ClusterError> {
        let n = spec.validators;
        std::fs::create_dir_all(&spec.dir).map_err(io(format!("create {}", spec.dir.display())))?;
        let (p2p_ports, api_ports) = match ports {
            Some(p) => p,
            None => {
                let mut p2p = Vec::new();
                let mut api = Vec::new();
                for _ in 0..n {
                    p2p.push(free_port()?);
                    api.push(free_port()?);
                }
                (p2p, api)
            }
        };
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
        let genesis = Genesis {
            chain_id: spec.chain_id.clone(),
            genesis_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            test_network: true,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator {
                    name: format!("v{i}"),
                    public_key: k.public(),
                    p2p_address: format!("/ip4/{}/tcp/{}", spec.host, p2p_ports[i]),
                })
                .collect(),
            consensus: spec.params.clone(),
            accounts: spec
                .accounts
                .iter()
                .map(|(address, balance)| GenesisAccount {
                    address: *address,
                    balance: *balance,
                })
                .collect(),
        };
        let genesis_path = spec.dir.join("genesis.json");
        let text = serde_json::to_string_pretty(&genesis)
            .map_err(|e| ClusterError::Failed(e.to_string()))?;
        std::fs::write(&genesis_path, text).map_err(io("write genesis"))?;
        let bin = phalanx_bin()?;
        let mut homes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let key_path = spec.dir.join(format!("v{i}.key.json"));
            let _ = std::fs::remove_file(&key_path);
            write_key_file(&key_path, key).map_err(|e| ClusterError::Failed(e.to_string()))?;
            let home = spec.dir.join(format!("v{i}"));
            let _ = std::fs::remove_dir_all(&home);
            let out = Command::new(&bin)
                .arg("init")
                .arg("--home")
                .arg(&home)
                .arg("--genesis")
                .arg(&genesis_path)
                .arg("--key")
                .arg(&key_path)
                .arg("--api-listen")
                .arg(format!("{}:{}", spec.host, api_ports[i]))
                .output()
                .map_err(io(format!("run {} init", bin.display())))?;
            if !out.status.success() {
                return Err(ClusterError::Failed(format!(
                    "phalanx init for v{i} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Self::customise(&spec, i, &home)?;
            homes.push(home);
        }
        Ok(Cluster {
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            spec,
            genesis,
            keys,
            homes,
            api_ports,
            p2p_ports,
            bin,
        })
    }

    /// Applies traitors, local timing, dial overrides and log level to a
    /// freshly initialised node.toml.
    fn customise(spec: &ClusterSpec, i: usize, home: &Path) -> Result<(), ClusterError> {
        let path = home.join("config").join("node.toml");
        let mut text = std::fs::read_to_string(&path).map_err(io("read node.toml"))?;
        let mut consensus = String::from("[consensus]\n");
        for (k, v) in &spec.local_consensus {
            consensus.push_str(&format!("{k} = {v}\n"));
        }
        text = text.replacen("[consensus]\n", &consensus, 1);
        text = text.replacen(
            "level = \"info\"",
            &format!("level = \"{}\"", spec.log_level),
            1,
        );
        if let Some(dial) = &spec.dial_override {
            let mut peers = String::from("[p2p.peers]\n");
            for (j, port) in dial[i].iter().enumerate() {
                if j != i {
                    peers.push_str(&format!("v{j} = \"/ip4/{}/tcp/{port}\"\n", spec.host));
                }
            }
            text = text.replacen("# [p2p.peers]\n", &peers, 1);
        }
        if let Some(t) = spec.traitors.iter().find(|t| t.node == i) {
            text.push_str(&format!("\n[byzantine]\nbehaviour = \"{}\"\n", t.behaviour));
            if let Some(h) = t.from_height {
                text.push_str(&format!("from_height = {h}\n"));
            }
        }
        std::fs::write(&path, text).map_err(io("write node.toml"))
    }

    pub fn len(&self) -> usize {
        self.homes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.homes.is_empty()
    }

    pub fn api_url(&self, i: usize) -> String {
        format!("http://{}:{}", self.spec.host, self.api_ports[i])
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("v{i}.log"))
    }

    /// Starts validator `i`, appending its output to `v{i}.log`.
    pub fn start(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.is_running(i) {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(io("open log"))?;
        let err = log.try_clone().map_err(io("clone log"))?;
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--home")
            .arg(&self.homes[i])
            .env("NO_COLOR", "1")
            // Its own process group: Ctrl-C in the terminal reaches the
            // testnet, which judges the run and then stops the nodes,
            // not the nodes themselves.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", self.bin.display())))?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// The process id of validator `i`, if started.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&mut self, i: usize, signal: &str) -> Result<(), ClusterError> {
        let Some(child) = self.children[i].as_ref() else {
            return Ok(());
        };
        if !send_signal(child.id(), signal) {
            return Err(ClusterError::Failed(format!("SIG{signal} to v{i} failed")));
        }
        Ok(())
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[i] = false;
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after `grace`).
    pub fn terminate(&mut self, i: usize, grace: Duration) -> Result<Option<i32>, ClusterError> {
        if self.paused[i] {
            self.resume(i)?;
        }
        let Some(mut child) = self.children[i].take() else {
            return Ok(None);
        };
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, "STOP")?;
        self.paused[i] = true;
        Ok(())
    }

    pub fn resume(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, "CONT")?;
        self.paused[i] = false;
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            let _ = self.terminate(i, Duration::from_secs(5));
        }
    }

    pub fn api(&self, i: usize) -> Api {
        Api::new(self.api_url(i))
    }

    /// Waits until every running validator answers /health.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.len() {
            if !self.is_running(i) {
                continue;
            }
            loop {
                if self.api(i).get("/health").is_ok() {
                    break;
                }
                if !self.is_running(i) {
                    return Err(ClusterError::Failed(format!(
                        "v{i} exited; see {}",
                        self.log_path(i).display()
                    )));
                }
                if Instant::now() > deadline {
                    return Err(ClusterError::Failed(format!(
                        "v{i} did not answer /health in time"
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Polls `f` until it returns `Some` or `timeout` passes.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&mut Cluster) -> Option<T>,
    ) -> Result<T, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = f(self) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Failed(format!(
                    "timed out after {timeout:?} waiting for {what}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The height each validator reports (None if it does not answer).
    pub fn heights(&self) -> Vec<Option<u64>> {
        (0..self.len())
            .map(|i| {
                self.api(i)
                    .get("/v1/status")
                    .ok()
                    .and_then(|v| v["height"].as_u64())
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            if self.paused[i] {
                let _ = self.resume(i);
            }
            let _ = self.kill(i);
        }
    }
}

/// Sends a signal (by name: TERM, STOP, CONT) to a child process. The
/// workspace forbids `unsafe`, so this goes through kill(1) rather than
/// libc::kill.
fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A small blocking client for a validator's HTTP API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api::with_timeout(base, Duration::from_secs(10))
    }

    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(base: impl Into<String>, timeout: Duration) -> Api {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        Api {
            base: base.into(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET returning (status, JSON body).
    pub fn get_status(&self, path: &str) -> Result<(u16, Value), ClusterError> {
        let url = self.url(path);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| ClusterError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClusterError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// GET that must succeed with 2xx.
    pub fn get(&self, path: &str) -> Result<Value, ClusterError> {
        let (status, v) = self.get_status(path)?;
        if !(200..300).contains(&status) {
            return Err(ClusterError::Http {
                url: self.url(path),
                message: format!("status {status}: {v}"),
            });
        }
        Ok(v)
    }

    /// POST raw bytes with a content type; returns (status, JSON body).
    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ClusterError> {
        let url = self.url(path);
        let mut resp = self
            .agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| ClusterError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClusterError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<(u16, Value), ClusterError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClusterError::Failed(e.to_string()))?;
        self.post_raw(path, "application/json", &bytes)
    }
}
