//! RocksStore against the things a disk and an operating system do: a
//! process killed mid-stream, a second process on the same data directory,
//! flipped bytes in SST files, and a restart.
//!
//! The cross-process tests re-run this test binary as a child with
//! `--exact <child test>` and `PHALANX_STORAGE_CHILD=<dir>`; the child
//! tests do nothing when that variable is unset.

mod common;

use common::*;
use phalanx_consensus::{tx_hash, Phase, SeqNum};
use phalanx_storage::{RocksOptions, RocksStore, StorageError, Store};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PHALANX_STORAGE_CHILD";

/// The data directory when this process runs as a child.
fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_ENV).map(PathBuf::from)
}

fn spawn_child(test_name: &str, dir: &Path) -> Child {
    let exe = std::env::current_exe().expect("path of this test binary");
    Command::new(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process")
}

fn open(dir: &Path) -> Result<RocksStore, StorageError> {
    RocksStore::open_with_genesis(dir, &genesis(), &RocksOptions::default())
}

// ---- durability: acknowledged writes survive SIGKILL ------------------------

/// Child: appends one synced WAL entry per step and applies a block every
/// fourth step, printing `ready wal <i>` / `ready block <h>` only after each
/// write returned. Runs until killed.
#[test]
fn child_writer() {
    let Some(dir) = child_dir() else { return };
    let store = open(&dir).expect("child opens the store");
    let steps = chain(40);
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        store
            .append_wal(&[vote(i, Phase::Prepare)], true)
            .expect("synced wal append");
        writeln!(out, "ready wal {i}").unwrap();
        if i % 4 == 3 {
            if let Some(step) = steps.get((i / 4) as usize) {
                store
                    .apply_block(&step.block, &step.cert, &step.changes)
                    .expect("apply block");
                writeln!(out, "ready block {}", step.block.header.height).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("child_writer", dir.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut wal_acked, mut height_acked) = (None::<u64>, 0u64);
    // The harness prints "test child_writer ... " before the child's first
    // line, so look for "ready" anywhere in a line.
    let mut record = |line: &str| {
        let Some(at) = line.find("ready ") else {
            return;
        };
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        match words.as_slice() {
            ["ready", "wal", i] => wal_acked = Some(i.parse().unwrap()),
            ["ready", "block", h] => height_acked = h.parse().unwrap(),
            _ => {} // the test harness's own lines
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acks = 0;
    while acks < 60 {
        let line = lines.next().expect("child still running").unwrap();
        if line.contains("ready ") {
            acks += 1;
        }
        record(&line);
        assert!(Instant::now() < deadline, "child too slow");
    }
    child.kill().unwrap(); // SIGKILL on unix
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child was killed, not exited"
    );
    // Lines the child wrote before it died were acknowledged too.
    for line in lines {
        record(&line.unwrap());
    }
    let wal_acked = wal_acked.expect("some WAL entry acknowledged");
    assert!(height_acked >= 1, "some block acknowledged");

    eprintln!("killed after acknowledging wal entry {wal_acked} and block {height_acked}");
    let store = open(dir.path()).expect("reopen after SIGKILL");
    let wal = store.load_wal().unwrap();
    assert!(
        wal.len() as u64 > wal_acked,
        "{} entries, acked up to {wal_acked}",
        wal.len()
    );
    for (i, entry) in wal.iter().enumerate() {
        assert_eq!(
            *entry,
            vote(i as u64, Phase::Prepare),
            "entry {i} in append order"
        );
    }
    let height = store.height().unwrap();
    assert!(
        height.0 >= height_acked,
        "height {height}, acked {height_acked}"
    );
    let steps = chain(height.0);
    for step in &steps {
        let h = step.block.header.height;
        assert_eq!(store.block(h).unwrap().as_ref(), Some(&step.block));
        assert_eq!(store.certificate(h).unwrap().as_ref(), Some(&step.cert));
    }
    assert_eq!(
        store.last_hash().unwrap(),
        steps.last().unwrap().block.hash()
    );
    store.verify_range(SeqNum(1), height).unwrap();
}

// ---- a second process on the same directory ---------------------------------

/// Child: tries to open the store and reports the outcome on one line.
#[test]
fn child_open_reports() {
    let Some(dir) = child_dir() else { return };
    match RocksStore::open(&dir, &RocksOptions::default()) {
        Ok(_) => println!("outcome opened"),
        Err(e @ StorageError::Locked { .. }) => println!("outcome locked {e}"),
        Err(e) => println!("outcome error {e:?}"),
    }
}

fn child_outcome(dir: &Path) -> String {
    let mut child = spawn_child("child_open_reports", dir);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    out.lines()
        .find_map(|l| l.split_once("outcome ").map(|(_, outcome)| outcome))
        .unwrap_or_else(|| panic!("no outcome in child output:\n{out}"))
        .to_string()
}

#[test]
fn second_process_gets_locked_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let outcome = child_outcome(dir.path());
    let expected = format!(
        "locked database at {} is locked by another process \
         (is another phalanx node running with this home?)",
        dir.path().display()
    );
    assert_eq!(outcome, expected);

    // In-process, too.
    assert_eq!(
        RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err(),
        StorageError::Locked {
            path: dir.path().to_path_buf()
        }
    );

    // The lock goes with the store.
    drop(store);
    assert_eq!(child_outcome(dir.path()), "opened");
}

// ---- flipped bytes in SST files ---------------------------------------------

/// Whether `read` is the right answer or a corruption error; counts the
/// latter. Any other error, or a wrong answer, fails the test.
fn right_or_corrupt<T: PartialEq + std::fmt::Debug>(
    what: &str,
    read: Result<T, StorageError>,
    want: &T,
    corruptions: &mut usize,
) {
    match read {
        Ok(got) => assert_eq!(&got, want, "{what}: wrong data returned"),
        Err(StorageError::Corruption { .. }) => *corruptions += 1,
        Err(other) => panic!("{what}: expected data or Corruption, got {other:?}"),
    }
}

fn sst_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    files.sort();
    files
}

/// Inverts 16 bytes at each of `fractions` of the file's length.
fn flip_bytes(path: &Path, fractions: &[f64]) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    for fraction in fractions {
        let at = ((len as f64 * fraction) as u64).min(len.saturating_sub(16));
        let mut bytes = [0u8; 16];
        file.seek(SeekFrom::Start(at)).unwrap();
        let n = file.read(&mut bytes).unwrap();
        for b in &mut bytes[..n] {
            *b ^= 0xff;
        }
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&bytes[..n]).unwrap();
    }
    file.sync_all().unwrap();
}

/// What the corruption tests write, to compare every read against.
struct Written {
    steps: Vec<Step>,
    wal: Vec<phalanx_consensus::WalEntry>,
    evidence: Vec<phalanx_consensus::Evidence>,
    checkpoint: phalanx_consensus::CheckpointCertificate,
}

/// Writes 30 large blocks, WAL entries, evidence and a checkpoint, then
/// flushes and compacts so that everything is in SST files.
fn write_to_sst_files(dir: &Path) -> Written {
    let steps = big_chain(30, 40);
    let written = Written {
        wal: (0..200).map(|i| vote(i, Phase::Commit)).collect(),
        evidence: (0..20)
            .map(|i| equivocation(i % 4, i as u64, 10 + i as u64))
            .collect(),
        checkpoint: checkpoint_certificate(&steps[9]),
        steps,
    };
    let store = open(dir).unwrap();
    for step in &written.steps {
        store
            .apply_block(&step.block, &step.cert, &step.changes)
            .unwrap();
    }
    store.append_wal(&written.wal, true).unwrap();
    for e in &written.evidence {
        store.put_evidence(e).unwrap();
    }
    store.put_checkpoint(&written.checkpoint).unwrap();
    store.flush().unwrap();
    store.compact().unwrap();
    written
}

/// Reads back everything `written` holds; returns how many reads reported
/// corruption. Any wrong answer or other error fails the test.
fn read_everything(store: &RocksStore, written: &Written) -> usize {
    let mut corruptions = 0;
    let steps = &written.steps;
    for step in steps {
        let h = step.block.header.height;
        let block = Some(step.block.clone());
        right_or_corrupt("block", store.block(h), &block, &mut corruptions);
        let by_hash = store.block_by_hash(&step.block.hash());
        right_or_corrupt("block by hash", by_hash, &block, &mut corruptions);
        let cert = Some(step.cert.clone());
        right_or_corrupt("certificate", store.certificate(h), &cert, &mut corruptions);
        for (position, tx) in step.block.txs.iter().enumerate() {
            let location = store
                .tx_location(&tx_hash(tx))
                .map(|l| l.map(|l| (l.height, l.position)));
            let want = Some((h, position as u32));
            right_or_corrupt("tx index", location, &want, &mut corruptions);
        }
        for address in step.changes.keys() {
            let latest = steps
                .iter()
                .rev()
                .find_map(|s| s.changes.get(address))
                .unwrap();
            right_or_corrupt("account", store.account(address), latest, &mut corruptions);
        }
    }
    right_or_corrupt("wal", store.load_wal(), &written.wal, &mut corruptions);
    let evidence = evidence_sorted(&written.evidence);
    right_or_corrupt("evidence", store.evidence(), &evidence, &mut corruptions);
    let checkpoint = Some(written.checkpoint.clone());
    let latest = store.latest_checkpoint();
    right_or_corrupt("checkpoint", latest, &checkpoint, &mut corruptions);
    corruptions
}

#[test]
fn flipped_bytes_in_every_sst_file_are_refused_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_to_sst_files(dir.path());
    let files = sst_files(dir.path());
    assert!(files.len() >= 5, "data is in SST files: {files:?}");
    for file in &files {
        flip_bytes(file, &[0.5]);
    }
    let store = match open(dir.path()) {
        // RocksDB reads some metadata blocks of every table at open.
        Err(e @ StorageError::Corruption { .. }) => {
            eprintln!("open refused the corrupted store: {e}");
            return;
        }
        Err(other) => panic!("open of a corrupted store: {other:?}"),
        Ok(store) => store,
    };
    let corruptions = read_everything(&store, &written);
    assert!(
        corruptions > 0,
        "flipped bytes in every SST file went unnoticed"
    );
}

#[test]
fn a_flipped_data_block_fails_its_reads_and_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_to_sst_files(dir.path());
    // The largest table is the blocks column family; its middle is block
    // data, which RocksDB only reads (and checks) when asked for it.
    let largest = sst_files(dir.path())
        .into_iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().len())
        .unwrap();
    flip_bytes(&largest, &[0.5]);

    let store = open(dir.path()).expect("a damaged data block does not stop open");
    let corruptions = read_everything(&store, &written);
    assert!(
        corruptions > 0,
        "flipped bytes in a data block went unnoticed"
    );
    let broken = (1..=30)
        .map(SeqNum)
        .find(|h| store.block(*h).is_err())
        .expect("some block unreadable");
    match store.verify_range(SeqNum(1), SeqNum(30)) {
        Err(StorageError::BrokenChain { height, reason }) => {
            assert_eq!(height, broken);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("verify_range over a damaged block: {other:?}"),
    }
    eprintln!("{corruptions} reads reported corruption, every other read was right");
}

fn evidence_sorted(evidence: &[phalanx_consensus::Evidence]) -> Vec<phalanx_consensus::Evidence> {
    let mut sorted = evidence.to_vec();
    sorted.sort_by_key(|e| (e.validator, e.view, e.phase));
    sorted
}

// ---- restart ----------------------------------------------------------------

#[test]
fn reopen_keeps_everything_and_refuses_another_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let steps = chain(5);
    {
        let store = open(dir.path()).unwrap();
        for step in &steps {
            store
                .apply_block(&step.block, &step.cert, &step.changes)
                .unwrap();
        }
        store.append_wal(&[view_record(3)], true).unwrap();
    }
    let store = open(dir.path()).unwrap();
    assert_eq!(store.height().unwrap(), SeqNum(5));
    assert_eq!(store.load_wal().unwrap(), vec![view_record(3)]);
    store.verify_range(SeqNum(1), SeqNum(5)).unwrap();
    drop(store);

    let other = genesis_for("another-chain");
    assert!(matches!(
        RocksStore::open_with_genesis(dir.path(), &other, &RocksOptions::default()),
        Err(StorageError::GenesisMismatch { .. })
    ));
}
