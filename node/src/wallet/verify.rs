//! Finality of one transaction, checked against the genesis file alone.
//!
//! The node's answer to `GET /v1/transactions/{hash}?proof=true` is
//! untrusted input. From the genesis (chain id, validators, so `f` and the
//! quorum `2f + 1`) we check, in this order, and name the first check that
//! fails:
//!
//! 1. the node serves our chain (chain id and genesis hash);
//! 2. the commit certificate: every signature is by a genesis validator,
//!    over exactly the COMMIT vote `(view, seq, batch_digest)` we rebuild
//!    for the genesis chain id (the node's `signed_bytes` must equal ours —
//!    they are never used), verifies strictly, and at least `2f + 1`
//!    distinct validators signed;
//! 3. the header: its height is the certificate's seq, its batch digest is
//!    the certified one and follows from its own `tx_root`, `tx_count` and
//!    `timestamp_ms`; the node's height and block hash agree with it;
//! 4. the Merkle proof leads from the transaction hash we asked about to
//!    the header's `tx_root`;
//! 5. the transaction served hashes to that hash, is for the genesis chain,
//!    and carries its sender's valid signature.
//!
//! The result (executed or failed) is not covered by the certificate — it
//! follows deterministically from the chain, and is reported as the node's.

use phalanx_consensus::{tx_hash, BlockHeader, Commit, Genesis, SeqNum, Transaction, View};
use phalanx_crypto::merkle::{self, MerkleProof, ProofError};
use phalanx_crypto::{codec, signing_bytes, AnyKey, Digest, PublicKey, Signature, SignedPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// The most signatures a certificate may carry before we refuse to look.
pub const CERT_SIGNATURES_MAX: usize = 1024;

/// The first check that failed, and exactly why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("block is from another chain: {0}")]
    OtherChain(String),
    #[error("transaction {hash} is not final: the node says {status:?}")]
    NotCommitted { hash: String, status: String },
    #[error("response: {field}: {reason}")]
    Malformed { field: String, reason: String },
    #[error("certificate: the node served none for this block")]
    NoCertificate,
    #[error("certificate: {count} signatures, more than the {max} we check")]
    TooManySignatures { count: usize, max: usize },
    #[error("certificate: signature {index} is by {public_key}, which is not a genesis validator")]
    NotAValidator { index: usize, public_key: String },
    #[error("certificate: signature {index} ({validator}) covers other bytes than the COMMIT vote for view {view}, seq {seq}, batch digest {digest} on chain {chain_id:?}")]
    SignedBytesMismatch {
        index: usize,
        validator: String,
        view: u64,
        seq: u64,
        digest: Digest,
        chain_id: String,
    },
    #[error("certificate: signature {index} ({validator}) does not verify")]
    BadSignature { index: usize, validator: String },
    #[error("certificate: only {distinct} distinct validators signed, need {need} (2f + 1 of {n}){duplicates}")]
    TooFewSigners {
        distinct: usize,
        need: usize,
        n: usize,
        duplicates: String,
    },
    #[error("certificate: it is for seq {cert_seq}, the header is height {header_height}")]
    SeqMismatch { cert_seq: u64, header_height: u64 },
    #[error("certificate: it signs batch digest {cert}, the header's batch_digest is {header}")]
    DigestMismatch { cert: Digest, header: Digest },
    #[error("header: batch_digest {claimed} does not follow from its tx_root, tx_count and timestamp_ms (they give {computed})")]
    HeaderDigest { claimed: Digest, computed: Digest },
    #[error("block: the node says height {said}, the header is height {header}")]
    HeightMismatch { said: u64, header: u64 },
    #[error("block: the node says block hash {said}, the header hashes to {computed}")]
    BlockHashMismatch { said: Digest, computed: Digest },
    #[error("proof: leads to root {computed}, block's tx_root is {expected}")]
    ProofRoot { computed: Digest, expected: Digest },
    #[error("proof: {0}")]
    Proof(String),
    #[error(
        "proof: it is for position {proof}, the node says the transaction is at position {said}"
    )]
    PositionMismatch { proof: u64, said: u64 },
    #[error("transaction: the node served one that hashes to {got}, not {want}")]
    TxHash { got: Digest, want: Digest },
    #[error("transaction: chain id {got:?} is not the genesis chain {want:?}")]
    TxChain { got: String, want: String },
    #[error("transaction: the sender's signature does not verify")]
    TxSignature,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Final {
    pub hash: Digest,
    pub chain_id: String,
    pub height: u64,
    pub position: u64,
    pub block_hash: Digest,
    pub view: u64,
    pub batch_digest: Digest,
    pub tx_root: Digest,
    /// The genesis names of the validators whose signatures checked out.
    pub signers: Vec<String>,
    pub validators: usize,
    pub quorum: usize,
    pub transaction: Transaction,
    /// The node's report of the result (not covered by the certificate).
    pub result: Value,
}

/// One signature as the API serves it.
#[derive(Debug, Clone, Deserialize)]
struct ServedSignature {
    public_key: PublicKey,
    signature: Signature,
    signed_bytes: String,
}

/// A commit certificate as the API serves it.
#[derive(Debug, Clone, Deserialize)]
struct ServedCertificate {
    view: u64,
    seq: u64,
    batch_digest: Digest,
    signatures: Vec<Value>,
}

fn field<T: DeserializeOwned>(body: &Value, name: &str) -> Result<T, VerifyError> {
    let v = body.get(name).cloned().unwrap_or(Value::Null);
    if v.is_null() {
        return Err(VerifyError::Malformed {
            field: name.into(),
            reason: "missing".into(),
        });
    }
    serde_json::from_value(v).map_err(|e| VerifyError::Malformed {
        field: name.into(),
        reason: e.to_string(),
    })
}

/// Step 1: the node's own account of its chain, from `/v1/validators`.
pub fn check_chain(
    genesis: &Genesis,
    node_chain_id: &str,
    node_genesis_hash: &str,
) -> Result<(), VerifyError> {
    let want_hash = genesis.hash().to_hex();
    if node_chain_id != genesis.chain_id || node_genesis_hash != want_hash {
        return Err(VerifyError::OtherChain(format!(
            "the node serves chain {node_chain_id:?} (genesis hash {node_genesis_hash}), the genesis file is chain {:?} (genesis hash {want_hash})",
            genesis.chain_id
        )));
    }
    Ok(())
}

/// Steps 2 to 5 on a `GET /v1/transactions/{hash}?proof=true` body.
pub fn verify_response(
    genesis: &Genesis,
    hash: &Digest,
    body: &Value,
) -> Result<Final, VerifyError> {
    let status = body["status"].as_str().unwrap_or("missing");
    if status != "committed" {
        return Err(VerifyError::NotCommitted {
            hash: hash.to_hex(),
            status: status.into(),
        });
    }
    if body.get("certificate").is_none_or(Value::is_null) {
        return Err(VerifyError::NoCertificate);
    }
    let cert: ServedCertificate = field(body, "certificate")?;
    let signers = check_certificate(genesis, &cert)?;
    let header: BlockHeader = field(body, "header")?;
    check_header(&cert, &header, body)?;
    let proof: MerkleProof = field(body, "proof")?;
    check_proof(hash, &proof, &header, body)?;
    let transaction: Transaction = field(body, "transaction")?;
    check_transaction(genesis, hash, &transaction)?;
    let validators = genesis.validator_set();
    Ok(Final {
        hash: *hash,
        chain_id: genesis.chain_id.clone(),
        height: header.height.0,
        position: proof.index,
        block_hash: header.hash(),
        view: cert.view,
        batch_digest: cert.batch_digest,
        tx_root: header.tx_root,
        signers,
        validators: validators.len(),
        quorum: validators.quorum(),
        transaction,
        result: body.get("result").cloned().unwrap_or(Value::Null),
    })
}

/// The chain id a COMMIT vote's signed bytes were made for, if they are
/// one (domain, chain id, then the 56-byte encoded vote).
fn commit_chain_of(bytes: &[u8]) -> Option<String> {
    let take = |at: usize| -> Option<(usize, &[u8])> {
        let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        Some((at + 4 + len, bytes.get(at + 4..at + 4 + len)?))
    };
    let (next, domain) = take(0)?;
    if domain != Commit::DOMAIN.as_bytes() {
        return None;
    }
    let (_, chain) = take(next)?;
    String::from_utf8(chain.to_vec()).ok()
}

/// Step 2: returns the signers' genesis names.
fn check_certificate(
    genesis: &Genesis,
    cert: &ServedCertificate,
) -> Result<Vec<String>, VerifyError> {
    if cert.signatures.len() > CERT_SIGNATURES_MAX {
        return Err(VerifyError::TooManySignatures {
            count: cert.signatures.len(),
            max: CERT_SIGNATURES_MAX,
        });
    }
    let validators = genesis.validator_set();
    let vote = Commit {
        view: View(cert.view),
        seq: SeqNum(cert.seq),
        digest: cert.batch_digest,
    };
    let expected = signing_bytes(Commit::DOMAIN, &genesis.chain_id, &codec::encode(&vote));
    let mut distinct = BTreeSet::new();
    let mut names = Vec::new();
    for (index, raw) in cert.signatures.iter().enumerate() {
        let sig: ServedSignature =
            serde_json::from_value(raw.clone()).map_err(|e| VerifyError::Malformed {
                field: format!("certificate.signatures[{index}]"),
                reason: e.to_string(),
            })?;
        let Some(vi) = validators.index_of(&sig.public_key) else {
            return Err(VerifyError::NotAValidator {
                index,
                public_key: sig.public_key.to_hex(),
            });
        };
        let name = &genesis.validators[vi.as_usize()].name;
        let validator = format!("validator {name}");
        let served = hex::decode(sig.signed_bytes.trim()).map_err(|e| VerifyError::Malformed {
            field: format!("certificate.signatures[{index}].signed_bytes"),
            reason: e.to_string(),
        })?;
        if served != expected {
            if let Some(chain) = commit_chain_of(&served).filter(|c| *c != genesis.chain_id) {
                return Err(VerifyError::OtherChain(format!(
                    "certificate signature {index} ({validator}) was made for chain {chain:?}, the genesis chain is {:?}",
                    genesis.chain_id
                )));
            }
            return Err(VerifyError::SignedBytesMismatch {
                index,
                validator,
                view: cert.view,
                seq: cert.seq,
                digest: cert.batch_digest,
                chain_id: genesis.chain_id.clone(),
            });
        }
        // Our own bytes, never the node's; the nodes' rule (cofactored), so
        // a certificate they accepted is not refused here.
        if sig.public_key.verify(&expected, &sig.signature).is_err() {
            return Err(VerifyError::BadSignature { index, validator });
        }
        if distinct.insert(vi) {
            names.push(name.clone());
        }
    }
    let need = validators.quorum();
    if distinct.len() < need {
        let dups = cert.signatures.len() - distinct.len();
        return Err(VerifyError::TooFewSigners {
            distinct: distinct.len(),
            need,
            n: validators.len(),
            duplicates: if dups > 0 {
                format!(
                    "; {dups} of the {} signatures repeat a signer",
                    cert.signatures.len()
                )
            } else {
                String::new()
            },
        });
    }
    Ok(names)
}

/// Step 3.
fn check_header(
    cert: &ServedCertificate,
    header: &BlockHeader,
    body: &Value,
) -> Result<(), VerifyError> {
    if cert.seq != header.height.0 {
        return Err(VerifyError::SeqMismatch {
            cert_seq: cert.seq,
            header_height: header.height.0,
        });
    }
    if cert.batch_digest != header.batch_digest {
        return Err(VerifyError::DigestMismatch {
            cert: cert.batch_digest,
            header: header.batch_digest,
        });
    }
    if !header.batch_digest_matches() {
        return Err(VerifyError::HeaderDigest {
            claimed: header.batch_digest,
            computed: phalanx_consensus::batch_digest(
                &header.tx_root,
                header.tx_count,
                header.timestamp_ms,
            ),
        });
    }
    if let Some(said) = body.get("height").and_then(Value::as_u64) {
        if said != header.height.0 {
            return Err(VerifyError::HeightMismatch {
                said,
                header: header.height.0,
            });
        }
    }
    if body.get("block_hash").is_some_and(|v| !v.is_null()) {
        let said: Digest = field(body, "block_hash")?;
        if said != header.hash() {
            return Err(VerifyError::BlockHashMismatch {
                said,
                computed: header.hash(),
            });
        }
    }
    Ok(())
}

/// Step 4.
fn check_proof(
    hash: &Digest,
    proof: &MerkleProof,
    header: &BlockHeader,
    body: &Value,
) -> Result<(), VerifyError> {
    match merkle::verify(hash, proof, &header.tx_root) {
        Ok(()) => {}
        Err(ProofError::RootMismatch { computed, expected }) => {
            return Err(VerifyError::ProofRoot { computed, expected })
        }
        Err(other) => return Err(VerifyError::Proof(other.to_string())),
    }
    if let Some(said) = body.get("position").and_then(Value::as_u64) {
        if said != proof.index {
            return Err(VerifyError::PositionMismatch {
                proof: proof.index,
                said,
            });
        }
    }
    Ok(())
}

/// Step 5.
fn check_transaction(
    genesis: &Genesis,
    hash: &Digest,
    tx: &Transaction,
) -> Result<(), VerifyError> {
    let got = tx_hash(tx);
    if got != *hash {
        return Err(VerifyError::TxHash { got, want: *hash });
    }
    if tx.payload.chain_id != genesis.chain_id {
        return Err(VerifyError::TxChain {
            got: tx.payload.chain_id.clone(),
            want: genesis.chain_id.clone(),
        });
    }
    tx.clone()
        .verify(&genesis.chain_id, &AnyKey)
        .map_err(|_| VerifyError::TxSignature)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::{Batch, GenesisValidator, Transfer};
    use phalanx_crypto::{Address, Keypair, Signed};
    use serde_json::json;

    struct World {
        genesis: Genesis,
        keys: Vec<Keypair>,
        txs: Vec<Transaction>,
    }

    fn world(chain: &str) -> World {
        let keys: Vec<Keypair> = (0..4)
            .map(|i| Keypair::insecure_from_label(&format!("verify-test-v{i}")))
            .collect();
        let genesis = Genesis {
            chain_id: chain.into(),
            genesis_time_ms: 1,
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
            consensus: Default::default(),
            accounts: vec![],
        };
        let sender = Keypair::insecure_from_label("verify-test-sender");
        let txs = (0..3)
            .map(|n| {
                Signed::sign(
                    Transfer {
                        chain_id: chain.into(),
                        to: Address([7; 20]),
                        amount: 5,
                        nonce: n,
                    },
                    &sender,
                    chain,
                )
            })
            .collect();
        World { genesis, keys, txs }
    }

    /// A response for `txs[pos]` in a block at height 4 signed by `signers`
    /// on `sign_chain`.
    fn response(w: &World, pos: usize, signers: &[usize], sign_chain: &str) -> Value {
        let batch = Batch {
            txs: w.txs.clone(),
            timestamp_ms: 99,
        };
        let hashes = batch.tx_hashes();
        let header = BlockHeader {
            height: SeqNum(4),
            prev_hash: Digest::ZERO,
            batch_digest: batch.digest(),
            tx_root: merkle::root(&hashes),
            tx_count: hashes.len() as u64,
            state_root: Digest::ZERO,
            timestamp_ms: 99,
        };
        let vote = Commit {
            view: View(0),
            seq: SeqNum(4),
            digest: batch.digest(),
        };
        let sigs: Vec<Value> = signers
            .iter()
            .map(|&i| {
                let s = Signed::sign(vote.clone(), &w.keys[i], sign_chain);
                json!({
                    "validator_index": i,
                    "public_key": s.signer.to_hex(),
                    "signature": s.signature.to_hex(),
                    "signed_bytes": hex::encode(s.signing_bytes(sign_chain)),
                })
            })
            .collect();
        json!({
            "hash": hashes[pos].to_hex(),
            "status": "committed",
            "height": 4,
            "position": pos,
            "block_hash": header.hash().to_hex(),
            "result": {"status": "executed"},
            "transaction": w.txs[pos],
            "proof": merkle::prove(&hashes, pos).unwrap(),
            "header": header,
            "certificate": {"view": 0, "seq": 4, "batch_digest": batch.digest().to_hex(), "signatures": sigs},
        })
    }

    fn hash_of(body: &Value) -> Digest {
        Digest::from_hex(body["hash"].as_str().unwrap()).unwrap()
    }

    /// Every check is shown to pass on an honest answer and fail on its
    /// own kind of lie.
    #[test]
    fn each_lie_is_caught_by_its_own_check() {
        let w = world("chain-a");
        let honest = response(&w, 1, &[0, 1, 2], "chain-a");
        let hash = hash_of(&honest);
        let ok = verify_response(&w.genesis, &hash, &honest).unwrap();
        assert_eq!((ok.height, ok.position, ok.signers.len()), (4, 1, 3));

        type Tamper = fn(&World, &mut Value);
        let cases: &[(&str, Tamper, &str)] = &[
            ("flipped signature byte", |_, b| {
                let s = b["certificate"]["signatures"][1]["signature"].as_str().unwrap().to_string();
                let flipped = format!("{}{}", if &s[..1] == "0" { "1" } else { "0" }, &s[1..]);
                b["certificate"]["signatures"][1]["signature"] = json!(flipped);
            }, "certificate: signature 1 (validator v1) does not verify"),
            ("below quorum", |_, b| {
                b["certificate"]["signatures"].as_array_mut().unwrap().pop();
            }, "only 2 distinct validators signed, need 3"),
            ("duplicated signer", |_, b| {
                let first = b["certificate"]["signatures"][0].clone();
                b["certificate"]["signatures"][2] = first;
            }, "only 2 distinct validators signed, need 3"),
            ("stranger's signature", |_, b| {
                b["certificate"]["signatures"][0]["public_key"] = json!(Keypair::generate().public().to_hex());
            }, "signature 0 is by"),
            ("missing certificate", |_, b| {
                b["certificate"] = Value::Null;
            }, "certificate: the node served none"),
            ("lying signed_bytes", |_, b| {
                b["certificate"]["signatures"][0]["signed_bytes"] = json!("00");
            }, "covers other bytes than the COMMIT vote"),
            ("proof for another transaction", |w, b| {
                b["proof"] = response(w, 2, &[0, 1, 2], "chain-a")["proof"].clone();
            }, "proof: leads to root"),
            ("transaction swapped", |w, b| {
                b["transaction"] = json!(w.txs[0]);
            }, "transaction: the node served one that hashes to"),
            ("header tx_root altered", |_, b| {
                b["header"]["tx_root"] = json!(Digest::ZERO.to_hex());
            }, "header: batch_digest"),
            ("certificate for another seq", |_, b| {
                b["certificate"]["seq"] = json!(5);
            }, "covers other bytes"),
            ("block from another chain", |w, b| {
                *b = response(w, 1, &[0, 1, 2], "chain-b");
            }, "block is from another chain: certificate signature 0 (validator v0) was made for chain \"chain-b\""),
            ("not yet committed", |_, b| {
                *b = json!({"status": "pending"});
            }, "is not final"),
        ];
        for (name, tamper, want) in cases {
            let mut body = honest.clone();
            tamper(&w, &mut body);
            let err = verify_response(&w.genesis, &hash, &body).expect_err(name);
            assert!(err.to_string().contains(want), "case {name}: got {err}");
        }
    }

    #[test]
    fn chain_identity_is_checked() {
        let w = world("chain-a");
        let h = w.genesis.hash().to_hex();
        check_chain(&w.genesis, "chain-a", &h).unwrap();
        let err = check_chain(&w.genesis, "chain-b", &h).unwrap_err();
        assert!(err.to_string().starts_with("block is from another chain"));
        assert!(check_chain(&w.genesis, "chain-a", &Digest::ZERO.to_hex()).is_err());
    }

    #[test]
    fn commit_chain_is_read_from_signed_bytes() {
        let b = signing_bytes(Commit::DOMAIN, "xyz", &[1, 2, 3]);
        assert_eq!(commit_chain_of(&b).as_deref(), Some("xyz"));
        assert_eq!(commit_chain_of(&b[..5]), None);
        assert_eq!(commit_chain_of(&signing_bytes("other", "xyz", &[])), None);
    }
}
