//! The mempool: admission checks for client transactions, and the set of
//! transactions this node has verified but not yet seen committed.
//!
//! A transaction is admitted only if its chain id is ours, it fits the size
//! limit, its signature verifies (batched, on a blocking thread, never on
//! the consensus loop), it is neither pending nor committed, its nonce is
//! not behind the account's and not too far ahead, no other pending
//! transaction uses the same (sender, nonce), and there is room.

use crate::config::MempoolConfig;
use phalanx_consensus::{tx_hash, tx_len, Transaction, Transfer, TX_BYTES_MAX};
use phalanx_crypto::{Address, AnyKey, Digest, Signed};
use phalanx_storage::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why a transaction was refused. Each maps to an HTTP status and a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("wrong chain id: this chain is {expected:?}, the transaction says {got:?}")]
    WrongChain { expected: String, got: String },
    #[error("transaction is {len} bytes, the limit is {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("signature does not verify for the sender's key")]
    BadSignature,
    #[error("transaction {hash} is already pending")]
    Duplicate { hash: String },
    #[error("transaction {hash} is already committed at height {height}")]
    AlreadyCommitted { hash: String, height: u64 },
    #[error("nonce {got} is stale: the account's next nonce is {expected}")]
    StaleNonce { expected: u64, got: u64 },
    #[error("nonce {got} is too far ahead of the account's next nonce {expected}")]
    NonceTooFarAhead { expected: u64, got: u64 },
    #[error("another pending transaction from this account uses nonce {nonce}")]
    NonceInUse { nonce: u64 },
    #[error("mempool full ({txs} transactions, {bytes} bytes): try again later")]
    MempoolFull { txs: usize, bytes: usize },
    #[error("storage error: {0}")]
    Storage(String),
}

impl SubmitError {
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::WrongChain { .. } => "wrong_chain_id",
            SubmitError::TooLarge { .. } => "too_large",
            SubmitError::BadSignature => "bad_signature",
            SubmitError::Duplicate { .. } => "duplicate",
            SubmitError::AlreadyCommitted { .. } => "already_committed",
            SubmitError::StaleNonce { .. } => "stale_nonce",
            SubmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            SubmitError::NonceInUse { .. } => "nonce_in_use",
            SubmitError::MempoolFull { .. } => "mempool_full",
            SubmitError::Storage(_) => "storage",
        }
    }

    /// The HTTP status for this rejection.
    pub fn status(&self) -> u16 {
        match self {
            SubmitError::Duplicate { .. }
            | SubmitError::AlreadyCommitted { .. }
            | SubmitError::NonceInUse { .. }
            | SubmitError::StaleNonce { .. } => 409,
            SubmitError::TooLarge { .. } => 413,
            SubmitError::MempoolFull { .. } => 503,
            SubmitError::Storage(_) => 500,
            _ => 400,
        }
    }
}

struct Entry {
    bytes: usize,
    sender: Address,
    nonce: u64,
    admitted: Instant,
}

#[derive(Default)]
struct Inner {
    txs: HashMap<Digest, Entry>,
    by_sender_nonce: HashMap<(Address, u64), Digest>,
    bytes: usize,
}

/// The pending transactions this node verified.
pub struct Mempool {
    cfg: MempoolConfig,
    chain_id: String,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
}

impl Mempool {
    pub fn new(cfg: MempoolConfig, chain_id: String, store: Arc<dyn Store>) -> Mempool {
        Mempool {
            cfg,
            chain_id,
            store,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks and admits `txs`. Returns one verdict per transaction and the
    /// admitted ones, in order.
    pub async fn submit(
        self: &Arc<Self>,
        txs: Vec<Transaction>,
    ) -> (Vec<Result<Digest, SubmitError>>, Vec<Transaction>) {
        let mut verdicts: Vec<Result<Digest, SubmitError>> = Vec::with_capacity(txs.len());
        let mut to_verify = Vec::new();
        let mut positions = Vec::new();
        for (i, tx) in txs.into_iter().enumerate() {
            match self.static_checks(&tx) {
                Ok(hash) => {
                    verdicts.push(Ok(hash));
                    to_verify.push(tx);
                    positions.push(i);
                }
                Err(e) => verdicts.push(Err(e)),
            }
        }
        // Signatures: batched, off the async threads.
        let chain_id = self.chain_id.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let results = Signed::<Transfer>::verify_all(to_verify.clone(), &chain_id, &AnyKey);
            to_verify.into_iter().zip(results).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut admitted = Vec::new();
        for ((tx, sig), pos) in checked.into_iter().zip(positions) {
            let verdict = match sig {
                Err(_) => Err(SubmitError::BadSignature),
                Ok(_) => self.admit(&tx),
            };
            if verdict.is_ok() {
                admitted.push(tx);
            }
            verdicts[pos] = verdict;
        }
        (verdicts, admitted)
    }

    fn static_checks(&self, tx: &Transaction) -> Result<Digest, SubmitError> {
        if tx.payload.chain_id != self.chain_id {
            return Err(SubmitError::WrongChain {
                expected: self.chain_id.clone(),
                got: tx.payload.chain_id.clone(),
            });
        }
        let len = tx_len(tx);
        if len > TX_BYTES_MAX {
            return Err(SubmitError::TooLarge {
                len,
                max: TX_BYTES_MAX,
            });
        }
        let hash = tx_hash(tx);
        if self.lock().txs.contains_key(&hash) {
            return Err(SubmitError::Duplicate {
                hash: hash.to_hex(),
            });
        }
        Ok(hash)
    }

    /// The checks that need state, then insertion.
    fn admit(&self, tx: &Transaction) -> Result<Digest, SubmitError> {
        let hash = tx_hash(tx);
        let storage = |e: phalanx_storage::StorageError| SubmitError::Storage(e.to_string());
        if let Some(loc) = self.store.tx_location(&hash).map_err(storage)? {
            return Err(SubmitError::AlreadyCommitted {
                hash: hash.to_hex(),
                height: loc.height.0,
            });
        }
        let account = self.store.account(&tx.signer.address()).map_err(storage)?;
        let nonce = tx.payload.nonce;
        if nonce < account.nonce {
            return Err(SubmitError::StaleNonce {
                expected: account.nonce,
                got: nonce,
            });
        }
        if nonce > account.nonce.saturating_add(self.cfg.nonce_ahead_max) {
            return Err(SubmitError::NonceTooFarAhead {
                expected: account.nonce,
                got: nonce,
            });
        }
        let bytes = tx_len(tx) as usize;
        let mut inner = self.lock();
        if inner.txs.contains_key(&hash) {
            return Err(SubmitError::Duplicate {
                hash: hash.to_hex(),
            });
        }
        let sender = tx.signer.address();
        if inner.by_sender_nonce.contains_key(&(sender, nonce)) {
            return Err(SubmitError::NonceInUse { nonce });
        }
        if inner.txs.len() >= self.cfg.max_txs || inner.bytes + bytes > self.cfg.max_bytes {
            return Err(SubmitError::MempoolFull {
                txs: inner.txs.len(),
                bytes: inner.bytes,
            });
        }
        inner.bytes += bytes;
        inner.by_sender_nonce.insert((sender, nonce), hash);
        inner.txs.insert(
            hash,
            Entry {
                bytes,
                sender,
                nonce,
                admitted: Instant::now(),
            },
        );
        Ok(hash)
    }

    /// Whether `hash` is a transaction this node verified (its signature
    /// need not be checked again in a pre-prepare).
    pub fn is_verified(&self, hash: &Digest) -> bool {
        self.lock().txs.contains_key(hash)
    }

    pub fn contains(&self, hash: &Digest) -> bool {
        self.is_verified(hash)
    }

    /// Forgets committed transactions; returns how long each one we had
    /// admitted waited, for the latency histogram.
    pub fn remove_committed(&self, hashes: &[Digest]) -> Vec<std::time::Duration> {
        let mut inner = self.lock();
        let mut waited = Vec::new();
        for h in hashes {
            if let Some(e) = inner.txs.remove(h) {
                inner.bytes -= e.bytes;
                inner.by_sender_nonce.remove(&(e.sender, e.nonce));
                waited.push(e.admitted.elapsed());
            }
        }
        waited
    }

    /// The nonce after the pending transactions that follow `committed`
    /// without a gap: what a wallet should use next.
    pub fn pending_nonce(&self, sender: &Address, committed: u64) -> u64 {
        let inner = self.lock();
        let mut next = committed;
        while inner.by_sender_nonce.contains_key(&(*sender, next)) {
            next += 1;
        }
        next
    }

    /// (transactions, bytes)
    pub fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.txs.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::{Genesis, GenesisAccount};
    use phalanx_crypto::Keypair;
    use phalanx_storage::MemStore;

    fn setup(max_txs: usize) -> (Arc<Mempool>, Keypair) {
        let alice = Keypair::insecure_from_label("alice");
        let genesis = Genesis {
            chain_id: "c".into(),
            genesis_time_ms: 0,
            test_network: true,
            validators: vec![phalanx_consensus::GenesisValidator {
                name: "v0".into(),
                public_key: Keypair::insecure_from_label("v0").public(),
                p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
            }],
            consensus: Default::default(),
            accounts: vec![GenesisAccount {
                address: alice.address(),
                balance: 100,
            }],
        };
        let store = MemStore::new();
        store.init_genesis(&genesis).unwrap();
        let cfg = MempoolConfig {
            max_txs,
            max_bytes: 1 << 20,
            nonce_ahead_max: 5,
        };
        (
            Arc::new(Mempool::new(cfg, "c".into(), Arc::new(store))),
            alice,
        )
    }

    fn tx(key: &Keypair, chain: &str, nonce: u64, amount: u64) -> Transaction {
        Signed::sign(
            Transfer {
                chain_id: chain.into(),
                to: Address([1; 20]),
                amount,
                nonce,
            },
            key,
            chain,
        )
    }

    fn codes(v: &[Result<Digest, SubmitError>]) -> Vec<&'static str> {
        v.iter()
            .map(|r| r.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code()))
            .collect()
    }

    #[tokio::test]
    async fn admission_rules_table() {
        let (pool, alice) = setup(3);
        let mut forged = tx(&alice, "c", 3, 1);
        forged.signature.0[9] ^= 1;
        let first = tx(&alice, "c", 0, 1);
        let (verdicts, admitted) = pool
            .submit(vec![
                first.clone(),
                first.clone(),
                tx(&alice, "other", 1, 1),
                forged,
                tx(&alice, "c", 0, 2),
                tx(&alice, "c", 99, 1),
                tx(&alice, "c", 1, 1),
                tx(&alice, "c", 2, 1),
                tx(&alice, "c", 3, 1),
            ])
            .await;
        assert_eq!(
            codes(&verdicts),
            vec![
                "ok",
                "duplicate",
                "wrong_chain_id",
                "bad_signature",
                "nonce_in_use",
                "nonce_too_far_ahead",
                "ok",
                "ok",
                "mempool_full"
            ]
        );
        assert_eq!(admitted.len(), 3);
        assert_eq!(pool.pending_nonce(&alice.address(), 0), 3);
        assert_eq!(pool.size().0, 3);
        let waited = pool.remove_committed(&[tx_hash(&first)]);
        assert_eq!(waited.len(), 1);
        assert_eq!(pool.size().0, 2);
        assert!(!pool.is_verified(&tx_hash(&first)));
        assert_eq!(SubmitError::MempoolFull { txs: 1, bytes: 1 }.status(), 503);
    }
}
