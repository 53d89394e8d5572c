//! A small real chain for storage tests: four validators, three funded
//! users, blocks made by the ledger rules, and commit certificates signed
//! by three of the four validators.

#![allow(dead_code)] // each test binary uses a different part

use phalanx_consensus::ledger::{execute, Account, MemoryLedger};
use phalanx_consensus::{
    Batch, Block, Checkpoint, CheckpointCertificate, Commit, CommitCertificate, CommittedBatch,
    ConsensusParams, Evidence, Genesis, GenesisAccount, GenesisValidator, Message, NewView, Phase,
    PrePrepare, Prepare, SeqNum, Transaction, Transfer, View, WalEntry,
};
use phalanx_crypto::{Address, Digest, Keypair, Signed};
use std::collections::BTreeMap;

pub const CHAIN_ID: &str = "phalanx-storage-test";

pub fn validator_keys() -> Vec<Keypair> {
    (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("storage-test-validator-{i}")))
        .collect()
}

pub fn user(name: &str) -> Keypair {
    Keypair::insecure_from_label(&format!("storage-test-user-{name}"))
}

pub fn genesis() -> Genesis {
    genesis_for(CHAIN_ID)
}

pub fn genesis_for(chain_id: &str) -> Genesis {
    Genesis {
        chain_id: chain_id.to_string(),
        genesis_time_ms: 1_700_000_000_000,
        test_network: true,
        validators: validator_keys()
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
            })
            .collect(),
        consensus: ConsensusParams::default(),
        accounts: ["alice", "bob", "carol"]
            .iter()
            .map(|name| GenesisAccount {
                address: user(name).address(),
                balance: 1_000_000,
            })
            .collect(),
    }
}

pub fn transfer(from: &Keypair, to: Address, amount: u64, nonce: u64) -> Transaction {
    Signed::sign(
        Transfer {
            chain_id: CHAIN_ID.to_string(),
            to,
            amount,
            nonce,
        },
        from,
        CHAIN_ID,
    )
}

/// A commit certificate for `batch` at `seq` in view 0, signed by
/// validators 0, 1 and 2 (a quorum of 2f + 1 = 3 of 4).
pub fn certificate(seq: SeqNum, batch: &Batch) -> CommitCertificate {
    let commit = Commit {
        view: View(0),
        seq,
        digest: batch.digest(),
    };
    CommitCertificate {
        view: commit.view,
        seq,
        batch_digest: commit.digest,
        votes: validator_keys()
            .iter()
            .take(3)
            .map(|k| Signed::sign(commit.clone(), k, CHAIN_ID))
            .collect(),
    }
}

/// One block as `apply_block` takes it.
#[derive(Clone, Debug)]
pub struct Step {
    pub block: Block,
    pub cert: CommitCertificate,
    pub changes: BTreeMap<Address, Account>,
    pub committed: CommittedBatch,
}

/// Transactions for block `h`: two good transfers and, from block 2 on, a
/// replay of one of block `h - 1`'s (which fails its nonce check).
fn txs_for(h: u64) -> Vec<Transaction> {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let n = h - 1; // nonce of alice's and bob's h-th transfer
    let mut txs = vec![
        transfer(&alice, bob.address(), 10 + h, n),
        transfer(&bob, carol.address(), 5, n),
    ];
    if h >= 2 {
        txs.push(transfer(&alice, bob.address(), 10 + h - 1, n - 1));
    }
    txs
}

/// Blocks 1..=count of the test chain, each with its certificate and the
/// account changes its execution made.
pub fn chain(count: u64) -> Vec<Step> {
    chain_with(count, txs_for)
}

/// As [`chain`], with `txs(h)` in block `h`.
pub fn chain_with(count: u64, txs: impl Fn(u64) -> Vec<Transaction>) -> Vec<Step> {
    let genesis = genesis();
    let mut ledger = MemoryLedger::from_genesis(&genesis);
    (1..=count)
        .map(|h| {
            let batch = Batch {
                txs: txs(h),
                timestamp_ms: 1_700_000_000_000 + h * 1000,
            };
            let committed = CommittedBatch {
                certificate: certificate(SeqNum(h), &batch),
                batch,
            };
            let execution = execute(
                &ledger.accounts,
                &ledger.state_root,
                CHAIN_ID,
                &committed.batch.txs,
            );
            let block = ledger.apply(CHAIN_ID, &committed);
            assert_eq!(block.header.state_root, execution.state_root);
            Step {
                block,
                cert: committed.certificate.clone(),
                changes: execution.changes,
                committed,
            }
        })
        .collect()
}

/// A chain whose blocks are large (many transfers each), so a few dozen
/// blocks fill several SST data blocks.
pub fn big_chain(count: u64, txs_per_block: u64) -> Vec<Step> {
    chain_with(count, |h| {
        let alice = user("alice");
        (0..txs_per_block)
            .map(|i| {
                let to = Address([(i % 250) as u8 + 1; 20]);
                transfer(&alice, to, 1, (h - 1) * txs_per_block + i)
            })
            .collect()
    })
}

pub fn vote(seq: u64, phase: Phase) -> WalEntry {
    WalEntry::Voted {
        phase,
        view: View(seq / 3),
        seq: SeqNum(seq),
        digest: Digest::sha256(&seq.to_le_bytes()),
    }
}

pub fn view_record(view: u64) -> WalEntry {
    WalEntry::View {
        view: View(view),
        entered: view.is_multiple_of(2),
    }
}

/// The NEW-VIEW of `view`, signed by its primary, re-issuing null batches
/// at `seqs` (it carries no VIEW-CHANGEs: storage does not check them).
pub fn new_view(view: u64, seqs: &[u64]) -> WalEntry {
    let keys = validator_keys();
    let primary = &keys[(view % keys.len() as u64) as usize];
    let pre_prepares = seqs
        .iter()
        .map(|seq| {
            Signed::sign(
                PrePrepare {
                    view: View(view),
                    seq: SeqNum(*seq),
                    digest: Batch::null().digest(),
                },
                primary,
                CHAIN_ID,
            )
        })
        .collect();
    WalEntry::NewView(Box::new(Signed::sign(
        NewView {
            view: View(view),
            view_changes: Vec::new(),
            pre_prepares,
        },
        primary,
        CHAIN_ID,
    )))
}

pub fn checkpoint_certificate(step: &Step) -> CheckpointCertificate {
    let checkpoint = Checkpoint {
        seq: step.block.header.height,
        block_hash: step.block.hash(),
        state_root: step.block.header.state_root,
    };
    CheckpointCertificate {
        seq: checkpoint.seq,
        block_hash: checkpoint.block_hash,
        state_root: checkpoint.state_root,
        votes: validator_keys()
            .iter()
            .take(3)
            .map(|k| Signed::sign(checkpoint.clone(), k, CHAIN_ID))
            .collect(),
    }
}

/// Validator `who` signed two prepares for `(view, seq)`.
pub fn equivocation(who: usize, view: u64, seq: u64) -> Evidence {
    let key = &validator_keys()[who];
    let prepare = |digest: &[u8]| {
        Message::Prepare(Signed::sign(
            Prepare {
                view: View(view),
                seq: SeqNum(seq),
                digest: Digest::sha256(digest),
            },
            key,
            CHAIN_ID,
        ))
    };
    Evidence {
        validator: key.public(),
        phase: Phase::Prepare,
        view: View(view),
        seq: SeqNum(seq),
        first: prepare(b"one"),
        second: prepare(b"two"),
    }
}
