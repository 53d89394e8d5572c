//! The validator: one event loop owns the `Replica` (or its traitor
//! wrapper), feeds it verified inputs, and carries out its outputs in
//! order — persist before send before commit.
//!
//! **Group commit.** The loop takes every input that is already waiting
//! (up to [`GROUP_INPUTS_MAX`]) and carries out their outputs with
//! unsynced writes, in order, holding back the messages they send. It
//! hands that burst's messages to the [`Syncer`] thread and goes on; the
//! syncer syncs once for all the bursts queued since its last sync, then
//! sends their messages in order. Nothing leaves the node before the
//! writes it depends on are durable, exactly as if each write had been
//! synced, but the loop never waits for a disk flush and one fsync covers
//! many messages (docs/PERFORMANCE.md has the figures).
//!
//! Signatures are checked off the loop: peer messages on blocking threads
//! (pre-prepared transactions this node already verified in its mempool are
//! not checked again), client transactions in the mempool. Inbound traffic
//! waits in queues bounded per sender in messages and bytes
//! ([`inbound`]); catch-up requests are served off the loop ([`serve`]).
//!
//! **Fail-stop.** When the replica finds this node's executed state at a
//! checkpoint differs from a 2f + 1 quorum's (`Event::StateDiverged`), the
//! node's data or code is wrong. It stops: no more inputs reach the
//! replica (no votes, no execution, no catch-up serving), gossip and
//! submissions are refused, and the API answers 503 for state; the process
//! and the API stay up so `/health` and `/v1/status` can say why and how to
//! recover.

mod inbound;
mod serve;

use crate::config::{load_genesis, ConfigError, Home, NodeConfig};
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::network::{self, GossipVerdict, NetEvent, NetEvents, NetworkConfig, NetworkHandle};
use inbound::{FairInbound, GossipItem, GossipPenalties, QueueLimits};
use phalanx_consensus::traitor::{Behaviour, Participant, Trigger};
use phalanx_consensus::{
    verify_message, CommittedBatch, Event, Genesis, Horizon, Input, Message, Output, Replica,
    SeqNum, Timer, Transaction, ValidatorIndex, ValidatorSet, VerifiedMessage, VerifyContext, View,
    WalEntry,
};
use phalanx_crypto::{codec, Digest, Keypair};
use phalanx_storage::{RocksOptions, RocksStore, StorageError, Store};
use serde::Serialize;
use serve::ServeRequest;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, Notify};
use tracing::{debug, error, info, warn};

/// Capacity of the loop's input channels.
const LOOP_CHANNEL_CAPACITY: usize = 4096;
/// Capacity of the new-block stream for API subscribers.
const BLOCK_EVENTS_CAPACITY: usize = 1024;
/// Admitted requests are gossiped together, at most this many
/// transactions a message (what a receiver accepts in one).
const GOSSIP_COALESCE_TXS: usize = network::GOSSIP_TXS_MAX;
/// A NEW-VIEW sent to a peer that asked for it is not sent to it again
/// within this long: a peer asking as fast as its link allows gets one
/// answer per interval (it retransmits its request while it waits).
const NEW_VIEW_ANSWER_MS_MIN: u64 = 1000;
/// What the operator of a fail-stopped node should do.
pub const FAIL_STOP_RECOVERY: &str = "stop the node; run `phalanx verify-ledger --home <home>` to find what is damaged; then move <home>/data aside (keep it for diagnosis) and start the node again: it resyncs the chain by catch-up from its peers, checking every commit certificate";
/// The most waiting inputs handled before one sync and send.
const GROUP_INPUTS_MAX: usize = 64;
/// Bursts queued for the syncer; past this, the loop waits for it.
const SYNC_QUEUE: usize = 1024;

/// Why the node stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("key file: {0}")]
    Key(#[from] phalanx_crypto::CryptoError),
    #[error("network: {0}")]
    Network(String),
    #[error("{0}")]
    Invalid(String),
}

/// What `/v1/status` shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub chain_id: String,
    pub validator_index: u16,
    pub validator_key: String,
    pub height: u64,
    pub last_block_hash: String,
    pub view: u64,
    pub primary: u16,
    pub view_changing: bool,
    /// The view this node complained for (it suspects its primary) while
    /// still working in `view`: it leaves only when 2f + 1 complain.
    pub complained_for: Option<u64>,
    /// The low watermark (last stable checkpoint).
    pub low_watermark: u64,
    pub catching_up: bool,
    /// Blocks this node knows it lacks while catching up.
    pub blocks_behind: u64,
    pub peers_connected: usize,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    /// Mempool transactions waiting for an earlier nonce of their sender.
    pub mempool_held: usize,
    pub behaviour: Option<String>,
    /// Set when this node's state disagreed with a checkpoint quorum: it
    /// stopped executing, voting and serving state.
    pub fail_stopped: Option<FailStop>,
    /// Set when something failed that did not stop the node (a block that
    /// could not be read to serve a peer's catch-up).
    pub degraded: Option<Degraded>,
}

/// Why and since when a node fail-stopped.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FailStop {
    pub reason: String,
    /// The checkpoint at which our state differed from the quorum's.
    pub seq: u64,
    /// Unix time, milliseconds.
    pub since_ms: u64,
    /// What the operator should do.
    pub recovery: String,
}

/// A fault the node keeps running through, first seen at `since_ms`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Degraded {
    pub reason: String,
    /// Unix time, milliseconds.
    pub since_ms: u64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new block, as streamed on `/v1/events`.
#[derive(Clone, Debug, Serialize)]
pub struct BlockEvent {
    pub height: u64,
    pub hash: String,
    pub view: u64,
    pub tx_count: u64,
    pub timestamp_ms: u64,
}

/// Transactions the API admitted to the mempool (every newly admitted
/// one, ready or held): gossiped to the other validators. Consensus takes
/// the ready ones from the mempool's ready queue.
pub struct Admitted {
    pub gossip: Vec<Transaction>,
}

/// State shared between the loop and the API.
pub struct Shared {
    pub genesis: Genesis,
    pub genesis_hash: Digest,
    pub validators: ValidatorSet,
    pub me: ValidatorIndex,
    pub store: Arc<dyn Store>,
    pub mempool: Arc<Mempool>,
    pub metrics: Metrics,
    pub status: RwLock<Status>,
    /// The replica's view and low watermark after its last step, read by
    /// the verifier for every inbound message (no lock, no copy of Status).
    pub horizon: [std::sync::atomic::AtomicU64; 2],
    pub blocks: broadcast::Sender<BlockEvent>,
    /// Transactions clients submitted, for gossip and the consensus loop.
    pub admitted: mpsc::Sender<Admitted>,
    pub network: NetworkHandle,
    pub config: NodeConfig,
    /// Set once, when the node fail-stops (details in `status`).
    pub fail_stopped: AtomicBool,
}

impl Shared {
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// Why the node fail-stopped, if it did.
    pub fn fail_stop(&self) -> Option<FailStop> {
        if !self.fail_stopped.load(Ordering::Acquire) {
            return None;
        }
        self.status().fail_stopped
    }

    pub fn status(&self) -> Status {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Everything loaded from a home directory before the node starts.
pub struct Loaded {
    pub config: NodeConfig,
    pub genesis: Genesis,
    pub key: Keypair,
    pub home: Home,
}

/// Loads and checks config, genesis and key from `home`.
pub fn load_home(home: &Home) -> Result<Loaded, NodeError> {
    let config = NodeConfig::load(&home.node_toml())?;
    let genesis = load_genesis(&home.genesis_json())?;
    let key = phalanx_crypto::load_key_file(&home.key_json())?;
    if genesis.validator_set().index_of(&key.public()).is_none() {
        return Err(NodeError::Invalid(format!(
            "{}: key {} is not one of the genesis validators",
            home.key_json().display(),
            key.public()
        )));
    }
    if config.byzantine.is_some() && !genesis.test_network {
        return Err(NodeError::Invalid(format!(
            "{}: [byzantine] is set but {} does not say test_network = true; traitor behaviours only run on test networks",
            home.node_toml().display(),
            home.genesis_json().display()
        )));
    }
    Ok(Loaded {
        config,
        genesis,
        key,
        home: home.clone(),
    })
}

/// Opens the store for `genesis`, initialising it on first start.
pub fn open_store(
    home: &Home,
    genesis: &Genesis,
    sync_blocks: bool,
) -> Result<Arc<RocksStore>, NodeError> {
    std::fs::create_dir_all(home.data_dir())
        .map_err(|e| NodeError::Invalid(format!("{}: {e}", home.data_dir().display())))?;
    let options = RocksOptions {
        sync_blocks,
        ..RocksOptions::default()
    };
    let store = RocksStore::open(&home.db_dir(), &options)?;
    store.init_genesis(genesis)?;
    Ok(Arc::new(store))
}

/// Runs the validator until `shutdown` resolves.
pub async fn run(
    loaded: Loaded,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let Loaded {
        config,
        genesis,
        key,
        home,
    } = loaded;
    let validators = genesis.validator_set();
    let me = validators
        .index_of(&key.public())
        .expect("checked in load_home");
    // Unsynced writes: the loop syncs once per burst of inputs (see the
    // module docs), following `storage.sync_blocks` for block writes.
    let store: Arc<dyn Store> = open_store(&home, &genesis, false)?;
    let consensus_cfg = config.consensus_config(&genesis);
    let wal = store.load_wal()?;
    let tip = store.tip()?;
    let height = tip.height;
    let replica = Replica::restore(consensus_cfg, key.clone(), wal, height)
        .map_err(|e| NodeError::Invalid(format!("consensus config: {e}")))?;
    let behaviour = match &config.byzantine {
        Some(b) => Some(
            b.behaviour
                .parse::<Behaviour>()
                .map_err(|e| NodeError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let participant = match behaviour {
        Some(b) => {
            let trigger = Trigger {
                from_height: config
                    .byzantine
                    .as_ref()
                    .and_then(|c| c.from_height)
                    .map(SeqNum),
                from_ms: None,
            };
            warn!(behaviour = %b, "running as a TRAITOR (test network)");
            Participant::traitor(replica, b, trigger)
        }
        None => Participant::honest(replica),
    };

    // Network.
    let mut dial = Vec::new();
    for v in &genesis.validators {
        let addr = config.p2p.peers.get(&v.name).unwrap_or(&v.p2p_address);
        let addr = addr
            .parse()
            .map_err(|e| NodeError::Invalid(format!("dial address of {}: {e}", v.name)))?;
        dial.push((v.public_key, addr));
    }
    let net_cfg = NetworkConfig {
        chain_id: genesis.chain_id.clone(),
        listen: config
            .p2p
            .listen
            .parse()
            .map_err(|e| NodeError::Invalid(format!("p2p.listen: {e}")))?,
        validators: dial,
        max_message_bytes: config.p2p.max_message_bytes,
    };
    let (network, net_events, net_task) = network::start(&key, net_cfg)
        .await
        .map_err(|e| NodeError::Network(e.to_string()))?;

    let (admitted_tx, admitted_rx) = mpsc::channel(LOOP_CHANNEL_CAPACITY);
    let (blocks_tx, _) = broadcast::channel(BLOCK_EVENTS_CAPACITY);
    let mempool = Arc::new(Mempool::new(
        config.mempool.clone(),
        genesis.chain_id.clone(),
        store.clone(),
    ));
    let shared = Arc::new(Shared {
        genesis_hash: genesis.hash(),
        validators: validators.clone(),
        me,
        store: store.clone(),
        mempool,
        metrics: Metrics::new(),
        horizon: Default::default(),
        status: RwLock::new(Status {
            chain_id: genesis.chain_id.clone(),
            validator_index: me.0,
            validator_key: key.public().to_hex(),
            // Kept up to date by the loop as it commits.
            height: tip.height.0,
            last_block_hash: tip.last_hash.to_hex(),
            behaviour: behaviour.map(|b| b.to_string()),
            ..Status::default()
        }),
        blocks: blocks_tx,
        admitted: admitted_tx,
        network: network.clone(),
        config: config.clone(),
        fail_stopped: AtomicBool::new(false),
        genesis,
    });

    shared.metrics.height.set(height.0 as i64);
    let api_listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| NodeError::Invalid(format!("api.listen {}: {e}", config.api.listen)))?;
    info!(
        validator = me.0,
        key = %key.public().short(),
        height = height.0,
        api = %config.api.listen,
        p2p = %config.p2p.listen,
        "phalanx node starting"
    );
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(crate::api::serve(api_listener, shared.clone(), async {
        let _ = api_stop_rx.await;
    }));

    let (verified_tx, verified_rx) = mpsc::channel(LOOP_CHANNEL_CAPACITY);
    let verifier = tokio::spawn(verify_inbound(shared.clone(), net_events, verified_tx));
    let (serve_tx, serve_rx) = mpsc::channel(serve::SERVE_CHANNEL);
    let server = tokio::spawn(serve::run(shared.clone(), serve_rx));

    let mut driver = Driver::new(shared.clone(), participant, serve_tx);
    let result = driver.run_loop(verified_rx, admitted_rx, shutdown).await;
    let result = driver.syncer.stop().and(result);
    info!("shutting down");
    let _ = api_stop_tx.send(());
    let _ = api_task.await;
    verifier.abort();
    server.abort();
    network.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), net_task).await;
    result
}

/// What the verifier hands the loop.
enum Verified {
    Message(Box<VerifiedMessage>),
    Peers(usize),
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gossip waiting for admission, shared by the inbound task (which queues
/// it) and the gossip task (which admits it).
struct GossipQueue {
    queue: Mutex<FairInbound<GossipItem>>,
    arrived: Notify,
}

impl GossipQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, FairInbound<GossipItem>> {
        // Consistent after any panic: each push or pop is one step.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A consensus message being verified.
type Verifying = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Decodes and verifies inbound network traffic off the loop. Consensus
/// messages go through a [`FairInbound`] queue, and are verified one at a
/// time while the network's channel keeps being drained into it, so what
/// arrives is taken off the channel at once (it never fills and drops
/// honest messages) and verified fairly across senders. Gossip goes to its
/// own fair queue, admitted on its own task, so consensus messages never
/// wait behind signature checks of client transactions.
async fn verify_inbound(shared: Arc<Shared>, mut events: NetEvents, out: mpsc::Sender<Verified>) {
    let max_message_bytes = shared.config.p2p.max_message_bytes;
    let mut inbound = FairInbound::new(QueueLimits::consensus(max_message_bytes));
    let gossip = Arc::new(GossipQueue {
        queue: Mutex::new(FairInbound::new(QueueLimits::gossip())),
        arrived: Notify::new(),
    });
    let _stop_gossip = AbortOnDrop(tokio::spawn(admit_gossip_task(
        shared.clone(),
        gossip.clone(),
    )));
    let mut verifying: Option<Verifying> = None;
    loop {
        if verifying.is_none() {
            if let Some((from, bytes)) = inbound.pop() {
                verifying = Some(Box::pin(verify_consensus(
                    shared.clone(),
                    from,
                    bytes,
                    out.clone(),
                )));
            }
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    if !on_net_event(&shared, event, &mut inbound, &gossip, &out).await {
                        return;
                    }
                }
                None => return,
            },
            more = async { verifying.as_mut().expect("checked").await }, if verifying.is_some() => {
                verifying = None;
                if !more {
                    return;
                }
            }
        }
    }
}

/// Queues one network event; false once the loop has stopped.
async fn on_net_event(
    shared: &Shared,
    event: NetEvent,
    inbound: &mut FairInbound<Vec<u8>>,
    gossip: &GossipQueue,
    out: &mpsc::Sender<Verified>,
) -> bool {
    let stopped = shared.fail_stopped.load(Ordering::Acquire);
    match event {
        NetEvent::Consensus { .. } if stopped => {}
        NetEvent::Consensus { from, bytes } => {
            if let Err((reason, _)) = inbound.push(from, bytes) {
                shared.metrics.reject_message(reason);
            }
        }
        NetEvent::Transactions { id, .. } if stopped => {
            shared.network.report_gossip(id, GossipVerdict::Ignore);
        }
        NetEvent::Transactions { from, id, bytes } => {
            let pushed = gossip.lock().push(from, GossipItem { id, bytes });
            match pushed {
                Ok(()) => gossip.arrived.notify_one(),
                Err((reason, item)) => {
                    shared.metrics.reject_message(&format!("gossip_{reason}"));
                    shared.network.report_gossip(item.id, GossipVerdict::Ignore);
                }
            }
        }
        NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => {
            let peers = shared.network.connected().len();
            if out.send(Verified::Peers(peers)).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Admits queued gossip, a lot at a time: everything that arrived while the
/// last lot was checked goes in one submission (one signature batch), up
/// to gossip's share of the verifier. One message at a time, gossip waited
/// a whole check per message and the primary's pool fell behind its
/// backups'.
async fn admit_gossip_task(shared: Arc<Shared>, gossip: Arc<GossipQueue>) {
    let mut penalties = GossipPenalties::default();
    loop {
        let lot = {
            let mut queue = gossip.lock();
            inbound::take_gossip_lot(
                &mut queue,
                &mut penalties,
                Instant::now(),
                |id, verdict, reason| {
                    shared.metrics.reject_message(reason);
                    shared.network.report_gossip(id, verdict);
                },
            )
        };
        if lot.is_empty() {
            gossip.arrived.notified().await;
            continue;
        }
        if shared.fail_stopped.load(Ordering::Acquire) {
            for (_, id, _) in lot {
                shared.network.report_gossip(id, GossipVerdict::Ignore);
            }
            continue;
        }
        inbound::admit_gossip(&shared, lot, &mut penalties).await;
    }
}

/// Verifies one consensus message and hands it to the loop; false once the
/// loop has stopped.
async fn verify_consensus(
    shared: Arc<Shared>,
    from: ValidatorIndex,
    bytes: Vec<u8>,
    out: mpsc::Sender<Verified>,
) -> bool {
    let s = shared.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let message = Message::decode(&bytes)?;
        let mempool = s.mempool.clone();
        let known = move |h: &Digest| mempool.is_verified(h);
        let ctx = VerifyContext {
            chain_id: s.chain_id(),
            validators: &s.validators,
            window: s.genesis.consensus.window,
            // Where the replica was after its last step: messages far
            // outside it are refused before any signature is checked.
            horizon: Some(Horizon {
                view: View(s.horizon[0].load(std::sync::atomic::Ordering::Relaxed)),
                low: SeqNum(s.horizon[1].load(std::sync::atomic::Ordering::Relaxed)),
            }),
            known_good_txs: Some(&known),
        };
        let verified = verify_message(from, message, &ctx)?;
        // Transactions this pre-prepare brought before their gossip did
        // are verified now: pool them, so the gossip copy is not checked a
        // second time.
        if let Message::PrePrepare { batch, .. } = verified.message() {
            s.mempool.admit_verified(&batch.txs);
        }
        Ok::<_, phalanx_consensus::Rejected>(verified)
    })
    .await;
    match verdict {
        Ok(Ok(v)) => {
            if out.send(Verified::Message(Box::new(v))).await.is_err() {
                return false;
            }
        }
        Ok(Err(reason)) => {
            shared.metrics.reject_message(reason.reason());
            debug!(from = from.0, %reason, "rejected a message");
        }
        Err(e) => error!("verifier task failed: {e}"),
    }
    true
}

struct Driver {
    shared: Arc<Shared>,
    participant: Participant,
    timers: BTreeMap<Timer, Instant>,
    start: Instant,
    /// Persist entries waiting to be written before the next other output.
    wal: Vec<WalEntry>,
    /// Write-ahead entries written since the last sync: sync before sending.
    wal_unsynced: bool,
    /// Blocks, checkpoints or evidence written since the last sync.
    blocks_unsynced: bool,
    /// Messages held back until the writes before them are synced.
    outbox: Vec<Outgoing>,
    syncer: Syncer,
    /// Catch-up requests, to the serving task.
    serve: mpsc::Sender<ServeRequest>,
    /// When each peer was last sent the NEW-VIEW of a view it asked for.
    new_view_answered: BTreeMap<(ValidatorIndex, View), u64>,
    /// Set on `Event::StateDiverged`: the replica gets no more inputs and
    /// what it had still to say is dropped.
    fail_stopped: bool,
}

/// A consensus message waiting in the [`Driver`]'s outbox.
enum Outgoing {
    To(ValidatorIndex, Arc<Vec<u8>>),
    All(Arc<Vec<u8>>),
}

/// One burst's messages, and whether its writes need a sync first.
struct SyncJob {
    sync: bool,
    outbox: Vec<Outgoing>,
}

/// The thread that syncs the store and then sends what waited for it.
struct Syncer {
    jobs: Option<std::sync::mpsc::SyncSender<SyncJob>>,
    thread: Option<std::thread::JoinHandle<Result<(), StorageError>>>,
}

impl Syncer {
    fn start(store: Arc<dyn Store>, network: NetworkHandle) -> Syncer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<SyncJob>(SYNC_QUEUE);
        let thread = std::thread::Builder::new()
            .name("phalanx-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Every burst queued by now rides on one sync.
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter());
                    if jobs.iter().any(|j| j.sync) {
                        store.sync()?;
                    }
                    for out in jobs.into_iter().flat_map(|j| j.outbox) {
                        match out {
                            Outgoing::To(to, bytes) => network.send(to, bytes),
                            Outgoing::All(bytes) => network.broadcast(bytes),
                        }
                    }
                }
                Ok(())
            })
            .expect("spawn the sync thread");
        Syncer {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues a burst; fails once the syncer has stopped on a storage error.
    fn submit(&self, job: SyncJob) -> Result<(), NodeError> {
        match self.jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(NodeError::Invalid(
                "the sync thread stopped: the store cannot be synced".into(),
            )),
        }
    }

    /// Lets the syncer finish what is queued; its storage error, if any.
    fn stop(&mut self) -> Result<(), NodeError> {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Err(NodeError::Storage(e)),
            Some(Err(_)) => Err(NodeError::Invalid("the sync thread panicked".into())),
            _ => Ok(()),
        }
    }
}

impl Driver {
    fn new(
        shared: Arc<Shared>,
        participant: Participant,
        serve: mpsc::Sender<ServeRequest>,
    ) -> Driver {
        Driver {
            syncer: Syncer::start(shared.store.clone(), shared.network.clone()),
            shared,
            participant,
            timers: BTreeMap::new(),
            start: Instant::now(),
            wal: Vec::new(),
            wal_unsynced: false,
            blocks_unsynced: false,
            outbox: Vec::new(),
            serve,
            new_view_answered: BTreeMap::new(),
            fail_stopped: false,
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run_loop(
        &mut self,
        mut verified: mpsc::Receiver<Verified>,
        mut admitted: mpsc::Receiver<Admitted>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        // Start the replica's timers.
        self.step(Input::Timer(Timer::Retransmit))?;
        self.sync_and_send()?;
        // Held transactions whose nonce gap stays open are dropped on a
        // clock, not only when a block commits: a full pool drains with no block.
        let mut gap_sweep = tokio::time::interval(crate::mempool::GAP_SWEEP_EVERY);
        loop {
            let next_timer = self.timers.values().min().copied();
            let sleep = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                Some(v) = verified.recv() => self.on_verified(v)?,
                Some(a) = admitted.recv() => {
                    // Whatever other requests admitted meanwhile rides in
                    // the same message: one gossip per burst, not one per
                    // request (each costs every peer a message to decode),
                    // at most what a receiver accepts in one.
                    let mut txs = a.gossip;
                    while txs.len() < GOSSIP_COALESCE_TXS {
                        match admitted.try_recv() {
                            Ok(more) => txs.extend(more.gossip),
                            Err(_) => break,
                        }
                    }
                    if !self.fail_stopped {
                        for part in txs.chunks(GOSSIP_COALESCE_TXS) {
                            self.shared.network.gossip_transactions(codec::encode(&part));
                        }
                    }
                }
                _ = gap_sweep.tick() => {
                    self.shared.mempool.tick(Instant::now());
                }
                _ = self.shared.mempool.ready_changed() => {
                    let ready = self.shared.mempool.take_ready();
                    if !ready.is_empty() {
                        self.step(Input::Transactions(ready))?;
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    let due: Vec<Timer> = self.timers.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect();
                    for t in due {
                        self.timers.remove(&t);
                        self.step(Input::Timer(t))?;
                    }
                }
            }
            // Whatever else has arrived joins this burst.
            for _ in 1..GROUP_INPUTS_MAX {
                match verified.try_recv() {
                    Ok(v) => self.on_verified(v)?,
                    Err(_) => break,
                }
            }
            self.sync_and_send()?;
        }
    }

    fn on_verified(&mut self, v: Verified) -> Result<(), NodeError> {
        match v {
            Verified::Message(m) => self.step(Input::Message(*m))?,
            Verified::Peers(n) => {
                self.shared.metrics.peers_connected.set(n as i64);
                self.update_status();
            }
        }
        Ok(())
    }

    /// Ends a burst: writes what is left of the write-ahead entries and
    /// hands the held-back messages to the syncer, which sends them once
    /// the burst's writes are durable.
    fn sync_and_send(&mut self) -> Result<(), NodeError> {
        self.write_wal()?;
        let sync =
            self.wal_unsynced || (self.blocks_unsynced && self.shared.config.storage.sync_blocks);
        self.wal_unsynced = false;
        self.blocks_unsynced = false;
        if !sync && self.outbox.is_empty() {
            return Ok(());
        }
        self.syncer.submit(SyncJob {
            sync,
            outbox: std::mem::take(&mut self.outbox),
        })
    }

    /// Feeds one input and everything it leads to (executed blocks).
    fn step(&mut self, input: Input) -> Result<(), NodeError> {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            if self.fail_stopped {
                return Ok(());
            }
            let now = self.now_ms();
            let outputs = self.participant.handle(now, input);
            // A `gossip-junk` traitor's transaction gossip (test networks).
            for txs in self.participant.take_gossip() {
                self.shared.network.gossip_transactions(codec::encode(&txs));
            }
            self.carry_out(outputs, &mut inputs)?;
        }
        self.update_status();
        Ok(())
    }

    /// Writes the pending write-ahead entries, unsynced, in one batch.
    fn write_wal(&mut self) -> Result<(), NodeError> {
        if !self.wal.is_empty() {
            self.shared.store.append_wal(&self.wal, false)?;
            self.wal.clear();
            self.wal_unsynced = true;
        }
        Ok(())
    }

    /// Carries out outputs in order. Persist entries are batched into one
    /// write that lands before any later output; messages wait in the
    /// outbox for the burst's sync.
    fn carry_out(
        &mut self,
        outputs: Vec<Output>,
        inputs: &mut VecDeque<Input>,
    ) -> Result<(), NodeError> {
        for output in outputs {
            if self.fail_stopped {
                // Nothing more from a replica whose state is wrong.
                break;
            }
            if let Output::Persist(entry) = output {
                self.wal.push(entry);
                continue;
            }
            self.write_wal()?;
            match output {
                Output::Persist(_) => unreachable!("handled above"),
                Output::PruneWal { below } => self.shared.store.prune_wal(below)?,
                Output::Send { to, message } => {
                    if let Message::NewView(nv) = &message {
                        if !self.may_answer_new_view(to, nv.payload.view) {
                            self.shared.metrics.new_view_answers_throttled.inc();
                            continue;
                        }
                    }
                    self.outbox
                        .push(Outgoing::To(to, Arc::new(message.encode())));
                }
                Output::Broadcast(message) => {
                    self.outbox.push(Outgoing::All(Arc::new(message.encode())));
                }
                Output::Commit(cb) => {
                    self.commit(&cb, inputs)?;
                    self.blocks_unsynced = true;
                }
                Output::ServeCatchUp { to, from, to_seq } => {
                    self.serve_catch_up(ServeRequest { to, from, to_seq })
                }
                Output::SetTimer { timer, at_ms } => {
                    let delay = at_ms.saturating_sub(self.now_ms());
                    self.timers
                        .insert(timer, Instant::now() + Duration::from_millis(delay));
                }
                Output::Evidence(e) => {
                    warn!(validator = %e.validator.short(), view = e.view.0, seq = e.seq.0, phase = ?e.phase, "equivocation evidence recorded");
                    self.shared.store.put_evidence(&e)?;
                    self.blocks_unsynced = true;
                    self.shared.metrics.evidence.inc();
                }
                Output::Rejected { from, reason } => {
                    self.shared.metrics.reject_message(reason.reason());
                    debug!(from = from.0, %reason, "rejected");
                }
                Output::Event(event) => self.on_event(event)?,
            }
        }
        // Entries still pending are written by the next output or by the
        // burst's synced write.
        Ok(())
    }

    /// Executes and stores a committed block; queues the Executed input,
    /// then any held transactions the block made ready.
    fn commit(
        &mut self,
        cb: &CommittedBatch,
        inputs: &mut VecDeque<Input>,
    ) -> Result<(), NodeError> {
        let block = self
            .shared
            .store
            .apply_committed(self.shared.chain_id(), cb)?;
        let m = &self.shared.metrics;
        let pool = self
            .shared
            .mempool
            .remove_committed(&block.txs, &block.results);
        for waited in pool.waited {
            m.commit_latency_seconds.observe(waited.as_secs_f64());
        }
        let failed = block
            .results
            .iter()
            .filter(|r| matches!(r, phalanx_consensus::TxResult::Failed(_)))
            .count() as u64;
        m.txs_executed.inc_by(block.txs.len() as u64 - failed);
        m.txs_failed.inc_by(failed);
        m.batch_size.observe(block.txs.len() as f64);
        m.height.set(block.header.height.0 as i64);
        let hash = block.hash();
        {
            let mut s = self
                .shared
                .status
                .write()
                .unwrap_or_else(|p| p.into_inner());
            s.height = block.header.height.0;
            s.last_block_hash = hash.to_hex();
        }
        debug!(height = block.header.height.0, txs = block.txs.len(), hash = %hash.short(), "committed");
        let _ = self.shared.blocks.send(BlockEvent {
            height: block.header.height.0,
            hash: hash.to_hex(),
            view: cb.certificate.view.0,
            tx_count: block.header.tx_count,
            timestamp_ms: block.header.timestamp_ms,
        });
        inputs.push_back(Input::Executed {
            seq: block.header.height,
            block_hash: hash,
            state_root: block.header.state_root,
        });
        let may_retry: Vec<Digest> = block
            .txs
            .iter()
            .zip(&block.results)
            .filter(|(_, r)| r.may_execute_later())
            .map(|(tx, _)| phalanx_consensus::tx_hash(tx))
            .collect();
        if !may_retry.is_empty() {
            inputs.push_back(Input::MayRetry(may_retry));
        }
        // Held transactions the block released (and any other ready ones),
        // in the mempool's order, after MayRetry re-opened the retried ones.
        let ready = self.shared.mempool.take_ready();
        if !ready.is_empty() {
            inputs.push_back(Input::Transactions(ready));
        }
        Ok(())
    }

    /// Hands a catch-up request to the serving task (off the loop: the
    /// loop never waits for the disk on a peer's behalf); dropped and
    /// counted if that task is that far behind.
    fn serve_catch_up(&mut self, request: ServeRequest) {
        if self.serve.try_send(request).is_err() {
            self.shared
                .metrics
                .reject_message("catch_up_serve_queue_full");
        }
    }

    /// Whether the NEW-VIEW of `view` may be sent to `to` now: not if it
    /// was sent to it less than [`NEW_VIEW_ANSWER_MS_MIN`] ago. A peer that
    /// asks as fast as its link allows gets one answer per interval.
    fn may_answer_new_view(&mut self, to: ValidatorIndex, view: View) -> bool {
        let now = self.now_ms();
        self.new_view_answered
            .retain(|_, at| now.saturating_sub(*at) < NEW_VIEW_ANSWER_MS_MIN);
        if self.new_view_answered.contains_key(&(to, view)) {
            return false;
        }
        self.new_view_answered.insert((to, view), now);
        true
    }

    /// Stops this node for good (until its operator recovers it): our state
    /// at `seq` differs from what a 2f + 1 checkpoint quorum executed.
    fn fail_stop(&mut self, seq: SeqNum) {
        if self.fail_stopped {
            return;
        }
        self.fail_stopped = true;
        self.timers.clear();
        let stop = FailStop {
            reason: format!(
                "this node's executed state at checkpoint {seq} differs from a 2f+1 checkpoint quorum's: its data or its code is wrong"
            ),
            seq: seq.0,
            since_ms: now_unix_ms(),
            recovery: FAIL_STOP_RECOVERY.to_string(),
        };
        error!(
            seq = seq.0,
            "FAIL-STOP: {}. The node no longer executes, votes or serves state; its API stays up to say why. To recover: {}",
            stop.reason,
            FAIL_STOP_RECOVERY
        );
        self.shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .fail_stopped = Some(stop);
        self.shared.fail_stopped.store(true, Ordering::Release);
        self.shared.metrics.fail_stopped.set(1);
    }

    fn on_event(&mut self, event: Event) -> Result<(), NodeError> {
        match event {
            Event::ViewChangeStarted { to, reason } => {
                warn!(view = to.0, reason, "view change started")
            }
            Event::NewViewEntered { view, primary } => {
                info!(view = view.0, primary = primary.0, "entered new view");
                self.shared.metrics.view_changes.inc();
            }
            Event::CheckpointStable { seq } => {
                debug!(seq = seq.0, "checkpoint stable");
                if let Some(cert) = self.participant.replica().stable_checkpoint() {
                    self.shared.store.put_checkpoint(cert)?;
                    self.blocks_unsynced = true;
                }
            }
            Event::CatchingUp { from, to } => info!(from = from.0, to = to.0, "catching up"),
            Event::StateDiverged { seq } => self.fail_stop(seq),
            Event::PrimarySuspected { view, reason } => {
                warn!(view = view.0, reason, "suspecting the primary")
            }
        }
        Ok(())
    }

    fn update_status(&self) {
        let r = self.participant.replica();
        let (txs, bytes) = self.shared.mempool.size();
        let m = &self.shared.metrics;
        m.view.set(r.view().0 as i64);
        m.mempool_txs.set(txs as i64);
        m.mempool_bytes.set(bytes as i64);
        m.catching_up.set(r.is_catching_up() as i64);
        m.set_network(&self.shared.network.stats());
        let mut s = self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner());
        s.view = r.view().0;
        s.primary = r.primary().0;
        s.view_changing = r.is_view_changing();
        s.complained_for = r.complained_for().map(|v| v.0);
        s.low_watermark = r.low_watermark().0;
        let horizon = &self.shared.horizon;
        horizon[0].store(r.view().0, std::sync::atomic::Ordering::Relaxed);
        horizon[1].store(r.low_watermark().0, std::sync::atomic::Ordering::Relaxed);
        s.catching_up = r.is_catching_up();
        s.blocks_behind = r.blocks_behind();
        s.peers_connected = self.shared.network.connected().len();
        s.mempool_txs = txs;
        s.mempool_bytes = bytes;
        s.mempool_held = self.shared.mempool.held();
    }
}

#[cfg(test)]
mod tests;
