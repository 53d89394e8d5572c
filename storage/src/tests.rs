//! Tests that reach below the `Store` API: records damaged behind the
//! store's back, a write batch that fails halfway through staging, and a
//! schema version from another build, and the migration of the one older
//! version.

#[path = "../tests/common/mod.rs"]
mod common;

use crate::kv::{Kv, WriteSet};
use crate::schema::{self, meta_key, Cf};
use crate::{MemStore, RocksOptions, RocksStore, StorageError, Store};
use common::*;
use phalanx_consensus::{tx_hash, Phase, SeqNum, View, WalEntry};
use phalanx_crypto::codec;

fn put_raw<K: Kv>(kv: &K, cf: Cf, key: &[u8], value: Vec<u8>) {
    let mut writes = WriteSet::default();
    writes.put(cf, key, value);
    kv.write(writes, false).unwrap();
}

fn is_corruption<T: std::fmt::Debug>(read: Result<T, StorageError>) -> bool {
    matches!(read, Err(StorageError::Corruption { .. }))
}

fn with_chain(count: u64) -> (MemStore, Vec<Step>) {
    let store = MemStore::from_genesis(&genesis());
    let steps = chain(count);
    for step in &steps {
        store
            .apply_block(&step.block, &step.cert, &step.changes)
            .unwrap();
    }
    (store, steps)
}

#[test]
fn a_block_stored_under_another_height_is_corruption() {
    let (store, steps) = with_chain(5);
    let kv = store.records.kv();
    put_raw(
        kv,
        Cf::Blocks,
        &schema::height_key(SeqNum(3)),
        codec::encode(&steps[3].block),
    );
    assert!(is_corruption(store.block(SeqNum(3))));
    let err = store.verify_range(SeqNum(1), SeqNum(5)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::BrokenChain {
                height: SeqNum(3),
                ..
            }
        ),
        "{err:?}"
    );
    // Blocks below the damage still verify.
    store.verify_range(SeqNum(1), SeqNum(2)).unwrap();
}

#[test]
fn a_block_whose_hash_is_not_indexed_is_corruption() {
    let (store, steps) = with_chain(5);
    let mut altered = steps[2].block.clone();
    altered.header.timestamp_ms += 1; // changes the hash, keeps the height
    let kv = store.records.kv();
    put_raw(
        kv,
        Cf::Blocks,
        &schema::height_key(SeqNum(3)),
        codec::encode(&altered),
    );
    assert!(is_corruption(store.block(SeqNum(3))));
    assert!(is_corruption(store.block_by_hash(&steps[2].block.hash())));
    assert!(matches!(
        store.verify_range(SeqNum(1), SeqNum(5)),
        Err(StorageError::BrokenChain {
            height: SeqNum(3),
            ..
        })
    ));
}

#[test]
fn a_hash_index_pointing_elsewhere_is_corruption() {
    let (store, steps) = with_chain(3);
    let kv = store.records.kv();
    put_raw(
        kv,
        Cf::BlockHashIndex,
        &schema::hash_key(&steps[0].block.hash()),
        codec::encode(&SeqNum(2)),
    );
    assert!(is_corruption(store.block(SeqNum(1))));
    assert!(is_corruption(store.block_by_hash(&steps[0].block.hash())));
}

#[test]
fn unlinked_and_uncertified_blocks_break_the_chain() {
    let (store, steps) = with_chain(5);
    let kv = store.records.kv();
    // Block 4 re-linked to another parent and re-indexed consistently: its
    // own records agree, but the chain does not link.
    let mut relinked = steps[3].block.clone();
    relinked.header.prev_hash = steps[0].block.hash();
    put_raw(
        kv,
        Cf::Blocks,
        &schema::height_key(SeqNum(4)),
        codec::encode(&relinked),
    );
    put_raw(
        kv,
        Cf::BlockHashIndex,
        &schema::hash_key(&relinked.hash()),
        codec::encode(&SeqNum(4)),
    );
    let err = store.verify_range(SeqNum(1), SeqNum(5)).unwrap_err();
    match err {
        StorageError::BrokenChain { height, reason } => {
            assert_eq!(height, SeqNum(4));
            assert!(reason.contains("prev_hash"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    let (store, steps) = with_chain(5);
    let kv = store.records.kv();
    // Block 2's certificate replaced by block 3's, under height 2's key.
    let mut cert = steps[2].cert.clone();
    cert.seq = SeqNum(2);
    put_raw(
        kv,
        Cf::Certificates,
        &schema::height_key(SeqNum(2)),
        codec::encode(&cert),
    );
    match store.verify_range(SeqNum(1), SeqNum(5)).unwrap_err() {
        StorageError::BrokenChain { height, reason } => {
            assert_eq!(height, SeqNum(2));
            assert!(reason.contains("certificate"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A certificate under the wrong seq is caught on read, too.
    put_raw(
        kv,
        Cf::Certificates,
        &schema::height_key(SeqNum(5)),
        codec::encode(&steps[0].cert),
    );
    assert!(is_corruption(store.certificate(SeqNum(5))));
}

#[test]
fn undecodable_bytes_are_corruption_in_every_family() {
    let (store, steps) = with_chain(2);
    store.append_wal(&[vote(1, Phase::Prepare)], true).unwrap();
    store
        .put_checkpoint(&checkpoint_certificate(&steps[1]))
        .unwrap();
    store.put_evidence(&equivocation(0, 0, 1)).unwrap();
    let kv = store.records.kv();
    let garbage = || vec![0xff; 7];
    let tx = tx_hash(&steps[0].block.txs[0]);
    let alice = user("alice").address();
    put_raw(kv, Cf::Blocks, &schema::height_key(SeqNum(1)), garbage());
    put_raw(
        kv,
        Cf::Certificates,
        &schema::height_key(SeqNum(2)),
        garbage(),
    );
    put_raw(kv, Cf::TxIndex, &schema::hash_key(&tx), garbage());
    put_raw(kv, Cf::Accounts, &schema::address_key(&alice), garbage());
    put_raw(
        kv,
        Cf::Checkpoints,
        &schema::height_key(SeqNum(2)),
        garbage(),
    );
    put_raw(kv, Cf::Wal, &schema::wal_key(Some(SeqNum(1)), 0), garbage());
    put_raw(
        kv,
        Cf::Evidence,
        &[0u8; schema::EVIDENCE_KEY_LEN],
        garbage(),
    );
    assert!(is_corruption(store.block(SeqNum(1))));
    assert!(is_corruption(store.certificate(SeqNum(2))));
    assert!(is_corruption(store.tx_location(&tx)));
    assert!(is_corruption(store.account(&alice)));
    assert!(is_corruption(store.checkpoint(SeqNum(2))));
    assert!(is_corruption(store.latest_checkpoint()));
    assert!(is_corruption(store.load_wal()));
    assert!(is_corruption(store.evidence()));
    assert!(is_corruption(store.blocks_range(SeqNum(1), SeqNum(2))));
    assert!(matches!(
        store.verify_range(SeqNum(1), SeqNum(2)),
        Err(StorageError::BrokenChain {
            height: SeqNum(1),
            ..
        })
    ));
    // A damaged account must not be executed on.
    let next = chain(3).pop().unwrap();
    assert!(is_corruption(
        store.apply_committed(CHAIN_ID, &next.committed)
    ));
    assert_eq!(store.height().unwrap(), SeqNum(2));
    // And a damaged tip is corruption, not a guess.
    put_raw(kv, Cf::Meta, meta_key::TIP, garbage());
    assert!(is_corruption(store.tip()));
    assert!(is_corruption(store.apply_block(
        &next.block,
        &next.cert,
        &next.changes
    )));
}

#[test]
fn a_batch_failing_halfway_through_staging_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        RocksStore::open_with_genesis(dir.path(), &genesis(), &RocksOptions::default()).unwrap();
    let steps = chain(3);
    store
        .apply_block(&steps[0].block, &steps[0].cert, &steps[0].changes)
        .unwrap();
    let step = &steps[1];
    let snapshot = |store: &RocksStore| {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            store.tip(),
            store.block(SeqNum(2)),
            store.block_by_hash(&step.block.hash()),
            store.certificate(SeqNum(2)),
            step.block
                .txs
                .iter()
                .map(|t| store.tx_location(&tx_hash(t)))
                .collect::<Vec<_>>(),
            step.changes
                .keys()
                .map(|a| store.account(a))
                .collect::<Vec<_>>(),
        )
    };
    let before = snapshot(&store);
    // Block 2's batch: block, hash index, certificate, 3 tx index entries,
    // the account changes, the tip. Fail after staging half of it.
    let ops = 3 + step.block.txs.len() + step.changes.len() + 1;
    *store.records.kv().fail_write_after_ops.lock().unwrap() = Some(ops / 2);
    let err = store
        .apply_block(&step.block, &step.cert, &step.changes)
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Other(m) if m.contains("injected")),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&store),
        before,
        "nothing staged reached the database"
    );
    drop(store);

    // Not after a restart either; and the block applies once the fault is gone.
    let store =
        RocksStore::open_with_genesis(dir.path(), &genesis(), &RocksOptions::default()).unwrap();
    assert_eq!(snapshot(&store), before);
    store
        .apply_block(&step.block, &step.cert, &step.changes)
        .unwrap();
    assert_ne!(snapshot(&store), before);
    store.verify_range(SeqNum(1), SeqNum(2)).unwrap();
}

#[test]
fn a_store_from_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        put_raw(
            store.records.kv(),
            Cf::Meta,
            meta_key::SCHEMA_VERSION,
            codec::encode(&7u32),
        );
    }
    assert_eq!(
        RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err(),
        StorageError::VersionMismatch {
            found: 7,
            expected: schema::SCHEMA_VERSION
        }
    );
}

#[test]
#[should_panic(expected = "cannot read account")]
fn direct_account_reads_refuse_to_guess() {
    use phalanx_consensus::ledger::AccountReader;
    let (store, _) = with_chain(1);
    let alice = user("alice").address();
    put_raw(
        store.records.kv(),
        Cf::Accounts,
        &schema::address_key(&alice),
        vec![1],
    );
    AccountReader::account(&store, &alice);
}

#[test]
fn evidence_stored_under_another_key_is_corruption() {
    let store = MemStore::new();
    let e = equivocation(1, 4, 9);
    let elsewhere = schema::evidence_key(&e.validator, View(5), e.phase);
    put_raw(
        store.records.kv(),
        Cf::Evidence,
        &elsewhere,
        codec::encode(&e),
    );
    assert!(is_corruption(store.evidence()));
    assert!(is_corruption(store.evidence_page(None, 10)));
}

#[test]
fn a_version_1_store_has_its_evidence_rekeyed_and_bounded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let flood_size = schema::EVIDENCE_PER_VALIDATOR_MAX as u64 + 40;
    // Validator 0 equivocated on every seq of many views (10 seqs a
    // view), validator 3 once; written as version 1 did, one record per
    // (seq, view, phase, validator).
    let mut old = vec![equivocation(3, 2, 7)];
    for i in 0..flood_size * 10 {
        old.push(equivocation(0, i / 10, 1000 - i % 10));
    }
    {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let kv = store.records.kv();
        for e in &old {
            put_raw(
                kv,
                Cf::Evidence,
                &schema::evidence_key_v1(e),
                codec::encode(e),
            );
        }
        put_raw(
            kv,
            Cf::Meta,
            meta_key::SCHEMA_VERSION,
            codec::encode(&schema::SCHEMA_VERSION_EVIDENCE_BY_SEQ),
        );
    }
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let version: u32 = codec::decode(
        &store
            .records
            .kv()
            .get(Cf::Meta, meta_key::SCHEMA_VERSION)
            .unwrap()
            .unwrap(),
        64,
    )
    .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let stored = store.evidence().unwrap();
    assert_eq!(stored.len(), schema::EVIDENCE_PER_VALIDATOR_MAX + 1);
    let traitor = validator_keys()[0].public();
    let views: Vec<u64> = stored
        .iter()
        .filter(|e| e.validator == traitor)
        .map(|e| e.view.0)
        .collect();
    let newest: Vec<u64> = (40..flood_size).collect();
    assert_eq!(views, newest, "the newest views are kept");
    for e in stored.iter().filter(|e| e.validator == traitor) {
        assert_eq!(e.seq.0, 1000 - 9, "the lowest seq's proof of a view");
    }
    assert!(stored.contains(&equivocation(3, 2, 7)));
    // Opening again migrates nothing more.
    drop(store);
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    assert_eq!(store.evidence().unwrap(), stored);
}

#[test]
fn a_failed_wal_append_leaves_what_is_kept_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let steps = chain(4);
    let s2 = WalEntry::Stable(checkpoint_certificate(&steps[1]));
    let s4 = WalEntry::Stable(checkpoint_certificate(&steps[3]));
    store.append_wal(std::slice::from_ref(&s2), true).unwrap();
    *store.records.kv().fail_write_after_ops.lock().unwrap() = Some(1);
    assert!(store.append_wal(std::slice::from_ref(&s4), true).is_err());
    *store.records.kv().fail_write_after_ops.lock().unwrap() = None;
    assert_eq!(store.load_wal().unwrap(), vec![s2.clone()]);
    // The failed append did not count s4 as stored: it is written now.
    store.append_wal(std::slice::from_ref(&s4), true).unwrap();
    assert_eq!(store.load_wal().unwrap(), vec![s4]);
}
