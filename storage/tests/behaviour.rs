//! One behavioural suite, run against both stores: `MemStore` and
//! `RocksStore` must answer every scenario alike.

mod common;

use common::*;
use phalanx_consensus::ledger::{genesis_state_root, MemoryLedger};
use phalanx_consensus::{
    tx_hash, Batch, CommittedBatch, Evidence, Phase, SeqNum, TxFailure, TxResult, View, WalEntry,
};
use phalanx_crypto::{Address, Digest};
use phalanx_storage::schema::EVIDENCE_PER_VALIDATOR_MAX;
use phalanx_storage::{
    ChainTip, EvidenceCursor, MemStore, RocksOptions, RocksStore, StorageError, Store, TxLocation,
};

/// Everything `apply_block` may touch, read through the public API.
#[derive(Debug, PartialEq)]
struct Snapshot {
    tip: Result<ChainTip, StorageError>,
    blocks: Vec<String>,
    certificates: Vec<String>,
    by_hash: Vec<bool>,
    tx_index: Vec<Option<TxLocation>>,
    accounts: Vec<(u64, u64)>,
}

fn snapshot(store: &dyn Store, steps: &[Step]) -> Snapshot {
    let heights = 0..=steps.len() as u64 + 1;
    let mut addresses: Vec<Address> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| user(n).address())
        .collect();
    addresses.extend(steps.iter().flat_map(|s| s.changes.keys().copied()));
    Snapshot {
        tip: store.tip(),
        blocks: heights
            .clone()
            .map(|h| format!("{:?}", store.block(SeqNum(h))))
            .collect(),
        certificates: heights
            .map(|h| format!("{:?}", store.certificate(SeqNum(h))))
            .collect(),
        by_hash: steps
            .iter()
            .map(|s| store.block_by_hash(&s.block.hash()).unwrap().is_some())
            .collect(),
        tx_index: steps
            .iter()
            .flat_map(|s| s.block.txs.iter())
            .map(|tx| store.tx_location(&tx_hash(tx)).unwrap())
            .collect(),
        accounts: addresses
            .iter()
            .map(|a| {
                let acc = store.account(a).unwrap();
                (acc.balance, acc.nonce)
            })
            .collect(),
    }
}

fn apply(store: &dyn Store, step: &Step) -> Result<(), StorageError> {
    store.apply_block(&step.block, &step.cert, &step.changes)
}

// ---- scenarios -------------------------------------------------------------

fn genesis_sets_the_tip_and_refuses_another_chain(store: &dyn Store) {
    let steps = chain(1);
    assert_eq!(store.tip(), Err(StorageError::NotInitialized));
    assert_eq!(apply(store, &steps[0]), Err(StorageError::NotInitialized));
    assert_eq!(store.genesis_hash().unwrap(), None);

    let genesis = genesis();
    store.init_genesis(&genesis).unwrap();
    assert_eq!(
        store.tip().unwrap(),
        ChainTip {
            height: SeqNum(0),
            last_hash: genesis.hash(),
            state_root: genesis_state_root(&genesis.accounts()),
        }
    );
    assert_eq!(store.genesis_hash().unwrap(), Some(genesis.hash()));
    assert_eq!(
        store.account(&user("alice").address()).unwrap().balance,
        1_000_000
    );
    assert_eq!(
        store.account(&user("dave").address()).unwrap(),
        Default::default()
    );

    store.init_genesis(&genesis).unwrap(); // same genesis: nothing happens
    let other = genesis_for("another-chain");
    assert_eq!(
        store.init_genesis(&other),
        Err(StorageError::GenesisMismatch {
            stored: genesis.hash(),
            given: other.hash()
        })
    );
    assert_eq!(store.height().unwrap(), SeqNum(0));
}

fn blocks_apply_in_order_and_read_back_checked(store: &dyn Store) {
    let genesis = genesis();
    store.init_genesis(&genesis).unwrap();
    let steps = chain(5);
    let mut ledger = MemoryLedger::from_genesis(&genesis);
    for step in &steps {
        apply(store, step).unwrap();
        ledger.apply(CHAIN_ID, &step.committed);
        let h = step.block.header.height;
        assert_eq!(
            store.tip().unwrap(),
            ChainTip {
                height: h,
                last_hash: step.block.hash(),
                state_root: step.block.header.state_root
            }
        );
        assert_eq!(store.block(h).unwrap().as_ref(), Some(&step.block));
        assert_eq!(
            store.block_by_hash(&step.block.hash()).unwrap().as_ref(),
            Some(&step.block)
        );
        assert_eq!(store.certificate(h).unwrap().as_ref(), Some(&step.cert));
    }
    for (address, account) in &ledger.accounts {
        assert_eq!(
            store.account(address).unwrap(),
            *account,
            "{}",
            address.to_hex()
        );
    }
    assert_eq!(store.state_root().unwrap(), ledger.state_root);
    assert_eq!(store.last_hash().unwrap(), ledger.last_hash);
    assert_eq!(store.block(SeqNum(0)).unwrap(), None);
    assert_eq!(store.block(SeqNum(6)).unwrap(), None);
    assert_eq!(store.certificate(SeqNum(6)).unwrap(), None);
    assert_eq!(
        store
            .block_by_hash(&Digest::sha256(b"no such block"))
            .unwrap(),
        None
    );
    store.verify_range(SeqNum(0), SeqNum(u64::MAX)).unwrap();
    store.verify_range(SeqNum(3), SeqNum(4)).unwrap();
}

fn tx_index_records_position_and_result(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    let steps = chain(3);
    for step in &steps {
        apply(store, step).unwrap();
    }
    for step in &steps {
        for (position, tx) in step.block.txs.iter().enumerate() {
            let location = store.tx_location(&tx_hash(tx)).unwrap().unwrap();
            if position == 2 {
                // The replay of the previous block's first transfer failed;
                // the index still points at where it executed.
                assert_eq!(
                    step.block.results[2],
                    TxResult::Failed(TxFailure::BadNonce {
                        expected: step.block.header.height.0,
                        got: step.block.header.height.0 - 2,
                    })
                );
                let prev = step.block.header.height.0 - 1;
                assert_eq!(
                    location,
                    TxLocation {
                        height: SeqNum(prev),
                        position: 0,
                        result: TxResult::Executed
                    }
                );
            } else {
                assert_eq!(
                    location,
                    TxLocation {
                        height: step.block.header.height,
                        position: position as u32,
                        result: TxResult::Executed
                    }
                );
            }
        }
    }
    assert_eq!(
        store.tx_location(&Digest::sha256(b"unknown")).unwrap(),
        None
    );
}

fn tx_index_prefers_where_a_transaction_executed(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    let early = transfer(&alice, bob.address(), 7, 1); // nonce 1 before nonce 0
    let first = transfer(&alice, bob.address(), 3, 0);
    let steps = chain_with(2, |h| match h {
        1 => vec![early.clone(), early.clone(), first.clone()],
        _ => vec![early.clone()],
    });
    apply(store, &steps[0]).unwrap();
    let failed = TxResult::Failed(TxFailure::BadNonce {
        expected: 0,
        got: 1,
    });
    assert_eq!(
        store.tx_location(&tx_hash(&early)).unwrap(),
        Some(TxLocation {
            height: SeqNum(1),
            position: 0,
            result: failed.clone()
        }),
        "twice failed in one block: the first occurrence"
    );
    apply(store, &steps[1]).unwrap();
    assert_eq!(
        store.tx_location(&tx_hash(&early)).unwrap(),
        Some(TxLocation {
            height: SeqNum(2),
            position: 0,
            result: TxResult::Executed
        }),
        "failed, then executed: where it executed"
    );
}

fn refused_blocks_change_nothing(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    let steps = chain(4);
    apply(store, &steps[0]).unwrap();
    apply(store, &steps[1]).unwrap();
    let before = snapshot(store, &steps);

    // Not the next height: a gap, and a block applied twice.
    assert_eq!(
        apply(store, &steps[3]),
        Err(StorageError::NotNextBlock {
            expected: SeqNum(3),
            got: SeqNum(4)
        })
    );
    assert_eq!(
        apply(store, &steps[1]),
        Err(StorageError::NotNextBlock {
            expected: SeqNum(3),
            got: SeqNum(2)
        })
    );
    // The right height on top of another chain.
    let mut forked = steps[2].clone();
    forked.block.header.prev_hash = Digest::sha256(b"another parent");
    assert!(matches!(
        apply(store, &forked),
        Err(StorageError::PrevHashMismatch {
            height: SeqNum(3),
            ..
        })
    ));
    // A certificate for another batch.
    let mut wrong_cert = steps[2].clone();
    wrong_cert.cert = certificate(SeqNum(3), &Batch::null());
    assert!(matches!(
        apply(store, &wrong_cert),
        Err(StorageError::InvalidBlock {
            height: SeqNum(3),
            ..
        })
    ));
    // A certificate for another seq.
    let mut wrong_seq = steps[2].clone();
    wrong_seq.cert.seq = SeqNum(4);
    assert!(matches!(
        apply(store, &wrong_seq),
        Err(StorageError::InvalidBlock { .. })
    ));
    // Contents that do not match the header.
    let mut tampered = steps[2].clone();
    tampered.block.txs.pop();
    assert!(matches!(
        apply(store, &tampered),
        Err(StorageError::InvalidBlock { .. })
    ));
    let mut short_results = steps[2].clone();
    short_results.block.results.pop();
    assert!(matches!(
        apply(store, &short_results),
        Err(StorageError::InvalidBlock { .. })
    ));

    assert_eq!(
        snapshot(store, &steps),
        before,
        "a refused block wrote nothing"
    );

    // And a good block writes its part into every family.
    apply(store, &steps[2]).unwrap();
    let after = snapshot(store, &steps);
    assert_ne!(after.tip, before.tip);
    assert_ne!(after.blocks[3], before.blocks[3]);
    assert_ne!(after.certificates[3], before.certificates[3]);
    assert!(after.by_hash[2] && !before.by_hash[2]);
    assert_ne!(after.tx_index, before.tx_index);
    assert_ne!(after.accounts, before.accounts);
}

fn blocks_range_serves_catch_up(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    let steps = chain(6);
    for step in &steps {
        apply(store, step).unwrap();
    }
    let heights = |from: u64, to: u64| -> Vec<u64> {
        let range = store.blocks_range(SeqNum(from), SeqNum(to)).unwrap();
        for (block, cert) in &range {
            assert_eq!(block.header.height, cert.seq);
            assert_eq!(block, &steps[block.header.height.0 as usize - 1].block);
        }
        range.iter().map(|(b, _)| b.header.height.0).collect()
    };
    assert_eq!(heights(2, 4), vec![2, 3, 4]);
    assert_eq!(
        heights(0, 100),
        vec![1, 2, 3, 4, 5, 6],
        "clamped to 1..=height"
    );
    assert_eq!(heights(5, 3), Vec::<u64>::new());
    assert_eq!(heights(7, 9), Vec::<u64>::new());
    // Catch-up replies are bounded.
    let big = chain_with(70, |_| vec![]);
    let store2 = MemStore::from_genesis(&genesis());
    for step in &big {
        apply(&store2, step).unwrap();
    }
    let range = store2.blocks_range(SeqNum(1), SeqNum(70)).unwrap();
    assert_eq!(
        range.len() as u64,
        phalanx_storage::schema::BLOCKS_RANGE_MAX
    );
}

fn apply_committed_executes_on_stored_state(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    for step in chain(4) {
        let block = store.apply_committed(CHAIN_ID, &step.committed).unwrap();
        assert_eq!(block, step.block);
        assert_eq!(store.state_root().unwrap(), step.block.header.state_root);
    }
    let stale = CommittedBatch {
        batch: Batch::null(),
        certificate: certificate(SeqNum(2), &Batch::null()),
    };
    assert!(matches!(
        store.apply_committed(CHAIN_ID, &stale),
        Err(StorageError::NotNextBlock { .. })
    ));
}

fn checkpoints_by_seq_and_latest(store: &dyn Store) {
    store.init_genesis(&genesis()).unwrap();
    let steps = chain(8);
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    let c4 = checkpoint_certificate(&steps[3]);
    let c8 = checkpoint_certificate(&steps[7]);
    store.put_checkpoint(&c8).unwrap();
    store.put_checkpoint(&c4).unwrap();
    assert_eq!(store.checkpoint(SeqNum(4)).unwrap(), Some(c4));
    assert_eq!(store.checkpoint(SeqNum(5)).unwrap(), None);
    assert_eq!(store.latest_checkpoint().unwrap(), Some(c8));
}

fn wal_loads_in_append_order_and_prunes_below_a_seq(store: &dyn Store) {
    assert_eq!(store.load_wal().unwrap(), vec![]);
    let first = vec![
        vote(5, Phase::Prepare),
        view_record(1),
        vote(3, Phase::Commit),
    ];
    let second = vec![
        vote(7, Phase::Prepare),
        vote(2, Phase::Prepare),
        view_record(2),
    ];
    store.append_wal(&first, true).unwrap();
    store.append_wal(&[], true).unwrap();
    store.append_wal(&second, false).unwrap();
    let all: Vec<WalEntry> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        store.load_wal().unwrap(),
        all,
        "append order, not seq order"
    );

    store.prune_wal(SeqNum(5)).unwrap();
    let kept = vec![
        vote(5, Phase::Prepare),
        view_record(1),
        vote(7, Phase::Prepare),
        view_record(2),
    ];
    assert_eq!(
        store.load_wal().unwrap(),
        kept,
        "seq < 5 removed, unnumbered kept"
    );

    let later = vote(1, Phase::Commit);
    store
        .append_wal(std::slice::from_ref(&later), true)
        .unwrap();
    let mut expected = kept.clone();
    expected.push(later);
    assert_eq!(
        store.load_wal().unwrap(),
        expected,
        "appends after a prune come last"
    );

    store.prune_wal(SeqNum(u64::MAX)).unwrap();
    assert_eq!(
        store.load_wal().unwrap(),
        vec![view_record(1), view_record(2)]
    );
    store.prune_wal(SeqNum(0)).unwrap();
    assert_eq!(store.load_wal().unwrap().len(), 2);
}

fn stable(seq: u64) -> WalEntry {
    let steps = chain(seq);
    WalEntry::Stable(checkpoint_certificate(&steps[seq as usize - 1]))
}

fn entered(view: u64) -> WalEntry {
    WalEntry::View {
        view: View(view),
        entered: true,
    }
}

fn left(view: u64) -> WalEntry {
    WalEntry::View {
        view: View(view),
        entered: false,
    }
}

fn wal_keeps_one_record_of_each_kind_restore_reads_the_latest_of(store: &dyn Store) {
    let (s2, s4, s6) = (stable(2), stable(4), stable(6));
    let (nv3, nv5) = (new_view(3, &[2, 3]), new_view(5, &[]));
    store
        .append_wal(&[s4.clone(), left(1), vote(5, Phase::Prepare)], true)
        .unwrap();
    // Older or equal records of a kind already stored are not written;
    // later ones replace it, also within one append.
    store
        .append_wal(&[s2, s4.clone(), entered(1), left(2), left(1)], true)
        .unwrap();
    store
        .append_wal(
            &[nv3.clone(), left(3), entered(3), vote(6, Phase::Commit)],
            true,
        )
        .unwrap();
    assert_eq!(
        store.load_wal().unwrap(),
        vec![
            s4,
            vote(5, Phase::Prepare),
            nv3.clone(),
            left(3),
            entered(3),
            vote(6, Phase::Commit)
        ]
    );
    store
        .append_wal(
            &[
                left(4),
                s6.clone(),
                nv3.clone(),
                left(5),
                entered(5),
                nv5.clone(),
            ],
            true,
        )
        .unwrap();
    let after_view_5 = vec![
        vote(5, Phase::Prepare),
        vote(6, Phase::Commit),
        s6.clone(),
        left(5),
        entered(5),
        nv5.clone(),
    ];
    assert_eq!(store.load_wal().unwrap(), after_view_5);

    // NEW-VIEW records are numbered (by the highest seq they re-issue) and
    // pruned with the rest; once gone, a later one is stored whatever its
    // view, as it would have been without the bound.
    store.prune_wal(SeqNum(6)).unwrap();
    store.append_wal(std::slice::from_ref(&nv3), true).unwrap();
    assert_eq!(
        store.load_wal().unwrap(),
        vec![vote(6, Phase::Commit), s6, left(5), entered(5), nv3]
    );
}

fn wal_stays_bounded_over_many_checkpoints_and_views(store: &dyn Store) {
    let steps = chain(40);
    for (i, step) in steps.iter().enumerate() {
        let seq = i as u64 + 1;
        let view = seq / 3;
        store
            .append_wal(
                &[
                    vote(seq, Phase::Prepare),
                    vote(seq, Phase::Commit),
                    left(view + 1),
                    entered(view + 1),
                    WalEntry::Stable(checkpoint_certificate(step)),
                    new_view(view + 1, &[seq]),
                ],
                false,
            )
            .unwrap();
        store.prune_wal(SeqNum(seq)).unwrap();
        let wal = store.load_wal().unwrap();
        assert!(wal.len() <= 6, "after seq {seq}: {} records", wal.len());
    }
}

fn evidence_is_one_record_per_validator_view_and_phase(store: &dyn Store) {
    assert_eq!(store.evidence().unwrap(), vec![]);
    let first = equivocation(1, 4, 9);
    store.put_evidence(&first).unwrap();
    // Another seq of the same view and phase, or the same proof swapped:
    // not a second record.
    store.put_evidence(&equivocation(1, 4, 10)).unwrap();
    let mut swapped = first.clone();
    std::mem::swap(&mut swapped.first, &mut swapped.second);
    store.put_evidence(&swapped).unwrap();
    let other_view = equivocation(1, 3, 11);
    let other_validator = equivocation(0, 4, 9);
    let mut other_phase = equivocation(1, 4, 9);
    other_phase.phase = Phase::Commit;
    for e in [&other_view, &other_validator, &other_phase] {
        store.put_evidence(e).unwrap();
    }
    let mut expected = vec![first, other_view, other_validator, other_phase];
    expected.sort_by_key(|e| (e.validator, e.view, e.phase));
    assert_eq!(store.evidence().unwrap(), expected);
}

/// `count` distinct conflicting votes from validator `who` (ten seqs per
/// view): distinct (view, seq) pairs, as a traitor would sign them. The
/// signatures are one pair's: storage does not check them.
fn flood(who: usize, count: u64) -> impl Iterator<Item = Evidence> {
    let template = equivocation(who, 0, 1);
    (0..count).map(move |i| Evidence {
        view: View(i / 10),
        seq: SeqNum(i + 1),
        phase: [Phase::Prepare, Phase::Commit][(i % 2) as usize],
        ..template.clone()
    })
}

fn a_flood_of_conflicting_votes_keeps_the_newest_bounded_records(store: &dyn Store) {
    let honest_mistake = equivocation(2, 0, 1);
    store.put_evidence(&honest_mistake).unwrap();
    let flood_size = 30_000;
    for e in flood(0, flood_size) {
        store.put_evidence(&e).unwrap();
    }
    let stored = store.evidence().unwrap();
    let from_traitor: Vec<&Evidence> = stored
        .iter()
        .filter(|e| e.validator == validator_keys()[0].public())
        .collect();
    assert_eq!(from_traitor.len(), EVIDENCE_PER_VALIDATOR_MAX);
    assert_eq!(stored.len(), EVIDENCE_PER_VALIDATOR_MAX + 1);
    // The newest (view, phase) keys are the ones kept.
    let mut newest: Vec<(View, Phase)> = flood(0, flood_size).map(|e| (e.view, e.phase)).collect();
    newest.sort();
    newest.dedup();
    let newest = newest.split_off(newest.len() - EVIDENCE_PER_VALIDATOR_MAX);
    let kept: Vec<(View, Phase)> = from_traitor.iter().map(|e| (e.view, e.phase)).collect();
    assert_eq!(kept, newest);
    // Another validator's record is not pushed out by the flood.
    assert!(stored.contains(&honest_mistake));
    // An old record arriving late does not displace a newer one.
    store.put_evidence(&equivocation(0, 0, 5)).unwrap();
    assert_eq!(store.evidence().unwrap(), stored);
}

fn evidence_pages_return_everything_in_order_once(store: &dyn Store) {
    for who in [3, 0, 2] {
        for e in flood(who, 40) {
            store.put_evidence(&e).unwrap();
        }
    }
    let all = store.evidence().unwrap();
    assert_eq!(all.len(), 3 * 4 * 2, "three validators, 4 views x 2 phases");
    let empty = store.evidence_page(None, 0).unwrap();
    assert_eq!((empty.records.len(), empty.next), (0, None));
    for limit in [1, 7, 48, 100] {
        let mut paged = Vec::new();
        let mut after: Option<EvidenceCursor> = None;
        loop {
            let page = store.evidence_page(after.as_ref(), limit).unwrap();
            assert!(page.records.len() <= limit);
            paged.extend(page.records);
            match page.next {
                Some(next) => {
                    // The cursor survives being written into a URL.
                    let text = next.to_string();
                    assert_eq!(text.parse::<EvidenceCursor>(), Ok(next));
                    after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(paged, all, "limit {limit}");
    }
    let mut keys: Vec<_> = all.iter().map(EvidenceCursor::of).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted, "ordered by (validator, view, phase)");
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "no duplicates");
    let last = EvidenceCursor::of(all.last().unwrap());
    let past_the_end = store.evidence_page(Some(&last), 10).unwrap();
    assert_eq!((past_the_end.records.len(), past_the_end.next), (0, None));
}

// ---- run every scenario on both stores --------------------------------------

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod mem {
            $(#[test]
            fn $scenario() {
                super::$scenario(&phalanx_storage::MemStore::new());
            })*
        }
        mod rocks {
            $(#[test]
            fn $scenario() {
                let dir = tempfile::tempdir().unwrap();
                let store = super::RocksStore::open(dir.path(), &super::RocksOptions::default())
                    .unwrap();
                super::$scenario(&store);
            })*
        }
    };
}

on_both_stores!(
    genesis_sets_the_tip_and_refuses_another_chain,
    blocks_apply_in_order_and_read_back_checked,
    tx_index_records_position_and_result,
    tx_index_prefers_where_a_transaction_executed,
    refused_blocks_change_nothing,
    blocks_range_serves_catch_up,
    apply_committed_executes_on_stored_state,
    checkpoints_by_seq_and_latest,
    wal_loads_in_append_order_and_prunes_below_a_seq,
    wal_keeps_one_record_of_each_kind_restore_reads_the_latest_of,
    wal_stays_bounded_over_many_checkpoints_and_views,
    evidence_is_one_record_per_validator_view_and_phase,
    a_flood_of_conflicting_votes_keeps_the_newest_bounded_records,
    evidence_pages_return_everything_in_order_once,
);
