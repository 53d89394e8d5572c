//! The client side of a test network: pre-signed signed transfers offered
//! open-loop at a fixed rate through the HTTP API, and a tracker that
//! watches committed blocks to measure end-to-end latency.

use crate::cluster::Api;
use phalanx_consensus::{tx_hash, Transfer};
use phalanx_crypto::{Keypair, Signed};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The most transactions the load generator puts in one request.
const REQUEST_TXS_MAX: u64 = 512;

/// One pre-signed transfer, ready to send.
#[derive(Clone)]
pub struct PreSigned {
    pub hash: String,
    pub json: String,
    /// Its place in the pre-signed sequence (nonce order per account).
    pub order: usize,
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
                order: i,
                hash: tx_hash(&tx).to_hex(),
                json: serde_json::to_string(&tx).expect("a transfer serialises"),
            }
        })
        .collect()
}

/// What the load generator saw.
#[derive(Default)]
pub struct LoadLog {
    /// Hash → when it was first sent.
    pub submitted: HashMap<String, Instant>,
    /// Hashes a node accepted (the acknowledged set), in order, once each.
    pub acknowledged: Vec<String>,
    acknowledged_set: HashSet<String>,
    /// Rejections by code (resubmissions answered `duplicate` or
    /// `already_committed` included).
    pub rejected: HashMap<String, u64>,
    pub failed_requests: u64,
    /// Transactions sent again because they had not committed.
    pub resubmitted: u64,
}

impl LoadLog {
    fn acknowledge(&mut self, hash: &str) {
        if self.acknowledged_set.insert(hash.to_string()) {
            self.acknowledged.push(hash.to_string());
        }
    }
}

/// The load generator's log, shared by its threads.
pub type SharedLog = Arc<Mutex<LoadLog>>;

/// Which nodes the load may use right now (honest and running).
pub type Targets = Arc<RwLock<Vec<String>>>;

/// Offers `txs` at `rate` per second for at most `duration`, in batches
/// every `tick`, spread over `connections` threads, recording into `log`.
/// Stops early when `stop` is set.
pub fn offer(
    txs: Arc<Vec<PreSigned>>,
    rate: u64,
    duration: Duration,
    targets: Targets,
    connections: usize,
    stop: Arc<AtomicBool>,
    log: SharedLog,
) {
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
            // One client per node, so connections are kept alive.
            let mut apis: HashMap<String, Api> = HashMap::new();
            loop {
                if stop.load(Ordering::SeqCst) || start.elapsed() >= duration {
                    return;
                }
                // Open loop: everything due by now, regardless of replies.
                let due =
                    ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(txs.len() as u64);
                // Everything due, up to a request's worth: a worker that
                // fell behind catches up in bigger requests instead of
                // capping the offered rate at its request rate.
                let behind = due.saturating_sub(next.load(Ordering::SeqCst));
                let chunk = behind.clamp(1, REQUEST_TXS_MAX);
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
                let batch: Vec<&PreSigned> = txs[from as usize..to as usize].iter().collect();
                // A node that is down or cut off (503 no_quorum) does not
                // take the batch: try the next one at once, as a wallet
                // with several nodes configured does.
                let tries = targets.read().unwrap_or_else(|p| p.into_inner()).len();
                for _ in 0..tries.max(1) {
                    turn += 1;
                    let Some(target) = pick(&targets, turn) else {
                        std::thread::sleep(tick);
                        break;
                    };
                    let api = apis
                        .entry(target.clone())
                        .or_insert_with(|| Api::new(target));
                    if send_batch(api, &batch, &log) {
                        break;
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
}

/// The `turn`-th of the current targets, round robin.
fn pick(targets: &Targets, turn: usize) -> Option<String> {
    let t = targets.read().unwrap_or_else(|p| p.into_inner());
    (!t.is_empty()).then(|| t[turn % t.len()].clone())
}

/// A client does not trust one node with its transaction: whatever it sent
/// that has not committed after `RESUBMIT_AFTER` it sends again to another
/// node (backing off), as a wallet would. A node that accepted a
/// transaction and crashed before gossiping it, or a request that failed
/// while a node was down, would otherwise lose it — and leave a nonce gap
/// that holds back the sender's later transactions.
pub const RESUBMIT_AFTER: Duration = Duration::from_secs(3);
/// Resubmissions back off up to this interval.
const RESUBMIT_MAX: Duration = Duration::from_secs(12);

/// Resends uncommitted transactions from `txs` (those in `log.submitted`
/// but not in `committed`) until `stop` is set.
pub fn resubmit(
    txs: Arc<Vec<PreSigned>>,
    targets: Targets,
    committed: Arc<Mutex<HashMap<String, Instant>>>,
    log: SharedLog,
    stop: Arc<AtomicBool>,
) {
    // Hash → (next try, interval).
    let mut schedule: HashMap<String, (Instant, Duration)> = HashMap::new();
    let by_hash: HashMap<&str, &PreSigned> = txs.iter().map(|t| (t.hash.as_str(), t)).collect();
    let mut apis: HashMap<String, Api> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(500));
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            let committed = committed.lock().unwrap_or_else(|p| p.into_inner());
            for (hash, first_sent) in &log.submitted {
                if now < *first_sent + RESUBMIT_AFTER {
                    continue;
                }
                if committed.contains_key(hash) {
                    schedule.remove(hash);
                    continue;
                }
                let (at, every) = schedule
                    .entry(hash.clone())
                    .or_insert((*first_sent + RESUBMIT_AFTER, RESUBMIT_AFTER));
                if *at <= now {
                    *every = (*every * 2).min(RESUBMIT_MAX);
                    *at = now + *every;
                    due.push(hash.clone());
                }
            }
        }
        if due.is_empty() {
            continue;
        }
        // Nonce order within the resubmission, so a node holds nothing back
        // that this same request fills; to every node, since the one that
        // took it first may be cut off (answers are idempotent).
        let mut batch: Vec<&PreSigned> = due
            .iter()
            .filter_map(|h| by_hash.get(h.as_str()).copied())
            .collect();
        batch.sort_by_key(|t| t.order);
        log.lock().unwrap_or_else(|p| p.into_inner()).resubmitted += batch.len() as u64;
        let nodes = targets.read().unwrap_or_else(|p| p.into_inner()).clone();
        for target in nodes {
            let api = apis
                .entry(target.clone())
                .or_insert_with(|| Api::new(target));
            for chunk in batch.chunks(1024) {
                send_batch(api, chunk, &log);
            }
        }
    }
}

/// Sends `batch` in one request; false if the node did not answer it
/// (down, or refusing all submissions).
fn send_batch(api: &Api, batch: &[&PreSigned], log: &Mutex<LoadLog>) -> bool {
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
        log.submitted.entry(tx.hash.clone()).or_insert(sent);
    }
    match reply {
        Ok((200, v)) => {
            let results = v["results"].as_array().cloned().unwrap_or_default();
            for (tx, r) in batch.iter().zip(results) {
                if r.get("hash").is_some() {
                    log.acknowledge(&tx.hash);
                } else {
                    let code = r["error"]["code"].as_str().unwrap_or("unknown").to_string();
                    *log.rejected.entry(code).or_default() += 1;
                }
            }
            true
        }
        _ => {
            log.failed_requests += 1;
            false
        }
    }
}

/// Watches committed blocks on one node and records when each
/// transaction was seen executed.
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
            let mut apis: HashMap<String, Api> = HashMap::new();
            while !s.load(Ordering::SeqCst) {
                let list = sources.read().unwrap_or_else(|p| p.into_inner()).clone();
                let mut progressed = false;
                for url in &list {
                    let api = apis
                        .entry(url.clone())
                        .or_insert_with(|| Api::new(url.clone()));
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
                        let results = block["results"].as_array().cloned().unwrap_or_default();
                        let mut map = c.lock().unwrap_or_else(|p| p.into_inner());
                        let mut executed = 0;
                        // Only executions count: a transaction that failed
                        // because its nonce was ahead may execute later.
                        for (hash, result) in hashes.iter().zip(&results) {
                            if let (Some(hs), Some("executed")) =
                                (hash.as_str(), result["status"].as_str())
                            {
                                map.entry(hs.to_string()).or_insert(now);
                                executed += 1;
                            }
                        }
                        t.fetch_add(executed, Ordering::SeqCst);
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

/// How often [`HeightWatch`] asks each node for its height.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long one such question may take (a paused node never answers).
const WATCH_TIMEOUT: Duration = Duration::from_millis(500);
/// The most heights [`HeightWatch`] records (a bound on its memory).
const WATCH_HEIGHTS_MAX: usize = 10_000_000;

/// Records when each height was first reported by any of a set of nodes:
/// the commit time of each block, to the polling interval. One thread per
/// node, so a paused or dead node delays no one else's answer.
pub struct HeightWatch {
    seen: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl HeightWatch {
    /// Watches the nodes at `urls`; times count from `start`.
    pub fn start(urls: Vec<String>, start: Instant) -> HeightWatch {
        let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handles = urls
            .into_iter()
            .map(|url| {
                let (seen, stop) = (seen.clone(), stop.clone());
                std::thread::spawn(move || {
                    let api = Api::with_timeout(url, WATCH_TIMEOUT);
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(h) = api
                            .get("/v1/status")
                            .ok()
                            .and_then(|s| s["height"].as_u64())
                        {
                            let now = start.elapsed();
                            let h = (h as usize).min(WATCH_HEIGHTS_MAX);
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            if seen.len() < h {
                                seen.resize(h, now);
                            }
                        }
                        std::thread::sleep(WATCH_EVERY);
                    }
                })
            })
            .collect();
        HeightWatch {
            seen,
            stop,
            handles,
        }
    }

    /// Stops watching; `[h - 1]` is when height `h` was first seen, in
    /// seconds after `start`.
    pub fn stop(&mut self) -> Vec<f64> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| d.as_secs_f64())
            .collect()
    }
}

impl Drop for HeightWatch {
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
