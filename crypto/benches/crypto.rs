//! Signature verification (single, batched, and `verify_all` on
//! transfer-like payloads), wire decoding, and Merkle roots.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use phalanx_crypto::{
    codec, merkle, verify_batch, Address, AnyKey, BatchItem, Digest, HashDomain, Keypair, Signed,
    SignedPayload,
};
use serde::{Deserialize, Serialize};

/// Shaped like `phalanx_consensus::Transfer` (this crate cannot depend on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Transfer {
    chain_id: String,
    to: Address,
    amount: u64,
    nonce: u64,
}

impl SignedPayload for Transfer {
    const DOMAIN: &'static str = "phalanx/transfer/v1";
}

const CHAIN_ID: &str = "bench-chain";

/// `count` transfers signed round-robin by `signers` distinct keys.
fn transfers(count: usize, signers: usize) -> Vec<Signed<Transfer>> {
    let keys: Vec<Keypair> = (0..signers)
        .map(|i| Keypair::insecure_from_label(&format!("sender{i}")))
        .collect();
    (0..count)
        .map(|i| {
            let transfer = Transfer {
                chain_id: CHAIN_ID.to_string(),
                to: Keypair::insecure_from_label(&format!("to{}", i % 97)).address(),
                amount: 1 + i as u64,
                nonce: (i / signers) as u64,
            };
            Signed::sign(transfer, &keys[i % signers], CHAIN_ID)
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let keys: Vec<Keypair> = (0..64)
        .map(|i| Keypair::insecure_from_label(&format!("k{i}")))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| format!("transfer {i}").into_bytes())
        .collect();
    let sigs: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 64].sign_raw(m))
        .collect();
    let pks: Vec<_> = (0..1024).map(|i| keys[i % 64].public()).collect();
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_strict", |b| {
        b.iter(|| pks[0].verify_strict(&msgs[0], &sigs[0]).unwrap())
    });
    // What `Signed::verify` runs: the batch verifier on one item, its key
    // from the cache of decompressed keys.
    let single = [BatchItem {
        message: &msgs[0],
        key: &pks[0],
        signature: &sigs[0],
    }];
    g.bench_function("verify_single", |b| {
        b.iter(|| assert!(verify_batch(&single)[0]))
    });
    for n in [64usize, 256, 1024] {
        let items: Vec<BatchItem<'_>> = (0..n)
            .map(|i| BatchItem {
                message: &msgs[i],
                key: &pks[i],
                signature: &sigs[i],
            })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("verify_batch", n), &items, |b, items| {
            b.iter(|| assert!(verify_batch(items).iter().all(|ok| *ok)))
        });
    }
    g.finish();
}

/// What a validator does with a 1024-transaction pre-prepare: check every
/// client signature (throughput is per signature).
fn verify_all_transfers(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_all_1024");
    g.throughput(Throughput::Elements(1024));
    for signers in [50usize, 1024] {
        let txs = transfers(1024, signers);
        g.bench_with_input(BenchmarkId::new("signers", signers), &txs, |b, txs| {
            b.iter_batched(
                || txs.clone(),
                |txs| {
                    let verdicts = Signed::verify_all(txs, CHAIN_ID, &AnyKey);
                    assert!(verdicts.iter().all(|v| v.is_ok()));
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Distinct signers never seen recently: more keys than the process-wide
    // key cache holds, cycled, so every key is decompressed afresh.
    let sets: Vec<Vec<Signed<Transfer>>> = (0..12)
        .map(|set| {
            let keys: Vec<Keypair> = (0..1024)
                .map(|i| Keypair::insecure_from_label(&format!("cold{set}-{i}")))
                .collect();
            transfers(1024, 1)
                .into_iter()
                .zip(&keys)
                .map(|(tx, key)| Signed::sign(tx.payload, key, CHAIN_ID))
                .collect()
        })
        .collect();
    let mut next = 0;
    g.bench_function("signers/1024-uncached", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % sets.len();
                sets[next].clone()
            },
            |txs| {
                let verdicts = Signed::verify_all(txs, CHAIN_ID, &AnyKey);
                assert!(verdicts.iter().all(|v| v.is_ok()));
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Decoding 1024 signed transfers: dominated by the fixed-size byte arrays
/// (key, signature, address).
fn decode_transfers(c: &mut Criterion) {
    let txs = transfers(1024, 50);
    let bytes = codec::encode(&txs);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("decode_1024_signed_transfers", |b| {
        b.iter(|| codec::decode::<Vec<Signed<Transfer>>>(&bytes, 1 << 24).unwrap())
    });
    g.bench_function("encode_1024_signed_transfers", |b| {
        b.iter(|| codec::encode(&txs))
    });
    g.finish();
}

fn merkle_root(c: &mut Criterion) {
    let leaves: Vec<Digest> = (0..1000u32)
        .map(|i| Digest::of(HashDomain::Transaction, &i.to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("root_1000", |b| b.iter(|| merkle::root(&leaves)));
    g.finish();
}

criterion_group!(
    benches,
    signatures,
    verify_all_transfers,
    decode_transfers,
    merkle_root
);
criterion_main!(benches);
