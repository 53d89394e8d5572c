//! The JSON bodies of `POST /v1/transactions`.
//!
//! The server's body parsing (`node/src/api.rs`: `BatchBody`, `parse_tx`
//! and the body handling inside `submit`) is private and runs inside an
//! axum handler that needs a running node, so [`submit_body`] repeats its
//! steps through the public types: `serde_json` into a `Value`, a batch if
//! it has a `transactions` key (`{"transactions": [...]}`, no other keys,
//! at most `max_batch_txs` items), each item into the public
//! `Transaction`. What follows in the server — the mempool's admission —
//! is stateful and async and is not reached here; the stateless checks it
//! starts with (chain id, size, signature) are.

use crate::{Verdict, CHAIN};
use phalanx_consensus::{tx_hash, tx_len, Transaction, TX_BYTES_MAX};
use phalanx_crypto::{codec, AnyKey, Digest, HashDomain};
use phalanx_node::config::ApiConfig;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    transactions: Vec<Value>,
}

/// What the server makes of a body before admission.
pub enum Body {
    One(Result<Transaction, String>),
    Batch(Vec<Result<Transaction, String>>),
}

/// The body handling of `submit`, as it is in `node/src/api.rs`; `Err` is
/// the error code the server answers with.
pub fn submit_body(data: &[u8], max_batch_txs: usize) -> Result<Body, &'static str> {
    let value: Value = serde_json::from_slice(data).map_err(|_| "malformed_json")?;
    if value.get("transactions").is_none() {
        return Ok(Body::One(parse_tx(value)));
    }
    let b: BatchBody = serde_json::from_value(value).map_err(|_| "malformed_transaction")?;
    if b.transactions.len() > max_batch_txs {
        return Err("batch_too_large");
    }
    Ok(Body::Batch(
        b.transactions.into_iter().map(parse_tx).collect(),
    ))
}

fn parse_tx(v: Value) -> Result<Transaction, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// A single transaction's body, and the checks every parsed transaction
/// gets: the hand-written encoder behind `tx_hash`/`tx_len` agrees with
/// the codec, JSON round-trips, and the stateless admission checks run.
pub fn api_transaction(data: &[u8]) -> Verdict {
    let max = ApiConfig::default().max_batch_txs;
    match submit_body(data, max) {
        Ok(Body::One(Ok(tx))) => check_tx(&tx),
        Ok(Body::Batch(items)) => {
            let mut verdict = Verdict::Accepted;
            for tx in items {
                match tx {
                    Ok(tx) if check_tx(&tx) == Verdict::Accepted => {}
                    _ => verdict = Verdict::Rejected,
                }
            }
            verdict
        }
        Ok(Body::One(Err(_))) | Err(_) => Verdict::Rejected,
    }
}

/// A batch body: one verdict per item, the count bound, and the same
/// encoding checks per parsed item as [`api_transaction`] (without the
/// signature check, so the campaign spends its time on the JSON).
pub fn api_batch(data: &[u8]) -> Verdict {
    let max = ApiConfig::default().max_batch_txs;
    match submit_body(data, max) {
        Ok(Body::Batch(items)) => {
            assert!(items.len() <= max, "a batch over the limit was parsed");
            let mut all = true;
            for item in &items {
                match item {
                    Ok(tx) => check_encoding(tx),
                    Err(_) => all = false,
                }
            }
            if all {
                Verdict::Accepted
            } else {
                Verdict::Rejected
            }
        }
        Ok(Body::One(Ok(tx))) => {
            check_encoding(&tx);
            Verdict::Accepted
        }
        Ok(Body::One(Err(_))) | Err(_) => Verdict::Rejected,
    }
}

/// What holds of any transaction a client can make the server parse.
fn check_encoding(tx: &Transaction) {
    // `tx_hash` and `tx_len` use a hand-written encoder for speed; it must
    // be the codec's encoding byte for byte, or hashes would depend on the
    // path a transaction took.
    let canonical = codec::encode(tx);
    assert_eq!(tx_len(tx), canonical.len() as u64, "tx_len disagrees");
    assert_eq!(
        tx_hash(tx),
        Digest::of(HashDomain::Transaction, &canonical),
        "tx_hash disagrees with the codec"
    );
    assert_eq!(
        codec::decode::<Transaction>(&canonical, TX_BYTES_MAX.max(canonical.len() as u64)).as_ref(),
        Ok(tx),
        "a parsed transaction does not survive the codec"
    );
    // What the server echoes or gossips as JSON reads back the same.
    let json = serde_json::to_vec(tx).expect("a transaction serialises");
    let again: Transaction = serde_json::from_slice(&json).expect("own JSON parses");
    assert_eq!(&again, tx, "a transaction does not survive JSON");
}

/// The mempool's stateless admission checks: chain id, size, signature.
fn check_tx(tx: &Transaction) -> Verdict {
    check_encoding(tx);
    if tx.payload.chain_id != CHAIN || tx_len(tx) > TX_BYTES_MAX {
        return Verdict::Rejected;
    }
    match tx.clone().verify(CHAIN, &AnyKey) {
        Ok(_) => Verdict::Accepted,
        Err(_) => Verdict::Rejected,
    }
}
