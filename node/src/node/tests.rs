//! The driver and the inbound paths on one in-process node: a real network
//! handle (nobody to talk to), a store, the API on a loopback port.

use super::inbound::{self, GOSSIP_PENALTY};
use super::*;
use crate::network::{GossipId, GOSSIP_TXS_MAX};
use phalanx_consensus::{
    Batch, CommitCertificate, Genesis, GenesisAccount, GenesisValidator, NewView, Transfer,
};
use phalanx_crypto::{Address, Signed};
use phalanx_storage::{MemStore, RocksStore};
use phalanx_testnet::cluster::Api;
use serde_json::Value;

const CHAIN: &str = "node-test";

fn validator_key() -> Keypair {
    Keypair::insecure_from_label("node-test/v0")
}

fn alice() -> Keypair {
    Keypair::insecure_from_label("node-test/alice")
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        test_network: true,
        validators: vec![GenesisValidator {
            name: "v0".into(),
            public_key: validator_key().public(),
            p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
        }],
        consensus: Default::default(),
        accounts: vec![GenesisAccount {
            address: alice().address(),
            balance: 1_000,
        }],
    }
}

fn transfer(nonce: u64) -> Transaction {
    Signed::sign(
        Transfer {
            chain_id: CHAIN.into(),
            to: Address([7; 20]),
            amount: 1,
            nonce,
        },
        &alice(),
        CHAIN,
    )
}

struct Fixture {
    shared: Arc<Shared>,
    driver: Driver,
    _events: NetEvents,
    serve_rx: mpsc::Receiver<ServeRequest>,
}

impl Fixture {
    async fn new(store: Option<Arc<dyn Store>>) -> Fixture {
        let genesis = genesis();
        let key = validator_key();
        let store: Arc<dyn Store> =
            store.unwrap_or_else(|| Arc::new(MemStore::from_genesis(&genesis)));
        let config = NodeConfig::default();
        let net_cfg = NetworkConfig {
            chain_id: CHAIN.into(),
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            validators: vec![(key.public(), "/ip4/127.0.0.1/tcp/1".parse().unwrap())],
            max_message_bytes: config.p2p.max_message_bytes,
        };
        let (network, events, _task) = network::start(&key, net_cfg).await.unwrap();
        let (admitted, _) = mpsc::channel(16);
        let (blocks, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            genesis_hash: genesis.hash(),
            validators: genesis.validator_set(),
            me: ValidatorIndex(0),
            store: store.clone(),
            mempool: Arc::new(Mempool::new(
                config.mempool.clone(),
                CHAIN.into(),
                store.clone(),
            )),
            metrics: Metrics::new(),
            status: RwLock::new(Status::default()),
            horizon: Default::default(),
            blocks,
            admitted,
            network,
            config: config.clone(),
            fail_stopped: AtomicBool::new(false),
            genesis: genesis.clone(),
        });
        let replica = Replica::restore(
            config.consensus_config(&genesis),
            key,
            Vec::new(),
            store.tip().unwrap().height,
        )
        .unwrap();
        let (serve_tx, serve_rx) = mpsc::channel(16);
        let driver = Driver::new(shared.clone(), Participant::honest(replica), serve_tx);
        Fixture {
            shared,
            driver,
            _events: events,
            serve_rx,
        }
    }

    /// Serves the API on a loopback port for the rest of the test.
    async fn api(&self) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::api::serve(
            listener,
            self.shared.clone(),
            std::future::pending(),
        ));
        Api::new(format!("http://{addr}"))
    }
}

async fn get(api: &Api, path: &str) -> (u16, Value) {
    let (api, path) = (api.clone(), path.to_string());
    tokio::task::spawn_blocking(move || api.get_status(&path).unwrap())
        .await
        .unwrap()
}

async fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    let (api, path) = (api.clone(), path.to_string());
    tokio::task::spawn_blocking(move || api.post_json(&path, &body).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_divergence_fail_stops_the_node_and_its_api_says_why() {
    let mut f = Fixture::new(None).await;
    let api = f.api().await;
    let account = format!("/v1/accounts/{}", alice().address().to_hex());

    // Before: healthy, serving state, and the replica keeps its timers.
    assert_eq!(get(&api, "/health").await.1["status"], "ok");
    assert_eq!(get(&api, &account).await.0, 200);
    f.driver.step(Input::Timer(Timer::Retransmit)).unwrap();
    assert!(!f.driver.timers.is_empty(), "the replica set its timers");

    f.driver
        .on_event(Event::StateDiverged { seq: SeqNum(10) })
        .unwrap();

    // The replica hears nothing more: not even its own timers.
    assert!(f.driver.timers.is_empty());
    f.driver.step(Input::Timer(Timer::Retransmit)).unwrap();
    assert!(f.driver.timers.is_empty(), "a stopped replica set a timer");
    assert!(f.driver.outbox.is_empty() && f.driver.wal.is_empty());

    // /health: 503, why, and how to recover.
    let (status, health) = get(&api, "/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "fail_stopped");
    assert_eq!(health["seq"], 10);
    assert!(health["reason"].as_str().unwrap().contains("checkpoint 10"));
    assert!(
        health["recovery"]
            .as_str()
            .unwrap()
            .contains("phalanx verify-ledger"),
        "{health}"
    );
    // /v1/status shows it.
    let (status, st) = get(&api, "/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(st["fail_stopped"]["seq"], 10, "{st}");
    assert!(st["fail_stopped"]["since_ms"].as_u64().unwrap() > 0);
    // State is not served; submissions are refused.
    for path in [account.as_str(), "/v1/blocks/latest", "/v1/blocks/1"] {
        let (status, body) = get(&api, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "fail_stopped", "{path}");
    }
    let tx_path = format!(
        "/v1/transactions/{}",
        phalanx_consensus::tx_hash(&transfer(0)).to_hex()
    );
    assert_eq!(get(&api, &tx_path).await.0, 503);
    let (status, body) = post(
        &api,
        "/v1/transactions",
        serde_json::to_value(transfer(0)).unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "fail_stopped");
    assert_eq!(f.shared.mempool.size().0, 0, "nothing was admitted");
    // What does not come from our state is still served.
    assert_eq!(get(&api, "/v1/validators").await.0, 200);
    let metrics = f.shared.metrics.render();
    assert!(metrics.contains("phalanx_fail_stopped 1"), "{metrics}");
}

#[tokio::test]
async fn a_new_view_is_sent_to_a_peer_at_most_once_per_interval() {
    let mut f = Fixture::new(None).await;
    f.driver.start = Instant::now() - Duration::from_secs(60);
    let nv = Signed::sign(
        NewView {
            view: View(1),
            view_changes: Vec::new(),
            pre_prepares: Vec::new(),
        },
        &validator_key(),
        CHAIN,
    );
    let answer = |to: u16| Output::Send {
        to: ValidatorIndex(to),
        message: Message::NewView(nv.clone()),
    };
    // A peer asking three times in a row gets one answer; another peer
    // gets its own.
    let outputs = vec![answer(2), answer(2), answer(3), answer(2)];
    f.driver.carry_out(outputs, &mut VecDeque::new()).unwrap();
    let to: Vec<u16> = f
        .driver
        .outbox
        .iter()
        .map(|o| match o {
            Outgoing::To(to, _) => to.0,
            Outgoing::All(_) => panic!("a broadcast"),
        })
        .collect();
    assert_eq!(to, vec![2, 3]);
    assert_eq!(f.shared.metrics.new_view_answers_throttled.get(), 2);
    // An interval later, it is answered again.
    for at in f.driver.new_view_answered.values_mut() {
        *at -= NEW_VIEW_ANSWER_MS_MIN;
    }
    f.driver
        .carry_out(vec![answer(2)], &mut VecDeque::new())
        .unwrap();
    assert_eq!(f.driver.outbox.len(), 3);
}

#[tokio::test]
async fn catch_up_requests_go_to_the_serving_task_not_the_store() {
    let mut f = Fixture::new(None).await;
    let request = ServeRequest {
        to: ValidatorIndex(2),
        from: SeqNum(1),
        to_seq: SeqNum(64),
    };
    f.driver
        .carry_out(
            vec![Output::ServeCatchUp {
                to: request.to,
                from: request.from,
                to_seq: request.to_seq,
            }],
            &mut VecDeque::new(),
        )
        .unwrap();
    assert_eq!(f.serve_rx.try_recv().unwrap(), request);
    assert!(f.driver.outbox.is_empty(), "nothing sent from the loop");
}

fn empty_block(seq: u64) -> CommittedBatch {
    let batch = Batch {
        txs: vec![transfer(seq - 1)],
        timestamp_ms: seq,
    };
    CommittedBatch {
        certificate: CommitCertificate {
            view: View(0),
            seq: SeqNum(seq),
            batch_digest: batch.digest(),
            votes: Vec::new(),
        },
        batch,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_cannot_be_read_on_serve_degrades_the_node_and_it_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = RocksStore::open(&path, &Default::default()).unwrap();
        store.init_genesis(&genesis()).unwrap();
        for h in 1..=3 {
            store.apply_committed(CHAIN, &empty_block(h)).unwrap();
        }
        store.flush().unwrap();
    }
    phalanx_storage::tamper_block_for_test(&path, 2).unwrap();
    let store = RocksStore::open(&path, &Default::default()).unwrap();
    let f = Fixture::new(Some(Arc::new(store))).await;
    let api = f.api().await;
    let ask = |from, to| ServeRequest {
        to: ValidatorIndex(1),
        from: SeqNum(from),
        to_seq: SeqNum(to),
    };
    // Block 1 is served, block 2 cannot be read: an error, not a stop.
    let sent = serve::serve_one(&f.shared, ask(1, 3)).await;
    assert!(sent > 0, "the block before the damaged one was served");
    assert_eq!(f.shared.metrics.catch_up_serve_errors.get(), 1);
    assert_eq!(f.shared.metrics.catch_up_blocks_served.get(), 1);
    let degraded = f.shared.status().degraded.expect("degraded");
    assert!(degraded.reason.contains("block 2"), "{}", degraded.reason);
    let (status, health) = get(&api, "/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));
    // The node goes on serving what it can read.
    assert!(serve::serve_one(&f.shared, ask(3, 3)).await > 0);
    assert_eq!(f.shared.metrics.catch_up_blocks_served.get(), 2);
}

fn gossip_item(n: u8, txs: &[Transaction]) -> GossipItem {
    GossipItem {
        id: GossipId::for_test(n),
        bytes: codec::encode(&txs.to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_gossip_carries_a_bad_signature_loses_its_gossip_share() {
    let f = Fixture::new(None).await;
    let (honest, junk) = (ValidatorIndex(1), ValidatorIndex(2));
    let mut forged = transfer(1);
    forged.signature.0[5] ^= 1;
    let mut queue = FairInbound::new(QueueLimits::gossip());
    queue.push(honest, gossip_item(1, &[transfer(0)])).unwrap();
    queue.push(junk, gossip_item(2, &[forged])).unwrap();
    let mut penalties = GossipPenalties::default();
    let now = Instant::now();
    let mut dropped = Vec::new();
    let lot = inbound::take_gossip_lot(&mut queue, &mut penalties, now, |_, v, r| {
        dropped.push((v, r))
    });
    assert_eq!(lot.len(), 2);
    assert!(dropped.is_empty());
    inbound::admit_gossip(&f.shared, lot, &mut penalties).await;
    assert!(penalties.is_penalised(junk, now));
    assert!(!penalties.is_penalised(honest, now));
    assert!(f
        .shared
        .mempool
        .contains(&phalanx_consensus::tx_hash(&transfer(0))));

    // The junk relay's next message is dropped unchecked; the honest one's
    // is taken.
    queue.push(junk, gossip_item(3, &[transfer(2)])).unwrap();
    queue.push(honest, gossip_item(4, &[transfer(3)])).unwrap();
    let lot = inbound::take_gossip_lot(&mut queue, &mut penalties, now, |_, v, r| {
        dropped.push((v, r))
    });
    let relays: Vec<ValidatorIndex> = lot.iter().map(|(from, _, _)| *from).collect();
    assert_eq!(relays, vec![honest]);
    assert_eq!(
        dropped,
        vec![(GossipVerdict::Ignore, "gossip_relay_penalised")]
    );
    // After the penalty, it is heard again.
    queue.push(junk, gossip_item(5, &[transfer(2)])).unwrap();
    let later = now + GOSSIP_PENALTY + Duration::from_secs(1);
    let lot = inbound::take_gossip_lot(&mut queue, &mut penalties, later, |_, _, _| {
        panic!("dropped after the penalty")
    });
    assert_eq!(lot.len(), 1);
}

#[test]
fn a_gossip_message_over_the_transaction_cap_is_rejected_and_its_relay_penalised() {
    let txs: Vec<Transaction> = (0..=GOSSIP_TXS_MAX as u64).map(transfer).collect();
    assert!(inbound::decode_gossip(&codec::encode(&txs[..GOSSIP_TXS_MAX].to_vec())).is_ok());
    let mut queue = FairInbound::new(QueueLimits::gossip());
    let relay = ValidatorIndex(3);
    queue.push(relay, gossip_item(1, &txs)).unwrap();
    let mut penalties = GossipPenalties::default();
    let now = Instant::now();
    let mut verdicts = Vec::new();
    let lot = inbound::take_gossip_lot(&mut queue, &mut penalties, now, |_, v, r| {
        verdicts.push((v, r))
    });
    assert!(lot.is_empty());
    assert_eq!(verdicts, vec![(GossipVerdict::Reject, "malformed_gossip")]);
    assert!(penalties.is_penalised(relay, now));
}

#[test]
fn a_gossip_lot_is_gossips_share_of_the_verifier() {
    // Relays that each queued their share of maximal messages: one lot takes
    // about GOSSIP_ADMIT_TXS_MAX transactions, not everything queued.
    let txs: Vec<Transaction> = (0..GOSSIP_TXS_MAX as u64).map(transfer).collect();
    let mut queue = FairInbound::new(QueueLimits::gossip());
    let mut n = 0u8;
    for relay in 1..=3u16 {
        for _ in 0..3 {
            n += 1;
            queue
                .push(ValidatorIndex(relay), gossip_item(n, &txs))
                .unwrap();
        }
    }
    let mut penalties = GossipPenalties::default();
    let lot = inbound::take_gossip_lot(&mut queue, &mut penalties, Instant::now(), |_, _, _| {});
    let taken: usize = lot.iter().map(|(_, _, t)| t.len()).sum();
    assert_eq!(taken, inbound::GOSSIP_ADMIT_TXS_MAX);
    assert!(!queue.is_empty(), "the rest waits for the next turn");
}
