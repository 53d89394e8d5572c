//! The client side of a test network: pre-signed signed transfers offered
//! open-loop at a fixed rate through the HTTP API, and a tracker that
//! watches committed blocks to measure end-to-end latency.

use crate::cluster::Api;
use phalanx_consensus::{tx_hash, Transfer};
use phalanx_crypto::{Keypair, Signed};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One pre-signed transfer, ready to send.
#[derive(Clone)]
pub struct PreSigned {
    pub hash: String,
    pub json: String,
}

/// Signs `count` transfers round-robin over `accounts` (each sends to the
/// next one), with consecutive nonces per account. Done before the clock
/// starts, so the client's signing is not counted as the system's cost.
pub fn presign(chain_id: &str, accounts: &[Keypair], count: usize) -> Vec<PreSigned> {
    let mut nonces = vec![0u64; accounts.len()];
    (0..count)
        .map(|i| {
            let a = i % accounts.len();
            let to = accounts[(a + 1) % accounts.len()].address();
            let tx = Signed::sign(
                Transfer {
                    chain_id: chain_id.to_string(),
                    to,
                    amount: 1,
                    nonce: nonces[a],
                },
                &accounts[a],
                chain_id,
            );
            nonces[a] += 1;
            PreSigned {
                hash: tx_hash(&tx).to_hex(),
                json: serde_json::to_string(&tx).expect("a transfer serialises"),
            }
        })
        .collect()
}

/// What the load generator saw.
#[derive(Default)]
pub struct LoadLog {
    /// Hash → when it was sent.
    pub submitted: HashMap<String, Instant>,
    /// Hashes a node accepted (the acknowledged set).
    pub acknowledged: Vec<String>,
    /// Rejections by code.
    pub rejected: HashMap<String, u64>,
    pub failed_requests: u64,
}

/// Which nodes the load may use right now (honest and running).
pub type Targets = Arc<RwLock<Vec<String>>>;

/// Offers `txs` at `rate` per second for at most `duration`, in batches
/// every `tick`, spread over `connections` threads. Stops early when
/// `stop` is set.
pub fn offer(
    txs: Vec<PreSigned>,
    rate: u64,
    duration: Duration,
    targets: Targets,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> LoadLog {
    let log = Arc::new(Mutex::new(LoadLog::default()));
    let txs = Arc::new(txs);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let connections = connections.max(1);
    let mut workers = Vec::new();
    for w in 0..connections {
        let (txs, next, log, targets, stop) = (
            txs.clone(),
            next.clone(),
            log.clone(),
            targets.clone(),
            stop.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut turn = w;
            loop {
                if stop.load(Ordering::SeqCst) || start.elapsed() >= duration {
                    return;
                }
                // Open loop: everything due by now, regardless of replies.
                let due =
                    ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(txs.len() as u64);
                let chunk = (rate / (100 * connections as u64)).max(1);
                let from = next.fetch_add(chunk, Ordering::SeqCst);
                if from >= txs.len() as u64 {
                    return;
                }
                if from >= due {
                    next.fetch_sub(chunk, Ordering::SeqCst);
                    std::thread::sleep(tick / connections as u32);
                    continue;
                }
                let to = (from + chunk).min(txs.len() as u64);
                let batch = &txs[from as usize..to as usize];
                let target = {
                    let t = targets.read().unwrap_or_else(|p| p.into_inner());
                    if t.is_empty() {
                        None
                    } else {
                        turn += 1;
                        Some(t[turn % t.len()].clone())
                    }
                };
                let Some(target) = target else {
                    std::thread::sleep(tick);
                    continue;
                };
                send_batch(&Api::new(target), batch, &log);
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    Arc::try_unwrap(log)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}

fn send_batch(api: &Api, batch: &[PreSigned], log: &Mutex<LoadLog>) {
    let mut body = String::from("{\"transactions\":[");
    for (i, tx) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&tx.json);
    }
    body.push_str("]}");
    let sent = Instant::now();
    let reply = api.post_raw("/v1/transactions", "application/json", body.as_bytes());
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    for tx in batch {
        log.submitted.insert(tx.hash.clone(), sent);
    }
    match reply {
        Ok((200, v)) => {
            let results = v["results"].as_array().cloned().unwrap_or_default();
            for (tx, r) in batch.iter().zip(results) {
                if r.get("hash").is_some() {
                    log.acknowledged.push(tx.hash.clone());
                } else {
                    let code = r["error"]["code"].as_str().unwrap_or("unknown").to_string();
                    *log.rejected.entry(code).or_default() += 1;
                }
            }
        }
        _ => log.failed_requests += 1,
    }
}

/// Watches committed blocks on one node and records when each
/// transaction was first seen committed.
pub struct Tracker {
    pub committed: Arc<Mutex<HashMap<String, Instant>>>,
    /// (time since start, committed tx count) samples, for throughput.
    pub height: Arc<AtomicU64>,
    pub txs: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Tracker {
    /// Follows blocks from the first answering node in `sources`.
    pub fn start(sources: Targets) -> Tracker {
        let committed = Arc::new(Mutex::new(HashMap::new()));
        let height = Arc::new(AtomicU64::new(0));
        let txs = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, h, t, s) = (committed.clone(), height.clone(), txs.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut next = 1u64;
            while !s.load(Ordering::SeqCst) {
                let list = sources.read().unwrap_or_else(|p| p.into_inner()).clone();
                let mut progressed = false;
                for url in &list {
                    let api = Api::new(url.clone());
                    let Ok(status) = api.get("/v1/status") else {
                        continue;
                    };
                    let tip = status["height"].as_u64().unwrap_or(0);
                    while next <= tip {
                        let Ok(block) = api.get(&format!("/v1/blocks/{next}")) else {
                            break;
                        };
                        let now = Instant::now();
                        let hashes = block["tx_hashes"].as_array().cloned().unwrap_or_default();
                        let mut map = c.lock().unwrap_or_else(|p| p.into_inner());
                        for hash in &hashes {
                            if let Some(hs) = hash.as_str() {
                                map.entry(hs.to_string()).or_insert(now);
                            }
                        }
                        t.fetch_add(hashes.len() as u64, Ordering::SeqCst);
                        h.store(next, Ordering::SeqCst);
                        next += 1;
                        progressed = true;
                    }
                    break;
                }
                if !progressed {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Tracker {
            committed,
            height,
            txs,
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The p-th percentile (0..=100) of `values` (sorted in place).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
