//! Validator-to-validator networking over libp2p (TCP + Noise + Yamux).
//!
//! A validator's libp2p identity is its ed25519 consensus key, so the Noise
//! handshake proves which validator is on the other end of a connection. A
//! connection from any other peer is refused as soon as its identity is known
//! ([`Gate`]); messages therefore only ever come from genesis validators, and
//! the sender's [`ValidatorIndex`] is taken from the authenticated connection,
//! never from the message.
//!
//! Consensus messages go straight to one validator (or to each of them) as
//! request-response exchanges: the request is a length-prefixed frame, the
//! response a one-byte ack. Transactions spread by gossipsub on
//! `phalanx/<chain_id>/txs/1`. Lost connections are redialled with
//! exponential backoff.
//!
//! Nothing is buffered without bound: the command and event channels have
//! fixed capacities, a message for a peer that is not connected (or that has
//! too many unacknowledged requests) is dropped and counted — consensus
//! retransmits — and a frame longer than `max_message_bytes` is rejected from
//! its length prefix, before anything is allocated for it. A frame's buffer
//! grows with the bytes that actually arrive, never with what the prefix
//! announced. The event channel to the node is bounded in bytes as well as
//! in events: each peer may have at most [`peer_event_bytes_max`] bytes
//! waiting in it and all peers together [`event_bytes_max`]; past that, its
//! messages are dropped (counted in `over_budget`), not buffered.
//!
//! **Gossip is validated before it spreads.** gossipsub runs with
//! `validate_messages`: a received transaction batch is handed to the node
//! ([`NetEvent::Transactions`]) and forwarded to other peers only once the
//! node reports [`GossipVerdict::Accept`] through
//! [`NetworkHandle::report_gossip`]. A batch carries at most
//! [`GOSSIP_TXS_MAX`] transactions and [`GOSSIP_BYTES_MAX`] bytes.

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour, SwarmEvent,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use phalanx_consensus::ValidatorIndex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Capacity of the channel from [`NetworkHandle`]s to the swarm task.
pub const COMMANDS_CAPACITY: usize = 4096;
/// Capacity of the channel of [`NetEvent`]s from the swarm task to the node.
pub const EVENTS_CAPACITY: usize = 4096;
/// Unacknowledged consensus messages to one validator; more are dropped.
pub const IN_FLIGHT_PER_PEER_MAX: usize = 256;
/// First redial delay after a connection is lost or a dial fails.
pub const REDIAL_BACKOFF_MS_MIN: u64 = 250;
/// The redial delay doubles up to this cap, and resets on a connection.
pub const REDIAL_BACKOFF_MS_MAX: u64 = 10_000;
/// How long a consensus message may wait for its ack.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The most transactions one gossip message may carry (the node coalesces
/// at most this many into one message it publishes).
pub const GOSSIP_TXS_MAX: usize = 1024;
/// The largest gossip message: [`GOSSIP_TXS_MAX`] transactions of at most
/// `TX_BYTES_MAX` each, plus the vector's length prefix.
pub const GOSSIP_BYTES_MAX: usize = GOSSIP_TXS_MAX * phalanx_consensus::TX_BYTES_MAX as usize + 16;
/// Heartbeats a received gossip message stays in gossipsub's cache, waiting
/// for the node's verdict (at the 500 ms heartbeat: 5 s).
const GOSSIP_HISTORY_HEARTBEATS: usize = 10;
/// Room for gossipsub's own framing (protobuf fields, author key, signature)
/// around a transaction batch of at most `max_message_bytes`.
const GOSSIP_ENVELOPE_BYTES_MAX: usize = 4096;
/// The protocol consensus messages travel on.
const CONSENSUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/phalanx/consensus/1");
/// A frame's buffer starts at most this large and grows with what arrives.
const FRAME_READ_CHUNK_BYTES: usize = 64 * 1024;
/// The one-byte response that acknowledges a consensus message.
const ACK_BYTE: u8 = 0x06;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("validator public key {key} is not a usable ed25519 key: {reason}")]
    BadPublicKey { key: String, reason: String },
    #[error("the node's secret key is not a usable ed25519 key: {reason}")]
    BadSecretKey { reason: String },
    #[error("validators {first} and {second} have the same public key")]
    DuplicateValidator { first: usize, second: usize },
    #[error("{count} validators do not fit a validator index")]
    TooManyValidators { count: usize },
    #[error("max_message_bytes = {max_message_bytes} must be between 1 and {limit}")]
    BadMessageLimit {
        max_message_bytes: usize,
        limit: usize,
    },
    #[error("cannot build the libp2p transport: {reason}")]
    Transport { reason: String },
    #[error("cannot set up transaction gossip: {reason}")]
    Gossip { reason: String },
}

pub struct NetworkConfig {
    pub chain_id: String,
    pub listen: Multiaddr,
    /// Every validator, in genesis order: (public key, address to dial).
    pub validators: Vec<(phalanx_crypto::PublicKey, Multiaddr)>,
    /// Largest consensus message or transaction batch sent or accepted.
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A consensus message; `from` comes from the authenticated connection.
    Consensus {
        from: ValidatorIndex,
        bytes: Vec<u8>,
    },
    /// A gossiped transaction batch (unverified: the mempool checks it).
    /// `from` is the validator that relayed it to us; gossipsub forwards it
    /// further only once the node reports a verdict on `id`.
    Transactions {
        from: ValidatorIndex,
        id: GossipId,
        bytes: Vec<u8>,
    },
    PeerConnected(ValidatorIndex),
    PeerDisconnected(ValidatorIndex),
}

/// Names one received gossip message for [`NetworkHandle::report_gossip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipId {
    message: gossipsub::MessageId,
    source: PeerId,
}

/// The node's verdict on a received gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Well-formed, every transaction correctly signed: forward it.
    Accept,
    /// Malformed or carrying a bad signature: drop it (gossipsub counts it
    /// against the relaying peer).
    Reject,
    /// Not checked (dropped over a budget, or the pool was full): drop it
    /// without blame.
    Ignore,
}

#[cfg(test)]
impl GossipId {
    /// A made-up id, for tests of what the node does with gossip.
    pub fn for_test(n: u8) -> GossipId {
        GossipId {
            message: gossipsub::MessageId::new(&[n]),
            source: identity::Keypair::ed25519_from_bytes([n; 32])
                .expect("any 32 bytes are an ed25519 seed")
                .public()
                .to_peer_id(),
        }
    }
}

impl GossipVerdict {
    fn acceptance(self) -> gossipsub::MessageAcceptance {
        match self {
            GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
            GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
            GossipVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        }
    }
}

/// Bytes one peer may have waiting in the event channel: two of the
/// largest messages, so an honest maximal message always fits behind
/// another.
pub fn peer_event_bytes_max(max_message_bytes: usize) -> usize {
    2 * max_message_bytes
}

/// Bytes all peers together may have waiting in the event channel.
pub fn event_bytes_max(max_message_bytes: usize) -> usize {
    4 * max_message_bytes
}

/// Bytes waiting in the event channel, in all and per peer: reserved by the
/// swarm task before it queues a message, released as the node takes it.
struct EventBytes {
    total: AtomicUsize,
    per_peer: Vec<AtomicUsize>,
    total_max: usize,
    peer_max: usize,
}

impl EventBytes {
    fn new(peers: usize, max_message_bytes: usize) -> EventBytes {
        EventBytes {
            total: AtomicUsize::new(0),
            per_peer: (0..peers).map(|_| AtomicUsize::new(0)).collect(),
            total_max: event_bytes_max(max_message_bytes),
            peer_max: peer_event_bytes_max(max_message_bytes),
        }
    }

    /// Reserves `len` bytes for `from`; false (nothing reserved) if that
    /// would pass the peer's or the overall budget. One writer (the swarm
    /// task), so check-then-add cannot overshoot.
    fn reserve(&self, from: ValidatorIndex, len: usize) -> bool {
        let Some(peer) = self.per_peer.get(from.as_usize()) else {
            return false;
        };
        if peer.load(Ordering::Acquire) + len > self.peer_max
            || self.total.load(Ordering::Acquire) + len > self.total_max
        {
            return false;
        }
        peer.fetch_add(len, Ordering::AcqRel);
        self.total.fetch_add(len, Ordering::AcqRel);
        true
    }

    fn release(&self, from: ValidatorIndex, len: usize) {
        if let Some(peer) = self.per_peer.get(from.as_usize()) {
            peer.fetch_sub(len, Ordering::AcqRel);
            self.total.fetch_sub(len, Ordering::AcqRel);
        }
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// The sender and size a message holds in the event channel's budget.
fn event_charge(event: &NetEvent) -> Option<(ValidatorIndex, usize)> {
    match event {
        NetEvent::Consensus { from, bytes } | NetEvent::Transactions { from, bytes, .. } => {
            Some((*from, bytes.len()))
        }
        NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => None,
    }
}

/// The node's end of the event channel: releases each message's bytes
/// from the channel's budget as it is taken.
pub struct NetEvents {
    rx: mpsc::Receiver<NetEvent>,
    bytes: Arc<EventBytes>,
}

impl NetEvents {
    pub async fn recv(&mut self) -> Option<NetEvent> {
        let event = self.rx.recv().await?;
        Some(self.taken(event))
    }

    pub fn try_recv(&mut self) -> Result<NetEvent, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|e| self.taken(e))
    }

    /// Bytes of messages waiting in the channel.
    pub fn bytes_waiting(&self) -> usize {
        self.bytes.total()
    }

    fn taken(&self, event: NetEvent) -> NetEvent {
        if let Some((from, len)) = event_charge(&event) {
            self.bytes.release(from, len);
        }
        event
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Consensus messages acknowledged by their recipient.
    pub sent: u64,
    /// Consensus messages and transaction batches handed to the node.
    pub received: u64,
    /// Messages dropped either way: peer not connected, a full queue, too
    /// many unacknowledged, no ack in time, gossip with no one to take it.
    pub dropped: u64,
    /// Connections refused because the peer is not a genesis validator.
    pub refused_peers: u64,
    /// Messages longer than `max_message_bytes`, refused to send or receive.
    pub oversized: u64,
    /// Received messages dropped because their sender had its share of the
    /// event channel's bytes waiting already (or the channel had all of it).
    pub over_budget: u64,
}

/// The node's side of the network: cheap to clone, never blocks.
#[derive(Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    max_message_bytes: usize,
}

impl NetworkHandle {
    /// Sends a consensus message to one validator, or drops it (and counts
    /// it) if the queue is full or the validator is not connected.
    pub fn send(&self, to: ValidatorIndex, bytes: Arc<Vec<u8>>) {
        if self.fits(bytes.len()) {
            self.enqueue(Command::Send { to, bytes });
        }
    }

    /// Sends a consensus message to every other validator.
    pub fn broadcast(&self, bytes: Arc<Vec<u8>>) {
        if self.fits(bytes.len()) {
            self.enqueue(Command::Broadcast { bytes });
        }
    }

    /// Gossips a transaction batch to every validator.
    pub fn gossip_transactions(&self, bytes: Vec<u8>) {
        if self.fits(bytes.len()) && self.fits_gossip(bytes.len()) {
            self.enqueue(Command::Gossip { bytes });
        }
    }

    /// Tells gossipsub what the node found in a received gossip message:
    /// only an accepted one is forwarded to other peers.
    pub fn report_gossip(&self, id: GossipId, verdict: GossipVerdict) {
        self.enqueue(Command::GossipVerdict { id, verdict });
    }

    /// The validators connected right now, in index order.
    pub fn connected(&self) -> Vec<ValidatorIndex> {
        self.shared.connected().iter().copied().collect()
    }

    pub fn stats(&self) -> NetworkStats {
        self.shared.counters.snapshot()
    }

    /// Ends the swarm task (which closes every connection and the listener).
    pub fn shutdown(&self) {
        self.shared.shutdown.notify_one();
    }

    fn fits(&self, len: usize) -> bool {
        let fits = len <= self.max_message_bytes;
        if !fits {
            bump(&self.shared.counters.oversized);
            warn!(
                len,
                max = self.max_message_bytes,
                "not sending an oversized message"
            );
        }
        fits
    }

    fn fits_gossip(&self, len: usize) -> bool {
        let fits = len <= GOSSIP_BYTES_MAX;
        if !fits {
            bump(&self.shared.counters.oversized);
            warn!(
                len,
                max = GOSSIP_BYTES_MAX,
                "not gossiping an oversized batch"
            );
        }
        fits
    }

    fn enqueue(&self, command: Command) {
        if self.commands.try_send(command).is_err() {
            bump(&self.shared.counters.dropped);
        }
    }
}

/// The libp2p peer id of a validator: the identity of its ed25519 key.
pub fn peer_id_of(key: &phalanx_crypto::PublicKey) -> Result<PeerId, NetworkError> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.0).map_err(|e| {
        NetworkError::BadPublicKey {
            key: key.to_hex(),
            reason: e.to_string(),
        }
    })?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// Listens, dials every other validator and spawns the swarm task on the
/// current tokio runtime. The task ends on [`NetworkHandle::shutdown`] or
/// when every handle is dropped.
pub async fn start(
    key: &phalanx_crypto::Keypair,
    cfg: NetworkConfig,
) -> Result<(NetworkHandle, NetEvents, tokio::task::JoinHandle<()>), NetworkError> {
    let limit = u32::MAX as usize - GOSSIP_ENVELOPE_BYTES_MAX;
    if cfg.max_message_bytes == 0 || cfg.max_message_bytes > limit {
        return Err(NetworkError::BadMessageLimit {
            max_message_bytes: cfg.max_message_bytes,
            limit,
        });
    }
    let peers = validator_peers(&cfg.validators)?;
    let mut seed = key.seed();
    let identity = identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|e| {
        NetworkError::BadSecretKey {
            reason: e.to_string(),
        }
    })?;
    let local = identity.public().to_peer_id();
    let me = peers.iter().position(|p| p.id == local);

    let shared = Arc::new(Shared::default());
    let behaviour = Behaviour {
        gate: Gate {
            allowed: peers
                .iter()
                .map(|p| p.id)
                .filter(|id| *id != local)
                .collect(),
            shared: shared.clone(),
        },
        consensus: request_response::Behaviour::with_codec(
            FrameCodec {
                max_message_bytes: cfg.max_message_bytes,
                shared: shared.clone(),
            },
            [(CONSENSUS_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
                .with_max_concurrent_streams(IN_FLIGHT_PER_PEER_MAX),
        ),
        gossip: gossip_behaviour(cfg.max_message_bytes)?,
    };
    let mut swarm = build_swarm(identity, behaviour)?;

    let topic = IdentTopic::new(format!("phalanx/{}/txs/1", cfg.chain_id));
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&topic)
        .map_err(|e| NetworkError::Gossip {
            reason: e.to_string(),
        })?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| NetworkError::Listen {
            addr: cfg.listen.clone(),
            reason: e.to_string(),
        })?;
    info!(peer = %local, listen = %cfg.listen, validator = ?me, "p2p starting");

    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_CAPACITY);
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CAPACITY);
    let event_bytes = Arc::new(EventBytes::new(peers.len(), cfg.max_message_bytes));
    let index_of = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, ValidatorIndex(i as u16)))
        .collect();
    let mut event_loop = EventLoop {
        swarm,
        peers,
        index_of,
        me: me.map(|i| ValidatorIndex(i as u16)),
        topic,
        max_message_bytes: cfg.max_message_bytes,
        commands: commands_rx,
        events: events_tx,
        event_bytes: event_bytes.clone(),
        shared: shared.clone(),
    };
    for i in 0..event_loop.peers.len() {
        if Some(i) != me {
            event_loop.dial(i);
        }
    }
    let task = tokio::spawn(event_loop.run());
    let handle = NetworkHandle {
        commands: commands_tx,
        shared,
        max_message_bytes: cfg.max_message_bytes,
    };
    let events = NetEvents {
        rx: events_rx,
        bytes: event_bytes,
    };
    Ok((handle, events, task))
}

/// Checks the validator list and turns it into per-peer dial state.
fn validator_peers(
    validators: &[(phalanx_crypto::PublicKey, Multiaddr)],
) -> Result<Vec<Peer>, NetworkError> {
    if validators.len() > usize::from(u16::MAX) + 1 {
        return Err(NetworkError::TooManyValidators {
            count: validators.len(),
        });
    }
    let mut seen: HashMap<PeerId, usize> = HashMap::new();
    let mut peers = Vec::with_capacity(validators.len());
    for (i, (key, addr)) in validators.iter().enumerate() {
        let id = peer_id_of(key)?;
        if let Some(first) = seen.insert(id, i) {
            return Err(NetworkError::DuplicateValidator { first, second: i });
        }
        peers.push(Peer {
            id,
            addr: addr.clone(),
            connected: false,
            in_flight: 0,
            backoff_ms: REDIAL_BACKOFF_MS_MIN,
            redial_at: None,
        });
    }
    Ok(peers)
}

fn gossip_behaviour(max_message_bytes: usize) -> Result<gossipsub::Behaviour, NetworkError> {
    // Gossip is not signed: every connection is Noise-authenticated to a
    // genesis validator ([`Gate`]) and every transaction carries its own
    // signature, so gossipsub's per-message author signature proved
    // nothing more — and cost a signature per publish plus a decoded key
    // and a check per copy received (each message arrives from up to
    // every peer; measured ~10 % of a node's CPU at 1,000 tx/s). Messages
    // are named by their content, so copies of one batch are one message.
    //
    // Messages are validated by the node before they are forwarded
    // (`validate_messages`): one validator's junk stops at its first hop.
    let config = gossipsub::ConfigBuilder::default()
        // The frame limit covers the whole RPC, so leave room for its envelope.
        .max_transmit_size(max_message_bytes.min(GOSSIP_BYTES_MAX) + GOSSIP_ENVELOPE_BYTES_MAX)
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .history_length(GOSSIP_HISTORY_HEARTBEATS)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::new(phalanx_crypto::Digest::sha256(&m.data).as_bytes())
        })
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| NetworkError::Gossip {
            reason: e.to_string(),
        })?;
    gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config).map_err(|reason| {
        NetworkError::Gossip {
            reason: reason.to_string(),
        }
    })
}

fn build_swarm(
    identity: identity::Keypair,
    behaviour: Behaviour,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let transport_err = |reason: String| NetworkError::Transport { reason };
    Ok(libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_err(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| transport_err(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build())
}

enum Command {
    Send {
        to: ValidatorIndex,
        bytes: Arc<Vec<u8>>,
    },
    Broadcast {
        bytes: Arc<Vec<u8>>,
    },
    Gossip {
        bytes: Vec<u8>,
    },
    GossipVerdict {
        id: GossipId,
        verdict: GossipVerdict,
    },
}

/// State shared by the handles, the swarm task and the codec.
#[derive(Default)]
struct Shared {
    counters: Counters,
    connected: Mutex<BTreeSet<ValidatorIndex>>,
    shutdown: Notify,
}

impl Shared {
    fn connected(&self) -> std::sync::MutexGuard<'_, BTreeSet<ValidatorIndex>> {
        // The set is valid after any panic that poisoned it: one insert or remove.
        self.connected.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    refused_peers: AtomicU64,
    oversized: AtomicU64,
    over_budget: AtomicU64,
}

/// Adds one to a counter: only ever read as a whole by [`NetworkHandle::stats`].
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> NetworkStats {
        NetworkStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            refused_peers: self.refused_peers.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
        }
    }
}

/// One genesis validator as the swarm task sees it.
struct Peer {
    id: PeerId,
    addr: Multiaddr,
    connected: bool,
    /// Consensus messages sent and not yet acknowledged or failed.
    in_flight: usize,
    /// Delay before the next redial if this one fails.
    backoff_ms: u64,
    redial_at: Option<Instant>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First, so that a refused connection never reaches the other two.
    gate: Gate,
    consensus: request_response::Behaviour<FrameCodec>,
    gossip: gossipsub::Behaviour,
}

/// Refuses every connection whose authenticated peer is not a genesis
/// validator, once the Noise handshake has proved who it is.
struct Gate {
    allowed: HashSet<PeerId>,
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
#[error("peer {peer} is not a genesis validator")]
struct NotAValidator {
    peer: PeerId,
}

impl Gate {
    fn admit(&self, peer: PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        if self.allowed.contains(&peer) {
            return Ok(());
        }
        bump(&self.shared.counters.refused_peers);
        debug!(%peer, %addr, "refused a peer that is not a genesis validator");
        Err(ConnectionDenied::new(NotAValidator { peer }))
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, remote_addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Consensus frames: a 4-byte big-endian length, then the message. The
/// response is a single [`ACK_BYTE`].
#[derive(Clone)]
struct FrameCodec {
    max_message_bytes: usize,
    shared: Arc<Shared>,
}

async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    max_message_bytes: usize,
    shared: &Shared,
) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_message_bytes {
        // Rejected from the prefix alone: nothing is allocated for it.
        bump(&shared.counters.oversized);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds max_message_bytes = {max_message_bytes}"),
        ));
    }
    // Grown as bytes arrive: a peer that announces a large frame and sends
    // it slowly (or never) holds only what it actually sent.
    let mut bytes = Vec::with_capacity(len.min(FRAME_READ_CHUNK_BYTES));
    let mut body = io.take(len as u64);
    body.read_to_end(&mut bytes).await?;
    if bytes.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await
}

// `request_response::Codec` is an `async_trait`; these are its methods written
// out by hand (boxed futures), to avoid a dependency for four functions.
impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Arc<Vec<u8>>;
    type Response = ();

    fn read_request<'life0, 'life1, 'life2, 'async_trait, T>(
        &'life0 mut self,
        _: &'life1 StreamProtocol,
        io: &'life2 mut T,
    ) -> BoxFuture<'async_trait, io::Result<Arc<Vec<u8>>>>
    where
        T: AsyncRead + Unpin + Send + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let bytes = read_frame(io, self.max_message_bytes, &self.shared).await?;
            Ok(Arc::new(bytes))
        })
    }

    fn read_response<'life0, 'life1, 'life2, 'async_trait, T>(
        &'life0 mut self,
        _: &'life1 StreamProtocol,
        io: &'life2 mut T,
    ) -> BoxFuture<'async_trait, io::Result<()>>
    where
        T: AsyncRead + Unpin + Send + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let mut ack = [0u8; 1];
            io.read_exact(&mut ack).await?;
            if ack[0] != ACK_BYTE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad ack"));
            }
            Ok(())
        })
    }

    fn write_request<'life0, 'life1, 'life2, 'async_trait, T>(
        &'life0 mut self,
        _: &'life1 StreamProtocol,
        io: &'life2 mut T,
        request: Arc<Vec<u8>>,
    ) -> BoxFuture<'async_trait, io::Result<()>>
    where
        T: AsyncWrite + Unpin + Send + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { write_frame(io, &request).await })
    }

    fn write_response<'life0, 'life1, 'life2, 'async_trait, T>(
        &'life0 mut self,
        _: &'life1 StreamProtocol,
        io: &'life2 mut T,
        _: (),
    ) -> BoxFuture<'async_trait, io::Result<()>>
    where
        T: AsyncWrite + Unpin + Send + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { io.write_all(&[ACK_BYTE]).await })
    }
}

/// The swarm task: owns the swarm and the per-validator dial state.
struct EventLoop {
    swarm: Swarm<Behaviour>,
    /// Every genesis validator, by index (ourselves included, never dialled).
    peers: Vec<Peer>,
    index_of: HashMap<PeerId, ValidatorIndex>,
    me: Option<ValidatorIndex>,
    topic: IdentTopic,
    max_message_bytes: usize,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    event_bytes: Arc<EventBytes>,
    shared: Arc<Shared>,
}

impl EventLoop {
    async fn run(mut self) {
        loop {
            let redial_at = self.next_redial_at();
            tokio::select! {
                _ = self.shared.shutdown.notified() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tokio::time::sleep_until(redial_at) => self.redial_due(),
            }
        }
        self.shared.connected().clear();
        info!("p2p stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { to, bytes } => self.send_to(to, bytes),
            Command::Broadcast { bytes } => {
                for i in 0..self.peers.len() {
                    let to = ValidatorIndex(i as u16);
                    if Some(to) != self.me {
                        self.send_to(to, bytes.clone());
                    }
                }
            }
            Command::Gossip { bytes } => {
                let topic = self.topic.clone();
                if let Err(e) = self.swarm.behaviour_mut().gossip.publish(topic, bytes) {
                    self.count_dropped();
                    debug!("transaction gossip not sent: {e}");
                }
            }
            Command::GossipVerdict { id, verdict } => {
                // False if the message left the cache meanwhile: nothing to do.
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(
                        &id.message,
                        &id.source,
                        verdict.acceptance(),
                    );
            }
        }
    }

    fn send_to(&mut self, to: ValidatorIndex, bytes: Arc<Vec<u8>>) {
        let Some(peer) = self.peers.get_mut(to.as_usize()) else {
            warn!(to = to.0, "message for a validator index out of range");
            self.count_dropped();
            return;
        };
        if Some(to) == self.me || !peer.connected || peer.in_flight >= IN_FLIGHT_PER_PEER_MAX {
            self.count_dropped();
            return;
        }
        peer.in_flight += 1;
        let id = peer.id;
        self.swarm
            .behaviour_mut()
            .consensus
            .send_request(&id, bytes);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Consensus(event)) => self.on_consensus(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gate(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => self.on_connected(peer_id),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => self.on_disconnected(peer_id, cause),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => self.on_dial_failed(peer_id, error),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => debug!(from = %send_back_addr, "inbound connection failed: {error}"),
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "p2p listening"),
            SwarmEvent::ListenerError { error, .. } => warn!("p2p listener error: {error}"),
            _ => {}
        }
    }

    fn on_consensus(&mut self, event: request_response::Event<Arc<Vec<u8>>, ()>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .consensus
                    .send_response(channel, ());
                // The gate admits validators only, so this is always Some.
                let Some(&from) = self.index_of.get(&peer) else {
                    warn!(%peer, "consensus message from a peer that is not a validator");
                    return;
                };
                let bytes = Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone());
                self.deliver(NetEvent::Consensus { from, bytes });
            }
            Event::Message {
                peer,
                message: Message::Response { .. },
                ..
            } => {
                self.settle(peer);
                bump(&self.shared.counters.sent);
            }
            Event::OutboundFailure { peer, error, .. } => {
                self.settle(peer);
                self.count_dropped();
                if !matches!(error, OutboundFailure::ConnectionClosed) {
                    debug!(%peer, "consensus message not acknowledged: {error}");
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound consensus message failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// A request to `peer` has been acknowledged or has failed.
    fn settle(&mut self, peer: PeerId) {
        if let Some(&i) = self.index_of.get(&peer) {
            let p = &mut self.peers[i.as_usize()];
            assert!(p.in_flight > 0, "an ack from {peer} for nothing in flight");
            p.in_flight -= 1;
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        if let gossipsub::Event::SlowPeer {
            peer_id,
            failed_messages,
        } = &event
        {
            // gossipsub dropped transaction batches to this peer (its
            // queue was full or a send timed out).
            warn!(%peer_id, ?failed_messages, "transaction gossip to a slow peer dropped");
            return;
        }
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let id = GossipId {
            message: message_id,
            source: propagation_source,
        };
        let Some(&from) = self.index_of.get(&propagation_source) else {
            warn!(from = %propagation_source, "gossip not relayed by a validator");
            self.gossip_verdict(id, GossipVerdict::Reject);
            return;
        };
        if message.data.len() > self.max_message_bytes.min(GOSSIP_BYTES_MAX) {
            bump(&self.shared.counters.oversized);
            self.gossip_verdict(id, GossipVerdict::Reject);
            return;
        }
        let event = NetEvent::Transactions {
            from,
            id: id.clone(),
            bytes: message.data,
        };
        if !self.deliver(event) {
            // Never checked, so never forwarded; and out of the cache now.
            self.gossip_verdict(id, GossipVerdict::Ignore);
        }
    }

    fn gossip_verdict(&mut self, id: GossipId, verdict: GossipVerdict) {
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id.message, &id.source, verdict.acceptance());
    }

    /// Hands an event to the node; false if it was dropped (a full
    /// channel, or its sender over its share of the channel's bytes).
    fn deliver(&mut self, event: NetEvent) -> bool {
        let charge = event_charge(&event);
        if let Some((from, len)) = charge {
            if !self.event_bytes.reserve(from, len) {
                bump(&self.shared.counters.over_budget);
                self.count_dropped();
                return false;
            }
        }
        match self.events.try_send(event) {
            Ok(()) => {
                if charge.is_some() {
                    bump(&self.shared.counters.received);
                }
                true
            }
            Err(e) => {
                if let Some((from, len)) = charge {
                    self.event_bytes.release(from, len);
                }
                // Closed: the node stopped listening; it will shut us down.
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.count_dropped();
                }
                false
            }
        }
    }

    fn on_connected(&mut self, peer_id: PeerId) {
        let Some(&i) = self.index_of.get(&peer_id) else {
            return;
        };
        let peer = &mut self.peers[i.as_usize()];
        assert!(!peer.connected, "{i:?} connected twice");
        peer.connected = true;
        peer.backoff_ms = REDIAL_BACKOFF_MS_MIN;
        peer.redial_at = None;
        self.shared.connected().insert(i);
        info!(validator = i.0, "peer connected");
        self.deliver(NetEvent::PeerConnected(i));
    }

    fn on_disconnected(&mut self, peer_id: PeerId, cause: Option<impl std::fmt::Display>) {
        let Some(&i) = self.index_of.get(&peer_id) else {
            return;
        };
        self.peers[i.as_usize()].connected = false;
        self.shared.connected().remove(&i);
        match cause {
            Some(cause) => info!(validator = i.0, "peer disconnected: {cause}"),
            None => info!(validator = i.0, "peer disconnected"),
        }
        self.deliver(NetEvent::PeerDisconnected(i));
        self.schedule_redial(i);
    }

    fn on_dial_failed(&mut self, peer_id: PeerId, error: DialError) {
        let Some(&i) = self.index_of.get(&peer_id) else {
            return;
        };
        debug!(validator = i.0, "dial failed: {error}");
        if !self.peers[i.as_usize()].connected {
            self.schedule_redial(i);
        }
    }

    /// Dials validator `i` at its configured address, unless it is already
    /// connected or being dialled.
    fn dial(&mut self, i: usize) {
        let peer = &self.peers[i];
        let opts = DialOpts::peer_id(peer.id)
            .addresses(vec![peer.addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                debug!(validator = i, "cannot dial: {e}");
                self.schedule_redial(ValidatorIndex(i as u16));
            }
        }
    }

    fn schedule_redial(&mut self, i: ValidatorIndex) {
        if Some(i) == self.me {
            return;
        }
        let peer = &mut self.peers[i.as_usize()];
        peer.redial_at = Some(Instant::now() + Duration::from_millis(peer.backoff_ms));
        peer.backoff_ms = (peer.backoff_ms * 2).min(REDIAL_BACKOFF_MS_MAX);
    }

    fn next_redial_at(&self) -> Instant {
        self.peers
            .iter()
            .filter_map(|p| p.redial_at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.peers.len() {
            if self.peers[i].redial_at.is_some_and(|at| at <= now) {
                self.peers[i].redial_at = None;
                self.dial(i);
            }
        }
    }

    fn count_dropped(&self) {
        bump(&self.shared.counters.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec as _;
    use tokio::task::JoinHandle;
    use tokio::time::{sleep, timeout};

    const STEP_TIMEOUT: Duration = Duration::from_secs(15);
    const MESSAGE_BYTES_MAX: usize = 64 * 1024;

    fn key(label: &str, i: usize) -> phalanx_crypto::Keypair {
        phalanx_crypto::Keypair::insecure_from_label(&format!("network-test/{label}/{i}"))
    }

    /// A loopback address with a port the OS just handed out and we let go.
    fn free_addr() -> Multiaddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        format!("/ip4/127.0.0.1/tcp/{port}")
            .parse()
            .expect("multiaddr")
    }

    struct Node {
        handle: NetworkHandle,
        events: NetEvents,
        task: JoinHandle<()>,
    }

    /// n validators on loopback, each with its own key and port.
    struct TestNet {
        chain_id: String,
        keys: Vec<phalanx_crypto::Keypair>,
        addrs: Vec<Multiaddr>,
        nodes: Vec<Option<Node>>,
    }

    impl TestNet {
        fn new(label: &str, n: usize) -> TestNet {
            TestNet {
                chain_id: format!("test-{label}"),
                keys: (0..n).map(|i| key(label, i)).collect(),
                addrs: (0..n).map(|_| free_addr()).collect(),
                nodes: (0..n).map(|_| None).collect(),
            }
        }

        fn config(&self, listen: Multiaddr, max_message_bytes: usize) -> NetworkConfig {
            NetworkConfig {
                chain_id: self.chain_id.clone(),
                listen,
                validators: self
                    .keys
                    .iter()
                    .zip(&self.addrs)
                    .map(|(k, a)| (k.public(), a.clone()))
                    .collect(),
                max_message_bytes,
            }
        }

        async fn start_with(&mut self, i: usize, cfg: NetworkConfig) {
            let (handle, events, task) = start(&self.keys[i], cfg).await.expect("start");
            self.nodes[i] = Some(Node {
                handle,
                events,
                task,
            });
        }

        async fn start_all(mut self) -> TestNet {
            for i in 0..self.keys.len() {
                let cfg = self.config(self.addrs[i].clone(), MESSAGE_BYTES_MAX);
                self.start_with(i, cfg).await;
            }
            self
        }

        fn node(&mut self, i: usize) -> &mut Node {
            self.nodes[i].as_mut().expect("node is running")
        }

        fn handle(&mut self, i: usize) -> NetworkHandle {
            self.node(i).handle.clone()
        }

        async fn stop(&mut self, i: usize) {
            let node = self.nodes[i].take().expect("node is running");
            node.handle.shutdown();
            timeout(STEP_TIMEOUT, node.task)
                .await
                .expect("swarm task ends after shutdown")
                .expect("swarm task did not panic");
        }

        /// Waits until every running node sees every other running node.
        async fn until_fully_connected(&mut self) {
            let running: Vec<ValidatorIndex> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].is_some())
                .map(|i| ValidatorIndex(i as u16))
                .collect();
            for &i in &running {
                let handle = self.handle(i.as_usize());
                let others: Vec<ValidatorIndex> =
                    running.iter().copied().filter(|&j| j != i).collect();
                until(
                    || handle.connected() == others,
                    &format!("{i:?} is connected to {others:?}"),
                )
                .await;
            }
        }

        /// The next consensus message node `i` receives.
        async fn next_consensus(&mut self, i: usize) -> (ValidatorIndex, Vec<u8>) {
            let events = &mut self.node(i).events;
            timeout(STEP_TIMEOUT, async {
                loop {
                    match events.recv().await {
                        Some(NetEvent::Consensus { from, bytes }) => return (from, bytes),
                        Some(_) => continue,
                        None => panic!("event channel closed"),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("node {i} received no consensus message"))
        }

        /// Whether node `i` receives a consensus message or transactions
        /// within `window`.
        async fn receives_anything_within(&mut self, i: usize, window: Duration) -> bool {
            let events = &mut self.node(i).events;
            timeout(window, async {
                loop {
                    match events.recv().await {
                        Some(NetEvent::Consensus { .. } | NetEvent::Transactions { .. }) => return,
                        Some(_) => continue,
                        None => std::future::pending::<()>().await,
                    }
                }
            })
            .await
            .is_ok()
        }
    }

    /// Polls `condition` until it holds, failing the test after [`STEP_TIMEOUT`].
    async fn until(condition: impl Fn() -> bool, what: &str) {
        timeout(STEP_TIMEOUT, async {
            while !condition() {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    /// Gossips `bytes` from `from` until each of `to` has received them
    /// (gossip needs the subscriptions exchanged first, so early publishes
    /// may find no one). Each attempt carries its number after `bytes`:
    /// gossip is named by content, so a repeat would be a duplicate.
    async fn gossip_until_received(net: &mut TestNet, from: usize, to: &[usize], bytes: &[u8]) {
        let sender = net.handle(from);
        let mut attempt = 0u32;
        for &i in to {
            let events = &mut net.node(i).events;
            timeout(STEP_TIMEOUT, async {
                loop {
                    attempt += 1;
                    let mut payload = bytes.to_vec();
                    payload.extend_from_slice(&attempt.to_be_bytes());
                    sender.gossip_transactions(payload);
                    let deadline = sleep(Duration::from_millis(200));
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            event = events.recv() => match event {
                                Some(NetEvent::Transactions { bytes: got, .. })
                                    if got.starts_with(bytes) =>
                                {
                                    return
                                }
                                Some(_) => continue,
                                None => panic!("event channel closed"),
                            },
                            _ = &mut deadline => break,
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("node {i} never received the gossip"));
        }
    }

    #[test]
    fn peer_id_of_matches_the_libp2p_identity_of_the_seed() {
        let k = key("peer-id", 0);
        let mut seed = k.seed();
        let libp2p_key = identity::Keypair::ed25519_from_bytes(&mut seed).expect("key");
        assert_eq!(
            peer_id_of(&k.public()).expect("peer id"),
            libp2p_key.public().to_peer_id()
        );
    }

    #[test]
    fn peer_id_of_rejects_a_key_that_is_not_a_curve_point() {
        // y = 2 has no x on the curve, so this encoding is not a valid point.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let err = peer_id_of(&phalanx_crypto::PublicKey(bytes)).expect_err("not a point");
        assert!(matches!(err, NetworkError::BadPublicKey { .. }), "{err}");
    }

    #[tokio::test]
    async fn codec_round_trips_a_frame_and_rejects_an_oversized_prefix_unread() {
        let shared = Arc::new(Shared::default());
        let mut codec = FrameCodec {
            max_message_bytes: 8,
            shared: shared.clone(),
        };
        let mut wire = Cursor::new(Vec::new());
        codec
            .write_request(
                &CONSENSUS_PROTOCOL,
                &mut wire,
                Arc::new(b"12345678".to_vec()),
            )
            .await
            .expect("write");
        wire.set_position(0);
        let got = codec
            .read_request(&CONSENSUS_PROTOCOL, &mut wire)
            .await
            .expect("read");
        assert_eq!(*got, b"12345678".to_vec());

        // A prefix announcing 4 GiB with no body: rejected, not awaited.
        let mut wire = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = codec
            .read_request(&CONSENSUS_PROTOCOL, &mut wire)
            .await
            .expect_err("oversized");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(shared.counters.snapshot().oversized, 1);
    }

    #[tokio::test]
    async fn start_names_the_address_it_cannot_listen_on() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let net = TestNet::new("bind", 1);
        let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
        let cfg = net.config(listen, MESSAGE_BYTES_MAX);
        match start(&net.keys[0], cfg).await {
            Err(e @ NetworkError::Listen { .. }) => {
                assert!(e.to_string().contains(&port.to_string()), "{e}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("listened on a port that is taken"),
        }
    }

    #[tokio::test]
    async fn n3_send_broadcast_and_gossip_arrive_from_the_authenticated_sender() {
        let mut net = TestNet::new("n3", 3).start_all().await;
        net.until_fully_connected().await;

        // 0 → 2: arrives, attributed to 0.
        net.handle(0)
            .send(ValidatorIndex(2), Arc::new(b"prepare".to_vec()));
        assert_eq!(
            net.next_consensus(2).await,
            (ValidatorIndex(0), b"prepare".to_vec())
        );

        // 1 → all: 0 and 2 get it from 1.
        net.handle(1).broadcast(Arc::new(b"commit".to_vec()));
        for i in [0, 2] {
            assert_eq!(
                net.next_consensus(i).await,
                (ValidatorIndex(1), b"commit".to_vec()),
                "at node {i}"
            );
        }

        // Gossip from 2 reaches 0 and 1.
        gossip_until_received(&mut net, 2, &[0, 1], b"tx-batch").await;

        // Both copies of the broadcast are acknowledged.
        let sender = net.handle(1);
        until(|| sender.stats().sent >= 2, "node 1 gets two acks").await;
        assert_eq!(sender.stats().refused_peers, 0);
    }

    #[tokio::test]
    async fn n3_outsider_is_refused_and_never_heard() {
        let mut net = TestNet::new("outsider", 3).start_all().await;
        net.until_fully_connected().await;

        // A node whose key is not in genesis, dialling every validator.
        let outsider_key = key("outsider", 99);
        let mut cfg = net.config(free_addr(), MESSAGE_BYTES_MAX);
        cfg.validators
            .push((outsider_key.public(), cfg.listen.clone()));
        let (outsider, _events, outsider_task) = start(&outsider_key, cfg).await.expect("start");

        // Every validator refuses it once it has said who it is.
        for i in 0..3 {
            let handle = net.handle(i);
            until(
                || handle.stats().refused_peers > 0,
                &format!("node {i} refuses the outsider"),
            )
            .await;
        }

        // Whatever it sends meanwhile is never delivered.
        for _ in 0..10 {
            outsider.broadcast(Arc::new(b"forged prepare".to_vec()));
            outsider.gossip_transactions(b"spam".to_vec());
            sleep(Duration::from_millis(50)).await;
        }
        for i in 0..3 {
            assert!(
                !net.receives_anything_within(i, Duration::from_millis(500))
                    .await,
                "node {i} heard the outsider"
            );
            let expected: Vec<ValidatorIndex> = (0..3u16)
                .filter(|&j| j as usize != i)
                .map(ValidatorIndex)
                .collect();
            assert_eq!(net.handle(i).connected(), expected, "at node {i}");
        }
        assert_eq!(outsider.stats().sent, 0);

        outsider.shutdown();
        timeout(STEP_TIMEOUT, outsider_task)
            .await
            .expect("outsider stops")
            .expect("no panic");
    }

    #[tokio::test]
    async fn n2_oversized_message_is_not_delivered() {
        let mut net = TestNet::new("oversized", 2);
        // Node 0 would send up to 64 KiB; node 1 accepts at most 1 KiB.
        let cfg = net.config(net.addrs[0].clone(), MESSAGE_BYTES_MAX);
        net.start_with(0, cfg).await;
        let cfg = net.config(net.addrs[1].clone(), 1024);
        net.start_with(1, cfg).await;
        net.until_fully_connected().await;

        net.handle(0)
            .send(ValidatorIndex(1), Arc::new(vec![7u8; 4096]));
        let receiver = net.handle(1);
        until(
            || receiver.stats().oversized == 1,
            "node 1 rejects the frame",
        )
        .await;
        assert!(
            !net.receives_anything_within(1, Duration::from_millis(300))
                .await,
            "the oversized message was delivered"
        );
        // The link is still good for messages within the limit.
        net.handle(0)
            .send(ValidatorIndex(1), Arc::new(b"small".to_vec()));
        assert_eq!(
            net.next_consensus(1).await,
            (ValidatorIndex(0), b"small".to_vec())
        );

        // The sender's own limit: refused before it leaves.
        net.handle(1)
            .send(ValidatorIndex(0), Arc::new(vec![7u8; 4096]));
        assert_eq!(net.handle(1).stats().oversized, 2);
        assert!(
            !net.receives_anything_within(0, Duration::from_millis(300))
                .await
        );
    }

    #[tokio::test]
    async fn n3_restarted_validator_is_redialled_on_its_port() {
        let mut net = TestNet::new("restart", 3).start_all().await;
        net.until_fully_connected().await;

        net.stop(1).await;
        // The others notice and keep redialling (with backoff) while it is down.
        for i in [0, 2] {
            let handle = net.handle(i);
            until(
                || !handle.connected().contains(&ValidatorIndex(1)),
                &format!("node {i} sees 1 gone"),
            )
            .await;
        }
        net.handle(0)
            .send(ValidatorIndex(1), Arc::new(b"lost".to_vec()));
        sleep(Duration::from_millis(600)).await;

        // Back on the same port, but unable to dial anyone itself: only the
        // others' redials can reconnect it.
        let mut cfg = net.config(net.addrs[1].clone(), MESSAGE_BYTES_MAX);
        let closed = free_addr();
        for (i, (_, addr)) in cfg.validators.iter_mut().enumerate() {
            if i != 1 {
                *addr = closed.clone();
            }
        }
        net.start_with(1, cfg).await;
        net.until_fully_connected().await;

        net.handle(0)
            .send(ValidatorIndex(1), Arc::new(b"again".to_vec()));
        assert_eq!(
            net.next_consensus(1).await,
            (ValidatorIndex(0), b"again".to_vec())
        );
        net.handle(1).broadcast(Arc::new(b"hello".to_vec()));
        for i in [0, 2] {
            assert_eq!(
                net.next_consensus(i).await,
                (ValidatorIndex(1), b"hello".to_vec())
            );
        }
        assert!(
            net.handle(0).stats().dropped >= 1,
            "the message sent while down was dropped"
        );
    }

    #[tokio::test]
    async fn dropping_every_handle_ends_the_swarm_task() {
        let net = TestNet::new("drop", 1);
        let cfg = net.config(net.addrs[0].clone(), MESSAGE_BYTES_MAX);
        let (handle, _events, task) = start(&net.keys[0], cfg).await.expect("start");
        drop(handle);
        timeout(STEP_TIMEOUT, task)
            .await
            .expect("task ends")
            .expect("no panic");
    }

    #[test]
    fn the_event_channel_holds_at_most_two_16_mib_messages_per_peer_and_four_in_all() {
        const MIB16: usize = 16 << 20;
        let budget = EventBytes::new(5, MIB16);
        let (a, b, c) = (ValidatorIndex(1), ValidatorIndex(2), ValidatorIndex(3));
        // One flooding peer: its third maximal message is refused.
        assert!(budget.reserve(a, MIB16));
        assert!(budget.reserve(a, MIB16));
        assert!(!budget.reserve(a, MIB16), "a peer holds at most 32 MiB");
        assert!(!budget.reserve(a, 1), "not even one byte more");
        // Others still get their share, up to 64 MiB in all.
        assert!(budget.reserve(b, MIB16));
        assert!(budget.reserve(b, MIB16));
        assert!(
            !budget.reserve(c, MIB16),
            "the channel holds at most 64 MiB"
        );
        assert_eq!(budget.total(), 4 * MIB16);
        // Taking a message frees its bytes for its sender.
        budget.release(a, MIB16);
        assert!(budget.reserve(c, MIB16));
        assert!(!budget.reserve(a, MIB16));
        assert!(!budget.reserve(ValidatorIndex(9), 1), "no such peer");
    }

    #[tokio::test]
    async fn frame_buffers_grow_with_the_bytes_that_arrive() {
        let shared = Arc::new(Shared::default());
        // Announces 16 MiB, sends 10 bytes and ends: an error, and nothing
        // near 16 MiB was allocated for it on the way.
        let mut wire = (16u32 << 20).to_be_bytes().to_vec();
        wire.extend_from_slice(b"0123456789");
        let err = read_frame(&mut Cursor::new(wire), 16 << 20, &shared)
            .await
            .expect_err("short frame");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut wire = 5u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"hello");
        let frame = read_frame(&mut Cursor::new(wire), 16 << 20, &shared)
            .await
            .expect("frame");
        assert_eq!(frame, b"hello");
    }

    #[tokio::test]
    async fn n2_a_peer_over_its_byte_share_of_the_channel_is_dropped_not_buffered() {
        let mut net = TestNet::new("bytes", 2).start_all().await;
        net.until_fully_connected().await;
        // Node 1 reads nothing while node 0 sends ten near-maximal messages:
        // two fit node 0's share (2 × 64 KiB), the other eight are dropped.
        let big = MESSAGE_BYTES_MAX - 1024;
        for i in 0..10u8 {
            net.handle(0)
                .send(ValidatorIndex(1), Arc::new(vec![i; big]));
        }
        let receiver = net.handle(1);
        until(
            || receiver.stats().over_budget == 8,
            "node 1 drops eight messages over node 0's share",
        )
        .await;
        assert_eq!(
            net.node(1).events.bytes_waiting(),
            2 * big,
            "only two messages wait"
        );
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(net.next_consensus(1).await.1[0]);
        }
        // Each message travels on its own stream, so which two arrive
        // first is up to the transport; two distinct ones are kept.
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 2, "two distinct messages kept: {got:?}");
        assert_eq!(net.node(1).events.bytes_waiting(), 0);
        // Once taken, the share is free again.
        net.handle(0)
            .send(ValidatorIndex(1), Arc::new(b"after".to_vec()));
        assert_eq!(net.next_consensus(1).await.1, b"after".to_vec());
    }

    /// Three validators in a line, 0 — 1 — 2: 0 and 2 cannot reach each
    /// other, so gossip from 0 reaches 2 only if 1 forwards it.
    async fn line_of_three(label: &str) -> TestNet {
        let mut net = TestNet::new(label, 3);
        let closed = free_addr();
        for i in 0..3 {
            let mut cfg = net.config(net.addrs[i].clone(), MESSAGE_BYTES_MAX);
            let unreachable = match i {
                0 => Some(2),
                2 => Some(0),
                _ => None,
            };
            if let Some(j) = unreachable {
                cfg.validators[j].1 = closed.clone();
            }
            net.start_with(i, cfg).await;
        }
        for (i, want) in [(0, vec![1]), (1, vec![0, 2]), (2, vec![1])] {
            let handle = net.handle(i);
            let want: Vec<ValidatorIndex> = want.into_iter().map(ValidatorIndex).collect();
            until(|| handle.connected() == want, "the line is up").await;
        }
        net
    }

    /// Publishes from 0 until 1 receives it; returns what 1 got.
    async fn gossip_to_middle(net: &mut TestNet, bytes: &[u8]) -> (ValidatorIndex, GossipId) {
        let sender = net.handle(0);
        let events = &mut net.node(1).events;
        timeout(STEP_TIMEOUT, async {
            loop {
                sender.gossip_transactions(bytes.to_vec());
                let deadline = sleep(Duration::from_millis(200));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Some(NetEvent::Transactions { from, id, bytes: got }) if got == bytes => {
                                return (from, id)
                            }
                            Some(_) => continue,
                            None => panic!("event channel closed"),
                        },
                        _ = &mut deadline => break,
                    }
                }
            }
        })
        .await
        .expect("node 1 receives the gossip")
    }

    #[tokio::test]
    async fn n3_gossip_is_forwarded_only_after_the_node_accepts_it() {
        let mut net = line_of_three("validate").await;
        // Rejected by 1: never reaches 2.
        let (from, id) = gossip_to_middle(&mut net, b"junk").await;
        assert_eq!(from, ValidatorIndex(0), "relayed by 0");
        net.handle(1).report_gossip(id, GossipVerdict::Reject);
        assert!(
            !net.receives_anything_within(2, Duration::from_millis(1500))
                .await,
            "rejected gossip was forwarded"
        );
        // Unreported: held, not forwarded.
        let (_, id) = gossip_to_middle(&mut net, b"good").await;
        assert!(
            !net.receives_anything_within(2, Duration::from_millis(500))
                .await,
            "gossip was forwarded before the node checked it"
        );
        // Accepted: forwarded to 2, relayed by 1.
        net.handle(1).report_gossip(id, GossipVerdict::Accept);
        let events = &mut net.node(2).events;
        let got = timeout(STEP_TIMEOUT, async {
            loop {
                if let Some(NetEvent::Transactions { from, bytes, .. }) = events.recv().await {
                    return (from, bytes);
                }
            }
        })
        .await
        .expect("node 2 receives the accepted gossip");
        assert_eq!(got, (ValidatorIndex(1), b"good".to_vec()));
    }

    #[tokio::test]
    async fn gossip_over_the_batch_limit_is_not_sent() {
        let net = TestNet::new("gossip-limit", 1);
        let cfg = net.config(net.addrs[0].clone(), 4 * GOSSIP_BYTES_MAX);
        let (handle, _events, task) = start(&net.keys[0], cfg).await.expect("start");
        handle.gossip_transactions(vec![0; GOSSIP_BYTES_MAX + 1]);
        assert_eq!(handle.stats().oversized, 1);
        handle.shutdown();
        let _ = timeout(STEP_TIMEOUT, task).await;
    }
}
