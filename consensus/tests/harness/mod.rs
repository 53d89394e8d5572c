//! A tiny synchronous driver for protocol step tests: n replicas, a FIFO
//! network that can drop links, in-memory ledgers, and a record of every
//! vote each replica signed.

#![allow(dead_code)]

use phalanx_consensus::ledger::MemoryLedger;
use phalanx_consensus::*;
use phalanx_crypto::{Address, Keypair, Signed};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub const CHAIN: &str = "phalanx-test";

pub struct Net {
    pub cfg: Config,
    pub genesis: Genesis,
    pub keys: Vec<Keypair>,
    pub replicas: Vec<Option<Replica>>,
    pub wal: Vec<Vec<WalEntry>>,
    pub ledgers: Vec<MemoryLedger>,
    pub blocks: Vec<Vec<Block>>,
    pub certs: Vec<Vec<CommittedBatch>>,
    pub queue: VecDeque<(ValidatorIndex, ValidatorIndex, Message)>,
    pub timers: Vec<BTreeMap<Timer, u64>>,
    pub now: u64,
    /// Links (from, to) that drop everything.
    pub cut: BTreeSet<(u16, u16)>,
    pub rejected: Vec<(ValidatorIndex, Rejected)>,
    pub evidence: Vec<Evidence>,
    pub events: Vec<(ValidatorIndex, Event)>,
    pub signed: BTreeMap<(u16, View, SeqNum, Phase), phalanx_crypto::Digest>,
    pub double_signs: Vec<String>,
    pub clients: Vec<Keypair>,
    pub nonces: Vec<u64>,
    /// Every message sent, by sender.
    pub sent: Vec<(usize, Message)>,
}

pub fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::insecure_from_label(&format!("validator-{i}")))
        .collect()
}

pub fn genesis(keys: &[Keypair], clients: &[Keypair]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        test_network: true,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: k.public(),
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
            })
            .collect(),
        consensus: ConsensusParams {
            checkpoint_interval: 4,
            window: 8,
            batch_txs_max: 4,
            batch_delay_ms: 5,
            pipeline_max: 4,
            propose_timeout_ms: 500,
            view_timeout_ms: 1000,
            view_timeout_ms_max: 8000,
            retransmit_ms: 200,
            ..ConsensusParams::default()
        },
        accounts: clients
            .iter()
            .map(|c| GenesisAccount {
                address: c.address(),
                balance: 1_000_000,
            })
            .collect(),
    }
}

impl Net {
    pub fn new(n: usize) -> Net {
        let keys = keys(n);
        let clients: Vec<Keypair> = (0..4)
            .map(|i| Keypair::insecure_from_label(&format!("client-{i}")))
            .collect();
        let genesis = genesis(&keys, &clients);
        let cfg = genesis.consensus_config();
        let replicas = keys
            .iter()
            .map(|k| Some(Replica::new(cfg.clone(), k.clone()).unwrap()))
            .collect();
        Net {
            ledgers: (0..n)
                .map(|_| MemoryLedger::from_genesis(&genesis))
                .collect(),
            cfg,
            genesis,
            keys,
            replicas,
            wal: vec![Vec::new(); n],
            blocks: vec![Vec::new(); n],
            certs: vec![Vec::new(); n],
            queue: VecDeque::new(),
            timers: vec![BTreeMap::new(); n],
            now: 0,
            cut: BTreeSet::new(),
            rejected: Vec::new(),
            evidence: Vec::new(),
            events: Vec::new(),
            signed: BTreeMap::new(),
            double_signs: Vec::new(),
            nonces: vec![0; clients.len()],
            sent: Vec::new(),
            clients,
        }
    }

    pub fn n(&self) -> usize {
        self.keys.len()
    }

    pub fn replica(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("replica is up")
    }

    /// A signed transfer from client `c` with its next nonce.
    pub fn transfer(&mut self, c: usize) -> Transaction {
        let nonce = self.nonces[c];
        self.nonces[c] += 1;
        Signed::sign(
            Transfer {
                chain_id: CHAIN.into(),
                to: Address([9; 20]),
                amount: 1,
                nonce,
            },
            &self.clients[c],
            CHAIN,
        )
    }

    /// Gives `count` new transactions to every live replica.
    pub fn submit(&mut self, count: usize) {
        let txs: Vec<Transaction> = (0..count).map(|i| self.transfer(i % 4)).collect();
        for i in 0..self.n() {
            self.input(i, Input::Transactions(txs.clone()));
        }
    }

    pub fn input(&mut self, i: usize, input: Input) -> Vec<Output> {
        let now = self.now;
        let Some(r) = self.replicas[i].as_mut() else {
            return Vec::new();
        };
        let outputs = r.handle(now, input);
        self.carry_out(i, outputs.clone());
        outputs
    }

    fn record_vote(&mut self, i: usize, m: &Message) {
        let (view, seq, phase, digest) = match m {
            Message::PrePrepare { pre_prepare: p, .. } => (
                p.payload.view,
                p.payload.seq,
                Phase::PrePrepare,
                p.payload.digest,
            ),
            Message::Prepare(p) => (
                p.payload.view,
                p.payload.seq,
                Phase::Prepare,
                p.payload.digest,
            ),
            Message::Commit(p) => (
                p.payload.view,
                p.payload.seq,
                Phase::Commit,
                p.payload.digest,
            ),
            _ => return,
        };
        let key = (i as u16, view, seq, phase);
        match self.signed.get(&key) {
            Some(d) if *d != digest => self
                .double_signs
                .push(format!("replica {i} signed two digests for {key:?}")),
            _ => {
                self.signed.insert(key, digest);
            }
        }
    }

    pub fn carry_out(&mut self, i: usize, outputs: Vec<Output>) {
        let me = ValidatorIndex(i as u16);
        for o in outputs {
            match o {
                Output::Persist(e) => self.wal[i].push(e),
                Output::PruneWal { below } => {
                    self.wal[i].retain(|e| e.seq().is_none_or(|s| s >= below))
                }
                Output::Send { to, message } => {
                    self.record_vote(i, &message);
                    self.sent.push((i, message.clone()));
                    self.queue.push_back((me, to, message));
                }
                Output::Broadcast(message) => {
                    self.record_vote(i, &message);
                    self.sent.push((i, message.clone()));
                    for j in 0..self.n() {
                        if j != i {
                            self.queue
                                .push_back((me, ValidatorIndex(j as u16), message.clone()));
                        }
                    }
                }
                Output::Commit(cb) => {
                    let block = self.ledgers[i].apply(CHAIN, &cb);
                    let exec = Input::Executed {
                        seq: block.header.height,
                        block_hash: block.hash(),
                        state_root: block.header.state_root,
                    };
                    self.blocks[i].push(block);
                    self.certs[i].push(cb);
                    self.input(i, exec);
                }
                Output::ServeCatchUp { to, from, to_seq } => {
                    let blocks: Vec<CommittedBatch> = self.certs[i]
                        .iter()
                        .filter(|c| c.certificate.seq >= from && c.certificate.seq <= to_seq)
                        .cloned()
                        .collect();
                    self.queue
                        .push_back((me, to, Message::CatchUpResponse(blocks)));
                }
                Output::SetTimer { timer, at_ms } => {
                    self.timers[i].insert(timer, at_ms);
                }
                Output::Evidence(e) => self.evidence.push(*e),
                Output::Rejected { reason, .. } => self.rejected.push((me, reason)),
                Output::Event(e) => self.events.push((me, e)),
            }
        }
    }

    /// Delivers one queued message (through encode, decode and verify).
    pub fn deliver_one(&mut self) -> bool {
        let Some((from, to, message)) = self.queue.pop_front() else {
            return false;
        };
        if self.cut.contains(&(from.0, to.0)) || self.replicas[to.as_usize()].is_none() {
            return true;
        }
        let bytes = message.encode();
        let decoded = Message::decode(&bytes).expect("own encoding decodes");
        let ctx = VerifyContext {
            chain_id: CHAIN,
            validators: &self.cfg.validators,
            window: self.cfg.window,
            horizon: None,
            known_good_txs: None,
        };
        match verify_message(from, decoded, &ctx) {
            Ok(v) => {
                self.input(to.as_usize(), Input::Message(v));
            }
            Err(reason) => self.rejected.push((to, reason)),
        }
        true
    }

    pub fn deliver_all(&mut self) {
        let mut budget = 1_000_000;
        while self.deliver_one() {
            budget -= 1;
            assert!(budget > 0, "message storm");
        }
    }

    /// Advances time to `t`, firing due timers in time order and delivering
    /// messages after each.
    pub fn run_until(&mut self, t: u64) {
        self.deliver_all();
        while self.fire_next_timer(t) {
            self.deliver_all();
        }
        self.now = self.now.max(t);
    }

    /// Fires the earliest timer due at or before `t`, delivering nothing;
    /// false if none is.
    pub fn fire_next_timer(&mut self, t: u64) -> bool {
        let next = (0..self.n())
            .flat_map(|i| {
                self.timers[i]
                    .iter()
                    .map(move |(timer, at)| (*at, i, *timer))
            })
            .filter(|(at, _, _)| *at <= t)
            .min();
        let Some((at, i, timer)) = next else {
            return false;
        };
        self.timers[i].remove(&timer);
        self.now = self.now.max(at);
        self.input(i, Input::Timer(timer));
        true
    }

    pub fn heights(&self) -> Vec<u64> {
        (0..self.n()).map(|i| self.blocks[i].len() as u64).collect()
    }

    pub fn crash(&mut self, i: usize) {
        self.replicas[i] = None;
        self.timers[i].clear();
    }

    pub fn restart(&mut self, i: usize) {
        let committed = SeqNum(self.blocks[i].len() as u64);
        let r = Replica::restore(
            self.cfg.clone(),
            self.keys[i].clone(),
            self.wal[i].clone(),
            committed,
        )
        .unwrap();
        self.replicas[i] = Some(r);
        // Drivers poke a restarted replica with a timer to start it ticking.
        self.input(i, Input::Timer(Timer::Retransmit));
    }

    /// Agreement: every pair of replicas' chains agree where both have blocks.
    pub fn assert_agreement(&self) {
        for i in 0..self.n() {
            for j in 0..self.n() {
                for (a, b) in self.blocks[i].iter().zip(&self.blocks[j]) {
                    assert_eq!(
                        a.hash(),
                        b.hash(),
                        "replicas {i} and {j} differ at {}",
                        a.header.height
                    );
                }
            }
        }
        assert!(self.double_signs.is_empty(), "{:?}", self.double_signs);
    }

    pub fn view_changes(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::NewViewEntered { .. }))
            .count()
    }
}
