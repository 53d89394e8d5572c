//! Admission an attacker pays for (issue 16), at small scale, through the
//! mempool's public interface over an in-memory chain.
//!
//! Written against the pool's public API only (and configured with the
//! fields every version of `MempoolConfig` has), so the same file runs
//! against the code before this change: there the flood fills the pool
//! and the honest sender is refused `mempool_full`, the overspender gets
//! all 40 admitted, a full pool of held work refuses a funded sender's
//! ready transfer, and a conflicting commit leaves dead transfers pooled.

use phalanx_consensus::{
    Batch, CommitCertificate, CommittedBatch, Genesis, GenesisAccount, GenesisValidator, SeqNum,
    Transaction, Transfer, View,
};
use phalanx_crypto::{Address, Digest, Keypair, Signed};
use phalanx_node::config::MempoolConfig;
use phalanx_node::mempool::{Mempool, SubmitError};
use phalanx_storage::{MemStore, Store};
use std::sync::Arc;

const CHAIN: &str = "c";

struct Chain {
    pool: Arc<Mempool>,
    store: Arc<MemStore>,
    height: u64,
}

impl Chain {
    /// A pool with `max_txs` slots and nonces up to 64 ahead, over a chain
    /// whose genesis funds `accounts`.
    fn new(max_txs: usize, accounts: &[(&Keypair, u64)]) -> Chain {
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 0,
            test_network: true,
            validators: vec![GenesisValidator {
                name: "v0".into(),
                public_key: Keypair::insecure_from_label("v0").public(),
                p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
            }],
            consensus: Default::default(),
            accounts: accounts
                .iter()
                .map(|(key, balance)| GenesisAccount {
                    address: key.address(),
                    balance: *balance,
                })
                .collect(),
        };
        let store = Arc::new(MemStore::new());
        store.init_genesis(&genesis).unwrap();
        let cfg = MempoolConfig {
            max_txs,
            max_bytes: 1 << 20,
            nonce_ahead_max: 64,
            nonce_gap_timeout_s: 60,
            ..MempoolConfig::default()
        };
        let pool = Arc::new(Mempool::new(cfg, CHAIN.into(), store.clone()));
        Chain {
            pool,
            store,
            height: 0,
        }
    }

    /// Commits `txs` as the next block (whoever proposed them), then tells
    /// the pool, as the node does.
    fn commit(&mut self, txs: Vec<Transaction>) {
        self.height += 1;
        let batch = Batch {
            txs: txs.clone(),
            timestamp_ms: self.height,
        };
        let committed = CommittedBatch {
            certificate: CommitCertificate {
                view: View(0),
                seq: SeqNum(self.height),
                batch_digest: batch.digest(),
                votes: Vec::new(),
            },
            batch,
        };
        let block = self.store.apply_committed(CHAIN, &committed).unwrap();
        self.pool.remove_committed(&txs, &block.results);
    }

    fn balance(&self, key: &Keypair) -> u64 {
        self.store.account(&key.address()).unwrap().balance
    }
}

fn transfer(key: &Keypair, nonce: u64, amount: u64) -> Transaction {
    Signed::sign(
        Transfer {
            chain_id: CHAIN.into(),
            to: Address([7; 20]),
            amount,
            nonce,
        },
        key,
        CHAIN,
    )
}

fn codes(v: &[Result<Digest, SubmitError>]) -> Vec<&'static str> {
    v.iter()
        .map(|r| r.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code()))
        .collect()
}

fn count(v: &[&str], code: &str) -> usize {
    v.iter().filter(|c| **c == code).count()
}

/// Issue 16's first finding at small scale: two fresh keys sending nonces
/// 0..100 filled a 40-slot pool (65 slots each) with held work, and an
/// honest funded sender was refused `mempool_full`.
#[tokio::test]
async fn two_unfunded_keys_flooding_nonces_cannot_fill_the_pool() {
    let alice = Keypair::insecure_from_label("alice");
    let mut chain = Chain::new(40, &[(&alice, 100)]);
    for label in ["spam-1", "spam-2"] {
        let spammer = Keypair::insecure_from_label(label);
        for batch in (0..100u64).collect::<Vec<_>>().chunks(25) {
            let txs = batch.iter().map(|n| transfer(&spammer, *n, 1)).collect();
            let verdicts = codes(&chain.pool.submit(txs).await.verdicts);
            assert_eq!(
                count(&verdicts, "unknown_account"),
                batch.len(),
                "{label}: {verdicts:?}"
            );
        }
    }
    assert_eq!(chain.pool.size().0, 0, "nothing of theirs is pooled");
    assert_eq!(chain.pool.held(), 0);
    let honest = transfer(&alice, 0, 1);
    let verdicts = codes(&chain.pool.submit(vec![honest.clone()]).await.verdicts);
    assert_eq!(verdicts, vec!["ok"]);
    assert_eq!(chain.pool.take_ready().len(), 1);
    chain.commit(vec![honest]);
    assert_eq!(chain.pool.size(), (0, 0));
}

/// Issue 16's second finding: a key funded with 5 sent 40 transfers of 1,
/// all were admitted and 35 failures were committed. Now only what the
/// balance covers is pooled, so an honest primary proposes 5 transfers
/// that all execute.
#[tokio::test]
async fn a_key_funded_with_5_gets_5_of_40_transfers_admitted() {
    let poor = Keypair::insecure_from_label("poor");
    let mut chain = Chain::new(1000, &[(&poor, 5)]);
    let txs: Vec<Transaction> = (0..40).map(|n| transfer(&poor, n, 1)).collect();
    let admission = chain.pool.submit(txs.clone()).await;
    let verdicts = codes(&admission.verdicts);
    assert_eq!(&verdicts[..5], ["ok"; 5]);
    assert_eq!(count(&verdicts, "insufficient_funds"), 35, "{verdicts:?}");
    let refused = admission.verdicts[5].as_ref().unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(refused.to_string().contains("balance 5"), "{refused}");
    // What an honest primary proposes: the ready queue. All of it executes.
    let proposed = chain.pool.take_ready();
    assert_eq!(proposed.len(), 5);
    chain.commit(proposed);
    assert_eq!(chain.balance(&poor), 0);
    assert_eq!(chain.pool.size(), (0, 0));
    // The account is known now (nonce 5) but empty: still refused.
    let again = chain.pool.submit(txs[5..10].to_vec()).await;
    assert_eq!(codes(&again.verdicts), vec!["insufficient_funds"; 5]);
}

/// A full pool of held work (a funded key's nonces 1.. with 0 never sent)
/// makes room for a funded sender's ready transfer, newest held first; a
/// newcomer that would only be held is still refused.
#[tokio::test]
async fn a_full_pool_evicts_held_work_for_a_ready_transfer() {
    let (alice, mallory, carol) = (
        Keypair::insecure_from_label("alice"),
        Keypair::insecure_from_label("mallory"),
        Keypair::insecure_from_label("carol"),
    );
    let mut chain = Chain::new(8, &[(&alice, 100), (&mallory, 100), (&carol, 100)]);
    // Mallory: 4 held; carol: 4 held (8 = full). Neither sends nonce 0.
    let held: Vec<Transaction> = (1..=4)
        .flat_map(|n| [transfer(&mallory, n, 1), transfer(&carol, n, 1)])
        .collect();
    assert_eq!(
        codes(&chain.pool.submit(held.clone()).await.verdicts),
        vec!["ok"; 8]
    );
    assert_eq!((chain.pool.size().0, chain.pool.held()), (8, 8));
    // Held work does not make room for more held work.
    let more_held = transfer(&alice, 3, 1);
    assert_eq!(
        codes(&chain.pool.submit(vec![more_held]).await.verdicts),
        vec!["mempool_full"]
    );
    // A ready transfer gets in: one held transaction makes way for it.
    let ready = transfer(&alice, 0, 1);
    assert_eq!(
        codes(&chain.pool.submit(vec![ready.clone()]).await.verdicts),
        vec!["ok"]
    );
    assert_eq!((chain.pool.size().0, chain.pool.held()), (8, 7));
    // The newest held transaction of the sender with the most held went:
    // carol's and mallory's shares tie at 4, the larger address loses its
    // nonce 4; the other keeps all four.
    let (gone, kept) = if mallory.address() > carol.address() {
        (&mallory, &carol)
    } else {
        (&carol, &mallory)
    };
    assert!(!chain
        .pool
        .contains(&phalanx_consensus::tx_hash(&transfer(gone, 4, 1))));
    assert!(chain
        .pool
        .contains(&phalanx_consensus::tx_hash(&transfer(gone, 3, 1))));
    assert!(chain
        .pool
        .contains(&phalanx_consensus::tx_hash(&transfer(kept, 4, 1))));
    assert_eq!(chain.pool.take_ready().len(), 1);
    chain.commit(vec![ready]);
    assert_eq!(chain.pool.size().0, 7);
}

/// A sender that spends through another node (a different transfer with
/// the same nonce, taking the whole balance) leaves its other pooled
/// transfers unable to execute: they are dropped at the commit, not left
/// to be proposed (and fail) or to hold slots until a timeout.
#[tokio::test]
async fn a_commit_that_spends_the_balance_elsewhere_drops_what_it_no_longer_covers() {
    let alice = Keypair::insecure_from_label("alice");
    let mut chain = Chain::new(100, &[(&alice, 10)]);
    let mine: Vec<Transaction> = vec![
        transfer(&alice, 0, 5),
        transfer(&alice, 1, 5),
        transfer(&alice, 3, 1),
    ];
    // Covers 5 + 5; 1 more would not fit.
    assert_eq!(
        codes(&chain.pool.submit(mine.clone()).await.verdicts),
        vec!["ok", "ok", "insufficient_funds"]
    );
    // Not yet taken by consensus when the conflicting transfer commits.
    chain.commit(vec![transfer(&alice, 0, 10)]);
    assert_eq!(chain.balance(&alice), 0);
    assert!(
        chain.pool.take_ready().is_empty(),
        "nonce 0 is taken, and nonce 1 is not covered"
    );
    assert_eq!(chain.pool.size(), (0, 0));
}

/// Transfers that fail in any block are refused before a signature check.
#[tokio::test]
async fn transfers_that_always_fail_are_refused() {
    let alice = Keypair::insecure_from_label("alice");
    let chain = Chain::new(100, &[(&alice, 10)]);
    let to_self = Signed::sign(
        Transfer {
            chain_id: CHAIN.into(),
            to: alice.address(),
            amount: 1,
            nonce: 0,
        },
        &alice,
        CHAIN,
    );
    let verdicts = chain
        .pool
        .submit(vec![transfer(&alice, 0, 0), to_self])
        .await
        .verdicts;
    assert_eq!(codes(&verdicts), vec!["zero_amount", "self_transfer"]);
    assert_eq!(chain.pool.size(), (0, 0));
}
