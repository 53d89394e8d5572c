//! TCP proxies between validators, so a test network can cut, delay and
//! heal links between real processes.
//!
//! Validator `i` dials validator `j` at `dial_port(i, j)`, a proxy that
//! forwards to `j`'s real port. A libp2p connection carries traffic both
//! ways, so every rule applies to both directions of a connection; a cut
//! link closes its open connections at once and refuses new ones until
//! healed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How big a chunk a proxy forwards at once.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight per direction while delaying.
const DELAY_QUEUE_CHUNKS: usize = 1024;

/// The rules for one directed link.
#[derive(Default)]
struct Link {
    cut: AtomicBool,
    delay_ms: AtomicU64,
}

/// Proxies for every ordered pair of validators.
pub struct ProxyMesh {
    n: usize,
    links: BTreeMap<(usize, usize), Arc<Link>>,
    dial_ports: Vec<Vec<u16>>,
    /// Bumped on every cut so open connections re-check their link.
    changed: watch::Sender<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ProxyMesh {
    /// Starts a proxy for each ordered pair, forwarding to `targets[j]`.
    pub async fn start(host: &str, targets: &[u16]) -> std::io::Result<ProxyMesh> {
        let n = targets.len();
        let (changed, _) = watch::channel(0u64);
        let mut links = BTreeMap::new();
        let mut dial_ports = vec![vec![0u16; n]; n];
        let mut tasks = Vec::new();
        for (i, row) in dial_ports.iter_mut().enumerate() {
            for (j, port) in row.iter_mut().enumerate() {
                if i == j {
                    *port = targets[j];
                    continue;
                }
                let listener = TcpListener::bind((host, 0)).await?;
                *port = listener.local_addr()?.port();
                let link = Arc::new(Link::default());
                links.insert((i, j), link.clone());
                let target = format!("{host}:{}", targets[j]);
                tasks.push(tokio::spawn(accept_loop(
                    listener,
                    target,
                    link,
                    changed.subscribe(),
                )));
            }
        }
        Ok(ProxyMesh {
            n,
            links,
            dial_ports,
            changed,
            tasks,
        })
    }

    /// `dial_ports()[i][j]`: where validator i dials validator j.
    pub fn dial_ports(&self) -> Vec<Vec<u16>> {
        self.dial_ports.clone()
    }

    fn notify(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Cuts every link between different groups (both directions). Nodes
    /// in no group are cut off from everyone.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |x: usize| groups.iter().position(|g| g.contains(&x));
        for ((i, j), link) in &self.links {
            let same = matches!((group_of(*i), group_of(*j)), (Some(a), Some(b)) if a == b);
            link.cut.store(!same, Ordering::SeqCst);
        }
        self.notify();
    }

    /// Cuts the links between `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        for key in [(a, b), (b, a)] {
            if let Some(l) = self.links.get(&key) {
                l.cut.store(true, Ordering::SeqCst);
            }
        }
        self.notify();
    }

    /// Adds `ms` of delay to every link touching one of `nodes`.
    pub fn delay(&self, nodes: &[usize], ms: u64) {
        for ((i, j), link) in &self.links {
            if nodes.contains(i) || nodes.contains(j) {
                link.delay_ms.store(ms, Ordering::SeqCst);
            }
        }
    }

    /// Restores every link: no cuts, no delay.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.cut.store(false, Ordering::SeqCst);
            link.delay_ms.store(0, Ordering::SeqCst);
        }
        self.notify();
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Drop for ProxyMesh {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    link: Arc<Link>,
    changed: watch::Receiver<u64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if link.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let target = target.clone();
        let link = link.clone();
        let changed = changed.clone();
        tokio::spawn(async move {
            if let Ok(outbound) = TcpStream::connect(&target).await {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                forward(inbound, outbound, link, changed).await;
            }
        });
    }
}

/// Pumps both directions until either side closes or the link is cut.
async fn forward(a: TcpStream, b: TcpStream, link: Arc<Link>, mut changed: watch::Receiver<u64>) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let up = tokio::spawn(pump(ar, bw, link.clone()));
    let down = tokio::spawn(pump(br, aw, link.clone()));
    loop {
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() || link.cut.load(Ordering::SeqCst) {
                    break;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if up.is_finished() || down.is_finished() {
                    break;
                }
            }
        }
    }
    up.abort();
    down.abort();
}

/// Copies one direction, holding each chunk for the link's delay.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
) {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(DELAY_QUEUE_CHUNKS);
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = Duration::from_millis(link.delay_ms.load(Ordering::SeqCst));
        let due = tokio::time::Instant::now() + delay;
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
