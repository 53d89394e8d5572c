//! A synchronous cluster of real replicas, each carrying out its outputs on
//! its own [`Store`] the way the node does (write-ahead records batched
//! until the next other output, prunes, commits through
//! `apply_committed`, catch-up served from storage, evidence stored).
//! Messages go through encode, decode and `verify_message`. Beside each
//! store it keeps the WAL as it was before the bound: every record
//! appended, minus the numbered ones pruned — what restore must agree
//! with.
//!
//! Used by the WAL-bound tests and by the restart benchmark.

#![allow(dead_code)] // the test and the benchmark use different parts

use phalanx_consensus::{
    verify_message, CommittedBatch, Config, ConsensusParams, Genesis, GenesisAccount,
    GenesisValidator, Input, Message, Output, Replica, SeqNum, Timer, Transaction, Transfer,
    ValidatorIndex, VerifyContext, WalEntry,
};
use phalanx_crypto::{Address, Keypair, Signed};
use phalanx_storage::Store;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

pub const CHAIN: &str = "phalanx-storage-cluster";

pub fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::insecure_from_label(&format!("cluster-validator-{i}")))
        .collect()
}

fn clients() -> Vec<Keypair> {
    (0..4)
        .map(|i| Keypair::insecure_from_label(&format!("cluster-client-{i}")))
        .collect()
}

pub fn genesis(n: usize, consensus: ConsensusParams) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        test_network: true,
        validators: keys(n)
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 27000 + i),
            })
            .collect(),
        consensus,
        accounts: clients()
            .iter()
            .map(|c| GenesisAccount {
                address: c.address(),
                balance: u64::MAX / 8,
            })
            .collect(),
    }
}

pub struct Cluster {
    pub genesis: Genesis,
    pub cfg: Config,
    pub keys: Vec<Keypair>,
    /// `None` while crashed.
    pub replicas: Vec<Option<Replica>>,
    pub stores: Vec<Arc<dyn Store>>,
    /// Each store's WAL as it was before the bound.
    pub unbounded_wal: Vec<Vec<WalEntry>>,
    /// Replicas whose links are all cut.
    pub isolated: BTreeSet<usize>,
    pub now: u64,
    queue: VecDeque<(ValidatorIndex, ValidatorIndex, Message)>,
    timers: Vec<BTreeMap<Timer, u64>>,
    clients: Vec<Keypair>,
    nonces: Vec<u64>,
}

impl Cluster {
    /// A cluster on `stores` (one per validator), initialised with the
    /// genesis of `consensus`.
    pub fn new(consensus: ConsensusParams, stores: Vec<Arc<dyn Store>>) -> Cluster {
        let n = stores.len();
        let genesis = genesis(n, consensus);
        let cfg = genesis.consensus_config();
        let keys = keys(n);
        for store in &stores {
            store.init_genesis(&genesis).expect("init genesis");
        }
        let replicas = keys
            .iter()
            .map(|k| Some(Replica::new(cfg.clone(), k.clone()).expect("valid config")))
            .collect();
        Cluster {
            genesis,
            cfg,
            replicas,
            stores,
            unbounded_wal: vec![Vec::new(); n],
            isolated: BTreeSet::new(),
            now: 0,
            queue: VecDeque::new(),
            timers: vec![BTreeMap::new(); n],
            clients: clients(),
            nonces: vec![0; 4],
            keys,
        }
    }

    pub fn n(&self) -> usize {
        self.keys.len()
    }

    pub fn replica(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("replica is up")
    }

    pub fn height(&self, i: usize) -> SeqNum {
        self.stores[i].height().expect("height")
    }

    /// Gives `count` new transfers to every live replica.
    pub fn submit(&mut self, count: usize) {
        let txs: Vec<Transaction> = (0..count)
            .map(|i| {
                let c = i % self.clients.len();
                let nonce = self.nonces[c];
                self.nonces[c] += 1;
                Signed::sign(
                    Transfer {
                        chain_id: CHAIN.into(),
                        to: Address([7; 20]),
                        amount: 1,
                        nonce,
                    },
                    &self.clients[c],
                    CHAIN,
                )
            })
            .collect();
        for i in 0..self.n() {
            self.input(i, Input::Transactions(txs.clone()));
        }
    }

    /// Feeds one input to replica `i` and everything it leads to.
    pub fn input(&mut self, i: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.now;
            let Some(r) = self.replicas[i].as_mut() else {
                return;
            };
            let outputs = r.handle(now, input);
            self.carry_out(i, outputs, &mut inputs);
        }
    }

    fn write_wal(&mut self, i: usize, pending: &mut Vec<WalEntry>) {
        if !pending.is_empty() {
            self.stores[i].append_wal(pending, false).expect("append");
            self.unbounded_wal[i].append(pending);
        }
    }

    fn carry_out(&mut self, i: usize, outputs: Vec<Output>, inputs: &mut VecDeque<Input>) {
        let me = ValidatorIndex(i as u16);
        let mut pending = Vec::new();
        for output in outputs {
            if let Output::Persist(entry) = output {
                pending.push(entry);
                continue;
            }
            self.write_wal(i, &mut pending);
            match output {
                Output::Persist(_) => unreachable!("handled above"),
                Output::PruneWal { below } => {
                    self.stores[i].prune_wal(below).expect("prune");
                    self.unbounded_wal[i].retain(|e| e.seq().is_none_or(|s| s >= below));
                }
                Output::Send { to, message } => self.queue.push_back((me, to, message)),
                Output::Broadcast(message) => {
                    for j in (0..self.n()).filter(|j| *j != i) {
                        self.queue
                            .push_back((me, ValidatorIndex(j as u16), message.clone()));
                    }
                }
                Output::Commit(cb) => {
                    let block = self.stores[i].apply_committed(CHAIN, &cb).expect("commit");
                    inputs.push_back(Input::Executed {
                        seq: block.header.height,
                        block_hash: block.hash(),
                        state_root: block.header.state_root,
                    });
                }
                Output::ServeCatchUp { to, from, to_seq } => {
                    let blocks = self.stores[i]
                        .blocks_range(from, to_seq)
                        .expect("blocks range")
                        .into_iter()
                        .map(|(block, certificate)| CommittedBatch {
                            batch: block.batch(),
                            certificate,
                        })
                        .collect();
                    self.queue
                        .push_back((me, to, Message::CatchUpResponse(blocks)));
                }
                Output::SetTimer { timer, at_ms } => {
                    self.timers[i].insert(timer, at_ms);
                }
                Output::Evidence(e) => self.stores[i].put_evidence(&e).expect("evidence"),
                Output::Rejected { .. } | Output::Event(_) => {}
            }
        }
        self.write_wal(i, &mut pending);
    }

    fn deliver_one(&mut self) -> bool {
        let Some((from, to, message)) = self.queue.pop_front() else {
            return false;
        };
        let (f, t) = (from.as_usize(), to.as_usize());
        if self.isolated.contains(&f) || self.isolated.contains(&t) || self.replicas[t].is_none() {
            return true;
        }
        let decoded = Message::decode(&message.encode()).expect("own encoding decodes");
        let ctx = VerifyContext {
            chain_id: CHAIN,
            validators: &self.cfg.validators,
            window: self.cfg.window,
            horizon: None,
            known_good_txs: None,
        };
        if let Ok(verified) = verify_message(from, decoded, &ctx) {
            self.input(t, Input::Message(verified));
        }
        true
    }

    pub fn deliver_all(&mut self) {
        let mut budget = 10_000_000u64;
        while self.deliver_one() {
            budget -= 1;
            assert!(budget > 0, "message storm");
        }
    }

    /// Advances time to `t`, firing due timers in time order and delivering
    /// messages after each.
    pub fn run_until(&mut self, t: u64) {
        self.deliver_all();
        loop {
            let next = (0..self.n())
                .flat_map(|i| {
                    self.timers[i]
                        .iter()
                        .map(move |(timer, at)| (*at, i, *timer))
                })
                .filter(|(at, _, _)| *at <= t)
                .min();
            let Some((at, i, timer)) = next else {
                break;
            };
            self.timers[i].remove(&timer);
            self.now = self.now.max(at);
            self.input(i, Input::Timer(timer));
            self.deliver_all();
        }
        self.now = self.now.max(t);
    }

    /// Submits `txs` transfers, then runs for `ms`.
    pub fn round(&mut self, txs: usize, ms: u64) {
        self.submit(txs);
        self.run_until(self.now + ms);
    }

    pub fn crash(&mut self, i: usize) {
        self.replicas[i] = None;
        self.timers[i].clear();
    }

    /// Rebuilds replica `i` from its store, as the node does on start.
    pub fn restart(&mut self, i: usize) {
        let wal = self.stores[i].load_wal().expect("load wal");
        let height = self.height(i);
        let r =
            Replica::restore(self.cfg.clone(), self.keys[i].clone(), wal, height).expect("restore");
        self.replicas[i] = Some(r);
        self.input(i, Input::Timer(Timer::Retransmit));
    }

    /// The primary of the view most live replicas are in.
    pub fn common_primary(&self) -> usize {
        let mut views: BTreeMap<u64, usize> = BTreeMap::new();
        for r in self.replicas.iter().flatten() {
            *views.entry(r.view().0).or_default() += 1;
        }
        let view = views
            .iter()
            .max_by_key(|(view, count)| (**count, **view))
            .map(|(view, _)| *view)
            .unwrap_or(0);
        (view % self.n() as u64) as usize
    }

    /// Every pair of stores agrees on the blocks both hold.
    pub fn assert_agreement(&self) {
        let top = (0..self.n()).map(|i| self.height(i).0).min().unwrap_or(0);
        for h in 1..=top {
            let hashes: BTreeSet<_> = self
                .stores
                .iter()
                .map(|s| s.block(SeqNum(h)).expect("read").expect("stored").hash())
                .collect();
            assert_eq!(hashes.len(), 1, "stores differ at height {h}");
        }
    }
}
