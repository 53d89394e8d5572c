//! Catch-up serving, off the consensus loop.
//!
//! The replica answers a verified catch-up request with
//! `Output::ServeCatchUp`; the loop only hands it to this task, which reads
//! the blocks from the store on a blocking thread and sends them. Each peer
//! may have at most [`SERVE_PENDING_PER_PEER_MAX`] ranges waiting (a
//! replica asks for at most `CATCH_UP_RANGES_IN_FLIGHT` at once; more, or
//! the same range again, is dropped and counted) and is served at most
//! [`SERVE_BYTES_PER_S_PER_PEER`] on average, round robin over peers, so one
//! peer asking as fast as its link allows costs a bounded share of the
//! disk and the uplink and never delays consensus.
//!
//! A block that cannot be read is not fatal: the blocks before it are
//! served, the error is logged and counted, and `/v1/status` and `/health`
//! report the node degraded. The asker's catch-up moves on to another peer.

use crate::node::{now_unix_ms, Degraded, Shared};
use phalanx_consensus::{
    CommittedBatch, Message, SeqNum, ValidatorIndex, CATCH_UP_RANGES_IN_FLIGHT,
};
use phalanx_crypto::codec;
use phalanx_storage::{StorageError, Store};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::error;

/// Ranges one peer may have waiting to be served.
pub(super) const SERVE_PENDING_PER_PEER_MAX: usize = CATCH_UP_RANGES_IN_FLIGHT;
/// Bytes of blocks served to one peer per second, on average.
pub(super) const SERVE_BYTES_PER_S_PER_PEER: u64 = 32 << 20;
/// Capacity of the channel from the loop to the serving task.
pub(super) const SERVE_CHANNEL: usize = 1024;

/// A range of committed blocks a peer asked for (bounded by the replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ServeRequest {
    pub to: ValidatorIndex,
    pub from: SeqNum,
    pub to_seq: SeqNum,
}

/// A peer's serving allowance: bytes it may be sent now. Serving charges
/// what was sent (it may go below zero: a range is never cut short), and
/// it refills at the peer's rate up to `burst`.
struct Bucket {
    tokens: i64,
    at: Instant,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Serve(ServeRequest),
    /// Requests wait, but every peer that has one is over its rate.
    WaitUntil(Instant),
    Idle,
}

/// Waiting requests, per peer, served round robin within each peer's rate.
pub(super) struct ServeQueue {
    pending: BTreeMap<ValidatorIndex, VecDeque<ServeRequest>>,
    buckets: BTreeMap<ValidatorIndex, Bucket>,
    last: Option<ValidatorIndex>,
    burst: i64,
    rate_per_s: i64,
}

impl ServeQueue {
    pub fn new(burst_bytes: u64, rate_bytes_per_s: u64) -> ServeQueue {
        ServeQueue {
            pending: BTreeMap::new(),
            buckets: BTreeMap::new(),
            last: None,
            burst: burst_bytes as i64,
            rate_per_s: rate_bytes_per_s.max(1) as i64,
        }
    }

    /// Queues a request, or the reason it was dropped.
    pub fn push(&mut self, r: ServeRequest) -> Result<(), &'static str> {
        let q = self.pending.entry(r.to).or_default();
        if q.contains(&r) {
            return Err("catch_up_request_duplicate");
        }
        if q.len() >= SERVE_PENDING_PER_PEER_MAX {
            return Err("catch_up_requests_over_share");
        }
        q.push_back(r);
        Ok(())
    }

    fn tokens(&self, peer: ValidatorIndex, now: Instant) -> i64 {
        match self.buckets.get(&peer) {
            None => self.burst,
            Some(b) => {
                let ms = now.saturating_duration_since(b.at).as_millis() as i64;
                b.tokens
                    .saturating_add(ms.saturating_mul(self.rate_per_s) / 1000)
                    .min(self.burst)
            }
        }
    }

    /// The next request to serve: from the first peer after the last one
    /// served that has one waiting and is within its rate.
    pub fn next(&mut self, now: Instant) -> Next {
        let waiting: Vec<ValidatorIndex> = self
            .pending
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| *p)
            .collect();
        if waiting.is_empty() {
            return Next::Idle;
        }
        let after = self.last;
        let eligible = |p: &ValidatorIndex| self.tokens(*p, now) > 0;
        let next = waiting
            .iter()
            .filter(|p| after.is_none_or(|last| **p > last))
            .find(|p| eligible(p))
            .or_else(|| waiting.iter().find(|p| eligible(p)))
            .copied();
        match next.and_then(|p| Some((p, self.pending.get_mut(&p)?.pop_front()?))) {
            Some((p, r)) => {
                self.last = Some(p);
                Next::Serve(r)
            }
            None => {
                // Every waiting peer is in debt: wake when the first is not.
                let ms = waiting
                    .iter()
                    .map(|p| (1 - self.tokens(*p, now)) * 1000 / self.rate_per_s + 1)
                    .min()
                    .unwrap_or(1);
                Next::WaitUntil(now + Duration::from_millis(ms.max(1) as u64))
            }
        }
    }

    /// Charges `bytes` served to `peer` at `now`.
    pub fn charge(&mut self, peer: ValidatorIndex, bytes: u64, now: Instant) {
        let tokens = self.tokens(peer, now).saturating_sub(bytes as i64);
        self.buckets.insert(peer, Bucket { tokens, at: now });
    }
}

/// Reads `from..=to` with certificates; on a read error, the blocks before
/// the one that failed, and the error.
pub(super) fn read_range(
    store: &dyn Store,
    from: SeqNum,
    to: SeqNum,
) -> (Vec<CommittedBatch>, Option<StorageError>) {
    let into_batches = |blocks: Vec<(phalanx_consensus::Block, _)>| {
        blocks
            .into_iter()
            .map(|(block, certificate)| CommittedBatch {
                batch: block.batch(),
                certificate,
            })
            .collect::<Vec<_>>()
    };
    match store.blocks_range(from, to) {
        Ok(blocks) => (into_batches(blocks), None),
        Err(_) => {
            // Find the first block that fails, one at a time.
            let mut out = Vec::new();
            for h in from.0..=to.0 {
                match store.blocks_range(SeqNum(h), SeqNum(h)) {
                    Ok(blocks) => out.extend(into_batches(blocks)),
                    Err(e) => return (out, Some(e)),
                }
            }
            (out, None)
        }
    }
}

/// Splits committed batches, in order, into runs of at most `budget`
/// encoded bytes each (a batch larger than that travels alone).
pub(super) fn split_by_size(
    batches: impl IntoIterator<Item = CommittedBatch>,
    budget: usize,
) -> Vec<Vec<CommittedBatch>> {
    let mut parts = vec![Vec::new()];
    let mut used = 0usize;
    for cb in batches {
        let len = codec::encoded_len(&cb) as usize;
        let current = parts.last_mut().expect("never empty");
        if used + len > budget && !current.is_empty() {
            parts.push(Vec::new());
            used = 0;
        }
        used += len;
        parts.last_mut().expect("never empty").push(cb);
    }
    parts
}

/// Serves one range: every readable block asked for, in as many messages
/// as the size limit needs (a truncated answer would leave the asker
/// waiting a retransmit period for the rest). Returns the bytes sent.
pub(super) async fn serve_one(shared: &Arc<Shared>, r: ServeRequest) -> u64 {
    let store = shared.store.clone();
    let read = tokio::task::spawn_blocking(move || read_range(&*store, r.from, r.to_seq)).await;
    let (batches, failure) = match read {
        Ok(read) => read,
        Err(e) => (
            Vec::new(),
            Some(StorageError::Other(format!("read task: {e}"))),
        ),
    };
    if let Some(e) = failure {
        let seq = r.from.0 + batches.len() as u64;
        error!(
            to = r.to.0,
            seq,
            "cannot serve block {seq} to a catching-up peer: {e}. The node keeps running; \
             stop it and run `phalanx verify-ledger --home <home>` to check its data"
        );
        shared.metrics.catch_up_serve_errors.inc();
        let mut s = shared.status.write().unwrap_or_else(|p| p.into_inner());
        if s.degraded.is_none() {
            s.degraded = Some(Degraded {
                reason: format!("block {seq} cannot be read to serve catch-up: {e}"),
                since_ms: now_unix_ms(),
            });
        }
    }
    shared
        .metrics
        .catch_up_blocks_served
        .inc_by(batches.len() as u64);
    let budget = shared.config.p2p.max_message_bytes / 2;
    let mut sent = 0u64;
    for part in split_by_size(batches, budget) {
        if part.is_empty() {
            continue;
        }
        let bytes = Message::CatchUpResponse(part).encode();
        sent += bytes.len() as u64;
        shared.network.send(r.to, Arc::new(bytes));
    }
    sent
}

/// The serving task: takes requests from the loop and serves them in turn
/// until the loop drops its end.
pub(super) async fn run(shared: Arc<Shared>, mut requests: mpsc::Receiver<ServeRequest>) {
    let burst = 2 * shared.config.p2p.max_message_bytes as u64;
    let mut queue = ServeQueue::new(burst, SERVE_BYTES_PER_S_PER_PEER);
    let push = |queue: &mut ServeQueue, r: ServeRequest| {
        if let Err(reason) = queue.push(r) {
            shared.metrics.reject_message(reason);
        }
    };
    loop {
        while let Ok(r) = requests.try_recv() {
            push(&mut queue, r);
        }
        match queue.next(Instant::now()) {
            Next::Serve(r) => {
                let sent = serve_one(&shared, r).await;
                queue.charge(r.to, sent, Instant::now());
            }
            Next::WaitUntil(at) => {
                tokio::select! {
                    r = requests.recv() => match r {
                        Some(r) => push(&mut queue, r),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            Next::Idle => match requests.recv().await {
                Some(r) => push(&mut queue, r),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::{Batch, CommitCertificate, Transfer, View};

    fn req(to: u16, from: u64) -> ServeRequest {
        ServeRequest {
            to: ValidatorIndex(to),
            from: SeqNum(from),
            to_seq: SeqNum(from + 63),
        }
    }

    #[test]
    fn a_peer_has_at_most_its_share_of_ranges_waiting() {
        let mut q = ServeQueue::new(1 << 20, 1 << 20);
        let (spammer, honest) = (3, 1);
        let pushed: Vec<bool> = (0..10)
            .map(|i| q.push(req(spammer, 1 + 64 * i)).is_ok())
            .collect();
        assert_eq!(
            pushed.iter().filter(|p| **p).count(),
            SERVE_PENDING_PER_PEER_MAX
        );
        assert_eq!(
            q.push(req(spammer, 1)),
            Err("catch_up_request_duplicate"),
            "the same range again"
        );
        q.push(req(honest, 1)).unwrap();
        // Round robin: the honest peer is served second, not fifth.
        let now = Instant::now();
        let order: Vec<u16> = (0..3)
            .map(|_| match q.next(now) {
                Next::Serve(r) => r.to.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(order, vec![1, 3, 3]);
    }

    #[test]
    fn a_peer_over_its_byte_rate_waits_and_others_are_served() {
        let rate = 1 << 20;
        let mut q = ServeQueue::new(2 << 20, rate);
        let t0 = Instant::now();
        q.push(req(3, 1)).unwrap();
        q.push(req(3, 65)).unwrap();
        let Next::Serve(r) = q.next(t0) else {
            panic!("first range is served at once")
        };
        // It was 4 MiB: 2 MiB over its burst, two seconds of its rate.
        q.charge(r.to, 4 << 20, t0);
        let Next::WaitUntil(at) = q.next(t0) else {
            panic!("over its rate, the peer waits")
        };
        assert!(at > t0 + Duration::from_secs(2) && at < t0 + Duration::from_millis(2100));
        // Another peer is not held up by it.
        q.push(req(1, 1)).unwrap();
        assert_eq!(q.next(t0), Next::Serve(req(1, 1)));
        // Once its debt is paid, it is served again.
        assert_eq!(q.next(at), Next::Serve(req(3, 65)));
        assert_eq!(q.next(at), Next::Idle);
    }

    fn committed(seq: u64, txs: usize) -> CommittedBatch {
        let key = phalanx_crypto::Keypair::insecure_from_label("client");
        let txs = (0..txs as u64)
            .map(|nonce| {
                phalanx_crypto::Signed::sign(
                    Transfer {
                        chain_id: "c".into(),
                        to: phalanx_crypto::Address([1; 20]),
                        amount: 1,
                        nonce,
                    },
                    &key,
                    "c",
                )
            })
            .collect();
        let batch = Batch {
            txs,
            timestamp_ms: seq,
        };
        CommittedBatch {
            certificate: CommitCertificate {
                view: View(0),
                seq: SeqNum(seq),
                batch_digest: batch.digest(),
                votes: Vec::new(),
            },
            batch,
        }
    }

    #[test]
    fn a_catch_up_answer_is_split_by_size_never_cut_short() {
        let blocks: Vec<CommittedBatch> = (1..=10).map(|s| committed(s, 20)).collect();
        let one = codec::encoded_len(&blocks[0]) as usize;
        let parts = split_by_size(blocks.clone(), 3 * one + one / 2);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![3, 3, 3, 1],
            "every block, in order, 3 a message"
        );
        let seqs: Vec<u64> = parts.concat().iter().map(|b| b.certificate.seq.0).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        // A block larger than the budget still goes, alone.
        let parts = split_by_size(blocks, one / 2);
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() == 1));
    }

    #[test]
    fn a_block_that_cannot_be_read_ends_the_answer_not_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = phalanx_consensus::Genesis {
            chain_id: "c".into(),
            genesis_time_ms: 0,
            test_network: true,
            validators: vec![phalanx_consensus::GenesisValidator {
                name: "v0".into(),
                public_key: phalanx_crypto::Keypair::insecure_from_label("v0").public(),
                p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
            }],
            consensus: Default::default(),
            accounts: Vec::new(),
        };
        let path = dir.path().join("db");
        {
            let store = phalanx_storage::RocksStore::open(&path, &Default::default()).unwrap();
            store.init_genesis(&genesis).unwrap();
            for h in 1..=5 {
                store.apply_committed("c", &committed(h, 2)).unwrap();
            }
            store.flush().unwrap();
        }
        phalanx_storage::tamper_block_for_test(&path, 4).unwrap();
        let store = phalanx_storage::RocksStore::open(&path, &Default::default()).unwrap();
        let (served, failure) = read_range(&store, SeqNum(1), SeqNum(5));
        let seqs: Vec<u64> = served.iter().map(|b| b.certificate.seq.0).collect();
        assert_eq!(seqs, vec![1, 2, 3], "the blocks before the damaged one");
        assert!(failure.is_some(), "the damage is reported");
        let (served, failure) = read_range(&store, SeqNum(1), SeqNum(3));
        assert_eq!((served.len(), failure.is_none()), (3, true));
    }
}
