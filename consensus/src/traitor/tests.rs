//! The attacker behaviours: what each sends, that it is within the limit
//! it aims at, deterministic, and bounded in the traitor's own memory.

use super::*;
use crate::{verify_message, Config, Rejected, ValidatorSet, VerifyContext, View};
use phalanx_crypto::{codec, Address, AnyKey};
use std::collections::BTreeSet;

const CHAIN: &str = "traitor-test";
/// A small limit keeps the tests fast; the arithmetic is the same at 16 MiB.
const LIMIT: u64 = 64 << 10;

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::insecure_from_label(&format!("tt-{i}")))
        .collect()
}

fn config(keys: &[Keypair]) -> Config {
    let mut cfg = Config::new(
        CHAIN,
        ValidatorSet::new(keys.iter().map(|k| k.public()).collect()),
    );
    cfg.checkpoint_interval = 4;
    cfg.window = 8;
    cfg.batch_delay_ms = 0;
    cfg.batch_txs_max = 1;
    cfg.retransmit_ms = 200;
    cfg
}

/// Four participants, `traitor` running `behaviour` with [`LIMIT`], a
/// lossless in-order network; drives them until every honest one has
/// committed `height`, and returns them with every message each sent.
struct Cluster {
    nodes: Vec<Participant>,
    now: u64,
    cfg: Config,
    sent: Vec<Vec<(ValidatorIndex, Message)>>,
    gossip: Vec<Vec<Transaction>>,
}

impl Cluster {
    fn new(traitor: u16, behaviour: Behaviour) -> Cluster {
        let keys = keys(4);
        let cfg = config(&keys);
        let nodes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let r = Replica::new(cfg.clone(), k.clone()).expect("valid config");
                if i as u16 == traitor {
                    Traitor::new(r, behaviour, Trigger::default())
                        .with_limits(TraitorLimits {
                            message_bytes_max: LIMIT,
                        })
                        .into()
                } else {
                    Participant::honest(r)
                }
            })
            .collect();
        Cluster {
            nodes,
            now: 0,
            cfg,
            sent: vec![Vec::new(); 4],
            gossip: Vec::new(),
        }
    }

    fn client_txs(&self, count: u64) -> Vec<Transaction> {
        let key = Keypair::insecure_from_label("tt-client");
        (0..count)
            .map(|nonce| {
                Signed::sign(
                    crate::Transfer {
                        chain_id: CHAIN.into(),
                        to: Address([1; 20]),
                        amount: 1,
                        nonce,
                    },
                    &key,
                    CHAIN,
                )
            })
            .collect()
    }

    /// Feeds `input` to node `i` and delivers everything that follows,
    /// verified as a node would (of a traitor's, only normal-case
    /// messages: each test examines the attack itself).
    fn run(&mut self, i: usize, input: Input) {
        let mut queue = std::collections::VecDeque::from([(i, input)]);
        let mut steps = 0;
        while let Some((i, input)) = queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "runaway");
            let out = self.nodes[i].handle(self.now, input);
            self.gossip.extend(self.nodes[i].take_gossip());
            for o in out {
                let (targets, message) = match o {
                    Output::Send { to, message } => (vec![to], message),
                    Output::Broadcast(message) => (
                        (0..4u16)
                            .filter(|j| *j as usize != i)
                            .map(ValidatorIndex)
                            .collect(),
                        message,
                    ),
                    Output::Commit(cb) => {
                        let seq = cb.certificate.seq;
                        queue.push_back((
                            i,
                            Input::Executed {
                                seq,
                                block_hash: Digest::sha256(&seq.0.to_le_bytes()),
                                state_root: Digest::ZERO,
                            },
                        ));
                        continue;
                    }
                    _ => continue,
                };
                for to in targets {
                    self.sent[i].push((to, message.clone()));
                    let normal_case = matches!(
                        message,
                        Message::PrePrepare { .. }
                            | Message::Prepare(_)
                            | Message::Commit(_)
                            | Message::CatchUpResponse(_)
                    );
                    if self.nodes[i].is_traitor() && !normal_case {
                        continue; // the attack is examined by each test
                    }
                    let ctx = VerifyContext {
                        chain_id: CHAIN,
                        validators: &self.cfg.validators,
                        window: self.cfg.window,
                        horizon: None,
                        known_good_txs: None,
                    };
                    let from = ValidatorIndex(i as u16);
                    if let Ok(v) = verify_message(from, message.clone(), &ctx) {
                        queue.push_back((to.0 as usize, Input::Message(v)));
                    }
                }
            }
        }
    }

    /// Client load, batches cut, until node 1 committed `height`.
    fn commit_until(&mut self, height: u64) {
        let txs = self.client_txs(height * 2);
        for i in 0..4 {
            self.run(i, Input::Transactions(txs.clone()));
        }
        while self.nodes[1].replica().committed().0 < height {
            self.now += 10;
            assert!(
                self.now < 10_000,
                "no progress: committed {:?}, sent {:?}",
                self.nodes
                    .iter()
                    .map(|n| n.replica().committed())
                    .collect::<Vec<_>>(),
                self.sent.iter().map(|s| s.len()).collect::<Vec<_>>()
            );
            for i in 0..4 {
                self.run(i, Input::Timer(Timer::Batch));
            }
        }
    }

    /// One retransmit tick of node `i`; returns what it sent.
    fn tick(&mut self, i: usize) -> Vec<(ValidatorIndex, Message)> {
        self.now += self.cfg.retransmit_ms;
        let before = self.sent[i].len();
        self.run(i, Input::Timer(Timer::Retransmit));
        self.sent[i][before..].to_vec()
    }
}

fn ctx(cfg: &Config) -> VerifyContext<'_> {
    VerifyContext {
        chain_id: CHAIN,
        validators: &cfg.validators,
        window: cfg.window,
        horizon: None,
        known_good_txs: None,
    }
}

#[test]
fn every_name_parses_and_the_error_lists_them_all() {
    for b in Behaviour::ALL {
        assert_eq!(b.name().parse::<Behaviour>(), Ok(b));
        assert_eq!(
            b.name()
                .to_uppercase()
                .replace('-', "_")
                .parse::<Behaviour>(),
            Ok(b)
        );
    }
    assert_eq!(
        Behaviour::ALL.len(),
        Behaviour::POLITE.len() + Behaviour::ATTACKERS.len()
    );
    assert!(Behaviour::ATTACKERS.iter().all(|b| b.is_attacker()));
    assert!(Behaviour::POLITE.iter().all(|b| !b.is_attacker()));
    let err = "nonsense".parse::<Behaviour>().unwrap_err().to_string();
    for b in Behaviour::ALL {
        assert!(err.contains(b.name()), "{err} lacks {b}");
    }
}

#[test]
fn newview_bomb_fills_the_limit_with_one_valid_pre_prepare_for_views_it_does_not_lead() {
    let mut c = Cluster::new(0, Behaviour::NewviewBomb);
    c.commit_until(3);
    let sent = c.tick(0);
    let bombs: Vec<_> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            Message::NewView(nv) => Some((m, nv)),
            _ => None,
        })
        .collect();
    // BOMBS_PER_TICK NEW-VIEWs, each to the three others.
    assert_eq!(bombs.len(), newview_bomb::BOMBS_PER_TICK * 3);
    for (m, nv) in bombs {
        let len = m.encode().len() as u64;
        assert!(
            len <= LIMIT && len > LIMIT - 2 * ENVELOPE_BYTES,
            "{len} bytes"
        );
        assert_ne!(c.cfg.validators.primary(nv.payload.view), ValidatorIndex(0));
        assert!(nv.payload.view >= c.nodes[0].replica().view());
        let first = &nv.payload.pre_prepares[0];
        assert!(nv.payload.pre_prepares.iter().all(|pp| pp == first));
        // A real primary's pre-prepare in a NEW-VIEW correctly signed with
        // the traitor's key: only "is the sender that view's primary?"
        // tells it from a real one, and that check needs no signature.
        assert_eq!(
            c.cfg.validators.index_of(&first.signer),
            Some(c.cfg.validators.primary(first.payload.view))
        );
        assert!(nv.clone().verify(CHAIN, &c.cfg.validators).is_ok());
    }
}

#[test]
fn padded_view_change_covers_64_views_with_repeated_prepares() {
    // r1 is a backup in view 0: its own prepares are admissible padding.
    let mut c = Cluster::new(1, Behaviour::PaddedViewChange);
    // Hold back the last commits so prepared proofs stay above the
    // checkpoint: commit, then feed one more batch that prepares.
    c.commit_until(5);
    let sent = c.tick(1);
    let vcs: Vec<_> = sent
        .iter()
        .filter_map(|(to, m)| match m {
            Message::ViewChange(vc) if *to == ValidatorIndex(0) => Some((m, vc)),
            _ => None,
        })
        .collect();
    assert_eq!(vcs.len() as u64, PADDED_VIEW_CHANGE_VIEWS_AHEAD);
    let views: Vec<u64> = vcs.iter().map(|(_, vc)| vc.payload.new_view.0).collect();
    assert_eq!(views, (1..=64).collect::<Vec<_>>());
    let proofs = &vcs[0].1.payload.prepared;
    assert!(
        !proofs.is_empty(),
        "r1 holds prepared proofs above its checkpoint"
    );
    let padded = proofs.iter().map(|p| p.prepares.len()).max().unwrap_or(0);
    assert!(padded > 10, "only {padded} prepares in the largest proof");
    let budget = LIMIT / padded_view_change::PADDED_SHARE;
    for (m, vc) in &vcs {
        let len = m.encode().len() as u64;
        assert!(
            len <= budget && len + 512 > budget,
            "{len} bytes of {budget}"
        );
        // Correctly signed with its own key.
        assert!((*vc).clone().verify(CHAIN, &c.cfg.validators).is_ok());
    }
}

#[test]
fn future_votes_conflict_in_pairs_and_claim_heights_far_ahead() {
    let mut c = Cluster::new(2, Behaviour::FutureVotes);
    c.commit_until(2);
    let sent = c.tick(2);
    let high = c.nodes[2].replica().low_watermark().0 + c.cfg.window;
    let mut by_key: BTreeMap<(View, SeqNum, &'static str), Vec<Digest>> = BTreeMap::new();
    let mut far_checkpoints = 0;
    for (to, m) in &sent {
        if *to != ValidatorIndex(0) {
            continue;
        }
        match m {
            Message::Prepare(p) => by_key
                .entry((p.payload.view, p.payload.seq, "prepare"))
                .or_default()
                .push(p.payload.digest),
            Message::Commit(p) => by_key
                .entry((p.payload.view, p.payload.seq, "commit"))
                .or_default()
                .push(p.payload.digest),
            // Its honest stable-checkpoint vote, resent every tick.
            Message::Checkpoint(cp) if cp.payload.seq.0 <= high => {}
            Message::Checkpoint(cp) => {
                assert!(cp.payload.seq.0 > high + 1000);
                assert_eq!(cp.payload.seq.0 % c.cfg.checkpoint_interval, 0);
                far_checkpoints += 1;
            }
            _ => {}
        }
    }
    assert_eq!(far_checkpoints, future_votes::FAR_CHECKPOINTS_PER_TICK);
    let conflicting = by_key
        .values()
        .filter(|ds| ds.len() >= 2 && ds.iter().any(|d| *d != ds[0]))
        .count() as u64;
    assert!(
        conflicting >= FUTURE_VOTES_CONFLICT_PAIRS_PER_TICK.min(2 * 8 * FUTURE_VOTES_VIEWS_AHEAD),
        "{conflicting} conflicting keys"
    );
    let far = by_key.keys().filter(|(_, s, _)| s.0 > high + 1000).count() as u64;
    assert_eq!(far, future_votes::FAR_PAIRS_PER_TICK);
    // The next tick uses new far heights: nothing to deduplicate.
    let again = c.tick(2);
    let far_again: BTreeSet<u64> = again
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Prepare(p) if p.payload.seq.0 > high + 1000 => Some(p.payload.seq.0),
            _ => None,
        })
        .collect();
    assert!(far_again
        .iter()
        .all(|s| !by_key.keys().any(|(_, k, _)| k.0 == *s)));
}

#[test]
fn gossip_junk_is_well_formed_fails_only_at_the_signature_and_fits_the_limit() {
    let mut c = Cluster::new(3, Behaviour::GossipJunk);
    c.commit_until(1);
    c.gossip.clear();
    c.tick(3);
    assert_eq!(c.gossip.len(), gossip_junk::JUNK_MESSAGES_PER_TICK);
    let mut hashes = BTreeSet::new();
    for txs in &c.gossip {
        let len = codec::encoded_len(txs);
        assert!(
            len <= LIMIT && len > LIMIT - 2 * ENVELOPE_BYTES,
            "{len} bytes"
        );
        for tx in txs {
            assert_eq!(tx.payload.chain_id, CHAIN);
            assert!(crate::tx_len(tx) <= crate::TX_BYTES_MAX);
            assert!(hashes.insert(tx_hash(tx)), "a repeated transaction");
        }
        let verdicts = Signed::<crate::Transfer>::verify_all(txs.clone(), CHAIN, &AnyKey);
        assert!(
            verdicts.iter().all(|v| v.is_err()),
            "a junk signature verified"
        );
    }
}

#[test]
fn gossip_not_taken_by_the_driver_stays_bounded() {
    let keys = keys(4);
    let r = Replica::new(config(&keys), keys[0].clone()).expect("valid config");
    let mut t =
        Traitor::new(r, Behaviour::GossipJunk, Trigger::default()).with_limits(TraitorLimits {
            message_bytes_max: 8 << 10,
        });
    for tick in 1..20 {
        t.handle(tick * 200, Input::Timer(Timer::Retransmit));
    }
    assert_eq!(t.take_gossip().len(), GOSSIP_OUTBOX_MAX);
    assert!(t.take_gossip().is_empty());
}

#[test]
fn request_spam_runs_its_own_fast_timer_and_asks_every_peer() {
    let mut c = Cluster::new(2, Behaviour::RequestSpam);
    c.commit_until(3);
    let now = c.now + c.cfg.retransmit_ms;
    let armed = c.nodes[2].handle(now, Input::Timer(Timer::Retransmit));
    let at = armed
        .iter()
        .find_map(|o| match o {
            Output::SetTimer {
                timer: Timer::Traitor,
                at_ms,
            } => Some(*at_ms),
            _ => None,
        })
        .expect("the spam timer is set on the first active tick");
    assert_eq!(
        at,
        now + c.cfg.retransmit_ms / request_spam::SPAM_TICKS_PER_RETRANSMIT
    );
    let volley = c.nodes[2].handle(at, Input::Timer(Timer::Traitor));
    for peer in [0u16, 1, 3] {
        let to_peer = |kind: &str| {
            volley
                .iter()
                .filter(|o| matches!(o, Output::Send { to, message } if to.0 == peer && message.kind() == kind))
                .count() as u64
        };
        assert_eq!(to_peer("catch-up-request"), REQUEST_SPAM_PER_TICK);
        assert_eq!(to_peer("new-view-request"), REQUEST_SPAM_PER_TICK);
    }
    assert!(volley
        .iter()
        .any(|o| matches!(o, Output::SetTimer { timer: Timer::Traitor, at_ms } if *at_ms > at)));
    // Each request is for old blocks that exist, so an honest peer serves it.
    let ctx = ctx(&c.cfg);
    for o in &volley {
        if let Output::Send {
            message: m @ Message::CatchUpRequest(r),
            ..
        } = o
        {
            assert!(r.payload.from.0 >= 1 && r.payload.from <= c.nodes[2].replica().committed());
            assert!(verify_message(ValidatorIndex(2), m.clone(), &ctx).is_ok());
        }
    }
}

#[test]
fn a_stopped_traitor_sends_nothing() {
    for behaviour in Behaviour::ALL {
        let keys = keys(4);
        let r = Replica::new(config(&keys), keys[0].clone()).expect("valid config");
        let mut t = Traitor::new(r, behaviour, Trigger::default())
            .with_limits(TraitorLimits {
                message_bytes_max: 8 << 10,
            })
            .until_ms(Some(1_000));
        let before = t.handle(500, Input::Timer(Timer::Retransmit));
        let after = t.handle(1_200, Input::Timer(Timer::Retransmit));
        assert!(
            after.iter().all(|o| !matches!(
                o,
                Output::Send { .. } | Output::Broadcast(_) | Output::ServeCatchUp { .. }
            )),
            "{behaviour} sent after stopping"
        );
        assert!(
            t.take_gossip().is_empty(),
            "{behaviour} gossiped after stopping"
        );
        if behaviour.is_attacker() && behaviour != Behaviour::GossipJunk {
            assert!(
                before.iter().any(|o| matches!(
                    o,
                    Output::Send { .. }
                        | Output::Broadcast(_)
                        | Output::SetTimer {
                            timer: Timer::Traitor,
                            ..
                        }
                )),
                "{behaviour} did nothing while active"
            );
        }
    }
}

#[test]
fn attackers_are_deterministic() {
    for behaviour in Behaviour::ATTACKERS {
        let run = || {
            let mut c = Cluster::new(1, behaviour);
            c.commit_until(2);
            c.tick(1);
            c.tick(1);
            let sent: Vec<Vec<u8>> = c.sent[1].iter().map(|(_, m)| m.encode()).collect();
            (sent, codec::encode(&c.gossip))
        };
        assert!(run() == run(), "{behaviour} differs between two runs");
    }
}

#[test]
fn a_bomb_from_a_non_primary_is_refused_by_the_replica() {
    // Whatever the verifier does first, the replica never enters a view on
    // a NEW-VIEW its primary did not sign.
    let mut c = Cluster::new(0, Behaviour::NewviewBomb);
    c.commit_until(2);
    let sent = c.tick(0);
    let Some((_, bomb)) = sent
        .iter()
        .find(|(to, m)| to.0 == 1 && matches!(m, Message::NewView(_)))
    else {
        panic!("no bomb");
    };
    let view = c.nodes[1].replica().view();
    if let Ok(v) = verify_message(ValidatorIndex(0), bomb.clone(), &ctx(&c.cfg)) {
        let out = c.nodes[1].handle(c.now, Input::Message(v));
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Rejected {
                    reason: Rejected::InvalidNewView { .. } | Rejected::NotPrimary { .. },
                    ..
                }
            )),
            "{out:?}"
        );
    }
    assert_eq!(c.nodes[1].replica().view(), view);
}
