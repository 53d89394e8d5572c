//! Block encoding and the consensus core alone: four replicas driven
//! in-process with no network, to show the cost of the protocol logic; and
//! what a backup pays to decode and verify a full pre-prepare.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::*;
use phalanx_crypto::{codec, Address, Digest, HashDomain, Keypair, Signed};
use std::collections::VecDeque;

const CHAIN: &str = "bench";

fn genesis(keys: &[Keypair], client: &Keypair) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        test_network: true,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
            })
            .collect(),
        consensus: ConsensusParams::default(),
        accounts: vec![GenesisAccount {
            address: client.address(),
            balance: u64::MAX / 2,
        }],
    }
}

fn transfers(client: &Keypair, from_nonce: u64, n: usize) -> Vec<Transaction> {
    (0..n as u64)
        .map(|i| {
            Signed::sign(
                Transfer {
                    chain_id: CHAIN.into(),
                    to: Address([1; 20]),
                    amount: 1,
                    nonce: from_nonce + i,
                },
                client,
                CHAIN,
            )
        })
        .collect()
}

fn block_codec(c: &mut Criterion) {
    let client = Keypair::insecure_from_label("client");
    let keys: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("v{i}")))
        .collect();
    let g = genesis(&keys, &client);
    let mut ledger = MemoryLedger::from_genesis(&g);
    let batch = Batch {
        txs: transfers(&client, 0, 1000),
        timestamp_ms: 1,
    };
    let cert = CommitCertificate {
        view: View(0),
        seq: SeqNum(1),
        batch_digest: batch.digest(),
        votes: vec![],
    };
    let block = ledger.apply(
        CHAIN,
        &CommittedBatch {
            batch,
            certificate: cert,
        },
    );
    let bytes = codec::encode(&block);
    let mut grp = c.benchmark_group("block_1000_txs");
    grp.throughput(Throughput::Bytes(bytes.len() as u64));
    grp.bench_function("encode", |b| b.iter(|| codec::encode(&block)));
    grp.bench_function("decode", |b| {
        b.iter(|| codec::decode::<Block>(&bytes, 64 << 20).unwrap())
    });
    grp.finish();
}

/// Four replicas, messages delivered in FIFO order without encoding or
/// signature verification of peers' messages (the core alone).
fn core_only(c: &mut Criterion) {
    let client = Keypair::insecure_from_label("client");
    let keys: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("v{i}")))
        .collect();
    let g = genesis(&keys, &client);
    let cfg = g.consensus_config();
    let ctx_validators = cfg.validators.clone();
    let mut grp = c.benchmark_group("replica_core_n4");
    let blocks = 50u64;
    grp.throughput(Throughput::Elements(blocks));
    grp.sample_size(10);
    grp.bench_function("blocks_of_10_txs", |b| {
        b.iter(|| {
            let mut replicas: Vec<Replica> = keys
                .iter()
                .map(|k| Replica::new(cfg.clone(), k.clone()).unwrap())
                .collect();
            let mut ledgers: Vec<MemoryLedger> =
                (0..4).map(|_| MemoryLedger::from_genesis(&g)).collect();
            let mut queue: VecDeque<(u16, u16, Message)> = VecDeque::new();
            let mut messages = 0u64;
            let ctx = VerifyContext {
                chain_id: CHAIN,
                validators: &ctx_validators,
                window: cfg.window,
                horizon: None,
                known_good_txs: Some(&|_| true),
            };
            for round in 0..blocks {
                let txs = transfers(&client, round * 10, 10);
                for i in 0..4 {
                    let out = replicas[i].handle(round, Input::Transactions(txs.clone()));
                    route(i, out, &mut queue, &mut ledgers, &mut replicas);
                }
                let out = replicas[0].handle(round, Input::Timer(Timer::Batch));
                route(0, out, &mut queue, &mut ledgers, &mut replicas);
                while let Some((from, to, m)) = queue.pop_front() {
                    messages += 1;
                    let v = verify_message(ValidatorIndex(from), m, &ctx).unwrap();
                    let out = replicas[to as usize].handle(round, Input::Message(v));
                    route(to as usize, out, &mut queue, &mut ledgers, &mut replicas);
                }
            }
            assert_eq!(ledgers[3].height, blocks);
            messages
        })
    });
    grp.finish();
}

/// Full batches: the transactions of this many blocks.
const FULL_BLOCKS: u64 = 48;
/// Transactions per full batch (the default `batch_txs_max`).
const FULL_BATCH_TXS: usize = 1024;
/// The mempool hands transactions to the replica in chunks of this many.
const ARRIVAL_CHUNK_TXS: usize = 4096;

/// Four replicas fed `txs` in mempool-sized chunks, every chunk up front
/// (an overloaded primary: tens of thousands pending), then driven until
/// everything committed. Execution is a stand-in (a hash of the batch
/// digest), so only the consensus core is measured; peers' messages go
/// through `verify_message` with their transactions known good, as in the
/// node. Returns the messages delivered.
fn run_full_batches(keys: &[Keypair], cfg: &Config, txs: &[Transaction]) -> u64 {
    let mut replicas: Vec<Replica> = keys
        .iter()
        .map(|k| Replica::new(cfg.clone(), k.clone()).unwrap())
        .collect();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &cfg.validators,
        window: cfg.window,
        horizon: None,
        known_good_txs: Some(&|_| true),
    };
    let mut queue: VecDeque<(u16, u16, Message)> = VecDeque::new();
    let mut messages = 0u64;
    let mut now = 0;
    for chunk in txs.chunks(ARRIVAL_CHUNK_TXS) {
        for i in 0..4 {
            let out = replicas[i].handle(now, Input::Transactions(chunk.to_vec()));
            route_executing(i, out, &mut queue, &mut replicas);
        }
    }
    let blocks = txs.len().div_ceil(FULL_BATCH_TXS) as u64;
    while replicas.iter().any(|r| r.committed().0 < blocks) {
        now += 1;
        let out = replicas[0].handle(now, Input::Timer(Timer::Batch));
        route_executing(0, out, &mut queue, &mut replicas);
        while let Some((from, to, m)) = queue.pop_front() {
            messages += 1;
            let v = verify_message(ValidatorIndex(from), m, &ctx).unwrap();
            let out = replicas[to as usize].handle(now, Input::Message(v));
            route_executing(to as usize, out, &mut queue, &mut replicas);
        }
        assert!(now < 10 * blocks, "no progress");
    }
    messages
}

/// Like [`route`], with execution replaced by a hash of the batch digest.
fn route_executing(
    i: usize,
    outputs: Vec<Output>,
    queue: &mut VecDeque<(u16, u16, Message)>,
    replicas: &mut [Replica],
) {
    for o in outputs {
        match o {
            Output::Broadcast(m) => {
                for j in 0..4u16 {
                    if j as usize != i {
                        queue.push_back((i as u16, j, m.clone()));
                    }
                }
            }
            Output::Send { to, message } => queue.push_back((i as u16, to.0, message)),
            Output::Commit(cb) => {
                let seq = cb.certificate.seq;
                let d = cb.certificate.batch_digest;
                let block_hash =
                    Digest::of_parts(HashDomain::BlockHeader, &[&seq.0.to_le_bytes(), &d.0]);
                let out = replicas[i].handle(
                    0,
                    Input::Executed {
                        seq,
                        block_hash,
                        state_root: d,
                    },
                );
                route_executing(i, out, queue, replicas);
            }
            _ => {}
        }
    }
}

/// Blocks/s and messages/s of four replicas committing full batches of
/// signed transfers.
fn core_full_batches(c: &mut Criterion) {
    let client = Keypair::insecure_from_label("client");
    let keys: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("v{i}")))
        .collect();
    let cfg = genesis(&keys, &client).consensus_config();
    assert_eq!(cfg.batch_txs_max, FULL_BATCH_TXS);
    let txs = transfers(&client, 0, FULL_BLOCKS as usize * FULL_BATCH_TXS);
    let messages = run_full_batches(&keys, &cfg, &txs);
    for (unit, elements) in [("blocks", FULL_BLOCKS), ("messages", messages)] {
        let mut grp = c.benchmark_group(format!("replica_core_n4_{unit}"));
        grp.throughput(Throughput::Elements(elements));
        grp.sample_size(10);
        grp.bench_function("full_batches_of_1024_txs", |b| {
            b.iter(|| run_full_batches(&keys, &cfg, &txs))
        });
        grp.finish();
    }
}

/// What a backup pays for a full pre-prepare from the wire: decode, then
/// verify with the transactions known (from its mempool) or not.
fn pre_prepare_decode_verify(c: &mut Criterion) {
    let client = Keypair::insecure_from_label("client");
    let keys: Vec<Keypair> = (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("v{i}")))
        .collect();
    let cfg = genesis(&keys, &client).consensus_config();
    let batch = Batch {
        txs: transfers(&client, 0, FULL_BATCH_TXS),
        timestamp_ms: 1,
    };
    let pp = PrePrepare {
        view: View(0),
        seq: SeqNum(1),
        digest: batch.digest(),
    };
    let message = Message::PrePrepare {
        pre_prepare: Signed::sign(pp, &keys[0], CHAIN),
        batch,
    };
    let bytes = message.encode();
    let known = |_: &Digest| true;
    let contexts = [
        (
            "decode_verify_known_txs",
            Some(&known as &dyn Fn(&Digest) -> bool),
        ),
        ("decode_verify_all_sigs", None),
    ];
    let mut grp = c.benchmark_group("pre_prepare_1024_txs");
    grp.throughput(Throughput::Elements(FULL_BATCH_TXS as u64));
    grp.bench_function("decode", |b| b.iter(|| Message::decode(&bytes).unwrap()));
    grp.bench_function("verify_known_txs", |b| {
        let ctx = VerifyContext {
            chain_id: CHAIN,
            validators: &cfg.validators,
            window: cfg.window,
            horizon: None,
            known_good_txs: Some(&known),
        };
        b.iter_batched(
            || message.clone(),
            |m| verify_message(ValidatorIndex(0), m, &ctx).unwrap(),
            BatchSize::LargeInput,
        )
    });
    for (name, known_good_txs) in contexts {
        let ctx = VerifyContext {
            chain_id: CHAIN,
            validators: &cfg.validators,
            window: cfg.window,
            horizon: None,
            known_good_txs,
        };
        grp.bench_function(name, |b| {
            b.iter(|| {
                let m = Message::decode(&bytes).unwrap();
                verify_message(ValidatorIndex(0), m, &ctx).unwrap()
            })
        });
    }
    grp.finish();
}

fn route(
    i: usize,
    outputs: Vec<Output>,
    queue: &mut VecDeque<(u16, u16, Message)>,
    ledgers: &mut [MemoryLedger],
    replicas: &mut [Replica],
) {
    for o in outputs {
        match o {
            Output::Broadcast(m) => {
                for j in 0..4u16 {
                    if j as usize != i {
                        queue.push_back((i as u16, j, m.clone()));
                    }
                }
            }
            Output::Send { to, message } => queue.push_back((i as u16, to.0, message)),
            Output::Commit(cb) => {
                let block = ledgers[i].apply(CHAIN, &cb);
                let out = replicas[i].handle(
                    0,
                    Input::Executed {
                        seq: block.header.height,
                        block_hash: block.hash(),
                        state_root: block.header.state_root,
                    },
                );
                route(i, out, queue, ledgers, replicas);
            }
            _ => {}
        }
    }
}

criterion_group!(
    benches,
    block_codec,
    core_only,
    core_full_batches,
    pre_prepare_decode_verify
);
criterion_main!(benches);
