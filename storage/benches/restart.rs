//! Restart time against the chain's age (issue 15, item 7).
//!
//! For each count of checkpoints, runs a real four-validator cluster until
//! that many checkpoints are stable (validator 0 on RocksDB, the others in
//! memory; default consensus parameters, a view change every 100
//! checkpoints and one at the end), closes validator 0's store, and times
//! what `phalanx run` does before it serves: open the store, check the
//! genesis, load the WAL, restore the replica. The first open after the
//! run also replays RocksDB's own log (the memtables the run left
//! unflushed); later opens do not, so both are printed.
//!
//!     cargo bench -p phalanx-storage --bench restart [-- 10 1000]

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use cluster::Cluster;
use phalanx_consensus::{ConsensusParams, Replica, WalEntry};
use phalanx_crypto::codec;
use phalanx_storage::{MemStore, RocksOptions, RocksStore, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REOPENS: usize = 9;

/// Runs until every live replica has executed `height`.
fn run_to_height(c: &mut Cluster, height: u64) {
    for _ in 0..1_000_000 {
        if (0..c.n()).all(|i| c.replicas[i].is_none() || c.height(i).0 >= height) {
            return;
        }
        c.round(8, 20);
    }
    panic!("no progress to height {height}");
}

/// Crashes the primary, waits for the others to enter a later view, and
/// brings it back from its store.
fn change_view(c: &mut Cluster) {
    let primary = c.common_primary();
    let other = (primary + 1) % c.n();
    let before = c.replica(other).view();
    c.crash(primary);
    for _ in 0..100_000 {
        let moved = (0..c.n())
            .filter(|i| *i != primary)
            .all(|i| c.replica(i).view() > before && !c.replica(i).is_view_changing());
        if moved {
            break;
        }
        c.round(8, 100);
    }
    c.restart(primary);
}

/// Builds validator 0's store at `dir` with `checkpoints` behind it.
fn build(dir: &Path, checkpoints: u64) -> (u64, usize) {
    let params = ConsensusParams::default();
    let interval = params.checkpoint_interval;
    let rocks = RocksStore::open(
        dir,
        &RocksOptions {
            sync_blocks: false,
            ..RocksOptions::default()
        },
    )
    .expect("open");
    let mut stores: Vec<Arc<dyn Store>> = vec![Arc::new(rocks)];
    for _ in 1..4 {
        stores.push(Arc::new(MemStore::new()));
    }
    let mut c = Cluster::new(params, stores);
    let mut done = 0;
    while done < checkpoints {
        let step = (checkpoints - done).min(100);
        done += step;
        run_to_height(&mut c, done * interval);
        change_view(&mut c);
    }
    run_to_height(&mut c, checkpoints * interval);
    let height = c.height(0).0;
    let views = c.replica(0).view().0 as usize;
    (height, views)
}

/// One restart: what `phalanx run` does before it serves.
fn restart(dir: &Path) -> (Duration, Vec<WalEntry>, u64) {
    let genesis = cluster::genesis(4, ConsensusParams::default());
    let key = cluster::keys(4).remove(0);
    let start = Instant::now();
    let store = RocksStore::open(
        dir,
        &RocksOptions {
            sync_blocks: false,
            ..RocksOptions::default()
        },
    )
    .expect("open");
    store.init_genesis(&genesis).expect("genesis");
    let wal = store.load_wal().expect("load wal");
    let height = store.height().expect("height");
    let replica =
        Replica::restore(genesis.consensus_config(), key, wal.clone(), height).expect("restore");
    let elapsed = start.elapsed();
    assert!(replica.low_watermark().0 > 0 || height.0 == 0);
    (elapsed, wal, replica.low_watermark().0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if counts.is_empty() {
        counts = vec![10, 1000];
    }
    println!(
        "checkpoints  blocks  views  wal_records  wal_stable  wal_view  wal_bytes  first_open_ms  restart_ms_median  restart_ms_min  restart_ms_max"
    );
    for checkpoints in counts {
        let dir = tempfile::tempdir().expect("tempdir");
        let (blocks, views) = build(dir.path(), checkpoints);
        let (first, wal, _) = restart(dir.path());
        let mut times: Vec<Duration> = (0..REOPENS).map(|_| restart(dir.path()).0).collect();
        times.sort();
        let stable = wal
            .iter()
            .filter(|e| matches!(e, WalEntry::Stable(_)))
            .count();
        let view = wal
            .iter()
            .filter(|e| matches!(e, WalEntry::View { .. }))
            .count();
        let bytes: usize = wal.iter().map(|e| codec::encode(e).len()).sum();
        println!(
            "{checkpoints:>11}  {blocks:>6}  {views:>5}  {:>11}  {stable:>10}  {view:>8}  {bytes:>9}  {:>13.1}  {:>17.1}  {:>14.1}  {:>14.1}",
            wal.len(),
            ms(first),
            ms(times[REOPENS / 2]),
            ms(times[0]),
            ms(times[REOPENS - 1]),
        );
    }
}
