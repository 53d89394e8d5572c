//! The ledger rules: how a committed block changes account state.
//!
//! Pure and deterministic, so every validator (and the simulator, and
//! `verify-ledger`) computes the same results and state root from the same
//! blocks. A transaction executes when its nonce is the sender's next nonce
//! and the balance covers the amount; otherwise it fails with its reason
//! and changes nothing. Nothing is ever created or destroyed: the total
//! supply is fixed at genesis.

use crate::{merkle_root_of, Block, BlockHeader, CommittedBatch, Transaction, TxFailure, TxResult};
use phalanx_crypto::{codec, Address, Digest, HashDomain};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An account's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// Read access to account state as of the last applied block.
pub trait AccountReader {
    fn account(&self, address: &Address) -> Account;
}

impl AccountReader for BTreeMap<Address, Account> {
    fn account(&self, address: &Address) -> Account {
        self.get(address).copied().unwrap_or_default()
    }
}

/// The effect of executing one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub results: Vec<TxResult>,
    /// The new state of every account the block touched, sorted by address.
    pub changes: BTreeMap<Address, Account>,
    pub state_root: Digest,
}

/// The state root at genesis: a digest over the sorted opening balances.
pub fn genesis_state_root(balances: &BTreeMap<Address, Account>) -> Digest {
    Digest::of(HashDomain::StateRoot, &codec::encode(balances))
}

/// Executes `txs` on top of `state`, whose root is `prev_root`.
///
/// The state root is a hash chain over the changes each block makes:
/// `root_h = H(root_{h-1} || sorted changes_h)`. It pins the whole state
/// history (two validators with equal roots applied equal changes from equal
/// genesis) at O(changes) cost per block; it does not give per-account
/// proofs — see docs/DESIGN.md.
pub fn execute<S: AccountReader>(
    state: &S,
    prev_root: &Digest,
    chain_id: &str,
    txs: &[Transaction],
) -> Execution {
    let mut changes: BTreeMap<Address, Account> = BTreeMap::new();
    let mut results = Vec::with_capacity(txs.len());
    for tx in txs {
        let read = |changes: &BTreeMap<Address, Account>, a: &Address| {
            changes.get(a).copied().unwrap_or_else(|| state.account(a))
        };
        let from = tx.signer.address();
        let t = &tx.payload;
        let sender = read(&changes, &from);
        let outcome = if t.chain_id != chain_id {
            Err(TxFailure::WrongChain)
        } else if t.nonce != sender.nonce {
            Err(TxFailure::BadNonce {
                expected: sender.nonce,
                got: t.nonce,
            })
        } else if t.amount == 0 {
            Err(TxFailure::ZeroAmount)
        } else if t.to == from {
            Err(TxFailure::SelfTransfer)
        } else if sender.balance < t.amount {
            Err(TxFailure::InsufficientBalance {
                balance: sender.balance,
                amount: t.amount,
            })
        } else {
            Ok(())
        };
        match outcome {
            Ok(()) => {
                let receiver = read(&changes, &t.to);
                let credited = receiver
                    .balance
                    .checked_add(t.amount)
                    .expect("supply is fixed at genesis and fits in u64");
                changes.insert(
                    from,
                    Account {
                        balance: sender.balance - t.amount,
                        nonce: sender.nonce + 1,
                    },
                );
                changes.insert(
                    t.to,
                    Account {
                        balance: credited,
                        nonce: receiver.nonce,
                    },
                );
                results.push(TxResult::Executed);
            }
            Err(failure) => results.push(TxResult::Failed(failure)),
        }
    }
    let state_root = Digest::of_parts(
        HashDomain::StateRoot,
        &[&prev_root.0, &codec::encode(&changes)],
    );
    Execution {
        results,
        changes,
        state_root,
    }
}

/// Builds block `seq` from a committed batch and its execution on top of
/// the block whose hash is `prev_hash`.
pub fn make_block(prev_hash: Digest, committed: &CommittedBatch, execution: &Execution) -> Block {
    let batch = &committed.batch;
    Block {
        header: BlockHeader {
            height: committed.certificate.seq,
            prev_hash,
            batch_digest: committed.certificate.batch_digest,
            tx_root: merkle_root_of(&batch.txs),
            tx_count: batch.txs.len() as u64,
            state_root: execution.state_root,
            timestamp_ms: batch.timestamp_ms,
        },
        txs: batch.txs.clone(),
        results: execution.results.clone(),
    }
}

/// Account state in memory: the simulator's and tests' ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryLedger {
    pub accounts: BTreeMap<Address, Account>,
    pub state_root: Digest,
    pub last_hash: Digest,
    pub height: u64,
}

impl MemoryLedger {
    pub fn from_genesis(genesis: &crate::Genesis) -> MemoryLedger {
        let accounts = genesis.accounts();
        MemoryLedger {
            state_root: genesis_state_root(&accounts),
            accounts,
            last_hash: genesis.hash(),
            height: 0,
        }
    }

    /// Executes the next committed batch and returns its block.
    pub fn apply(&mut self, chain_id: &str, committed: &CommittedBatch) -> Block {
        assert_eq!(
            committed.certificate.seq.0,
            self.height + 1,
            "blocks apply in order"
        );
        let execution = execute(
            &self.accounts,
            &self.state_root,
            chain_id,
            &committed.batch.txs,
        );
        let block = make_block(self.last_hash, committed, &execution);
        self.accounts.extend(execution.changes);
        self.state_root = execution.state_root;
        self.last_hash = block.hash();
        self.height += 1;
        block
    }

    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transfer;
    use phalanx_crypto::{Keypair, Signed};

    fn transfer(from: &Keypair, to: Address, amount: u64, nonce: u64) -> Transaction {
        Signed::sign(
            Transfer {
                chain_id: "c".into(),
                to,
                amount,
                nonce,
            },
            from,
            "c",
        )
    }

    #[test]
    fn rules_table() {
        let alice = Keypair::insecure_from_label("alice");
        let bob = Keypair::insecure_from_label("bob");
        let mut state = BTreeMap::new();
        state.insert(
            alice.address(),
            Account {
                balance: 100,
                nonce: 0,
            },
        );
        let txs = vec![
            transfer(&alice, bob.address(), 30, 0),
            transfer(&alice, bob.address(), 30, 0),
            transfer(&alice, bob.address(), 80, 1),
            transfer(&alice, alice.address(), 1, 1),
            transfer(&alice, bob.address(), 0, 1),
            transfer(&bob, alice.address(), 10, 0),
            transfer(&alice, bob.address(), 70, 1),
        ];
        let e = execute(&state, &Digest::ZERO, "c", &txs);
        use TxFailure::*;
        let want = vec![
            TxResult::Executed,
            TxResult::Failed(BadNonce {
                expected: 1,
                got: 0,
            }),
            TxResult::Failed(InsufficientBalance {
                balance: 70,
                amount: 80,
            }),
            TxResult::Failed(SelfTransfer),
            TxResult::Failed(ZeroAmount),
            TxResult::Executed,
            TxResult::Executed,
        ];
        assert_eq!(e.results, want);
        let a = e.changes[&alice.address()];
        let b = e.changes[&bob.address()];
        assert_eq!((a.balance, a.nonce), (10, 2));
        assert_eq!((b.balance, b.nonce), (90, 1));
        assert_eq!(a.balance + b.balance, 100, "supply conserved");
    }

    #[test]
    fn state_root_depends_on_history() {
        let alice = Keypair::insecure_from_label("alice");
        let mut state = BTreeMap::new();
        state.insert(
            alice.address(),
            Account {
                balance: 5,
                nonce: 0,
            },
        );
        let txs = vec![transfer(&alice, Address([1; 20]), 1, 0)];
        let a = execute(&state, &Digest::ZERO, "c", &txs);
        let b = execute(&state, &Digest::sha256(b"other"), "c", &txs);
        assert_ne!(a.state_root, b.state_root);
        assert_eq!(a, execute(&state, &Digest::ZERO, "c", &txs));
    }
}
