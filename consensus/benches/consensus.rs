//! Block encoding and the consensus core alone: four replicas driven
//! in-process with no network, to show the cost of the protocol logic.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::*;
use phalanx_crypto::{codec, Address, Keypair, Signed};
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

criterion_group!(benches, block_codec, core_only);
criterion_main!(benches);
