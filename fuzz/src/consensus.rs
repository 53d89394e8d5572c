//! Consensus messages from peers: `Message::decode` (bounded by
//! `MESSAGE_BYTES_MAX`), then `precheck_message` and `verify_message`
//! against the fixture's four validators, then — for what verifies — a
//! fresh replica's `handle`.

use crate::{fixture, Verdict};
use phalanx_consensus::{
    precheck_message, signature_checks_max, verify_message, Input, Message, Replica,
    ValidatorIndex, ValidatorSet, CATCH_UP_BLOCKS_MAX,
};
use std::sync::OnceLock;

/// Bytes as a validator would receive them on the consensus topic.
pub fn consensus_message(data: &[u8]) -> Verdict {
    let Ok(message) = Message::decode(data) else {
        return Verdict::Rejected;
    };
    check_canonical(&message, data);
    check_message(message)
}

/// A catch-up response's body: the bytes after the variant tag of
/// `Message::CatchUpResponse`, so every mutation lands on the committed
/// batches and their certificates. Decoded by `Message::decode` with the
/// tag put back, exactly as the wire form.
pub fn catch_up_response(data: &[u8]) -> Verdict {
    let mut wire = catch_up_tag().to_vec();
    wire.extend_from_slice(data);
    let Ok(message) = Message::decode(&wire) else {
        return Verdict::Rejected;
    };
    assert!(
        matches!(message, Message::CatchUpResponse(_)),
        "the catch-up tag decoded as {}",
        message.kind()
    );
    check_canonical(&message, &wire);
    check_message(message)
}

/// The encoding of the variant tag of `Message::CatchUpResponse`.
pub(crate) fn catch_up_tag() -> &'static [u8] {
    static TAG: OnceLock<Vec<u8>> = OnceLock::new();
    TAG.get_or_init(|| Message::CatchUpResponse(Vec::new()).encode()[..4].to_vec())
}

/// The codec promises one encoding per value (it rejects trailing bytes):
/// a message that decoded must encode back to the very same bytes, or two
/// byte strings would carry one message (and hash or dedupe differently).
fn check_canonical(message: &Message, data: &[u8]) {
    assert!(
        message.encode() == data,
        "{} decoded from bytes that are not its canonical encoding",
        message.kind()
    );
}

/// The validator a transport would name as the sender: the outer signer
/// when it is a validator, else validator 0.
fn claimed_sender(message: &Message, validators: &ValidatorSet) -> ValidatorIndex {
    let signer = match message {
        Message::PrePrepare { pre_prepare, .. } => Some(&pre_prepare.signer),
        Message::Prepare(s) => Some(&s.signer),
        Message::Commit(s) => Some(&s.signer),
        Message::Checkpoint(s) => Some(&s.signer),
        Message::ViewChange(s) => Some(&s.signer),
        Message::Complaint(s) => Some(&s.signer),
        Message::NewView(s) => Some(&s.signer),
        Message::NewViewRequest(s) => Some(&s.signer),
        Message::CatchUpRequest(s) => Some(&s.signer),
        Message::CatchUpResponse(_) => None,
    };
    signer
        .and_then(|key| validators.index_of(key))
        .unwrap_or(ValidatorIndex(0))
}

fn check_message(message: Message) -> Verdict {
    let f = fixture();
    let validators = &f.cfg.validators;
    let n = validators.len();
    let from = claimed_sender(&message, validators);
    // The horizon checks of a replica at genesis: cheap, no signature.
    let _ = precheck_message(from, &message, &f.ctx_at_genesis());
    let ctx = f.ctx();
    let precheck = precheck_message(from, &message, &ctx);
    if let Ok(checks) = precheck {
        // What one message may cost in signature checks (`precheck_message`
        // returns the count verify_message will then do).
        let bound = match &message {
            Message::CatchUpResponse(_) => CATCH_UP_BLOCKS_MAX * n,
            _ => signature_checks_max(n, f.cfg.window),
        };
        assert!(
            checks <= bound,
            "{} costs {checks} signature checks, over the bound {bound}",
            message.kind()
        );
    }
    let Ok(verified) = verify_message(from, message, &ctx) else {
        return Verdict::Rejected;
    };
    assert!(precheck.is_ok(), "verified a message its precheck refused");
    // A verified message from a peer must never make a replica panic: give
    // it to a fresh backup (not the sender) at genesis.
    let me = (from.as_usize() + 1) % n;
    let mut replica =
        Replica::new(f.cfg.clone(), f.keys[me].clone()).expect("the fixture's config is valid");
    let _ = replica.handle(1, Input::Message(verified));
    Verdict::Accepted
}
