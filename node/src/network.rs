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
//! its length prefix, before anything is allocated for it.

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
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Room for gossipsub's own framing (protobuf fields, author key, signature)
/// around a transaction batch of at most `max_message_bytes`.
const GOSSIP_ENVELOPE_BYTES_MAX: usize = 4096;
/// The protocol consensus messages travel on.
const CONSENSUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/phalanx/consensus/1");
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
    Transactions {
        bytes: Vec<u8>,
    },
    PeerConnected(ValidatorIndex),
    PeerDisconnected(ValidatorIndex),
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
        if self.fits(bytes.len()) {
            self.enqueue(Command::Gossip { bytes });
        }
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
) -> Result<
    (
        NetworkHandle,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NetworkError,
> {
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
    Ok((handle, events_rx, task))
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
    let config = gossipsub::ConfigBuilder::default()
        // The frame limit covers the whole RPC, so leave room for its envelope.
        .max_transmit_size(max_message_bytes + GOSSIP_ENVELOPE_BYTES_MAX)
        .validation_mode(ValidationMode::Anonymous)
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
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
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
            message,
            ..
        } = event
        else {
            return;
        };
        if !self.index_of.contains_key(&propagation_source) {
            warn!(from = %propagation_source, "gossip not relayed by a validator");
            return;
        }
        if message.data.len() > self.max_message_bytes {
            bump(&self.shared.counters.oversized);
            return;
        }
        self.deliver(NetEvent::Transactions {
            bytes: message.data,
        });
    }

    fn deliver(&mut self, event: NetEvent) {
        let counts = !matches!(
            event,
            NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_)
        );
        match self.events.try_send(event) {
            Ok(()) if counts => bump(&self.shared.counters.received),
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.count_dropped(),
            // The node stopped listening; it will shut us down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
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
        events: mpsc::Receiver<NetEvent>,
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
                                Some(NetEvent::Transactions { bytes: got })
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
}
