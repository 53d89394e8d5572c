//! The mempool: admission checks for client transactions, the set of
//! transactions this node has verified but not yet seen committed, and the
//! order in which they are handed to consensus.
//!
//! A transaction is admitted only if its chain id is ours, it fits the size
//! limit, it moves a positive amount to someone else, its signature
//! verifies (batched, on a blocking thread, never on the consensus loop),
//! it is neither pending nor committed, its nonce is not behind the
//! account's and not too far ahead, no other pending transaction uses the
//! same (sender, nonce), its sender's committed balance covers it and
//! everything else of the sender's in the pool, the sender's share of the
//! pool is not used up, and there is room.
//!
//! **Admission an attacker pays for.** Every pooled transfer is backed by
//! its sender's funds: an account the chain does not know can pool
//! nothing, and one with balance `b` at most `b` transfers (amounts are at
//! least 1), at most `sender_txs_max`, of them at most `sender_held_max`
//! held. Filling the pool takes funds spread over many accounts. When a
//! commit lowers a sender's balance below what it has pooled (it spent
//! through another node), or takes a nonce with another transaction, the
//! pooled ones that can no longer execute are dropped. So an honest
//! primary, which proposes only what its pool made ready, proposes no
//! transfer that fails (docs/DESIGN.md, "What a failed transfer costs").
//!
//! **Nonce order.** An admitted transaction is *ready* (handed to the
//! replica, which may propose it) only when every earlier nonce of its
//! sender is committed or ready; otherwise it is *held*. Without this, a
//! transaction that reached only a node that then crashed leaves a gap, and
//! the sender's later transactions are proposed anyway and committed as
//! `BadNonce` failures — which the client cannot repair, since re-signing
//! the same transfer gives the same hash. Held transactions are gossiped
//! like ready ones; a commit that fills a gap releases them, and one whose
//! gap stays open for `nonce_gap_timeout_s` is dropped by the clock
//! ([`Mempool::tick`]), blocks or no blocks.
//!
//! **A full pool** makes room for a transaction that would be ready by
//! dropping held ones, the newest of the sender with the most held first:
//! held work waits on its sender, ready work on nobody. Ready transactions
//! are never dropped to make room: they were handed to consensus already,
//! and dropping them would free nothing there.
//!
//! **One ready queue.** Ready transactions leave the pool through a single
//! queue, filled under the pool's lock in the order readiness was decided
//! ([`Mempool::take_ready`]). Admission happens on several tasks (API,
//! gossip, pre-prepares, commits); had each handed its ready transactions
//! to consensus on its own channel, nonce 5 could overtake nonce 4 on the
//! way, be proposed first, fail, and drag every later nonce of its sender
//! down with it (measured: half of all committed transfers failed at
//! 2,000 tx/s offered before this queue).
//!
//! **Retries.** A committed transaction that failed only because its nonce
//! was ahead (an earlier one was missing when it executed) stays in the
//! pool, held, and is handed to consensus again once the gap fills — if
//! its sender's balance still covers it; no other failure can execute
//! later, and those are dropped.

use crate::config::MempoolConfig;
use phalanx_consensus::ledger::Account;
use phalanx_consensus::{tx_hash, tx_len, Transaction, Transfer, TxResult, TX_BYTES_MAX};
use phalanx_crypto::{Address, AnyKey, Digest, Signed};
use phalanx_storage::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify, Semaphore};

/// How often held transactions are checked for an expired gap: how
/// often the driver should call [`Mempool::tick`].
pub const GAP_SWEEP_EVERY: Duration = Duration::from_secs(1);

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
    #[error("the amount is zero: a transfer moves at least 1")]
    ZeroAmount,
    #[error("the transfer is to its own sender")]
    SelfTransfer,
    #[error("account {address} holds nothing on this chain: it cannot send")]
    UnknownAccount { address: String },
    #[error(
        "balance {balance} does not cover {amount} on top of {pending} already pending from this account"
    )]
    InsufficientFunds {
        balance: u64,
        pending: u128,
        amount: u64,
    },
    #[error("this account has {max} transactions pending here already: wait for some to commit")]
    SenderLimit { max: usize },
    #[error(
        "this account has {max} transactions waiting for an earlier nonce here already: send the missing one"
    )]
    SenderHeldLimit { max: usize },
    #[error("mempool full ({txs} transactions, {bytes} bytes): try again later")]
    MempoolFull { txs: usize, bytes: usize },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the signature check did not complete: try again")]
    VerifierFailed,
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
            SubmitError::ZeroAmount => "zero_amount",
            SubmitError::SelfTransfer => "self_transfer",
            SubmitError::UnknownAccount { .. } => "unknown_account",
            SubmitError::InsufficientFunds { .. } => "insufficient_funds",
            SubmitError::SenderLimit { .. } => "sender_limit",
            SubmitError::SenderHeldLimit { .. } => "sender_held_limit",
            SubmitError::MempoolFull { .. } => "mempool_full",
            SubmitError::Storage(_) => "storage",
            SubmitError::VerifierFailed => "verifier_failed",
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
            // This sender's share is used up; others are still admitted.
            SubmitError::SenderLimit { .. } | SubmitError::SenderHeldLimit { .. } => 429,
            SubmitError::MempoolFull { .. } => 503,
            SubmitError::Storage(_) | SubmitError::VerifierFailed => 500,
            _ => 400,
        }
    }
}

struct Entry {
    bytes: usize,
    sender: Address,
    nonce: u64,
    amount: u64,
    admitted: Instant,
}

/// One sender's place in the nonce order, and its share of the pool.
#[derive(Default)]
struct SenderQueue {
    /// The nonce after the last one handed to consensus (or the account's
    /// next nonce, whichever is higher).
    next_ready: u64,
    /// Transactions waiting for an earlier nonce, by nonce.
    held: BTreeMap<u64, Transaction>,
    /// This sender's transactions in the pool (ready or held): nonce →
    /// hash.
    pooled: BTreeMap<u64, Digest>,
    /// The sum of their amounts: what the sender's balance must cover.
    amount_pooled: u128,
}

impl SenderQueue {
    /// Moves the held transactions that now follow `next_ready` without a
    /// gap into `ready`; returns how many.
    fn release(&mut self, ready: &mut Vec<Transaction>) -> usize {
        let mut released = 0;
        while let Some(tx) = self.held.remove(&self.next_ready) {
            ready.push(tx);
            self.next_ready += 1;
            released += 1;
        }
        released
    }
}

#[derive(Default)]
struct Inner {
    txs: HashMap<Digest, Entry>,
    by_sender_nonce: HashMap<(Address, u64), Digest>,
    senders: HashMap<Address, SenderQueue>,
    bytes: usize,
    held: usize,
    /// Ready transactions not yet taken by consensus, in the order they
    /// became ready.
    ready: Vec<Transaction>,
    /// Committed blocks whose transactions were removed, so admission can
    /// tell that an account it read may be older than the pool.
    blocks_removed: u64,
}

impl Inner {
    /// Forgets one transaction; returns its entry. A ready one still in
    /// the ready queue stays there: see [`Inner::drop_never_executable`].
    fn remove(&mut self, hash: &Digest) -> Option<Entry> {
        let e = self.txs.remove(hash)?;
        self.bytes -= e.bytes;
        self.by_sender_nonce.remove(&(e.sender, e.nonce));
        if let Some(q) = self.senders.get_mut(&e.sender) {
            if q.held.remove(&e.nonce).is_some() {
                self.held -= 1;
            }
            q.pooled.remove(&e.nonce);
            q.amount_pooled -= u128::from(e.amount);
            if q.pooled.is_empty() {
                self.senders.remove(&e.sender);
            }
        }
        debug_assert_eq!(self.txs.len(), self.by_sender_nonce.len());
        Some(e)
    }

    fn is_full(&self, cfg: &MempoolConfig, more_bytes: usize) -> bool {
        self.txs.len() >= cfg.max_txs || self.bytes + more_bytes > cfg.max_bytes
    }

    /// Drops held transactions until one more of `bytes` fits: the newest
    /// of the sender with the most held first. Returns whether it fits.
    fn evict_held_for(&mut self, cfg: &MempoolConfig, bytes: usize) -> bool {
        while self.is_full(cfg, bytes) {
            // Largest share first; ties by address, so every node (and
            // every run) evicts alike.
            let victim = self
                .senders
                .iter()
                .filter_map(|(a, q)| Some((q.held.len(), *a, *q.held.keys().next_back()?)))
                .max();
            let Some((_, sender, nonce)) = victim else {
                return false;
            };
            let hash = self.by_sender_nonce[&(sender, nonce)];
            self.remove(&hash);
        }
        true
    }

    /// After a commit left `sender` with `account`: drops its pooled
    /// transactions that can never execute — below the account's nonce
    /// (another transaction took it) or beyond what the balance covers
    /// (the sender spent through another node), newest first so the rest
    /// stay gap-free. Returns how many were dropped.
    fn drop_never_executable(&mut self, sender: Address, account: &Account) -> usize {
        let Some(q) = self.senders.get(&sender) else {
            return 0;
        };
        let mut doomed: Vec<u64> = q.pooled.range(..account.nonce).map(|(n, _)| *n).collect();
        let mut covered: u128 = q
            .pooled
            .range(account.nonce..)
            .map(|(_, h)| u128::from(self.txs[h].amount))
            .sum();
        for (n, h) in q.pooled.range(account.nonce..).rev() {
            if covered <= u128::from(account.balance) {
                break;
            }
            covered -= u128::from(self.txs[h].amount);
            doomed.push(*n);
        }
        if doomed.is_empty() {
            return 0;
        }
        let gone: BTreeSet<u64> = doomed.iter().copied().collect();
        for n in &doomed {
            if let Some(h) = self.by_sender_nonce.get(&(sender, *n)).copied() {
                self.remove(&h);
            }
        }
        // Ones not yet taken by consensus must not be handed on.
        self.ready
            .retain(|tx| !(gone.contains(&tx.payload.nonce) && tx.signer.address() == sender));
        if let Some(q) = self.senders.get_mut(&sender) {
            // Never past a nonce no longer pooled and not handed on.
            if let Some(first) = gone.range(account.nonce..).next() {
                q.next_ready = q.next_ready.min(*first).max(account.nonce);
            }
        }
        doomed.len()
    }
}

/// What [`Mempool::submit`] did with a list of transactions.
#[derive(Default)]
pub struct Admission {
    /// One verdict per submitted transaction, in order.
    pub verdicts: Vec<Result<Digest, SubmitError>>,
    /// Every newly admitted transaction, ready or held: what to gossip.
    pub admitted: Vec<Transaction>,
}

/// What a committed block changed in the pool.
#[derive(Default)]
pub struct Committed {
    /// How long each committed transaction this node had admitted waited.
    pub waited: Vec<Duration>,
}

/// The pending transactions this node verified.
pub struct Mempool {
    cfg: MempoolConfig,
    chain_id: String,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    last_sweep: Mutex<Instant>,
    /// Signalled when the ready queue gains transactions.
    ready_signal: Notify,
    /// Transactions waiting for their signature check, per request.
    to_verify: Mutex<Vec<VerifyJob>>,
    /// One signature check of client transactions at a time (API requests
    /// and gossip alike); see [`Mempool::verify`].
    verifying: Arc<Semaphore>,
}

/// One request's transactions waiting for a signature check.
struct VerifyJob {
    txs: Vec<Transaction>,
    verdicts: oneshot::Sender<Vec<bool>>,
}

impl Mempool {
    pub fn new(cfg: MempoolConfig, chain_id: String, store: Arc<dyn Store>) -> Mempool {
        Mempool {
            cfg,
            chain_id,
            store,
            inner: Mutex::new(Inner::default()),
            last_sweep: Mutex::new(Instant::now()),
            ready_signal: Notify::new(),
            to_verify: Mutex::new(Vec::new()),
            verifying: Arc::new(Semaphore::new(1)),
        }
    }

    /// Takes the transactions that became ready since the last call, in
    /// the order they became ready: what consensus may propose next.
    pub fn take_ready(&self) -> Vec<Transaction> {
        std::mem::take(&mut self.lock().ready)
    }

    /// Resolves once the ready queue has gained transactions since the
    /// last [`Mempool::take_ready`] (possibly spuriously).
    pub async fn ready_changed(&self) {
        self.ready_signal.notified().await;
    }

    /// Wakes the consumer of the ready queue if it holds anything.
    fn signal_if_ready(&self) {
        if !self.lock().ready.is_empty() {
            self.ready_signal.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks and admits `txs`.
    pub async fn submit(self: &Arc<Self>, txs: Vec<Transaction>) -> Admission {
        let mut out = Admission {
            verdicts: Vec::with_capacity(txs.len()),
            ..Admission::default()
        };
        let mut to_verify = Vec::new();
        let mut positions = Vec::new();
        for (i, tx) in txs.into_iter().enumerate() {
            match self.static_checks(&tx) {
                Ok(hash) => {
                    out.verdicts.push(Ok(hash));
                    to_verify.push(tx);
                    positions.push(i);
                }
                Err(e) => out.verdicts.push(Err(e)),
            }
        }
        if to_verify.is_empty() {
            return out;
        }
        let count = to_verify.len();
        let verdicts = self.verify(to_verify.clone()).await;
        if verdicts.len() != count {
            for pos in positions {
                out.verdicts[pos] = Err(SubmitError::VerifierFailed);
            }
            return out;
        }
        let checked = to_verify.into_iter().zip(verdicts);
        for ((tx, good), pos) in checked.zip(positions) {
            let verdict = if good {
                self.admit(&tx)
            } else {
                Err(SubmitError::BadSignature)
            };
            if verdict.is_ok() {
                out.admitted.push(tx);
            }
            out.verdicts[pos] = verdict;
        }
        self.signal_if_ready();
        out
    }

    /// Checks the signatures of `txs`: whether each is good, or fewer
    /// verdicts than transactions if the check failed.
    ///
    /// One check at a time per node, over everything waiting: requests and
    /// gossip queue their transactions, and whoever gets the turn checks
    /// all that is queued as one batch (larger batches verify faster per
    /// signature). Unbounded, admission ran on as many blocking threads as
    /// requests arrived at once and, under overload, competed with
    /// consensus for the cores: at 12,000 tx/s offered the chain changed
    /// view 6 times and committed 2,867 tx/s. The check runs on its own
    /// task, so a request dropped mid-way (a client hanging up) leaves the
    /// transactions it took from the queue still checked and answered.
    async fn verify(&self, txs: Vec<Transaction>) -> Vec<bool> {
        let (reply, verdicts) = oneshot::channel();
        self.to_verify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(VerifyJob {
                txs,
                verdicts: reply,
            });
        if let Ok(turn) = self.verifying.clone().acquire_owned().await {
            let jobs =
                std::mem::take(&mut *self.to_verify.lock().unwrap_or_else(|p| p.into_inner()));
            if !jobs.is_empty() {
                let chain_id = self.chain_id.clone();
                tokio::spawn(async move {
                    let _turn = turn;
                    let checked = tokio::task::spawn_blocking(move || {
                        let (txs, replies): (Vec<Vec<Transaction>>, Vec<_>) =
                            jobs.into_iter().map(|j| (j.txs, j.verdicts)).unzip();
                        let lens: Vec<usize> = txs.iter().map(Vec::len).collect();
                        let all: Vec<Transaction> = txs.into_iter().flatten().collect();
                        let mut results =
                            Signed::<Transfer>::verify_all(all, &chain_id, &AnyKey).into_iter();
                        for (len, reply) in lens.into_iter().zip(replies) {
                            let mine = results.by_ref().take(len).map(|r| r.is_ok());
                            let _ = reply.send(mine.collect());
                        }
                    })
                    .await;
                    if let Err(e) = checked {
                        tracing::error!("transaction signature check failed: {e}");
                    }
                });
            }
        }
        verdicts.await.unwrap_or_default()
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
        // Would fail in any block: never worth a signature check.
        if tx.payload.amount == 0 {
            return Err(SubmitError::ZeroAmount);
        }
        let sender = tx.signer.address();
        if tx.payload.to == sender {
            return Err(SubmitError::SelfTransfer);
        }
        let hash = tx_hash(tx);
        {
            let inner = self.lock();
            if inner.txs.contains_key(&hash) {
                return Err(SubmitError::Duplicate {
                    hash: hash.to_hex(),
                });
            }
            // Before the signature check too: under overload, what cannot
            // be pooled should cost a lookup, not a verification. (While
            // held work could make room, a ready one may still get in.)
            if inner.held == 0 && inner.is_full(&self.cfg, len as usize) {
                return Err(SubmitError::MempoolFull {
                    txs: inner.txs.len(),
                    bytes: inner.bytes,
                });
            }
        }
        // Before the signature check: late gossip of committed
        // transactions is common and should cost a lookup, not a check.
        self.check_not_committed(&hash)?;
        // And a key without the funds (a fresh one, say) costs a lookup.
        let account = self
            .store
            .account(&sender)
            .map_err(|e| SubmitError::Storage(e.to_string()))?;
        let pending = self
            .lock()
            .senders
            .get(&sender)
            .map_or(0, |q| q.amount_pooled);
        Self::check_funds(&sender, &account, pending, tx.payload.amount)?;
        Ok(hash)
    }

    /// Whether `account` covers `amount` on top of `pending`.
    fn check_funds(
        sender: &Address,
        account: &Account,
        pending: u128,
        amount: u64,
    ) -> Result<(), SubmitError> {
        if account.balance == 0 && account.nonce == 0 {
            return Err(SubmitError::UnknownAccount {
                address: sender.to_hex(),
            });
        }
        if pending + u128::from(amount) > u128::from(account.balance) {
            return Err(SubmitError::InsufficientFunds {
                balance: account.balance,
                pending,
                amount,
            });
        }
        Ok(())
    }

    /// Refuses a transaction that executed (or failed for good). One that
    /// failed only because its nonce was ahead may come again.
    fn check_not_committed(&self, hash: &Digest) -> Result<(), SubmitError> {
        match self.store.tx_location(hash) {
            Ok(None) => Ok(()),
            Ok(Some(loc)) if loc.result.may_execute_later() => Ok(()),
            Ok(Some(loc)) => Err(SubmitError::AlreadyCommitted {
                hash: hash.to_hex(),
                height: loc.height.0,
            }),
            Err(e) => Err(SubmitError::Storage(e.to_string())),
        }
    }

    /// The checks that need state, then insertion: `tx` and any held
    /// transactions it releases join the ready queue.
    fn admit(&self, tx: &Transaction) -> Result<Digest, SubmitError> {
        let hash = tx_hash(tx);
        let storage = |e: phalanx_storage::StorageError| SubmitError::Storage(e.to_string());
        // Again: it may have committed while its signature was checked.
        self.check_not_committed(&hash)?;
        let sender = tx.signer.address();
        // The account and the pool must agree: an account read before a
        // block is applied, used after the pool forgot that block's
        // transactions, would hold this one behind a nonce already spent
        // (for good: no commit of this sender would come to release it).
        loop {
            let seen = self.lock().blocks_removed;
            let account = self.store.account(&sender).map_err(storage)?;
            if let Some(verdict) = self.admit_as_of(tx, hash, &account, seen) {
                return verdict;
            }
        }
    }

    /// Admits `tx` given its sender's `account` as read when the pool had
    /// removed `seen` blocks; `None` if the pool has removed more since
    /// (the account may be older than the pool: read it again).
    fn admit_as_of(
        &self,
        tx: &Transaction,
        hash: Digest,
        account: &Account,
        seen: u64,
    ) -> Option<Result<Digest, SubmitError>> {
        let mut inner = self.lock();
        if inner.blocks_removed != seen {
            return None;
        }
        Some(self.insert(&mut inner, tx, hash, account))
    }

    /// The nonce, funds, share and capacity checks, then insertion, under
    /// the lock.
    fn insert(
        &self,
        inner: &mut Inner,
        tx: &Transaction,
        hash: Digest,
        account: &Account,
    ) -> Result<Digest, SubmitError> {
        let sender = tx.signer.address();
        let nonce = tx.payload.nonce;
        let amount = tx.payload.amount;
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
        if inner.txs.contains_key(&hash) {
            return Err(SubmitError::Duplicate {
                hash: hash.to_hex(),
            });
        }
        if inner.by_sender_nonce.contains_key(&(sender, nonce)) {
            return Err(SubmitError::NonceInUse { nonce });
        }
        let (pending, pooled, held, next_ready) =
            inner.senders.get(&sender).map_or((0, 0, 0, 0), |q| {
                (q.amount_pooled, q.pooled.len(), q.held.len(), q.next_ready)
            });
        Self::check_funds(&sender, account, pending, amount)?;
        if pooled >= self.cfg.sender_txs_max {
            return Err(SubmitError::SenderLimit {
                max: self.cfg.sender_txs_max,
            });
        }
        let will_be_ready = nonce <= next_ready.max(account.nonce);
        if !will_be_ready && held >= self.cfg.sender_held_max {
            return Err(SubmitError::SenderHeldLimit {
                max: self.cfg.sender_held_max,
            });
        }
        // A full pool makes room for ready work only, and only from held.
        if inner.is_full(&self.cfg, bytes)
            && !(will_be_ready && inner.evict_held_for(&self.cfg, bytes))
        {
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
                amount,
                admitted: Instant::now(),
            },
        );
        let Inner {
            senders,
            held,
            ready,
            ..
        } = &mut *inner;
        let q = senders.entry(sender).or_default();
        q.pooled.insert(nonce, hash);
        q.amount_pooled += u128::from(amount);
        q.next_ready = q.next_ready.max(account.nonce);
        if nonce > q.next_ready {
            q.held.insert(nonce, tx.clone());
            *held += 1;
        } else {
            // At the next nonce, or refilling one below it (a transaction
            // that failed or was lost before it committed).
            ready.push(tx.clone());
            if nonce == q.next_ready {
                q.next_ready += 1;
                *held -= q.release(ready);
            }
        }
        debug_assert!(q.amount_pooled <= u128::from(account.balance));
        debug_assert!(q.pooled.len() <= self.cfg.sender_txs_max);
        debug_assert!(inner.txs.len() <= self.cfg.max_txs && inner.bytes <= self.cfg.max_bytes);
        Ok(hash)
    }

    /// Pools transactions whose signatures were checked elsewhere (in a
    /// verified pre-prepare). Ones already pooled, committed or refused are
    /// skipped.
    pub fn admit_verified(&self, txs: &[Transaction]) {
        for tx in txs {
            if self.static_checks(tx).is_ok() {
                let _ = self.admit(tx);
            }
        }
        self.signal_if_ready();
    }

    /// Whether `hash` is a transaction this node verified (its signature
    /// need not be checked again in a pre-prepare).
    pub fn is_verified(&self, hash: &Digest) -> bool {
        self.lock().txs.contains_key(hash)
    }

    pub fn contains(&self, hash: &Digest) -> bool {
        self.is_verified(hash)
    }

    /// Forgets the committed transactions of a block that `store` has
    /// applied (`results` are theirs), keeps held the ones that failed only
    /// because their nonce was ahead, releases held transactions whose gap
    /// the block filled, and drops the ones that can no longer execute
    /// (their nonce was taken, or their sender's balance no longer covers
    /// them).
    pub fn remove_committed(&self, txs: &[Transaction], results: &[TxResult]) -> Committed {
        debug_assert_eq!(txs.len(), results.len());
        let mut out = Committed::default();
        let senders: BTreeSet<Address> = txs.iter().map(|tx| tx.signer.address()).collect();
        // Accounts after the block, read before taking the lock.
        let accounts: Vec<(Address, Account)> = senders
            .into_iter()
            .filter_map(|a| Some((a, self.store.account(&a).ok()?)))
            .collect();
        let mut inner = self.lock();
        inner.blocks_removed += 1;
        for (tx, result) in txs.iter().zip(results) {
            let hash = tx_hash(tx);
            // Only a nonce ahead may execute later: every other failure
            // (balance, zero amount, self-transfer, wrong chain, a nonce
            // behind) fails the same way again, so it is dropped.
            if result.may_execute_later() {
                if inner.txs.contains_key(&hash) {
                    let Inner { senders, held, .. } = &mut *inner;
                    if let Some(q) = senders.get_mut(&tx.signer.address()) {
                        if q.held.insert(tx.payload.nonce, tx.clone()).is_none() {
                            *held += 1;
                        }
                    }
                }
            } else if let Some(e) = inner.remove(&hash) {
                out.waited.push(e.admitted.elapsed());
            }
        }
        for (sender, account) in accounts {
            inner.drop_never_executable(sender, &account);
            let nonce = account.nonce;
            let Inner {
                senders,
                held,
                ready,
                by_sender_nonce,
                ..
            } = &mut *inner;
            let Some(q) = senders.get_mut(&sender) else {
                continue;
            };
            if nonce < q.next_ready && q.held.contains_key(&nonce) {
                // A retried transaction at the account's nonce executes
                // next: hand it on again, with every retried one after it
                // whose earlier nonces are all on their way (in the pool,
                // handed on) — one at a time, a sender whose transfers
                // failed in a run recovered one nonce per block. Never move
                // `next_ready` back: the nonces between were handed on, and
                // holding new ones behind them would leave them out of this
                // node's proposals while its peers have them ready.
                let mut n = nonce;
                while n < q.next_ready {
                    if let Some(tx) = q.held.remove(&n) {
                        ready.push(tx);
                        *held -= 1;
                    } else if !by_sender_nonce.contains_key(&(sender, n)) {
                        break;
                    }
                    n += 1;
                }
            }
            q.next_ready = q.next_ready.max(nonce);
            *held -= q.release(ready);
            debug_assert!(q.amount_pooled <= u128::from(account.balance));
        }
        drop(inner);
        self.signal_if_ready();
        // Also on commits, should the driver's tick lag.
        let due = {
            let last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            last.elapsed() >= GAP_SWEEP_EVERY
        };
        if due {
            self.tick(Instant::now());
        }
        out
    }

    /// Drops held transactions whose gap has been open longer than
    /// `nonce_gap_timeout_s` at `now`; returns how many. The driver calls
    /// it every [`GAP_SWEEP_EVERY`]: on a clock, not on commits, so a pool
    /// full of held work drains even when nothing commits (issue 16: the
    /// sweep ran only on commits, a full pool admitted nothing, nothing
    /// committed, and the chain stood still for minutes).
    pub fn tick(&self, now: Instant) -> usize {
        *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let timeout = Duration::from_secs(self.cfg.nonce_gap_timeout_s);
        let mut inner = self.lock();
        if inner.held == 0 {
            return 0;
        }
        let expired: Vec<Digest> = inner
            .senders
            .iter()
            .flat_map(|(sender, q)| q.held.keys().map(move |n| (*sender, *n)))
            .filter_map(|key| inner.by_sender_nonce.get(&key).copied())
            .filter(|h| {
                inner
                    .txs
                    .get(h)
                    .is_some_and(|e| now.saturating_duration_since(e.admitted) > timeout)
            })
            .collect();
        for h in &expired {
            inner.remove(h);
        }
        expired.len()
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

    /// How many admitted transactions wait for an earlier nonce.
    pub fn held(&self) -> usize {
        self.lock().held
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
        let cfg = MempoolConfig {
            max_txs,
            max_bytes: 1 << 20,
            nonce_ahead_max: 5,
            nonce_gap_timeout_s: 60,
            ..MempoolConfig::default()
        };
        let pool = setup_with(cfg, &[(&alice, 100)]);
        (pool, alice)
    }

    /// A pool over a chain whose genesis funds `accounts`.
    fn setup_with(cfg: MempoolConfig, accounts: &[(&Keypair, u64)]) -> Arc<Mempool> {
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
            accounts: accounts
                .iter()
                .map(|(key, balance)| GenesisAccount {
                    address: key.address(),
                    balance: *balance,
                })
                .collect(),
        };
        let store = MemStore::new();
        store.init_genesis(&genesis).unwrap();
        Arc::new(Mempool::new(cfg, "c".into(), Arc::new(store)))
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
        let Admission { verdicts, admitted } = pool
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
        assert_eq!(
            pool.take_ready().len(),
            3,
            "nonces 0, 1, 2 follow one another"
        );
        assert_eq!(pool.pending_nonce(&alice.address(), 0), 3);
        assert_eq!(pool.size().0, 3);
        let committed = commit(&pool, 1, vec![first.clone()]);
        assert_eq!(committed.waited.len(), 1);
        assert!(pool.take_ready().is_empty());
        assert_eq!(pool.size().0, 2);
        assert!(!pool.is_verified(&tx_hash(&first)));
        assert_eq!(SubmitError::MempoolFull { txs: 1, bytes: 1 }.status(), 503);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_a_signature_check_and_get_their_own_verdicts() {
        let keys: Vec<Keypair> = (0..16)
            .map(|i| Keypair::insecure_from_label(&format!("sender-{i}")))
            .collect();
        // Funded: a key the chain does not know is refused before its
        // signature is checked.
        let funded: Vec<(&Keypair, u64)> = keys.iter().map(|k| (k, 10)).collect();
        let pool = setup_with(MempoolConfig::default(), &funded);
        let requests: Vec<Transaction> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut t = tx(key, "c", 0, 1);
                if i % 5 == 0 {
                    t.signature.0[9] ^= 1;
                }
                t
            })
            .collect();
        let answers: Vec<_> = requests
            .into_iter()
            .map(|t| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(vec![t]).await })
            })
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            let want = if i % 5 == 0 { "bad_signature" } else { "ok" };
            assert_eq!(
                codes(&answer.await.unwrap().verdicts),
                vec![want],
                "request {i}"
            );
        }
        assert_eq!(pool.size().0, 12);
    }

    #[tokio::test]
    async fn a_request_dropped_while_waiting_leaves_the_others_answered() {
        let (pool, alice) = setup(100);
        // Someone else's check is running: both requests queue behind it.
        let turn = pool.verifying.clone().acquire_owned().await.unwrap();
        let dropped = {
            let pool = pool.clone();
            let t = tx(&alice, "c", 0, 1);
            tokio::spawn(async move { pool.submit(vec![t]).await })
        };
        let kept = {
            let pool = pool.clone();
            let t = tx(&alice, "c", 1, 1);
            tokio::spawn(async move { pool.submit(vec![t]).await })
        };
        while pool.to_verify.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        dropped.abort();
        drop(turn);
        let answer = tokio::time::timeout(Duration::from_secs(10), kept)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(codes(&answer.verdicts), vec!["ok"]);
    }

    /// Applies `txs` as block `height` to the pool's store, then tells the
    /// pool, as the node does after a commit.
    fn commit(pool: &Mempool, height: u64, txs: Vec<Transaction>) -> Committed {
        let batch = phalanx_consensus::Batch {
            txs: txs.clone(),
            timestamp_ms: height,
        };
        let committed = phalanx_consensus::CommittedBatch {
            certificate: phalanx_consensus::CommitCertificate {
                view: phalanx_consensus::View(0),
                seq: phalanx_consensus::SeqNum(height),
                batch_digest: batch.digest(),
                votes: Vec::new(),
            },
            batch,
        };
        let block = pool.store.apply_committed("c", &committed).unwrap();
        pool.remove_committed(&txs, &block.results)
    }

    fn hashes(txs: &[Transaction]) -> Vec<Digest> {
        txs.iter().map(tx_hash).collect()
    }

    #[tokio::test]
    async fn a_nonce_gap_holds_later_transactions_until_it_fills() {
        let (pool, alice) = setup(100);
        let (t0, t1, t2, t3) = (
            tx(&alice, "c", 0, 1),
            tx(&alice, "c", 1, 1),
            tx(&alice, "c", 2, 1),
            tx(&alice, "c", 3, 1),
        );
        // 2 and 3 arrive first: admitted (and gossiped) but held.
        let a = pool.submit(vec![t3.clone(), t2.clone()]).await;
        assert_eq!(codes(&a.verdicts), vec!["ok", "ok"]);
        assert_eq!(a.admitted.len(), 2);
        assert!(
            pool.take_ready().is_empty(),
            "nothing is ready while nonce 0 is missing"
        );
        assert_eq!(pool.held(), 2);
        assert!(
            pool.is_verified(&tx_hash(&t2)),
            "held ones count as verified"
        );
        // 0 arrives: ready on its own; 1 is still missing.
        pool.submit(vec![t0.clone()]).await;
        assert_eq!(
            hashes(&pool.take_ready()),
            hashes(std::slice::from_ref(&t0))
        );
        // 1 fills the gap and releases 2 and 3, in nonce order.
        pool.submit(vec![t1.clone()]).await;
        assert_eq!(hashes(&pool.take_ready()), hashes(&[t1, t2, t3]));
        assert_eq!(pool.held(), 0);
        assert_eq!(pool.pending_nonce(&alice.address(), 0), 4);
    }

    #[tokio::test]
    async fn a_commit_from_elsewhere_fills_the_gap() {
        let (pool, alice) = setup(100);
        let (t0, t1, t2) = (
            tx(&alice, "c", 0, 1),
            tx(&alice, "c", 1, 1),
            tx(&alice, "c", 2, 1),
        );
        pool.submit(vec![t1.clone(), t2.clone()]).await;
        assert!(pool.take_ready().is_empty());
        // Nonce 0 never reached this node, but another primary committed it.
        let c = commit(&pool, 1, vec![t0]);
        assert!(c.waited.is_empty(), "we never had it");
        assert_eq!(
            hashes(&pool.take_ready()),
            hashes(&[t1.clone(), t2.clone()])
        );
        assert_eq!(pool.held(), 0);
        // Committing the released ones empties the pool.
        let c = commit(&pool, 2, vec![t1, t2]);
        assert_eq!(c.waited.len(), 2);
        assert_eq!(pool.size(), (0, 0));
    }

    #[tokio::test]
    async fn held_transactions_made_stale_by_a_commit_are_dropped() {
        let (pool, alice) = setup(100);
        let mine = tx(&alice, "c", 1, 7);
        pool.submit(vec![mine.clone()]).await;
        assert!(pool.take_ready().is_empty());
        // A different transaction with nonce 1 commits (after nonce 0).
        commit(&pool, 1, vec![tx(&alice, "c", 0, 1), tx(&alice, "c", 1, 2)]);
        assert!(pool.take_ready().is_empty());
        assert!(!pool.is_verified(&tx_hash(&mine)), "nonce 1 is taken");
        assert_eq!(pool.held(), 0);
        assert_eq!(pool.size(), (0, 0));
    }

    #[tokio::test]
    async fn a_transaction_that_failed_for_its_nonce_is_held_and_retried() {
        let (pool, alice) = setup(100);
        let (t0, t1, t2) = (
            tx(&alice, "c", 0, 1),
            tx(&alice, "c", 1, 1),
            tx(&alice, "c", 2, 1),
        );
        // 1 and 2 reach this node after 0 (all ready, in order)...
        pool.submit(vec![t0.clone(), t1.clone(), t2.clone()]).await;
        assert_eq!(pool.take_ready().len(), 3);
        // ...but another primary orders 2 before 0 and 1: 2 fails, ahead.
        let c = commit(&pool, 1, vec![t2.clone()]);
        assert!(c.waited.is_empty(), "a failed one is not done");
        assert!(pool.is_verified(&tx_hash(&t2)), "kept for a retry");
        assert_eq!(pool.held(), 1);
        assert!(pool.take_ready().is_empty(), "0 and 1 still missing");
        // 0 commits: 1 was handed on already, so 2 still waits for it.
        commit(&pool, 2, vec![t0]);
        assert!(pool.take_ready().is_empty());
        // 1 commits: 2 is ready again, without the client resending it.
        commit(&pool, 3, vec![t1]);
        assert_eq!(
            hashes(&pool.take_ready()),
            hashes(std::slice::from_ref(&t2))
        );
        assert_eq!(pool.held(), 0);
        let c = commit(&pool, 4, vec![t2]);
        assert_eq!(c.waited.len(), 1);
        assert_eq!(pool.size(), (0, 0));
    }

    #[tokio::test]
    async fn a_run_of_retries_is_handed_on_together() {
        let (pool, alice) = setup(100);
        let t: Vec<Transaction> = (0..4).map(|n| tx(&alice, "c", n, 1)).collect();
        pool.submit(t.clone()).await;
        assert_eq!(pool.take_ready().len(), 4);
        // A censoring primary proposes 1 and 3 without 0: both fail.
        commit(&pool, 1, vec![t[1].clone(), t[3].clone()]);
        assert_eq!(pool.held(), 2);
        // Its successor proposes 0 and 2: 0 executes, 2 fails behind 1.
        // 1 executes next, and 2 and 3 follow it: all three go on at once,
        // in nonce order (one at a time, each would wait a block).
        commit(&pool, 2, vec![t[0].clone(), t[2].clone()]);
        assert_eq!(hashes(&pool.take_ready()), hashes(&t[1..]));
        assert_eq!(pool.held(), 0);
        let c = commit(&pool, 3, t[1..].to_vec());
        assert_eq!(c.waited.len(), 3);
        assert_eq!(pool.size(), (0, 0));
    }

    #[tokio::test]
    async fn a_retry_does_not_hold_back_the_senders_next_transactions() {
        let (pool, alice) = setup(100);
        let (t0, t1, t2, t3) = (
            tx(&alice, "c", 0, 1),
            tx(&alice, "c", 1, 1),
            tx(&alice, "c", 2, 1),
            tx(&alice, "c", 3, 1),
        );
        pool.submit(vec![t0.clone(), t1.clone(), t2.clone()]).await;
        assert_eq!(pool.take_ready().len(), 3);
        // 2 fails ahead of 0 and 1, which are still on their way.
        commit(&pool, 1, vec![t2.clone()]);
        // 3 follows 2, which was handed on once: it is ready at once, as on
        // every peer that saw no failure. (Held, this node's proposals
        // would leave it out while its peers wait for it, and suspect.)
        pool.submit(vec![t3.clone()]).await;
        assert_eq!(hashes(&pool.take_ready()), hashes(&[t3]));
        commit(&pool, 2, vec![t0, t1]);
        assert_eq!(hashes(&pool.take_ready()), hashes(&[t2]));
        assert_eq!(pool.held(), 0);
    }

    #[tokio::test]
    async fn an_account_read_before_a_block_is_read_again() {
        let (pool, alice) = setup(100);
        let (t0, t1) = (tx(&alice, "c", 0, 1), tx(&alice, "c", 1, 1));
        pool.submit(vec![t0.clone()]).await;
        assert_eq!(pool.take_ready().len(), 1);
        // Admitting 1 reads alice's account (nonce 0)...
        let seen = pool.lock().blocks_removed;
        let stale = pool.store.account(&alice.address()).unwrap();
        // ...then 0 commits and the pool forgets alice before 1 is inserted.
        commit(&pool, 1, vec![t0]);
        assert!(
            pool.admit_as_of(&t1, tx_hash(&t1), &stale, seen).is_none(),
            "held behind nonce 0, which is spent, 1 would never be proposed"
        );
        pool.submit(vec![t1.clone()]).await;
        assert_eq!(hashes(&pool.take_ready()), hashes(&[t1]));
    }

    #[tokio::test]
    async fn a_gap_left_open_too_long_drops_the_held_transactions() {
        let (pool, alice) = setup(100);
        let held = tx(&alice, "c", 5, 1);
        pool.submit(vec![held.clone()]).await;
        assert!(pool.take_ready().is_empty());
        // Age the entry and the sweep clock instead of sleeping.
        let past = Instant::now() - Duration::from_secs(61);
        pool.lock().txs.values_mut().for_each(|e| e.admitted = past);
        *pool.last_sweep.lock().unwrap() = past;
        commit(&pool, 1, vec![]);
        assert!(!pool.is_verified(&tx_hash(&held)));
        assert_eq!((pool.held(), pool.size()), (0, (0, 0)));
    }

    /// Issue 16: the gap timeout was swept only when a block committed; a
    /// pool full of held work admitted nothing, so nothing committed and
    /// nothing was swept. (Before this change there was no clock to call.)
    #[tokio::test]
    async fn the_clock_drops_a_held_transaction_whose_gap_never_fills_with_no_block() {
        let (pool, alice) = setup(100);
        let held = tx(&alice, "c", 2, 1);
        pool.submit(vec![held.clone()]).await;
        assert_eq!(pool.held(), 1);
        let now = Instant::now();
        assert_eq!(pool.tick(now + Duration::from_secs(59)), 0, "not yet");
        assert!(pool.is_verified(&tx_hash(&held)));
        assert_eq!(pool.tick(now + Duration::from_secs(61)), 1);
        assert!(!pool.is_verified(&tx_hash(&held)));
        assert_eq!((pool.held(), pool.size()), (0, (0, 0)));
        // The sender's share is free again.
        pool.submit(vec![tx(&alice, "c", 0, 1)]).await;
        assert_eq!(pool.take_ready().len(), 1);
    }

    /// One sender's share of the pool: `sender_txs_max` in all, of them
    /// `sender_held_max` held. (Before this change the only bound was the
    /// nonce window, `nonce_ahead_max` + 1 = 10,001 of a 20,000 pool.)
    #[tokio::test]
    async fn one_sender_gets_its_share_and_no_more() {
        let (alice, bob) = (
            Keypair::insecure_from_label("alice"),
            Keypair::insecure_from_label("bob"),
        );
        let cfg = MempoolConfig {
            max_txs: 100,
            nonce_ahead_max: 64,
            sender_txs_max: 4,
            sender_held_max: 2,
            ..MempoolConfig::default()
        };
        let pool = setup_with(cfg, &[(&alice, 100), (&bob, 100)]);
        let a: Vec<Transaction> = (0..5).map(|n| tx(&alice, "c", n, 1)).collect();
        let verdicts = pool.submit(a).await.verdicts;
        assert_eq!(
            codes(&verdicts),
            vec!["ok", "ok", "ok", "ok", "sender_limit"]
        );
        assert_eq!(verdicts[4].as_ref().unwrap_err().status(), 429);
        // Bob's nonce 0 is missing: two held, the third refused.
        let b: Vec<Transaction> = (1..4).map(|n| tx(&bob, "c", n, 1)).collect();
        assert_eq!(
            codes(&pool.submit(b).await.verdicts),
            vec!["ok", "ok", "sender_held_limit"]
        );
        // A ready one is still within his share, and releases the held.
        pool.submit(vec![tx(&bob, "c", 0, 1)]).await;
        assert_eq!(pool.held(), 0);
        assert_eq!(pool.take_ready().len(), 4 + 3);
        // A commit frees alice's share.
        commit(&pool, 1, vec![tx(&alice, "c", 0, 1)]);
        assert_eq!(
            codes(&pool.submit(vec![tx(&alice, "c", 4, 1)]).await.verdicts),
            vec!["ok"]
        );
    }

    /// A transfer that failed for its nonce (ahead) may execute later only
    /// if its sender can still pay for it. Before this change it was held
    /// for retry and handed on again here, to fail for its balance.
    #[tokio::test]
    async fn a_nonce_failure_the_balance_no_longer_covers_is_not_retried() {
        let (pool, alice) = setup(100);
        let (t0, t1) = (tx(&alice, "c", 0, 60), tx(&alice, "c", 1, 40));
        pool.submit(vec![t0.clone(), t1.clone()]).await;
        assert_eq!(pool.take_ready().len(), 2);
        // A faulty primary orders t1 first (it fails, nonce ahead), then a
        // transfer of alice's that another node admitted: nonce 0, all 100.
        commit(&pool, 1, vec![t1.clone(), tx(&alice, "c", 0, 100)]);
        assert!(pool.take_ready().is_empty(), "t1 can never execute");
        assert!(!pool.is_verified(&tx_hash(&t1)));
        assert_eq!((pool.held(), pool.size()), (0, (0, 0)));
    }
}
