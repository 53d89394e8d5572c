//! The seed corpus: real encodings, made deterministically (fixed keys,
//! simulated time), so `gen-corpus` always writes the same files.
//!
//! Seeds named `ok-*` must be accepted by their target and `bad-*` must be
//! rejected (the replay test checks both, so a seed that stops reaching
//! the deep checks is noticed); `any-*` seeds and `crash-*` files
//! (regressions for crashes found by fuzzing) need only not panic.

use crate::records::{record_kind, RecordKind};
use crate::{fixture, Fixture, CHAIN};
use phalanx_consensus::ledger::{Account, MemoryLedger};
use phalanx_consensus::{
    Block, CatchUpRequest, CommittedBatch, Evidence, Genesis, Input, Message, Output, Phase,
    Prepare, Replica, SeqNum, Timer, Transaction, Transfer, TxResult, ValidatorIndex, View,
    WalEntry,
};
use phalanx_crypto::merkle::{self, MerkleProof};
use phalanx_crypto::{codec, Address, Digest, HashDomain, KeyFile, Signed};
use phalanx_node::config::{ByzantineConfig, NodeConfig};
use phalanx_storage::{ChainTip, TxLocation};
use std::collections::{BTreeMap, VecDeque};

/// One seed: its file name and bytes.
pub type Seed = (String, Vec<u8>);

/// A named change to a valid value that makes it invalid.
type Edit<T> = (&'static str, Box<dyn Fn(&mut T)>);

/// Every target's seeds, by target name.
pub fn seeds() -> BTreeMap<&'static str, Vec<Seed>> {
    let f = fixture();
    let run = Run::record(f);
    let mut all = BTreeMap::new();
    all.insert("consensus_message", consensus_seeds(f, &run));
    all.insert("catch_up_response", catch_up_seeds(&run));
    all.insert("api_transaction", api_transaction_seeds(f));
    all.insert("api_batch", api_batch_seeds(f));
    all.insert("key_file", key_file_seeds(f));
    all.insert("genesis", genesis_seeds(f));
    all.insert("node_config", node_config_seeds());
    all.insert("merkle_proof", merkle_seeds());
    all.insert("stored_record", record_seeds(f, &run));
    all
}

// ---- a recorded run of four replicas -------------------------------------

/// What four replicas sent, persisted and committed: a normal case with
/// checkpoints, then a silent primary and a view change.
struct Run {
    sent: Vec<Message>,
    wal: Vec<WalEntry>,
    committed: Vec<CommittedBatch>,
    blocks: Vec<Block>,
}

struct Net<'a> {
    f: &'a Fixture,
    replicas: Vec<Option<Replica>>,
    ledgers: Vec<MemoryLedger>,
    queue: VecDeque<(ValidatorIndex, ValidatorIndex, Message)>,
    timers: Vec<BTreeMap<Timer, u64>>,
    now: u64,
    nonces: Vec<u64>,
    run: Run,
}

impl Run {
    fn record(f: &Fixture) -> Run {
        let n = f.keys.len();
        let mut net = Net {
            f,
            replicas: f
                .keys
                .iter()
                .map(|k| Some(Replica::new(f.cfg.clone(), k.clone()).expect("valid config")))
                .collect(),
            ledgers: (0..n)
                .map(|_| MemoryLedger::from_genesis(&f.genesis))
                .collect(),
            queue: VecDeque::new(),
            timers: vec![BTreeMap::new(); n],
            now: 0,
            nonces: vec![0; f.clients.len()],
            run: Run {
                sent: Vec::new(),
                wal: Vec::new(),
                committed: Vec::new(),
                blocks: Vec::new(),
            },
        };
        for _ in 0..10 {
            net.submit(3);
            let t = net.now + 50;
            net.run_until(t);
        }
        // The primary goes silent: a view change.
        net.replicas[0] = None;
        net.timers[0].clear();
        net.submit(2);
        let t = net.now + 10_000;
        net.run_until(t);
        net.run
    }
}

impl Net<'_> {
    fn transfer(&mut self, c: usize) -> Transaction {
        let nonce = self.nonces[c];
        self.nonces[c] += 1;
        transfer(self.f, c, nonce, 1)
    }

    fn submit(&mut self, count: usize) {
        let txs: Vec<Transaction> = (0..count).map(|i| self.transfer(i % 4)).collect();
        for i in 0..self.replicas.len() {
            self.input(i, Input::Transactions(txs.clone()));
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        let Some(r) = self.replicas[i].as_mut() else {
            return;
        };
        let outputs = r.handle(now, input);
        self.carry_out(i, outputs);
    }

    fn carry_out(&mut self, i: usize, outputs: Vec<Output>) {
        let me = ValidatorIndex(i as u16);
        for o in outputs {
            match o {
                Output::Persist(e) => self.run.wal.push(e),
                Output::Send { to, message } => {
                    self.run.sent.push(message.clone());
                    self.queue.push_back((me, to, message));
                }
                Output::Broadcast(message) => {
                    self.run.sent.push(message.clone());
                    for j in 0..self.replicas.len() {
                        if j != i {
                            let to = ValidatorIndex(j as u16);
                            self.queue.push_back((me, to, message.clone()));
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
                    if i == 1 {
                        self.run.blocks.push(block);
                        self.run.committed.push(cb);
                    }
                    self.input(i, exec);
                }
                Output::SetTimer { timer, at_ms } => {
                    self.timers[i].insert(timer, at_ms);
                }
                _ => {}
            }
        }
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, message)) = self.queue.pop_front() {
            if self.replicas[to.as_usize()].is_none() {
                continue;
            }
            let decoded = Message::decode(&message.encode()).expect("own encoding");
            let ctx = self.f.ctx();
            if let Ok(v) = phalanx_consensus::verify_message(from, decoded, &ctx) {
                self.input(to.as_usize(), Input::Message(v));
            }
        }
    }

    fn run_until(&mut self, t: u64) {
        self.deliver_all();
        loop {
            let next = (0..self.replicas.len())
                .flat_map(|i| self.timers[i].iter().map(move |(tm, at)| (*at, i, *tm)))
                .filter(|(at, _, _)| *at <= t)
                .min();
            let Some((at, i, timer)) = next else { break };
            self.timers[i].remove(&timer);
            self.now = self.now.max(at);
            self.input(i, Input::Timer(timer));
            self.deliver_all();
        }
        self.now = self.now.max(t);
    }
}

fn transfer(f: &Fixture, client: usize, nonce: u64, amount: u64) -> Transaction {
    Signed::sign(
        Transfer {
            chain_id: CHAIN.into(),
            to: Address([9; 20]),
            amount,
            nonce,
        },
        &f.clients[client],
        CHAIN,
    )
}

fn named(prefix: &str, what: &str, i: usize, bytes: Vec<u8>) -> Seed {
    (format!("{prefix}-{what}-{i:02}"), bytes)
}

// ---- consensus --------------------------------------------------------------

fn consensus_seeds(f: &Fixture, run: &Run) -> Vec<Seed> {
    let mut out = Vec::new();
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &run.sent {
        let count = per_kind.entry(m.kind()).or_default();
        if *count < 3 {
            out.push(named("ok", m.kind(), *count, m.encode()));
            *count += 1;
        }
    }
    for (i, range) in [0..1, 2..5].into_iter().enumerate() {
        let m = Message::CatchUpResponse(run.committed[range].to_vec());
        out.push(named("ok", "catch-up-response", i, m.encode()));
    }
    let req = Message::CatchUpRequest(Signed::sign(
        CatchUpRequest {
            from: SeqNum(3),
            to: SeqNum(9),
        },
        &f.keys[2],
        CHAIN,
    ));
    out.push(named("ok", "catch-up-request", 0, req.encode()));
    // Broken versions of real messages.
    let bases: Vec<Vec<u8>> = out.iter().map(|(_, b)| b.clone()).collect();
    for (i, base) in bases.iter().enumerate().step_by(3) {
        let mut flipped = base.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40; // the last byte of the outer signature
        out.push(named("bad", "flipped", i, flipped));
        let mut trailing = base.clone();
        trailing.push(0);
        out.push(named("bad", "trailing", i, trailing));
        out.push(named(
            "bad",
            "truncated",
            i,
            base[..base.len() / 2].to_vec(),
        ));
    }
    out.push(named("bad", "empty", 0, Vec::new()));
    out.push(named("bad", "unknown-variant", 0, vec![0xff; 8]));
    out
}

fn catch_up_seeds(run: &Run) -> Vec<Seed> {
    let tag = crate::consensus::catch_up_tag().len();
    let mut out = Vec::new();
    let c = &run.committed;
    for (i, range) in [0..1, 1..2, 0..3, 3..7, 7..c.len()].into_iter().enumerate() {
        let m = Message::CatchUpResponse(c[range].to_vec());
        out.push(named("ok", "blocks", i, m.encode()[tag..].to_vec()));
    }
    out.push(named("ok", "none", 0, codec::encode(&0u64)));
    let one = Message::CatchUpResponse(c[..2].to_vec()).encode()[tag..].to_vec();
    // A vote removed (below quorum), a batch that is not the certified one.
    let mut short = c[0].clone();
    short.certificate.votes.truncate(2);
    out.push(named("bad", "two-votes", 0, codec::encode(&vec![short])));
    let mut swapped = c[0].clone();
    swapped.batch = c[1].batch.clone();
    out.push(named(
        "bad",
        "wrong-batch",
        0,
        codec::encode(&vec![swapped]),
    ));
    let mut doubled = c[0].clone();
    let vote = doubled.certificate.votes[0].clone();
    doubled.certificate.votes[1] = vote;
    out.push(named(
        "bad",
        "one-voter-twice",
        0,
        codec::encode(&vec![doubled]),
    ));
    out.push(named("bad", "truncated", 0, one[..one.len() - 7].to_vec()));
    let mut flipped = one.clone();
    flipped[40] ^= 1;
    out.push(named("bad", "flipped", 0, flipped));
    out
}

// ---- API bodies -------------------------------------------------------------

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}

fn api_transaction_seeds(f: &Fixture) -> Vec<Seed> {
    let mut out = Vec::new();
    for i in 0..6 {
        let tx = transfer(f, i % 4, i as u64, 10 + i as u64);
        out.push(named("ok", "transfer", i, json(&tx)));
    }
    let tx = transfer(f, 0, 7, 3);
    out.push(named(
        "ok",
        "pretty",
        0,
        serde_json::to_vec_pretty(&tx).expect("serialises"),
    ));
    let v = serde_json::to_value(&tx).expect("serialises");
    let edit = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut v = v.clone();
        change(&mut v);
        json(&v)
    };
    let hex0x = edit(&|v| {
        let s = v["signer"].as_str().expect("hex").to_string();
        v["signer"] = format!("0x{s}").into();
    });
    out.push(named("ok", "hex-0x", 0, hex0x));
    // Accepted today (the transaction types do not deny unknown fields,
    // unlike the batch body); whether it should be is the API's call.
    out.push(named(
        "any",
        "extra-field",
        0,
        edit(&|v| v["extra"] = 1.into()),
    ));
    let bad: [Edit<serde_json::Value>; 9] = [
        (
            "wrong-chain",
            Box::new(|v| v["payload"]["chain_id"] = "other".into()),
        ),
        (
            "amount-changed",
            Box::new(|v| v["payload"]["amount"] = 999.into()),
        ),
        (
            "missing-nonce",
            Box::new(|v| {
                v["payload"]
                    .as_object_mut()
                    .expect("object")
                    .remove("nonce");
            }),
        ),
        (
            "negative-amount",
            Box::new(|v| v["payload"]["amount"] = (-1).into()),
        ),
        (
            "float-nonce",
            Box::new(|v| v["payload"]["nonce"] = 1.5.into()),
        ),
        (
            "short-signature",
            Box::new(|v| v["signature"] = "abcd".into()),
        ),
        (
            "address-not-hex",
            Box::new(|v| v["payload"]["to"] = "zz".repeat(20).into()),
        ),
        (
            "huge-chain-id",
            Box::new(|v| v["payload"]["chain_id"] = "c".repeat(2000).into()),
        ),
        (
            "zero-signer",
            Box::new(|v| v["signer"] = "00".repeat(32).into()),
        ),
    ];
    for (i, (what, change)) in bad.iter().enumerate() {
        out.push(named("bad", what, i, edit(change.as_ref())));
    }
    for (i, text) in [
        "",
        "null",
        "[]",
        "{}",
        "{\"payload\":",
        "1e999",
        "\"\\ud800\"",
    ]
    .iter()
    .enumerate()
    {
        out.push(named("bad", "not-a-tx", i, text.as_bytes().to_vec()));
    }
    out
}

fn api_batch_seeds(f: &Fixture) -> Vec<Seed> {
    let mut out = Vec::new();
    for (i, count) in [0usize, 1, 2, 5, 12].into_iter().enumerate() {
        let txs: Vec<Transaction> = (0..count)
            .map(|j| transfer(f, j % 4, j as u64, 1))
            .collect();
        out.push(named(
            "ok",
            "batch",
            i,
            json(&serde_json::json!({ "transactions": txs })),
        ));
    }
    let tx = serde_json::to_value(transfer(f, 1, 0, 5)).expect("serialises");
    let bad = [
        (
            "extra-key",
            serde_json::json!({"transactions": [tx.clone()], "x": 1}),
        ),
        (
            "not-an-array",
            serde_json::json!({"transactions": tx.clone()}),
        ),
        (
            "bad-item",
            serde_json::json!({"transactions": [tx.clone(), {"payload": 1}]}),
        ),
        ("null-item", serde_json::json!({"transactions": [null]})),
        (
            "nested",
            serde_json::json!({"transactions": [{"transactions": []}]}),
        ),
        (
            "too-many",
            serde_json::json!({"transactions": vec![0; 4097]}),
        ),
    ];
    for (i, (what, v)) in bad.iter().enumerate() {
        out.push(named("bad", what, i, json(v)));
    }
    out.push(named(
        "bad",
        "unclosed",
        0,
        b"{\"transactions\": [".to_vec(),
    ));
    out
}

// ---- files ------------------------------------------------------------------

fn key_file_text(kind: &str, public: String, secret: String) -> Vec<u8> {
    let mut text = format!(
        "{{\n  \"kind\": \"{kind}\",\n  \"public_key\": \"{public}\",\n  \"secret_key\": \"{secret}\"\n}}"
    );
    text.push('\n');
    text.into_bytes()
}

fn key_file_seeds(f: &Fixture) -> Vec<Seed> {
    let mut out = Vec::new();
    for (i, key) in f.keys.iter().chain(&f.clients).enumerate() {
        let file = KeyFile {
            kind: "phalanx-ed25519-key".into(),
            public_key: key.public(),
            secret_key: hex_of(&key.seed()),
        };
        let mut text = serde_json::to_vec_pretty(&file).expect("serialises");
        text.push(b'\n');
        out.push(named("ok", "key", i, text));
    }
    let k = &f.keys[0];
    let (public, secret) = (k.public().to_hex(), hex_of(&k.seed()));
    let other = f.keys[1].public().to_hex();
    out.push(named(
        "ok",
        "padded-secret",
        0,
        key_file_text("phalanx-ed25519-key", public.clone(), format!(" {secret} ")),
    ));
    let bad = [
        ("wrong-public", key_file_text("phalanx-ed25519-key", other, secret.clone())),
        ("wrong-kind", key_file_text("ssh-ed25519", public.clone(), secret.clone())),
        ("short-secret", key_file_text("phalanx-ed25519-key", public.clone(), secret[..62].into())),
        ("secret-not-hex", key_file_text("phalanx-ed25519-key", public.clone(), "g".repeat(64))),
        ("extra-field", format!("{{\"kind\":\"phalanx-ed25519-key\",\"public_key\":\"{public}\",\"secret_key\":\"{secret}\",\"x\":1}}").into_bytes()),
        ("not-json", b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec()),
        ("not-utf8", vec![0xff, 0xfe, b'{', b'}']),
        ("empty", Vec::new()),
    ];
    for (i, (what, bytes)) in bad.into_iter().enumerate() {
        out.push(named("bad", what, i, bytes));
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn genesis_seeds(f: &Fixture) -> Vec<Seed> {
    let pretty = |g: &Genesis| serde_json::to_vec_pretty(g).expect("serialises");
    let mut out = vec![named("ok", "fixture", 0, pretty(&f.genesis))];
    for (i, n) in [1usize, 7].into_iter().enumerate() {
        let mut g = f.genesis.clone();
        g.validators = (0..n)
            .map(|j| phalanx_consensus::GenesisValidator {
                name: format!("n{j}"),
                public_key: phalanx_crypto::Keypair::insecure_from_label(&format!("g{j}")).public(),
                p2p_address: format!("/dns4/v{j}.example/tcp/26000"),
            })
            .collect();
        g.consensus = phalanx_consensus::ConsensusParams::for_validators(n);
        out.push(named("ok", "validators", i, pretty(&g)));
    }
    let mut defaults = serde_json::to_value(&f.genesis).expect("serialises");
    let obj = defaults.as_object_mut().expect("object");
    obj.remove("consensus");
    obj.remove("test_network");
    out.push(named("ok", "defaults", 0, json(&defaults)));
    let mut no_accounts = f.genesis.clone();
    no_accounts.accounts.clear();
    out.push(named("ok", "no-accounts", 0, pretty(&no_accounts)));
    let edits: [Edit<Genesis>; 8] = [
        (
            "duplicate-validator",
            Box::new(|g| {
                let v = g.validators[0].clone();
                g.validators.push(v)
            }),
        ),
        ("no-validators", Box::new(|g| g.validators.clear())),
        (
            "bad-multiaddr",
            Box::new(|g| g.validators[1].p2p_address = "127.0.0.1:26000".into()),
        ),
        ("window", Box::new(|g| g.consensus.window = 7)),
        (
            "duplicate-account",
            Box::new(|g| {
                let a = g.accounts[0].clone();
                g.accounts.push(a)
            }),
        ),
        (
            "supply-overflow",
            Box::new(|g| {
                g.accounts[0].balance = u64::MAX;
                g.accounts[1].balance = 1;
            }),
        ),
        ("empty-chain-id", Box::new(|g| g.chain_id.clear())),
        ("pipeline", Box::new(|g| g.consensus.pipeline_max = 0)),
    ];
    for (i, (what, edit)) in edits.iter().enumerate() {
        let mut g = f.genesis.clone();
        edit(&mut g);
        out.push(named("bad", what, i, pretty(&g)));
    }
    let mut extra = serde_json::to_value(&f.genesis).expect("serialises");
    extra["consensus"]["quorum_override"] = 2.into();
    out.push(named("bad", "unknown-field", 0, json(&extra)));
    out.push(named("bad", "not-json", 0, b"chain_id = \"x\"\n".to_vec()));
    out
}

fn node_config_seeds() -> Vec<Seed> {
    let mut out = vec![
        named(
            "ok",
            "default",
            0,
            NodeConfig::default().render().into_bytes(),
        ),
        named("ok", "empty", 0, Vec::new()),
        named(
            "ok",
            "partial",
            0,
            b"[api]\nmax_batch_txs = 10\n[log]\nlevel = \"debug,libp2p=warn\"\nformat = \"json\"\n"
                .to_vec(),
        ),
    ];
    let mut c = NodeConfig::default();
    c.p2p
        .peers
        .insert("v1".into(), "/ip4/10.0.0.2/tcp/26000".into());
    c.p2p
        .peers
        .insert("v2".into(), "/dns4/v2.example/tcp/26000".into());
    c.byzantine = Some(ByzantineConfig {
        behaviour: "equivocate".into(),
        from_height: Some(5),
    });
    c.consensus.view_timeout_ms = Some(3000);
    out.push(named("ok", "peers-byzantine", 0, c.render().into_bytes()));
    out.push(named("ok", "consensus", 0, b"[consensus]\nbatch_txs_max = 2\npipeline_max = 2\nview_timeout_ms = 100\nview_timeout_ms_max = 200\n".to_vec()));
    let bad: [(&str, &[u8]); 9] = [
        ("listen", b"[p2p]\nlisten = \"0.0.0.0:26000\"\n"),
        ("peer", b"[p2p.peers]\nv1 = \"nowhere\"\n"),
        (
            "unknown-field",
            b"[p2p]\nlisten_addr = \"/ip4/0.0.0.0/tcp/1\"\n",
        ),
        ("unknown-table", b"[rpc]\nport = 1\n"),
        ("log-level", b"[log]\nlevel = \"[[[\"\n"),
        ("batch", b"[api]\nmax_batch_txs = 0\n"),
        ("behaviour", b"[byzantine]\nbehaviour = \"nice\"\n"),
        ("syntax", b"[p2p\nlisten = \n"),
        ("negative", b"[mempool]\nmax_txs = -1\n"),
    ];
    for (i, (what, bytes)) in bad.into_iter().enumerate() {
        out.push(named("bad", what, i, bytes.to_vec()));
    }
    out
}

// ---- Merkle proofs ------------------------------------------------------------

fn merkle_input(n: u8, mode: u8, free: [u8; 32], proof: &MerkleProof) -> Vec<u8> {
    let mut out = vec![n, mode];
    out.extend_from_slice(&free);
    out.extend_from_slice(&codec::encode(proof));
    out
}

fn merkle_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let cases = [
        (1u8, 0usize),
        (2, 1),
        (3, 2),
        (5, 4),
        (8, 3),
        (13, 12),
        (33, 32),
        (64, 17),
    ];
    for (i, (n, index)) in cases.into_iter().enumerate() {
        let leaves = crate::merkle::tree_leaves(n as usize);
        let proof = merkle::prove(leaves, index).expect("in range");
        out.push(named(
            "ok",
            "proof",
            i,
            merkle_input(n, 1 | 4, [0; 32], &proof),
        ));
        // The same leaf given as bytes.
        out.push(named(
            "ok",
            "leaf-bytes",
            i,
            merkle_input(n, 0, leaves[index].0, &proof),
        ));
        let mut wrong = proof.clone();
        wrong.leaf_count += 1;
        out.push(named(
            "bad",
            "leaf-count",
            i,
            merkle_input(n, 1, [0; 32], &wrong),
        ));
        let mut moved = proof.clone();
        moved.index = (moved.index + 1) % u64::from(n).max(1) + u64::from(n == 1);
        out.push(named(
            "bad",
            "index",
            i,
            merkle_input(n, 0, leaves[index].0, &moved),
        ));
        out.push(named(
            "bad",
            "free-root",
            i,
            merkle_input(n, 1 | 2, [7; 32], &proof),
        ));
        if let Some(s) = proof.siblings.first() {
            let mut longer = proof.clone();
            longer.siblings.push(*s);
            out.push(named(
                "bad",
                "longer",
                i,
                merkle_input(n, 1, [0; 32], &longer),
            ));
        }
    }
    out.push(named("bad", "short", 0, vec![3, 1, 0]));
    out
}

// ---- stored records -----------------------------------------------------------

fn record(kind: RecordKind, bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![record_kind(kind)];
    out.extend(bytes);
    out
}

fn record_seeds(f: &Fixture, run: &Run) -> Vec<Seed> {
    use RecordKind as K;
    let mut out = Vec::new();
    for (i, b) in run.blocks.iter().take(3).enumerate() {
        out.push(named("ok", "block", i, record(K::Block, codec::encode(b))));
    }
    for (i, c) in run.committed.iter().take(2).enumerate() {
        out.push(named(
            "ok",
            "certificate",
            i,
            record(K::Certificate, codec::encode(&c.certificate)),
        ));
    }
    let mut wal_kinds = BTreeMap::new();
    let mut checkpoints = 0;
    for e in &run.wal {
        let kind = format!("{e:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("")
            .to_string();
        let count = wal_kinds.entry(kind.clone()).or_insert(0usize);
        if *count < 2 {
            out.push(named(
                "ok",
                &format!("wal-{}", kind.to_lowercase()),
                *count,
                record(K::Wal, codec::encode(e)),
            ));
            *count += 1;
        }
        if let WalEntry::Stable(cert) = e {
            if checkpoints < 2 {
                out.push(named(
                    "ok",
                    "checkpoint",
                    checkpoints,
                    record(K::Checkpoint, codec::encode(cert)),
                ));
                checkpoints += 1;
            }
        }
    }
    let tip = ChainTip {
        height: SeqNum(7),
        last_hash: run.blocks[6].hash(),
        state_root: run.blocks[6].header.state_root,
    };
    out.push(named("ok", "tip", 0, record(K::Tip, codec::encode(&tip))));
    for (i, result) in [TxResult::Executed, run.blocks[0].results[0].clone()]
        .iter()
        .enumerate()
    {
        let loc = TxLocation {
            height: SeqNum(3),
            position: 1,
            result: result.clone(),
        };
        out.push(named(
            "ok",
            "tx-location",
            i,
            record(K::TxLocation, codec::encode(&loc)),
        ));
    }
    let account = Account {
        balance: 999_990,
        nonce: 3,
    };
    out.push(named(
        "ok",
        "account",
        0,
        record(K::Account, codec::encode(&account)),
    ));
    out.push(named(
        "ok",
        "genesis-hash",
        0,
        record(K::GenesisHash, codec::encode(&f.genesis.hash())),
    ));
    out.push(named(
        "ok",
        "hash-index",
        0,
        record(K::HashIndex, codec::encode(&SeqNum(5))),
    ));
    out.push(named(
        "ok",
        "schema-version",
        0,
        record(K::SchemaVersion, codec::encode(&1u32)),
    ));
    // Evidence of a validator that prepared two digests for one slot.
    let prepare = |d: u8| {
        Message::Prepare(Signed::sign(
            Prepare {
                view: View(0),
                seq: SeqNum(3),
                digest: Digest::of(HashDomain::Batch, &[d]),
            },
            &f.keys[2],
            CHAIN,
        ))
    };
    let evidence = Evidence {
        validator: f.keys[2].public(),
        phase: Phase::Prepare,
        view: View(0),
        seq: SeqNum(3),
        first: prepare(1),
        second: prepare(2),
    };
    out.push(named(
        "ok",
        "evidence",
        0,
        record(K::Evidence, codec::encode(&evidence)),
    ));
    let block = codec::encode(&run.blocks[0]);
    out.push(named(
        "bad",
        "block-truncated",
        0,
        record(K::Block, block[..block.len() - 1].to_vec()),
    ));
    let mut trailing = codec::encode(&account);
    trailing.push(0);
    out.push(named(
        "bad",
        "account-trailing",
        0,
        record(K::Account, trailing),
    ));
    out.push(named(
        "bad",
        "block-length",
        0,
        record(K::Block, vec![0xff; 64]),
    ));
    out.push(named("bad", "empty", 0, Vec::new()));
    out.push(named(
        "bad",
        "bool",
        0,
        record(K::Wal, {
            let mut e = codec::encode(&WalEntry::View {
                view: View(1),
                entered: true,
            });
            let last = e.len() - 1;
            e[last] = 2; // neither false nor true
            e
        }),
    ));
    out
}
