//! What one message can cost, and what an honest view change can weigh:
//! the bounds of issue 15 ("cost before trust", "view changes always fit").

use phalanx_consensus::*;
use phalanx_crypto::{codec, Address, Digest, Keypair, Signature, Signed};

/// The longest chain id a genesis allows: the largest transfers.
const CHAIN: &str = "a-chain-id-of-the-longest-length-a-genesis-allows-64-characters!";

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::insecure_from_label(&format!("validator-{i}")))
        .collect()
}

fn config(keys: &[Keypair]) -> Config {
    Config::new(
        CHAIN,
        ValidatorSet::new(keys.iter().map(|k| k.public()).collect()),
    )
}

/// A signed-looking value; sizes do not depend on the signature's bytes.
fn unsigned<M>(payload: M, key: &Keypair) -> Signed<M> {
    Signed {
        payload,
        signer: key.public(),
        signature: Signature([0; 64]),
    }
}

/// A batch of the largest transfers, up to `bytes`.
fn full_batch(bytes: u64, client: &Keypair) -> Batch {
    let tx = unsigned(
        Transfer {
            chain_id: CHAIN.into(),
            to: Address([1; 20]),
            amount: u64::MAX,
            nonce: u64::MAX,
        },
        client,
    );
    let count = (bytes / tx_len(&tx)) as usize;
    Batch {
        txs: vec![tx; count],
        timestamp_ms: u64::MAX,
    }
}

/// The heaviest VIEW-CHANGE an honest replica can send: a checkpoint
/// certificate of n votes and a prepared proof of a full batch, with n - 1
/// prepares, for every seq of the window.
fn heaviest_view_change(cfg: &Config, keys: &[Keypair], new_view: View) -> Signed<ViewChange> {
    let n = keys.len();
    let client = Keypair::insecure_from_label("client");
    let batch = full_batch(cfg.batch_bytes_max, &client);
    let digest = batch.digest();
    let low = SeqNum(cfg.window);
    let checkpoint = CheckpointCertificate {
        seq: low,
        block_hash: Digest([1; 32]),
        state_root: Digest([2; 32]),
        votes: keys
            .iter()
            .map(|k| {
                unsigned(
                    Checkpoint {
                        seq: low,
                        block_hash: Digest([1; 32]),
                        state_root: Digest([2; 32]),
                    },
                    k,
                )
            })
            .collect(),
    };
    let view = View(new_view.0 - 1);
    let primary = cfg.validators.primary(view).as_usize();
    let prepared = (1..=cfg.window)
        .map(|i| {
            let seq = SeqNum(low.0 + i);
            PreparedProof {
                pre_prepare: unsigned(PrePrepare { view, seq, digest }, &keys[primary]),
                batch: batch.clone(),
                prepares: (0..n)
                    .filter(|j| *j != primary)
                    .map(|j| unsigned(Prepare { view, seq, digest }, &keys[j]))
                    .collect(),
            }
        })
        .collect();
    unsigned(
        ViewChange {
            new_view,
            checkpoint: Some(checkpoint),
            prepared,
        },
        &keys[0],
    )
}

fn heaviest_new_view(cfg: &Config, keys: &[Keypair]) -> Signed<NewView> {
    let view = View(1);
    let quorum = 2 * ((keys.len() - 1) / 3) + 1;
    let vc = heaviest_view_change(cfg, keys, view);
    let view_changes = (0..quorum)
        .map(|i| Signed {
            signer: keys[i].public(),
            ..vc.clone()
        })
        .collect();
    let primary = &keys[cfg.validators.primary(view).as_usize()];
    let pre_prepares = (1..=cfg.window)
        .map(|i| {
            unsigned(
                PrePrepare {
                    view,
                    seq: SeqNum(cfg.window + i),
                    digest: Digest([3; 32]),
                },
                primary,
            )
        })
        .collect();
    unsigned(
        NewView {
            view,
            view_changes,
            pre_prepares,
        },
        primary,
    )
}

#[test]
fn the_heaviest_honest_view_change_and_new_view_fit_the_message_limit() {
    for n in [4, 7, 10] {
        let keys = keys(n);
        let cfg = config(&keys);
        cfg.validate().expect("the defaults are valid");
        let vc = Message::ViewChange(heaviest_view_change(&cfg, &keys, View(1)));
        let vc_len = codec::encoded_len(&vc);
        assert!(
            vc_len <= cfg.view_change_bytes_max(),
            "n = {n}: VIEW-CHANGE {vc_len}"
        );
        let nv = Message::NewView(heaviest_new_view(&cfg, &keys));
        let nv_len = codec::encoded_len(&nv);
        assert!(
            nv_len <= cfg.new_view_bytes_max() && nv_len <= MESSAGE_BYTES_MAX,
            "n = {n}: NEW-VIEW {nv_len} bytes, bound {}, limit {MESSAGE_BYTES_MAX}",
            cfg.new_view_bytes_max()
        );
        // The bound is tight, not a guess far above the real size.
        assert!(
            cfg.new_view_bytes_max() - nv_len < 64 * 1024,
            "n = {n}: bound {} for {nv_len}",
            cfg.new_view_bytes_max()
        );
        // And it decodes within the limit.
        Message::decode(&nv.encode()).expect("decodes");
    }
}

#[test]
fn a_config_whose_view_changes_cannot_fit_is_refused() {
    let keys = keys(4);
    let mut cfg = config(&keys);
    cfg.window = 64;
    cfg.batch_bytes_max = 512 * 1024;
    let err = cfg.validate().unwrap_err();
    assert!(
        err.to_string().starts_with("batch_bytes_max: a NEW-VIEW"),
        "{err}"
    );
}

fn ctx<'a>(cfg: &'a Config) -> VerifyContext<'a> {
    VerifyContext {
        chain_id: CHAIN,
        validators: &cfg.validators,
        window: cfg.window,
        horizon: Some(Horizon {
            view: View(0),
            low: SeqNum(0),
        }),
        known_good_txs: None,
    }
}

#[test]
fn the_signatures_one_message_can_cost_are_bounded_by_n_and_the_window() {
    let keys = keys(4);
    let cfg = config(&keys);
    let nv = Message::NewView(heaviest_new_view(&cfg, &keys));
    let checks = precheck_message(ValidatorIndex(1), &nv, &ctx(&cfg)).expect("within bounds");
    let bound = signature_checks_max(4, cfg.window);
    assert!(checks <= bound, "{checks} > {bound}");
    // The bound is a small multiple of n × window: n + 1 of it, plus a little.
    assert!(bound <= (4 + 1) * 4 * cfg.window as usize + 64, "{bound}");
}

/// Padded or misdirected messages are refused by checks that need no
/// signature: every signature here is garbage, so had any been checked
/// first, the error would be a bad signature.
#[test]
fn padded_and_misdirected_view_changes_are_refused_before_any_signature() {
    let keys = keys(4);
    let cfg = config(&keys);
    let c = ctx(&cfg);
    let refuse = |from: u16, m: Message| {
        let e = verify_message(ValidatorIndex(from), m, &c).unwrap_err();
        assert!(!matches!(e, Rejected::BadSignature { .. }), "{e}");
        e.reason()
    };
    // A NEW-VIEW from a validator that is not the view's primary.
    let mut nv = heaviest_new_view(&cfg, &keys);
    nv.signer = keys[3].public();
    assert_eq!(refuse(3, Message::NewView(nv)), "not_primary");
    // A NEW-VIEW padded with one pre-prepare repeated.
    let mut nv = heaviest_new_view(&cfg, &keys);
    let pp = nv.payload.pre_prepares[0].clone();
    nv.payload.pre_prepares = vec![pp; 10_000];
    assert_eq!(refuse(1, Message::NewView(nv)), "invalid_new_view");
    // A NEW-VIEW carrying one VIEW-CHANGE many times.
    let mut nv = heaviest_new_view(&cfg, &keys);
    let vc = nv.payload.view_changes[0].clone();
    nv.payload.view_changes = vec![vc; 3];
    assert_eq!(refuse(1, Message::NewView(nv)), "invalid_new_view");
    // A NEW-VIEW for a view far ahead.
    let mut nv = heaviest_new_view(&cfg, &keys);
    nv.payload.view = View(4 * 100 + 1);
    nv.signer = keys[1].public();
    assert_eq!(refuse(1, Message::NewView(nv)), "future_view");
    // A VIEW-CHANGE whose prepared proofs repeat one prepare.
    let mut vc = heaviest_view_change(&cfg, &keys, View(1));
    let p = vc.payload.prepared[0].prepares[0].clone();
    vc.payload.prepared[0].prepares = vec![p; 5_000];
    assert_eq!(refuse(0, Message::ViewChange(vc)), "invalid_view_change");
    // A VIEW-CHANGE with more prepared proofs than the window.
    let mut vc = heaviest_view_change(&cfg, &keys, View(1));
    let p = vc.payload.prepared[0].clone();
    vc.payload.prepared.push(p);
    assert_eq!(refuse(0, Message::ViewChange(vc)), "invalid_view_change");
    // A VIEW-CHANGE relayed by someone else, or for a view far ahead.
    let vc = heaviest_view_change(&cfg, &keys, View(1));
    assert_eq!(refuse(2, Message::ViewChange(vc)), "unknown_signer");
    let vc = heaviest_view_change(&cfg, &keys, View(VIEWS_AHEAD_MAX + 1));
    assert_eq!(refuse(0, Message::ViewChange(vc)), "future_view");
    // A pre-prepare from a future primary for a far view, or far above the window.
    let batch = Batch::null();
    let far = |view: u64, seq: u64, key: &Keypair| Message::PrePrepare {
        pre_prepare: unsigned(
            PrePrepare {
                view: View(view),
                seq: SeqNum(seq),
                digest: batch.digest(),
            },
            key,
        ),
        batch: batch.clone(),
    };
    assert_eq!(refuse(1, far(5, 1, &keys[1])), "future_view");
    assert_eq!(refuse(0, far(0, 1_000, &keys[0])), "outside_window");
}

fn verified(cfg: &Config, from: usize, m: Message) -> Input {
    let c = VerifyContext {
        chain_id: CHAIN,
        validators: &cfg.validators,
        window: cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    Input::Message(verify_message(ValidatorIndex(from as u16), m, &c).expect("verifies"))
}

/// Conflicting vote pairs for every seq of the window, and votes far above
/// it: at most one evidence record per (validator, view, phase).
#[test]
fn conflicting_votes_by_the_thousand_make_one_evidence_record() {
    let keys = keys(4);
    let cfg = config(&keys);
    let mut r0 = Replica::new(cfg.clone(), keys[0].clone()).unwrap();
    let traitor = &keys[3];
    let mut evidence = 0;
    for seq in 1..=(cfg.window * 40) {
        for d in [1u8, 2] {
            let p = Signed::sign(
                Prepare {
                    view: View(0),
                    seq: SeqNum(seq),
                    digest: Digest([d; 32]),
                },
                traitor,
                CHAIN,
            );
            let out = r0.handle(seq, verified(&cfg, 3, Message::Prepare(p)));
            evidence += out
                .iter()
                .filter(|o| matches!(o, Output::Evidence(_)))
                .count();
        }
    }
    assert_eq!(evidence, 1, "one record for (v3, view 0, prepare)");
    assert!(!r0.is_catching_up(), "one validator's votes set no target");
}

/// A traitor's VIEW-CHANGEs for each of the next 64 views: we hold one.
#[test]
fn view_changes_for_every_view_of_the_horizon_are_held_once_per_sender() {
    let keys = keys(4);
    let cfg = config(&keys);
    let mut r0 = Replica::new(cfg.clone(), keys[0].clone()).unwrap();
    for v in 1..=VIEWS_AHEAD_MAX {
        let vc = Signed::sign(
            ViewChange {
                new_view: View(v),
                checkpoint: None,
                prepared: Vec::new(),
            },
            &keys[3],
            CHAIN,
        );
        r0.handle(v, verified(&cfg, 3, Message::ViewChange(vc)));
    }
    assert_eq!(r0.view_changes_held(), 1);
    assert_eq!(r0.view(), View(0), "one validator does not move us");
}

/// Catch-up requests as fast as the link allows: one validator gets at
/// most the ranges an honest catching-up replica keeps in flight per
/// retransmit period; the rest is refused as rate-limited until the next period.
#[test]
fn catch_up_requests_are_served_within_a_budget_per_validator_and_period() {
    let keys = keys(4);
    let mut cfg = config(&keys);
    cfg.retransmit_ms = 500;
    // A replica whose chain is long enough to serve anything asked.
    let mut r0 =
        Replica::restore(cfg.clone(), keys[0].clone(), Vec::new(), SeqNum(100_000)).unwrap();
    let ask = |from: usize, seq: u64| {
        Message::CatchUpRequest(Signed::sign(
            CatchUpRequest {
                from: SeqNum(seq),
                to: SeqNum(seq + 63),
            },
            &keys[from],
            CHAIN,
        ))
    };
    let mut served = 0u64;
    let mut limited = 0;
    for i in 0..100 {
        let out = r0.handle(10, verified(&cfg, 3, ask(3, 1 + 64 * i)));
        for o in &out {
            match o {
                Output::ServeCatchUp { from, to_seq, .. } => served += to_seq.0 + 1 - from.0,
                Output::Rejected {
                    reason: Rejected::RateLimited { .. },
                    ..
                } => limited += 1,
                _ => {}
            }
        }
    }
    let budget = CATCH_UP_RANGES_IN_FLIGHT as u64 * 64;
    assert_eq!(served, budget, "one period's budget");
    assert_eq!(limited, 100 - budget / 64);
    // Another validator has its own budget; the flooder gets more later.
    let out = r0.handle(20, verified(&cfg, 2, ask(2, 1)));
    assert!(out.iter().any(|o| matches!(o, Output::ServeCatchUp { .. })));
    let out = r0.handle(600, verified(&cfg, 3, ask(3, 1)));
    assert!(out.iter().any(|o| matches!(o, Output::ServeCatchUp { .. })));
}
