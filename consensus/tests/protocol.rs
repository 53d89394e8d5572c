//! Protocol steps, one scenario per test, on the synchronous harness.

mod harness;

use harness::*;
use phalanx_consensus::*;
use phalanx_crypto::Signed;
use std::collections::BTreeSet;

/// The index of the first output matching `pred`, or a panic naming `what`.
fn position(outputs: &[Output], what: &str, pred: impl Fn(&Output) -> bool) -> usize {
    outputs
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("expected {what} in {outputs:#?}"))
}

#[test]
fn normal_case_commits_in_order_with_identical_chains() {
    let mut net = Net::new(4);
    for round in 0..6 {
        net.submit(3);
        net.run_until(net.now + 50);
        assert!(
            net.heights().iter().all(|h| *h > round),
            "round {round}: {:?}",
            net.heights()
        );
    }
    net.assert_agreement();
    assert_eq!(net.view_changes(), 0);
    let txs: u64 = net.blocks[0].iter().map(|b| b.header.tx_count).sum();
    assert_eq!(txs, 18);
    assert!(net.blocks[0]
        .iter()
        .all(|b| b.results.iter().all(|r| *r == TxResult::Executed)));
}

/// One line per step of the normal case at a backup, checking the order
/// of outputs: persist before send, send before commit.
#[test]
fn backup_steps_persist_before_send_before_commit() {
    let mut net = Net::new(4);
    let tx = net.transfer(0);
    // Step 1: the primary (0) proposes.
    net.input(0, Input::Transactions(vec![tx.clone()]));
    let out = net.input(0, Input::Timer(Timer::Batch));
    let persist = position(&out, "persist of the pre-prepare vote", |o| {
        matches!(
            o,
            Output::Persist(WalEntry::Voted {
                phase: Phase::PrePrepare,
                ..
            })
        )
    });
    let send = position(&out, "broadcast of the pre-prepare", |o| {
        matches!(o, Output::Broadcast(Message::PrePrepare { .. }))
    });
    assert!(persist < send, "step 1: persist before send");
    let Output::Broadcast(pp_msg) = out[send].clone() else {
        unreachable!()
    };

    // Step 2: backup 1 accepts it → persist, then broadcast PREPARE.
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &net.cfg.validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let v = verify_message(ValidatorIndex(0), pp_msg, &ctx).unwrap();
    let out = net.replicas[1]
        .as_mut()
        .unwrap()
        .handle(10, Input::Message(v));
    let persist = position(&out, "persist of the prepare vote", |o| {
        matches!(
            o,
            Output::Persist(WalEntry::Voted {
                phase: Phase::Prepare,
                ..
            })
        )
    });
    let send = position(&out, "broadcast of prepare", |o| {
        matches!(o, Output::Broadcast(Message::Prepare(_)))
    });
    assert!(persist < send, "step 2: persist before send");

    // Step 3: prepares from 2 and 3 → prepared → persist, commit vote sent.
    let digest = net.replicas[1]
        .as_ref()
        .unwrap()
        .signed_vote(View(0), SeqNum(1), Phase::Prepare)
        .unwrap();
    let mut all = Vec::new();
    for j in [2usize, 3] {
        let p = Signed::sign(
            Prepare {
                view: View(0),
                seq: SeqNum(1),
                digest,
            },
            &net.keys[j],
            CHAIN,
        );
        let v = verify_message(ValidatorIndex(j as u16), Message::Prepare(p), &ctx).unwrap();
        all.extend(
            net.replicas[1]
                .as_mut()
                .unwrap()
                .handle(11, Input::Message(v)),
        );
    }
    let persist = position(&all, "persist of prepared proof", |o| {
        matches!(o, Output::Persist(WalEntry::Prepared(_)))
    });
    let send = position(&all, "broadcast of commit", |o| {
        matches!(o, Output::Broadcast(Message::Commit(_)))
    });
    assert!(persist < send, "step 3: persist before send");

    // Step 4: commits from 0 and 2 → committed-local → Commit output last.
    let mut all = Vec::new();
    for j in [0usize, 2] {
        let c = Signed::sign(
            Commit {
                view: View(0),
                seq: SeqNum(1),
                digest,
            },
            &net.keys[j],
            CHAIN,
        );
        let v = verify_message(ValidatorIndex(j as u16), Message::Commit(c), &ctx).unwrap();
        all.extend(
            net.replicas[1]
                .as_mut()
                .unwrap()
                .handle(12, Input::Message(v)),
        );
    }
    let commit = position(&all, "commit of block 1", |o| {
        matches!(o, Output::Commit(_))
    });
    let Output::Commit(cb) = &all[commit] else {
        unreachable!()
    };
    assert_eq!(cb.certificate.seq, SeqNum(1));
    cb.certificate
        .verify(&net.cfg.validators, CHAIN)
        .expect("certificate of 2f+1 commits verifies");
    assert_eq!(cb.batch.txs, vec![tx]);
}

/// Each rejection comes back typed and changes nothing.
#[test]
fn bad_normal_case_messages_are_rejected_with_reasons() {
    let mut net = Net::new(4);
    let ctx_validators = net.cfg.validators.clone();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &ctx_validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let digest = Batch::null().digest();
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "pre-prepare from a backup",
            Message::PrePrepare {
                pre_prepare: Signed::sign(
                    PrePrepare {
                        view: View(0),
                        seq: SeqNum(1),
                        digest,
                    },
                    &net.keys[2],
                    CHAIN,
                ),
                batch: Batch::null(),
            },
            "not_primary",
        ),
        (
            "seq above the window",
            Message::PrePrepare {
                pre_prepare: Signed::sign(
                    PrePrepare {
                        view: View(0),
                        seq: SeqNum(100),
                        digest,
                    },
                    &net.keys[0],
                    CHAIN,
                ),
                batch: Batch::null(),
            },
            "outside_window",
        ),
        (
            "future view",
            Message::Prepare(Signed::sign(
                Prepare {
                    view: View(3),
                    seq: SeqNum(1),
                    digest,
                },
                &net.keys[2],
                CHAIN,
            )),
            "future_view",
        ),
        (
            "prepare from the primary",
            Message::Prepare(Signed::sign(
                Prepare {
                    view: View(0),
                    seq: SeqNum(1),
                    digest,
                },
                &net.keys[0],
                CHAIN,
            )),
            "malformed",
        ),
    ];
    for (name, message, want) in cases {
        // Sent by its signer; refused by the cheap checks before any
        // signature, or by the replica.
        let signer = match &message {
            Message::PrePrepare { pre_prepare, .. } => pre_prepare.signer,
            Message::Prepare(p) => p.signer,
            _ => unreachable!(),
        };
        let from = net.cfg.validators.index_of(&signer).unwrap();
        let v = match verify_message(from, message, &ctx) {
            Ok(v) => v,
            Err(e) => {
                assert_eq!(e.reason(), want, "{name}: refused before the replica");
                continue;
            }
        };
        let out = net.input(1, Input::Message(v));
        let got: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Output::Rejected { reason, .. } => Some(reason.reason()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![want], "{name}");
        assert!(
            !out.iter().any(|o| matches!(
                o,
                Output::Persist(_) | Output::Broadcast(_) | Output::Commit(_)
            )),
            "{name}: a rejected message changed state: {out:?}"
        );
    }
    // Signature and digest problems are caught before the replica.
    let mut forged = Signed::sign(
        Prepare {
            view: View(0),
            seq: SeqNum(1),
            digest,
        },
        &net.keys[2],
        CHAIN,
    );
    forged.signature.0[0] ^= 1;
    assert_eq!(
        verify_message(ValidatorIndex(2), Message::Prepare(forged), &ctx)
            .unwrap_err()
            .reason(),
        "bad_signature"
    );
    let wrong_chain = Signed::sign(
        Prepare {
            view: View(0),
            seq: SeqNum(1),
            digest,
        },
        &net.keys[2],
        "other-chain",
    );
    assert_eq!(
        verify_message(ValidatorIndex(2), Message::Prepare(wrong_chain), &ctx)
            .unwrap_err()
            .reason(),
        "bad_signature"
    );
    let stranger = phalanx_crypto::Keypair::insecure_from_label("stranger");
    let by_stranger = Signed::sign(
        Prepare {
            view: View(0),
            seq: SeqNum(1),
            digest,
        },
        &stranger,
        CHAIN,
    );
    assert_eq!(
        verify_message(ValidatorIndex(2), Message::Prepare(by_stranger), &ctx)
            .unwrap_err()
            .reason(),
        "unknown_signer"
    );
    let mismatched = Message::PrePrepare {
        pre_prepare: Signed::sign(
            PrePrepare {
                view: View(0),
                seq: SeqNum(1),
                digest: phalanx_crypto::Digest::sha256(b"x"),
            },
            &net.keys[0],
            CHAIN,
        ),
        batch: Batch::null(),
    };
    assert_eq!(
        verify_message(ValidatorIndex(0), mismatched, &ctx)
            .unwrap_err()
            .reason(),
        "digest_mismatch"
    );
    assert!(Message::decode(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn checkpoints_become_stable_and_move_the_window() {
    let mut net = Net::new(4);
    for _ in 0..12 {
        net.submit(4);
        net.run_until(net.now + 50);
    }
    net.assert_agreement();
    assert!(
        net.heights().iter().all(|h| *h >= 12),
        "{:?}",
        net.heights()
    );
    for i in 0..4 {
        let r = net.replica(i);
        let low = r.low_watermark();
        assert!(low >= SeqNum(8), "replica {i} low watermark {low:?}");
        let cert = r.stable_checkpoint().expect("a stable checkpoint");
        cert.verify(&net.cfg.validators, CHAIN)
            .expect("checkpoint certificate verifies");
        // The WAL was pruned below the checkpoint.
        assert!(
            net.wal[i].iter().all(|e| e.seq().is_none_or(|s| s > low)),
            "replica {i} wal not pruned"
        );
    }
}

#[test]
fn silent_primary_is_replaced_and_commits_continue() {
    let mut net = Net::new(4);
    net.submit(2);
    net.run_until(100);
    assert!(net.heights().iter().all(|h| *h >= 1));
    // Cut every link from the primary.
    for j in 1..4 {
        net.cut.insert((0, j));
    }
    net.submit(2);
    net.run_until(net.now + 4000);
    assert!(net.view_changes() >= 3, "events: {:?}", net.events);
    for i in 1..4 {
        assert_eq!(net.replica(i).view(), View(1), "events: {:#?}", net.events);
        assert!(
            net.blocks[i].len() >= 2,
            "replica {i} heights {:?}",
            net.heights()
        );
    }
    net.assert_agreement();
}

/// Whether replica `i` has suspected the primary so far.
fn suspected(net: &Net, i: u16) -> bool {
    net.events
        .iter()
        .any(|(who, e)| who.0 == i && matches!(e, Event::PrimarySuspected { .. }))
}

#[test]
fn a_primary_proposing_full_batches_is_busy_not_censoring() {
    let mut net = Net::new(4);
    // Only replica 1 knows this transaction: from where it stands, the
    // primary leaves it out.
    let unseen = net.transfer(3);
    net.input(1, Input::Transactions(vec![unseen]));
    // Meanwhile the primary proposes full batches (batch_txs_max = 4),
    // well past the 500 ms propose timeout: it is busy, not suspected.
    for _ in 0..20 {
        net.submit(4);
        net.run_until(net.now + 100);
    }
    assert!(!suspected(&net, 1), "events: {:?}", net.events);
    assert_eq!(net.view_changes(), 0);
    // Once the full batches stop, the transaction it still leaves out
    // makes replica 1 suspect it.
    net.run_until(net.now + 2000);
    assert!(suspected(&net, 1), "events: {:?}", net.events);
}

/// A primary puts each sender's transactions in nonce order within a batch,
/// in the places that sender's transactions hold; others stay in place.
#[test]
fn a_primary_proposes_each_senders_transactions_in_nonce_order() {
    let mut net = Net::new(4);
    let a: Vec<Transaction> = (0..3).map(|_| net.transfer(0)).collect();
    let b = net.transfer(1);
    let arrival = vec![a[2].clone(), b.clone(), a[0].clone(), a[1].clone()];
    net.input(0, Input::Transactions(arrival));
    net.input(0, Input::Timer(Timer::Batch));
    let proposed = net
        .sent
        .iter()
        .find_map(|(i, m)| match m {
            Message::PrePrepare { batch, .. } if *i == 0 => Some(batch.txs.clone()),
            _ => None,
        })
        .expect("a proposal");
    assert_eq!(proposed, vec![a[0].clone(), b, a[1].clone(), a[2].clone()]);
}

/// With two partial batches in flight, the primary holds the next partial
/// batch for a commit (batches grow under load instead of multiplying),
/// but never past a quarter of the propose timeout; a full one goes at once.
#[test]
fn a_primary_holds_a_third_partial_batch_until_the_hold_limit() {
    let mut net = Net::new(4);
    // Nothing the primary sends arrives: nothing commits.
    for j in 1..4 {
        net.cut.insert((0, j));
    }
    let proposals = |net: &Net| {
        net.sent
            .iter()
            .filter(|(i, m)| *i == 0 && matches!(m, Message::PrePrepare { .. }))
            .count()
    };
    for round in 0..2 {
        let tx = net.transfer(round);
        net.input(0, Input::Transactions(vec![tx]));
        net.input(0, Input::Timer(Timer::Batch));
    }
    assert_eq!(proposals(&net), 2);
    let tx = net.transfer(2);
    net.input(0, Input::Transactions(vec![tx]));
    net.run_until(net.now + 100);
    assert_eq!(proposals(&net), 2, "held while two are in flight");
    // The hold limit is 500 / 4 = 125 ms from the transaction's arrival.
    net.run_until(net.now + 50);
    assert_eq!(proposals(&net), 3, "proposed at the hold limit");
    // A full batch (4) is not held.
    let full: Vec<Transaction> = (0..4).map(|i| net.transfer(i)).collect();
    net.input(0, Input::Transactions(full));
    assert_eq!(proposals(&net), 4, "a full batch goes at once");
}

/// Only full batches excuse a primary for leaving a transaction out: one
/// proposing half-full batches, or single transactions, meanwhile is
/// suspected (a censor under load, or a slow primary whose own delays
/// fill its batches halfway).
#[test]
fn half_full_batches_do_not_excuse_leaving_a_transaction_out() {
    for per_round in [2, 1] {
        let mut net = Net::new(4);
        let unseen = net.transfer(3);
        net.input(1, Input::Transactions(vec![unseen]));
        for _ in 0..20 {
            net.submit(per_round);
            net.run_until(net.now + 100);
        }
        assert!(
            suspected(&net, 1),
            "{per_round} per batch; events: {:?}",
            net.events
        );
    }
}

#[test]
fn a_transaction_committed_before_a_view_change_may_be_proposed_again() {
    let mut net = Net::new(4);
    net.submit(2);
    net.run_until(100);
    assert!(net.heights().iter().all(|h| *h >= 1));
    let first = net.blocks[1][0].txs[0].clone();
    // The primary falls silent; the NEW-VIEW of view 1 re-proposes seq 1,
    // which replica 1 (the new primary) has already executed.
    for j in 1..4 {
        net.cut.insert((0, j));
    }
    net.submit(2);
    net.run_until(net.now + 4000);
    assert_eq!(net.replica(1).view(), View(1));
    // Its ledger says `first` may execute later (as a node does for a
    // transfer that failed for its nonce) and hands it over again: the
    // re-proposed slot must not keep it "in flight" forever.
    net.input(1, Input::MayRetry(vec![tx_hash(&first)]));
    net.sent.clear();
    net.input(1, Input::Transactions(vec![first.clone()]));
    net.run_until(net.now + 100);
    let proposed = net.sent.iter().any(|(i, m)| {
        *i == 1
            && matches!(m, Message::PrePrepare { batch, .. }
                if batch.txs.iter().any(|t| tx_hash(t) == tx_hash(&first)))
    });
    assert!(proposed, "replica 1 never proposed the retried transaction");
}

#[test]
fn new_view_with_wrong_pre_prepares_is_rejected() {
    let mut net = Net::new(4);
    // Replicas 1..3 move to view 1 (primary 1); hold the NEW-VIEW.
    for j in 1..4 {
        net.cut.insert((0, j));
    }
    net.submit(2);
    net.run_until(3000);
    let nv = net.sent.iter().find_map(|(_, m)| match m {
        Message::NewView(nv) => Some(nv.clone()),
        _ => None,
    });
    let Some(nv) = nv else {
        panic!("no NEW-VIEW produced; events {:?}", net.events)
    };
    let validators = net.cfg.validators.clone();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let primary_key = net.keys[1].clone();
    // Tamper: too few view-changes.
    let mut few = nv.payload.clone();
    few.view_changes.truncate(2);
    // Tamper: an extra pre-prepare.
    let mut extra = nv.payload.clone();
    extra.pre_prepares.push(Signed::sign(
        PrePrepare {
            view: View(1),
            seq: SeqNum(99),
            digest: Batch::null().digest(),
        },
        &primary_key,
        CHAIN,
    ));
    for (name, body) in [("too few view-changes", few), ("extra pre-prepare", extra)] {
        let signed = Signed::sign(body, &primary_key, CHAIN);
        let v = verify_message(ValidatorIndex(1), Message::NewView(signed), &ctx).unwrap();
        let mut fresh = Replica::new(net.cfg.clone(), net.keys[3].clone()).unwrap();
        let out = fresh.handle(net.now, Input::Message(v));
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Rejected {
                    reason: Rejected::InvalidNewView { .. },
                    ..
                }
            )),
            "{name}: {out:?}"
        );
        assert_eq!(fresh.view(), View(0), "{name}: view unchanged");
    }
}

#[test]
fn lagging_replica_catches_up_from_certificates() {
    let mut net = Net::new(4);
    for j in 0..4 {
        net.cut.insert((j, 3));
        net.cut.insert((3, j));
    }
    for _ in 0..10 {
        net.submit(4);
        net.run_until(net.now + 50);
    }
    assert_eq!(net.blocks[3].len(), 0);
    assert!(net.blocks[0].len() >= 10);
    net.cut.clear();
    net.submit(4);
    net.run_until(net.now + 3000);
    let h = net.heights();
    assert!(h[3] >= h[0] - 1 && h[3] >= 10, "heights {h:?}");
    net.assert_agreement();
    assert!(net
        .events
        .iter()
        .any(|(i, e)| i.0 == 3 && matches!(e, Event::CatchingUp { .. })));
}

/// A replica far behind asks several peers for consecutive ranges at once
/// instead of one range per round trip, and still ends with the same chain.
#[test]
fn catch_up_keeps_several_ranges_in_flight_to_different_peers() {
    let mut net = Net::new(4);
    for j in 0..4 {
        net.cut.insert((j, 3));
        net.cut.insert((3, j));
    }
    // Replica 3 hears of none of these requests, so it suspects nobody.
    while net.blocks[0].len() < 60 {
        let txs: Vec<Transaction> = (0..4).map(|c| net.transfer(c)).collect();
        for i in 0..3 {
            net.input(i, Input::Transactions(txs.clone()));
        }
        net.run_until(net.now + 50);
    }
    assert_eq!(net.blocks[3].len(), 0);
    net.cut.clear();
    net.submit(4);
    let first_burst = loop {
        let burst: Vec<(u16, SeqNum, SeqNum)> = net
            .queue
            .iter()
            .filter_map(|(from, to, m)| match m {
                Message::CatchUpRequest(r) if from.0 == 3 => {
                    Some((to.0, r.payload.from, r.payload.to))
                }
                _ => None,
            })
            .collect();
        if !burst.is_empty() {
            break burst;
        }
        assert!(
            net.now < 10_000 && (net.deliver_one() || net.fire_next_timer(u64::MAX)),
            "replica 3 never asked to catch up"
        );
    };
    assert_eq!(
        first_burst.len(),
        CATCH_UP_RANGES_IN_FLIGHT,
        "{first_burst:?}"
    );
    let mut next = SeqNum(1);
    for (_, from, to) in &first_burst {
        assert_eq!(*from, next, "ranges are consecutive: {first_burst:?}");
        next = to.next();
    }
    let peers: BTreeSet<u16> = first_burst.iter().map(|(to, _, _)| *to).collect();
    assert_eq!(peers.len(), 3, "every peer is asked: {first_burst:?}");
    net.run_until(net.now + 3000);
    let h = net.heights();
    assert!(h[3] >= h[0] - 1 && h[3] >= 60, "heights {h:?}");
    net.assert_agreement();
    assert_eq!(net.replica(3).blocks_behind(), 0);
}

/// One peer's vote can claim any height: it starts catch-up (cheap to
/// answer) but does not make a replica count itself behind, which would
/// turn clients away from it (`503 catching_up`). Certified blocks do.
#[test]
fn only_certified_heights_count_as_behind() {
    let mut net = Net::new(4);
    let claim = Signed::sign(
        Prepare {
            view: View(0),
            seq: SeqNum(1_000_000),
            digest: phalanx_crypto::Digest([7; 32]),
        },
        &net.keys[1],
        CHAIN,
    );
    net.queue.push_back((
        ValidatorIndex(1),
        ValidatorIndex(3),
        Message::Prepare(claim),
    ));
    net.deliver_all();
    net.run_until(net.now + 1000);
    assert_eq!(
        net.replica(3).blocks_behind(),
        0,
        "a lone vote proves nothing"
    );

    for j in 0..4 {
        net.cut.insert((j, 2));
        net.cut.insert((2, j));
    }
    while net.blocks[0].len() < 20 {
        let txs: Vec<Transaction> = (0..4).map(|c| net.transfer(c)).collect();
        for i in [0, 1, 3] {
            net.input(i, Input::Transactions(txs.clone()));
        }
        net.run_until(net.now + 50);
    }
    // Blocks 2..=9 with their certificates, block 1 withheld.
    let blocks: Vec<CommittedBatch> = net.certs[0][1..9].to_vec();
    net.queue.clear();
    net.cut.clear();
    net.queue.push_back((
        ValidatorIndex(0),
        ValidatorIndex(2),
        Message::CatchUpResponse(blocks),
    ));
    net.deliver_one();
    assert_eq!(net.blocks[2].len(), 0, "block 1 is still missing");
    assert_eq!(net.replica(2).blocks_behind(), 9);
}

/// Catch-up trusts a commit certificate for the signatures inside its
/// batch, but not one byte more: a block whose transaction was altered
/// (here, its signature) no longer matches the certified digest.
#[test]
fn a_catch_up_block_altered_after_its_certificate_is_rejected() {
    let mut net = Net::new(4);
    net.submit(4);
    net.run_until(100);
    let good = net.certs[0][0].clone();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &net.cfg.validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let answer = |b: CommittedBatch| Message::CatchUpResponse(vec![b]);
    assert!(verify_message(ValidatorIndex(1), answer(good.clone()), &ctx).is_ok());
    let mut forged = good;
    forged.batch.txs[0].signature.0[0] ^= 1;
    assert!(matches!(
        verify_message(ValidatorIndex(1), answer(forged), &ctx),
        Err(Rejected::DigestMismatch { .. })
    ));
}

/// Restart each replica after every delivery step: nobody ever signs two
/// digests for one (view, seq, phase), and the chain keeps growing.
#[test]
fn restart_at_every_step_never_double_signs() {
    for victim in 0..4 {
        let mut net = Net::new(4);
        let mut step = 0;
        for _ in 0..8 {
            net.submit(2);
            while net.deliver_one() {
                step += 1;
                if step % 3 == 0 {
                    net.crash(victim);
                    net.restart(victim);
                }
            }
            net.run_until(net.now + 300);
        }
        net.run_until(net.now + 5000);
        net.assert_agreement();
        let h = net.heights();
        assert!(h.iter().all(|x| *x >= 6), "victim {victim}: heights {h:?}");
    }
}

#[test]
fn all_replicas_restart_at_once_and_continue() {
    let mut net = Net::new(4);
    for _ in 0..5 {
        net.submit(3);
        net.run_until(net.now + 50);
    }
    let before = net.heights();
    for i in 0..4 {
        net.crash(i);
    }
    net.queue.clear();
    for i in 0..4 {
        net.restart(i);
    }
    for _ in 0..5 {
        net.submit(3);
        net.run_until(net.now + 500);
    }
    net.run_until(net.now + 3000);
    net.assert_agreement();
    let after = net.heights();
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "before {before:?} after {after:?}"
    );
}

#[test]
fn conflicting_pre_prepares_become_evidence() {
    let mut net = Net::new(4);
    let validators = net.cfg.validators.clone();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let tx = net.transfer(0);
    let a = Batch {
        txs: vec![tx.clone()],
        timestamp_ms: 1,
    };
    let b = Batch {
        txs: vec![tx],
        timestamp_ms: 2,
    };
    let mut outs = Vec::new();
    for batch in [a, b] {
        let pp = Signed::sign(
            PrePrepare {
                view: View(0),
                seq: SeqNum(1),
                digest: batch.digest(),
            },
            &net.keys[0],
            CHAIN,
        );
        let v = verify_message(
            ValidatorIndex(0),
            Message::PrePrepare {
                pre_prepare: pp,
                batch,
            },
            &ctx,
        )
        .unwrap();
        outs.extend(net.input(1, Input::Message(v)));
    }
    let evidence: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Evidence(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].validator, net.keys[0].public());
    assert_eq!(evidence[0].phase, Phase::PrePrepare);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Rejected {
            reason: Rejected::ConflictingPrePrepare { .. },
            ..
        }
    )));
}

#[test]
fn unprepared_batch_is_proposed_again_after_a_view_change() {
    // Replica 1 (primary of view 1) holds five transactions; the view-0
    // primary pre-prepares the first three, which then go nowhere. In view
    // 1 they are pending again and replica 1 proposes all five, in arrival
    // order (batches of 4 on this network).
    let net = Net::new(4);
    let mut r1 = Replica::new(net.cfg.clone(), net.keys[1].clone()).unwrap();
    let clients: Vec<_> = (0..5)
        .map(|i| {
            Signed::sign(
                Transfer {
                    chain_id: CHAIN.into(),
                    to: phalanx_crypto::Address([7; 20]),
                    amount: 1,
                    nonce: i,
                },
                &net.clients[0],
                CHAIN,
            )
        })
        .collect::<Vec<_>>();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &net.cfg.validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let verified = |from: u16, m: Message| verify_message(ValidatorIndex(from), m, &ctx).unwrap();

    // Step 1: the transactions arrive.
    r1.handle(0, Input::Transactions(clients.clone()));
    assert_eq!(r1.pending_len(), 5, "step 1: all pending");

    // Step 2: the view-0 primary pre-prepares the first three.
    let batch = Batch {
        txs: clients[..3].to_vec(),
        timestamp_ms: 1,
    };
    let pp = Signed::sign(
        PrePrepare {
            view: View(0),
            seq: SeqNum(1),
            digest: batch.digest(),
        },
        &net.keys[0],
        CHAIN,
    );
    let out = r1.handle(
        1,
        Input::Message(verified(
            0,
            Message::PrePrepare {
                pre_prepare: pp,
                batch,
            },
        )),
    );
    position(&out, "step 2: a prepare", |o| {
        matches!(o, Output::Broadcast(Message::Prepare(_)))
    });

    // Step 3: nothing prepares; the view times out. Replica 1 complains
    // but stays in view 0 until 2f + 1 complained (replicas 2 and 3 too),
    // then moves to view 1 with them.
    let out = r1.handle(5000, Input::Timer(Timer::Progress));
    position(&out, "step 3: our complaint", |o| {
        matches!(o, Output::Broadcast(Message::Complaint(_)))
    });
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_)))),
        "step 3: one complaint is not a view change"
    );
    assert_eq!(r1.view(), View(0), "step 3: still in view 0");
    let mut out = Vec::new();
    for i in [2u16, 3] {
        let c = Signed::sign(
            Complaint { new_view: View(1) },
            &net.keys[i as usize],
            CHAIN,
        );
        out.extend(r1.handle(5001, Input::Message(verified(i, Message::Complaint(c)))));
    }
    position(
        &out,
        "step 3: our view-change after 2f + 1 complaints",
        |o| matches!(o, Output::Broadcast(Message::ViewChange(_))),
    );
    let mut view_1 = Vec::new();
    for i in [2u16, 3] {
        let vc = Signed::sign(
            ViewChange {
                new_view: View(1),
                checkpoint: None,
                prepared: Vec::new(),
            },
            &net.keys[i as usize],
            CHAIN,
        );
        view_1.extend(r1.handle(5001, Input::Message(verified(i, Message::ViewChange(vc)))));
    }
    position(&view_1, "step 3: the new-view", |o| {
        matches!(o, Output::Broadcast(Message::NewView(_)))
    });
    assert_eq!(r1.view(), View(1), "step 3: in view 1");

    // Step 4: the new primary cuts a full batch at once and the rest when
    // the batch timer fires: all five, oldest first.
    view_1.extend(r1.handle(5010, Input::Timer(Timer::Batch)));
    let proposed: Vec<(SeqNum, Vec<Transaction>)> = view_1
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::PrePrepare { pre_prepare, batch }) => {
                assert_eq!(pre_prepare.payload.view, View(1), "step 4: view 1");
                Some((pre_prepare.payload.seq, batch.txs.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        proposed,
        vec![
            (SeqNum(1), clients[..4].to_vec()),
            (SeqNum(2), clients[4..].to_vec())
        ],
        "step 4: all five, in arrival order"
    );
}

/// A VIEW-CHANGE's prepared proof stands on its certificate: the primary's
/// pre-prepare, 2f prepares from others and a batch matching their digest.
/// Each broken part is rejected with its reason.
#[test]
fn prepared_proofs_in_view_changes_are_checked_part_by_part() {
    let mut net = Net::new(4);
    let txs: Vec<Transaction> = (0..3).map(|_| net.transfer(0)).collect();
    let batch = Batch {
        txs,
        timestamp_ms: 1,
    };
    let digest = batch.digest();
    let pre_prepare = Signed::sign(
        PrePrepare {
            view: View(0),
            seq: SeqNum(1),
            digest,
        },
        &net.keys[0],
        CHAIN,
    );
    let prepare = |by: usize, digest| {
        Signed::sign(
            Prepare {
                view: View(0),
                seq: SeqNum(1),
                digest,
            },
            &net.keys[by],
            CHAIN,
        )
    };
    let proof = PreparedProof {
        pre_prepare: pre_prepare.clone(),
        batch: batch.clone(),
        prepares: vec![prepare(1, digest), prepare(2, digest)],
    };
    let validators = net.cfg.validators.clone();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let check = |p: PreparedProof| {
        let vc = Signed::sign(
            ViewChange {
                new_view: View(1),
                checkpoint: None,
                prepared: vec![p],
            },
            &net.keys[3],
            CHAIN,
        );
        verify_message(ValidatorIndex(3), Message::ViewChange(vc), &ctx).map(|_| ())
    };
    check(proof.clone()).expect("an intact proof verifies");

    let mut fewer = proof.clone();
    fewer.prepares.pop();
    let mut twice = proof.clone();
    twice.prepares[1] = prepare(1, digest);
    let mut by_primary = proof.clone();
    by_primary.prepares[1] = prepare(0, digest);
    let mut other_digest = proof.clone();
    other_digest.prepares[1] = prepare(2, Batch::null().digest());
    let mut forged = proof.clone();
    forged.prepares[1].signature.0[0] ^= 1;
    let mut not_primary = proof.clone();
    not_primary.pre_prepare = Signed::sign(pre_prepare.payload.clone(), &net.keys[2], CHAIN);
    let mut altered = proof.clone();
    altered.batch.txs.pop();
    for (name, p, want) in [
        ("one prepare", fewer, "invalid_view_change"),
        ("the same prepare twice", twice, "invalid_view_change"),
        (
            "a prepare by the primary",
            by_primary,
            "invalid_view_change",
        ),
        (
            "a prepare of another digest",
            other_digest,
            "invalid_view_change",
        ),
        ("a forged prepare", forged, "bad_signature"),
        (
            "a pre-prepare by a backup",
            not_primary,
            "invalid_view_change",
        ),
        (
            "a batch not matching the digest",
            altered,
            "digest_mismatch",
        ),
    ] {
        let got = check(p).expect_err(name);
        assert_eq!(got.reason(), want, "{name}: {got}");
    }
}

/// A consensus config that could not run is refused, naming the field.
#[test]
fn unusable_consensus_configs_name_the_field() {
    type Breaks = Box<dyn Fn(&mut Config)>;
    let net = Net::new(4);
    let cases: Vec<(&str, Breaks)> = vec![
        ("batch_txs_max", Box::new(|c| c.batch_txs_max = 0)),
        ("batch_bytes_max", Box::new(|c| c.batch_bytes_max = 100)),
        ("batch_bytes_max", Box::new(|c| c.batch_bytes_max = 1 << 40)),
        ("pipeline_max", Box::new(|c| c.pipeline_max = 0)),
        ("window", Box::new(|c| c.window = c.checkpoint_interval + 1)),
        ("propose_timeout_ms", Box::new(|c| c.propose_timeout_ms = 0)),
    ];
    for (field, break_it) in cases {
        let mut cfg = net.cfg.clone();
        break_it(&mut cfg);
        let err = cfg.validate().expect_err(field).to_string();
        assert!(err.starts_with(field), "{field}: {err}");
        assert!(Replica::new(cfg, net.keys[0].clone()).is_err(), "{field}");
    }
    net.cfg.validate().expect("the harness config is usable");
}

/// A primary that has just cleared a backlog with full batches is not
/// suspected of slowness once its batches stop being full: how long
/// transactions waited while it was saturated says nothing of its speed.
#[test]
fn a_backlog_cleared_with_full_batches_is_not_counted_as_slowness() {
    let mut net = Net::new(4);
    // The backups see ten full batches' worth at t = 0; the primary only at
    // t = 3000, when it clears them at once.
    let backlog: Vec<Transaction> = (0..40).map(|i| net.transfer(i % 4)).collect();
    for i in 1..4 {
        net.input(i, Input::Transactions(backlog.clone()));
    }
    net.now = 3000;
    net.input(0, Input::Transactions(backlog));
    net.deliver_all();
    assert_eq!(
        net.heights(),
        vec![10; 4],
        "the backlog in ten full batches"
    );
    // Then light load, each transaction proposed at once.
    for _ in 0..20 {
        net.submit(1);
        net.run_until(net.now + 100);
    }
    assert_eq!(net.view_changes(), 0, "events: {:?}", net.events);
    for i in 1..4 {
        assert!(!suspected(&net, i), "events: {:?}", net.events);
    }
}

/// A backup cut off for 8 s suspects the primary (it knows requests the
/// primary never proposed, and its slots do not commit) and complains. The
/// others' primary is fine, so they do not agree; after the cut heals the
/// backup is still in view 0, votes again, and its signatures are in the
/// commit certificates of the blocks that follow. (Before complaints it
/// left for view 1 at once and sat there alone for good.)
#[test]
fn n4_f1_backup_cut_off_for_8s_is_back_in_the_quorum_after_healing() {
    let mut net = Net::new(4);
    for _ in 0..5 {
        net.submit(4);
        net.run_until(net.now + 50);
    }
    for j in 0..4 {
        net.cut.insert((j, 3));
        net.cut.insert((3, j));
    }
    let cut_at = net.now;
    while net.now < cut_at + 8_000 {
        net.submit(4);
        net.run_until(net.now + 100);
    }
    assert!(
        net.events
            .iter()
            .any(|(i, e)| i.0 == 3 && matches!(e, Event::PrimarySuspected { view: View(0), .. })),
        "replica 3 suspected the primary while cut off"
    );
    assert_eq!(net.view_changes(), 0, "one complaint is not a view change");
    assert_eq!(net.replica(3).view(), View(0));
    assert!(!net.replica(3).is_view_changing());
    net.cut.clear();
    let healed_height = net.blocks[0].len() as u64;
    let healed_at = net.now;
    while net.now < healed_at + 5_000 {
        net.submit(4);
        net.run_until(net.now + 100);
    }
    for i in 0..4 {
        assert_eq!(net.replica(i).view(), View(0), "replica {i} in view 0");
        assert!(!net.replica(i).is_view_changing(), "replica {i}");
    }
    // It votes again: it signs commits for the blocks after healing, and
    // the certificates it stores carry its own commit.
    let after = healed_height + 5;
    let voted = net
        .signed
        .keys()
        .filter(|(i, v, seq, phase)| {
            *i == 3 && *v == View(0) && seq.0 > after && *phase == Phase::Commit
        })
        .count();
    let mine: Vec<_> = net
        .signed
        .keys()
        .filter(|k| k.0 == 3)
        .rev()
        .take(5)
        .collect();
    assert!(
        voted > 10,
        "replica 3 signed {voted} commits after healing {after} {mine:?} {:?} low {:?}",
        net.heights(),
        net.replica(3).low_watermark()
    );
    let key3 = net.keys[3].public();
    let in_certs = net.certs[3]
        .iter()
        .filter(|cb| cb.certificate.seq.0 > after)
        .filter(|cb| cb.certificate.votes.iter().any(|v| v.signer == key3))
        .count();
    assert!(
        in_certs > 10,
        "replica 3 in {in_certs} certificates after healing"
    );
    net.assert_agreement();
}

/// The complaint rules: one complaint changes nothing; f + 1 make a replica
/// complain too; 2f + 1 make it leave for the view they asked for.
#[test]
fn complaints_are_amplified_at_f_plus_1_and_acted_on_at_2f_plus_1() {
    let net = Net::new(4);
    let mut r0 = Replica::new(net.cfg.clone(), net.keys[0].clone()).unwrap();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &net.cfg.validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let complaint = |i: usize| {
        let c = Signed::sign(Complaint { new_view: View(1) }, &net.keys[i], CHAIN);
        Input::Message(
            verify_message(ValidatorIndex(i as u16), Message::Complaint(c), &ctx).unwrap(),
        )
    };
    let complained = |out: &[Output]| {
        out.iter()
            .any(|o| matches!(o, Output::Broadcast(Message::Complaint(_))))
    };
    let left = |out: &[Output]| {
        out.iter()
            .any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_))))
    };
    let out = r0.handle(1, complaint(1));
    assert!(
        !complained(&out) && !left(&out),
        "step 1: one complaint: {out:?}"
    );
    // A repeated complaint from the same validator still counts once.
    let out = r0.handle(2, complaint(1));
    assert!(
        !complained(&out) && !left(&out),
        "step 2: still one: {out:?}"
    );
    let out = r0.handle(3, complaint(2));
    assert!(complained(&out), "step 3: f + 1 complaints: we join them");
    assert!(left(&out), "step 3: with ours, 2f + 1: we leave");
    assert_eq!(r0.view(), View(1));
    assert!(r0.is_view_changing());
    // A complaint signed by someone other than its sender is refused.
    let c = Signed::sign(Complaint { new_view: View(1) }, &net.keys[2], CHAIN);
    let relayed = verify_message(ValidatorIndex(3), Message::Complaint(c), &ctx);
    assert!(
        matches!(relayed, Err(Rejected::UnknownSigner { .. })),
        "{relayed:?}"
    );
}

/// One validator's vote for a height far above ours is a claim, not a
/// proof: it does not make us catch up or report that we are behind. Votes
/// from f + 1 validators (one of them honest) do start a catch-up.
#[test]
fn one_traitors_far_ahead_vote_does_not_set_the_catch_up_target() {
    let net = Net::new(4);
    let mut r0 = Replica::new(net.cfg.clone(), net.keys[0].clone()).unwrap();
    let ctx = VerifyContext {
        chain_id: CHAIN,
        validators: &net.cfg.validators,
        window: net.cfg.window,
        horizon: None,
        known_good_txs: None,
    };
    let commit_from = |i: usize, seq: u64| {
        let c = Signed::sign(
            Commit {
                view: View(0),
                seq: SeqNum(seq),
                digest: phalanx_crypto::Digest([i as u8; 32]),
            },
            &net.keys[i],
            CHAIN,
        );
        Input::Message(verify_message(ValidatorIndex(i as u16), Message::Commit(c), &ctx).unwrap())
    };
    r0.handle(1, commit_from(3, 1_000_000));
    let mut t = 1;
    for _ in 0..6 {
        t += net.cfg.retransmit_ms;
        r0.handle(t, Input::Timer(Timer::Retransmit));
    }
    assert!(!r0.is_catching_up(), "one claim does not set the target");
    assert_eq!(r0.blocks_behind(), 0);
    r0.handle(t, commit_from(2, 200));
    let mut asked = Vec::new();
    for _ in 0..3 {
        t += net.cfg.retransmit_ms;
        asked.extend(r0.handle(t, Input::Timer(Timer::Retransmit)));
    }
    assert!(
        r0.is_catching_up(),
        "f + 1 claims above us start a catch-up"
    );
    assert!(
        asked.iter().all(|o| !matches!(
            o,
            Output::Send { message: Message::CatchUpRequest(r), .. } if r.payload.to.0 > 200
        )),
        "never past what f + 1 claim"
    );
}
