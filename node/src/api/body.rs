//! `POST /v1/transactions` bodies, decoded straight into transactions.
//!
//! The body (already bounded in bytes by the body limit) is never turned
//! into a `serde_json::Value` tree, which costs many times its size: it is
//! deserialized into typed transfers, and a batch's array is read one
//! element at a time into a `Vec` that refuses the element past
//! `max_batch_txs` — parsing stops there, the rest is never looked at.
//! Unknown fields are refused at every level, as the OpenAPI schema says.

use phalanx_consensus::{Transaction, Transfer};
use phalanx_crypto::{Address, PublicKey, Signature, Signed};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::Cell;
use std::fmt;

/// One transaction, or `{"transactions": [...]}`.
#[derive(Debug)]
pub enum Submission {
    One(Transaction),
    Batch(Vec<Transaction>),
}

/// Why a body is not a submission.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Not JSON at all (syntax, or cut short).
    Json(String),
    /// JSON, but not a transaction or batch of them.
    Shape(String),
    /// A batch with more than this many transactions.
    TooMany(usize),
}

/// The transfer as a client writes it: the same fields, unknown ones and
/// an amount of zero (a transfer that can never execute) refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    chain_id: String,
    to: Address,
    amount: u64,
    nonce: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransactionBody {
    payload: TransferBody,
    signer: PublicKey,
    signature: Signature,
}

impl TransactionBody {
    fn into_transaction<E: de::Error>(self) -> Result<Transaction, E> {
        let TransferBody {
            chain_id,
            to,
            amount,
            nonce,
        } = self.payload;
        if amount == 0 {
            return Err(E::custom("payload.amount: must be at least 1"));
        }
        Ok(Signed {
            payload: Transfer {
                chain_id,
                to,
                amount,
                nonce,
            },
            signer: self.signer,
            signature: self.signature,
        })
    }
}

/// Decodes a submission from a body of at most the body limit.
pub fn parse(body: &[u8], max_batch_txs: usize) -> Result<Submission, BodyError> {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = SubmissionSeed {
        max_batch_txs,
        over: &over,
    }
    .deserialize(&mut de)
    .and_then(|s| de.end().map(|()| s));
    result.map_err(|e| {
        if over.get() {
            BodyError::TooMany(max_batch_txs)
        } else if e.is_data() {
            BodyError::Shape(e.to_string())
        } else {
            BodyError::Json(e.to_string())
        }
    })
}

struct SubmissionSeed<'a> {
    max_batch_txs: usize,
    over: &'a Cell<bool>,
}

const FIELDS: &[&str] = &["payload", "signer", "signature", "transactions"];

impl<'de> DeserializeSeed<'de> for SubmissionSeed<'_> {
    type Value = Submission;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Submission, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SubmissionSeed<'_> {
    type Value = Submission;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a transaction {payload, signer, signature} or {\"transactions\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Submission, A::Error> {
        let mut payload = None;
        let mut signer = None;
        let mut signature = None;
        let mut batch = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "payload" if payload.is_none() => payload = Some(map.next_value()?),
                "signer" if signer.is_none() => signer = Some(map.next_value()?),
                "signature" if signature.is_none() => signature = Some(map.next_value()?),
                "transactions" if batch.is_none() => {
                    batch = Some(map.next_value_seed(BatchSeed {
                        max: self.max_batch_txs,
                        over: self.over,
                    })?)
                }
                k if FIELDS.contains(&k) => {
                    return Err(de::Error::custom(format!("duplicate field `{k}`")))
                }
                k => return Err(de::Error::unknown_field(k, FIELDS)),
            }
        }
        match (batch, payload, signer, signature) {
            (Some(txs), None, None, None) => Ok(Submission::Batch(txs)),
            (Some(_), ..) => Err(de::Error::custom(
                "a batch has the one field `transactions`",
            )),
            (None, Some(payload), Some(signer), Some(signature)) => TransactionBody {
                payload,
                signer,
                signature,
            }
            .into_transaction()
            .map(Submission::One),
            (None, None, ..) => Err(de::Error::missing_field("payload")),
            (None, _, None, _) => Err(de::Error::missing_field("signer")),
            (None, ..) => Err(de::Error::missing_field("signature")),
        }
    }
}

/// A batch's array, read element by element into a `Vec` of at most
/// `max`: the element past it sets `over` and stops the parse.
struct BatchSeed<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Transaction>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Transaction>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Transaction>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {} transactions", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Transaction>, A::Error> {
        // No trust in a size hint: grow as elements arrive.
        let mut txs = Vec::new();
        loop {
            if txs.len() == self.max {
                // One more element is one too many; `]` ends it well.
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    self.over.set(true);
                    return Err(de::Error::custom(format!(
                        "more than {} transactions",
                        self.max
                    )));
                }
                return Ok(txs);
            }
            let i = txs.len();
            match seq.next_element::<TransactionBody>() {
                Ok(Some(t)) => txs.push(t.into_transaction()?),
                Ok(None) => return Ok(txs),
                Err(e) => return Err(de::Error::custom(format!("transactions[{i}]: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;

    fn tx_json(nonce: u64) -> serde_json::Value {
        let key = Keypair::generate();
        let t: Transaction = Signed::sign(
            Transfer {
                chain_id: "c".into(),
                to: Address([1; 20]),
                amount: 5,
                nonce,
            },
            &key,
            "c",
        );
        serde_json::to_value(t).unwrap()
    }

    fn batch(n: usize) -> Vec<u8> {
        let txs: Vec<_> = (0..n as u64).map(tx_json).collect();
        serde_json::to_vec(&serde_json::json!({ "transactions": txs })).unwrap()
    }

    #[test]
    fn one_and_batch_decode() {
        let one = serde_json::to_vec(&tx_json(3)).unwrap();
        assert!(matches!(parse(&one, 4), Ok(Submission::One(t)) if t.payload.nonce == 3));
        assert!(matches!(parse(&batch(4), 4), Ok(Submission::Batch(v)) if v.len() == 4));
        assert!(matches!(parse(&batch(0), 4), Ok(Submission::Batch(v)) if v.is_empty()));
    }

    #[test]
    fn a_batch_over_the_count_stops_at_the_first_element_too_many() {
        assert_eq!(parse(&batch(5), 4).unwrap_err(), BodyError::TooMany(4));
        // The rest is not read: what follows the fifth element may be
        // anything, even broken JSON.
        let mut body = batch(5);
        assert!(body.ends_with(b"}]}"));
        body.truncate(body.len() - 2);
        body.extend_from_slice(b", this is not JSON");
        assert_eq!(parse(&body, 4).unwrap_err(), BodyError::TooMany(4));
        // A bad element stops the parse where it stands.
        let cheap = format!("{{\"transactions\": [{}]}}", vec!["0"; 100].join(","));
        assert!(
            matches!(parse(cheap.as_bytes(), 4), Err(BodyError::Shape(m)) if m.contains("transactions[0]"))
        );
    }

    #[test]
    fn malformed_items_and_extra_fields_are_refused() {
        let mut items = vec![tx_json(0), serde_json::json!({"hello": 1})];
        let body =
            serde_json::to_vec(&serde_json::json!({ "transactions": items.clone() })).unwrap();
        assert!(
            matches!(parse(&body, 4), Err(BodyError::Shape(m)) if m.contains("transactions[1]"))
        );
        items[1] = tx_json(1);
        items[1]["payload"]["extra"] = 1.into();
        let body = serde_json::to_vec(&serde_json::json!({ "transactions": items })).unwrap();
        assert!(matches!(parse(&body, 4), Err(BodyError::Shape(m)) if m.contains("extra")));
        let mut one = tx_json(0);
        one["memo"] = "x".into();
        assert!(
            matches!(parse(&serde_json::to_vec(&one).unwrap(), 4), Err(BodyError::Shape(m)) if m.contains("memo"))
        );
        let mut zero = tx_json(0);
        zero["payload"]["amount"] = 0.into();
        assert!(
            matches!(parse(&serde_json::to_vec(&zero).unwrap(), 4), Err(BodyError::Shape(m)) if m.contains("amount"))
        );
        let mut both = tx_json(0);
        both["transactions"] = serde_json::json!([]);
        assert!(matches!(
            parse(&serde_json::to_vec(&both).unwrap(), 4),
            Err(BodyError::Shape(_))
        ));
        assert!(matches!(parse(b"{not json", 4), Err(BodyError::Json(_))));
        assert!(matches!(parse(b"[1, 2]", 4), Err(BodyError::Shape(_))));
        let trailing = [serde_json::to_vec(&tx_json(0)).unwrap(), b" {}".to_vec()].concat();
        assert!(matches!(parse(&trailing, 4), Err(BodyError::Json(_))));
    }
}
