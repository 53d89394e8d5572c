//! Signature verification (single and batched) and Merkle roots.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phalanx_crypto::{merkle, verify_batch, BatchItem, Digest, HashDomain, Keypair};

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

fn merkle_root(c: &mut Criterion) {
    let leaves: Vec<Digest> = (0..1000u32)
        .map(|i| Digest::of(HashDomain::Transaction, &i.to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("root_1000", |b| b.iter(|| merkle::root(&leaves)));
    g.finish();
}

criterion_group!(benches, signatures, merkle_root);
criterion_main!(benches);
