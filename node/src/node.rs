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
//! not checked again), client transactions in the mempool.

use crate::config::{load_genesis, ConfigError, Home, NodeConfig};
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::network::{self, NetEvent, NetworkConfig, NetworkHandle};
use phalanx_consensus::traitor::{Behaviour, Participant, Trigger};
use phalanx_consensus::{
    verify_message, CommittedBatch, Event, Genesis, Input, Message, Output, Replica, SeqNum, Timer,
    Transaction, ValidatorIndex, ValidatorSet, VerifiedMessage, VerifyContext, WalEntry,
};
use phalanx_crypto::{codec, Digest, Keypair};
use phalanx_storage::{RocksOptions, RocksStore, StorageError, Store};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

/// Capacity of the loop's input channels.
const LOOP_CHANNEL_CAPACITY: usize = 4096;
/// Capacity of the new-block stream for API subscribers.
const BLOCK_EVENTS_CAPACITY: usize = 1024;
/// The most transactions decoded from one gossip message.
const GOSSIP_TXS_MAX: u64 = 16 << 20;
/// Admitted requests are gossiped together up to this many transactions
/// (at most `TX_BYTES_MAX` each: far below the message limit).
const GOSSIP_COALESCE_TXS: usize = 1024;
/// Gossip messages admitted in one submission, at most.
const GOSSIP_ADMIT_MESSAGES_MAX: usize = 64;
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
    pub catching_up: bool,
    /// Blocks this node knows it lacks while catching up.
    pub blocks_behind: u64,
    pub peers_connected: usize,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    /// Mempool transactions waiting for an earlier nonce of their sender.
    pub mempool_held: usize,
    pub behaviour: Option<String>,
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
    pub blocks: broadcast::Sender<BlockEvent>,
    /// Transactions clients submitted, for gossip and the consensus loop.
    pub admitted: mpsc::Sender<Admitted>,
    pub network: NetworkHandle,
    pub config: NodeConfig,
}

impl Shared {
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
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

    let mut driver = Driver {
        shared: shared.clone(),
        participant,
        timers: BTreeMap::new(),
        start: Instant::now(),
        wal: Vec::new(),
        wal_unsynced: false,
        blocks_unsynced: false,
        outbox: Vec::new(),
        syncer: Syncer::start(shared.store.clone(), shared.network.clone()),
    };
    let result = driver.run_loop(verified_rx, admitted_rx, shutdown).await;
    let result = driver.syncer.stop().and(result);
    info!("shutting down");
    let _ = api_stop_tx.send(());
    let _ = api_task.await;
    verifier.abort();
    network.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), net_task).await;
    result
}

/// What the verifier hands the loop.
enum Verified {
    Message(Box<VerifiedMessage>),
    Peers(usize),
}

/// Transaction gossip messages waiting for admission.
const GOSSIP_QUEUE: usize = 1024;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consensus messages queued per sender, waiting for verification.
const INBOUND_PER_PEER_MAX: usize = 1024;
/// A message identical to one of a sender's last this many queued ones is
/// dropped as a duplicate.
const INBOUND_DEDUP_WINDOW: usize = 16;

/// Consensus messages waiting for verification, one queue per sender,
/// served round robin (as Aardvark does): a validator that floods gets its
/// share of the verifier, not all of it, its duplicates are dropped, and
/// past [`INBOUND_PER_PEER_MAX`] its newest messages are dropped — never
/// another validator's.
#[derive(Default)]
struct FairInbound {
    queues: BTreeMap<ValidatorIndex, VecDeque<Vec<u8>>>,
    /// The sender served last.
    last: Option<ValidatorIndex>,
}

impl FairInbound {
    /// Queues a message; false if it was dropped (duplicate or over the
    /// sender's bound).
    fn push(&mut self, from: ValidatorIndex, bytes: Vec<u8>) -> Result<(), &'static str> {
        let q = self.queues.entry(from).or_default();
        if q.iter()
            .rev()
            .take(INBOUND_DEDUP_WINDOW)
            .any(|b| *b == bytes)
        {
            return Err("inbound_duplicate");
        }
        if q.len() >= INBOUND_PER_PEER_MAX {
            return Err("inbound_queue_full");
        }
        q.push_back(bytes);
        Ok(())
    }

    /// The next message, from the first sender after the last one served
    /// that has any.
    fn pop(&mut self) -> Option<(ValidatorIndex, Vec<u8>)> {
        let after = self.last;
        let next = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(from, _)| *from)
            .find(|from| after.is_none_or(|last| *from > last))
            .or_else(|| {
                self.queues
                    .iter()
                    .find(|(_, q)| !q.is_empty())
                    .map(|(from, _)| *from)
            })?;
        self.last = Some(next);
        let bytes = self.queues.get_mut(&next)?.pop_front()?;
        Some((next, bytes))
    }

    fn is_empty(&self) -> bool {
        self.queues.values().all(VecDeque::is_empty)
    }
}

/// Decodes and verifies inbound network traffic off the loop. Consensus
/// messages go through a [`FairInbound`] queue, so what arrives is taken
/// off the network's channel at once (it never fills and drops honest
/// messages) and verified fairly across senders.
async fn verify_inbound(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<NetEvent>,
    out: mpsc::Sender<Verified>,
) {
    let mut inbound = FairInbound::default();
    // Transaction gossip is admitted on its own task, so consensus
    // messages never wait behind signature checks of client transactions.
    // It is best effort (clients resubmit): past the queue, it is dropped.
    let (gossip_tx, mut gossip_rx) = mpsc::channel::<Vec<u8>>(GOSSIP_QUEUE);
    let gossip_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            // Everything that arrived while the last lot was checked goes
            // in one submission (one signature batch): one message at a
            // time, gossip waited a whole check per message and the
            // primary's pool fell behind its backups'.
            while let Some(bytes) = gossip_rx.recv().await {
                let mut messages = vec![bytes];
                while messages.len() < GOSSIP_ADMIT_MESSAGES_MAX {
                    match gossip_rx.try_recv() {
                        Ok(more) => messages.push(more),
                        Err(_) => break,
                    }
                }
                admit_gossip(&shared, &messages).await;
            }
        })
    };
    let _stop_gossip = AbortOnDrop(gossip_task);
    loop {
        // Wait for traffic only when nothing is queued; then take all that
        // has arrived.
        let mut arrived = Vec::new();
        if inbound.is_empty() {
            match events.recv().await {
                Some(event) => arrived.push(event),
                None => return,
            }
        }
        while let Ok(event) = events.try_recv() {
            arrived.push(event);
        }
        for event in arrived {
            match event {
                NetEvent::Consensus { from, bytes } => {
                    if let Err(reason) = inbound.push(from, bytes) {
                        shared.metrics.reject_message(reason);
                    }
                }
                NetEvent::Transactions { bytes } => {
                    if gossip_tx.try_send(bytes).is_err() {
                        shared.metrics.reject_message("gossip_queue_full");
                    }
                }
                NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => {
                    let peers = shared.network.connected().len();
                    if out.send(Verified::Peers(peers)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Some((from, bytes)) = inbound.pop() {
            if !verify_consensus(&shared, from, bytes, &out).await {
                return;
            }
        }
    }
}

/// Verifies one consensus message and hands it to the loop; false once the
/// loop has stopped.
async fn verify_consensus(
    shared: &Arc<Shared>,
    from: ValidatorIndex,
    bytes: Vec<u8>,
    out: &mpsc::Sender<Verified>,
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
            horizon: None,
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

/// Admits gossiped transaction batches into the mempool, in one submission.
async fn admit_gossip(shared: &Arc<Shared>, messages: &[Vec<u8>]) {
    let mut txs: Vec<Transaction> = Vec::new();
    for bytes in messages {
        match codec::decode::<Vec<Transaction>>(bytes, GOSSIP_TXS_MAX) {
            Ok(t) => txs.extend(t),
            Err(e) => {
                shared.metrics.reject_message("malformed_gossip");
                debug!("malformed transaction gossip: {e}");
            }
        }
    }
    if txs.is_empty() {
        return;
    }
    let admission = shared.mempool.submit(txs).await;
    for v in admission.verdicts.iter().filter_map(|v| v.as_ref().err()) {
        shared.metrics.reject_tx(v.code());
    }
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
                    // request (each costs every peer a message to decode).
                    let mut txs = a.gossip;
                    while txs.len() < GOSSIP_COALESCE_TXS {
                        match admitted.try_recv() {
                            Ok(more) => txs.extend(more.gossip),
                            Err(_) => break,
                        }
                    }
                    self.shared.network.gossip_transactions(codec::encode(&txs));
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
            if let Output::Persist(entry) = output {
                self.wal.push(entry);
                continue;
            }
            self.write_wal()?;
            match output {
                Output::Persist(_) => unreachable!("handled above"),
                Output::PruneWal { below } => self.shared.store.prune_wal(below)?,
                Output::Send { to, message } => {
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
                    self.serve_catch_up(to, from, to_seq)?
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

    /// Answers a catch-up request with every block asked for (the replica
    /// bounded the range), in as many messages as the size limit needs: a
    /// truncated answer would leave the asker waiting a retransmit period
    /// for the rest.
    fn serve_catch_up(
        &mut self,
        to: ValidatorIndex,
        from: SeqNum,
        to_seq: SeqNum,
    ) -> Result<(), NodeError> {
        let blocks = self.shared.store.blocks_range(from, to_seq)?;
        let batches = blocks
            .into_iter()
            .map(|(block, certificate)| CommittedBatch {
                batch: block.batch(),
                certificate,
            });
        let budget = self.shared.config.p2p.max_message_bytes / 2;
        for part in split_by_size(batches, budget) {
            let message = Message::CatchUpResponse(part);
            self.outbox
                .push(Outgoing::To(to, Arc::new(message.encode())));
        }
        Ok(())
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
            Event::StateDiverged { seq } => error!(
                seq = seq.0,
                "our executed state differs from a 2f+1 checkpoint quorum: this node's data is corrupt"
            ),
            Event::PrimarySuspected { view, reason } => warn!(view = view.0, reason, "suspecting the primary"),
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
        s.catching_up = r.is_catching_up();
        s.blocks_behind = r.blocks_behind();
        s.peers_connected = self.shared.network.connected().len();
        s.mempool_txs = txs;
        s.mempool_bytes = bytes;
        s.mempool_held = self.shared.mempool.held();
    }
}

/// Splits committed batches, in order, into runs of at most `budget`
/// encoded bytes each (a batch larger than that travels alone).
fn split_by_size(
    batches: impl IntoIterator<Item = CommittedBatch>,
    budget: usize,
) -> Vec<Vec<CommittedBatch>> {
    let mut parts = vec![Vec::new()];
    let mut used = 0usize;
    for cb in batches {
        let len = codec::encoded_len(&cb) as usize;
        let current = parts.last_mut().expect("never empty");
        if used + len > budget && !current.is_empty() {
            parts.push(Vec::new());
            used = 0;
        }
        used += len;
        parts.last_mut().expect("never empty").push(cb);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_inbound_serves_senders_in_turn_and_bounds_a_flooder() {
        let mut q = FairInbound::default();
        let (honest, flooder) = (ValidatorIndex(1), ValidatorIndex(3));
        for i in 0..(INBOUND_PER_PEER_MAX + 10) as u32 {
            let pushed = q.push(flooder, i.to_le_bytes().to_vec());
            assert_eq!(pushed.is_ok(), (i as usize) < INBOUND_PER_PEER_MAX);
        }
        let last = (INBOUND_PER_PEER_MAX as u32 - 1).to_le_bytes().to_vec();
        assert_eq!(q.push(flooder, last), Err("inbound_duplicate"));
        q.push(honest, b"a".to_vec()).unwrap();
        q.push(honest, b"b".to_vec()).unwrap();
        assert_eq!(q.push(honest, b"b".to_vec()), Err("inbound_duplicate"));
        // Round robin: the honest sender is not stuck behind the flood.
        let order: Vec<ValidatorIndex> = (0..4).map(|_| q.pop().unwrap().0).collect();
        assert_eq!(order, vec![honest, flooder, honest, flooder]);
        assert_eq!(q.pop().unwrap().0, flooder);
    }

    fn committed(seq: u64, txs: usize) -> CommittedBatch {
        let key = phalanx_crypto::Keypair::insecure_from_label("client");
        let txs = (0..txs as u64)
            .map(|nonce| {
                phalanx_crypto::Signed::sign(
                    phalanx_consensus::Transfer {
                        chain_id: "c".into(),
                        to: phalanx_crypto::Address([1; 20]),
                        amount: 1,
                        nonce,
                    },
                    &key,
                    "c",
                )
            })
            .collect();
        let batch = phalanx_consensus::Batch {
            txs,
            timestamp_ms: seq,
        };
        CommittedBatch {
            certificate: phalanx_consensus::CommitCertificate {
                view: phalanx_consensus::View(0),
                seq: SeqNum(seq),
                batch_digest: batch.digest(),
                votes: Vec::new(),
            },
            batch,
        }
    }

    #[test]
    fn a_catch_up_answer_is_split_by_size_never_cut_short() {
        let blocks: Vec<CommittedBatch> = (1..=10).map(|s| committed(s, 20)).collect();
        let one = codec::encoded_len(&blocks[0]) as usize;
        let parts = split_by_size(blocks.clone(), 3 * one + one / 2);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![3, 3, 3, 1],
            "every block, in order, 3 a message"
        );
        let seqs: Vec<u64> = parts.concat().iter().map(|b| b.certificate.seq.0).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        // A block larger than the budget still goes, alone.
        let parts = split_by_size(blocks, one / 2);
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() == 1));
    }
}
