//! A blocking HTTP client for the node API that tries each `--node` in turn.
//!
//! A node that cannot be reached (refused, unresolvable, timed out) is
//! skipped; the first one that answers at all is used, and kept for the
//! rest of the command, so a send's nonce query, submission and wait all go
//! to the same node. Nothing the node says is trusted for safety: replies
//! are parsed defensively and bounded in size, and `verify` checks proofs
//! itself.

use super::WalletError;
use phalanx_consensus::Transaction;
use phalanx_crypto::{Address, Digest};
use serde_json::Value;
use std::cell::Cell;
use std::time::Duration;

/// The largest response body read from a node.
pub const RESPONSE_BYTES_MAX: u64 = 8 << 20;
/// How long to wait for a TCP connection to one node.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How long one whole request to one node may take.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One answer from a node.
#[derive(Debug, Clone)]
pub struct Reply {
    pub node: String,
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The node's `{"error": {"code", "message"}}`, or a description of
    /// whatever else it sent.
    pub fn error_parts(&self) -> (String, String) {
        let e = &self.body["error"];
        match (e["code"].as_str(), e["message"].as_str()) {
            (Some(code), Some(message)) => (code.to_string(), message.to_string()),
            _ => (
                "unexpected".to_string(),
                truncate(&self.body.to_string(), 200),
            ),
        }
    }

    /// This reply as an API error.
    pub fn into_error(self) -> WalletError {
        let (code, message) = self.error_parts();
        WalletError::Api {
            node: self.node,
            status: self.status,
            code,
            message,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> WalletError {
        WalletError::BadResponse {
            node: self.node.clone(),
            reason: reason.into(),
        }
    }

    fn u64_field(&self, field: &str) -> Result<u64, WalletError> {
        self.body[field].as_u64().ok_or_else(|| {
            self.bad(format!(
                "no integer {field:?} in {}",
                truncate(&self.body.to_string(), 200)
            ))
        })
    }

    fn str_field(&self, field: &str) -> Result<String, WalletError> {
        self.body[field]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                self.bad(format!(
                    "no string {field:?} in {}",
                    truncate(&self.body.to_string(), 200)
                ))
            })
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An account as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub node: String,
    pub address: Address,
    pub balance: u64,
    /// The committed next nonce.
    pub nonce: u64,
    /// The next nonce after the node's pending transactions from it.
    pub pending_nonce: u64,
}

impl AccountInfo {
    /// Balance 0 and nonce 0: nothing on chain distinguishes it from an
    /// address nobody has used.
    pub fn is_unknown(&self) -> bool {
        self.balance == 0 && self.nonce == 0 && self.pending_nonce == 0
    }
}

/// The chain a node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub node: String,
    pub chain_id: String,
    pub genesis_hash: String,
}

/// The client.
pub struct Client {
    nodes: Vec<String>,
    agent: ureq::Agent,
    /// The index of the node that answered last: asked first next time.
    preferred: Cell<usize>,
}

impl Client {
    pub fn new(nodes: Vec<String>) -> Client {
        assert!(!nodes.is_empty(), "settings always name at least one node");
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .timeout_global(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("phalanx-wallet/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            nodes,
            agent: ureq::Agent::new_with_config(config),
            preferred: Cell::new(0),
        }
    }

    /// Sends the request to each node in turn, starting with the preferred
    /// one, until one answers.
    fn request(&self, path: &str, body: Option<&[u8]>) -> Result<Reply, WalletError> {
        let n = self.nodes.len();
        let start = self.preferred.get();
        let mut attempts = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let node = &self.nodes[i];
            match self.request_one(node, path, body) {
                Ok(reply) => {
                    self.preferred.set(i);
                    return Ok(reply);
                }
                Err(reason) => attempts.push(format!("{node}: {reason}")),
            }
        }
        Err(WalletError::Unreachable {
            attempts: attempts.join("; "),
        })
    }

    /// One node; `Err` means it did not answer (the next one is tried).
    fn request_one(&self, node: &str, path: &str, body: Option<&[u8]>) -> Result<Reply, String> {
        let url = format!("{node}{path}");
        let response = match body {
            None => self.agent.get(&url).call(),
            Some(bytes) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(bytes),
        };
        let mut response = response.map_err(describe)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_string()
            .map_err(describe)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(truncate(&text, 200)));
        Ok(Reply {
            node: node.to_string(),
            status,
            body,
        })
    }

    pub fn get(&self, path: &str) -> Result<Reply, WalletError> {
        self.request(path, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Reply, WalletError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        self.request(path, Some(&bytes))
    }

    /// `GET /v1/accounts/{address}`.
    pub fn account(&self, address: &Address) -> Result<AccountInfo, WalletError> {
        let reply = self.get(&format!("/v1/accounts/{}", address.to_hex()))?;
        if !reply.is_success() {
            return Err(reply.into_error());
        }
        Ok(AccountInfo {
            address: *address,
            balance: reply.u64_field("balance")?,
            nonce: reply.u64_field("nonce")?,
            pending_nonce: reply.u64_field("pending_nonce")?,
            node: reply.node,
        })
    }

    /// `GET /v1/validators`: the chain id and genesis hash.
    pub fn chain(&self) -> Result<(ChainInfo, Reply), WalletError> {
        let reply = self.get("/v1/validators")?;
        if !reply.is_success() {
            return Err(reply.into_error());
        }
        let info = ChainInfo {
            chain_id: reply.str_field("chain_id")?,
            genesis_hash: reply.str_field("genesis_hash")?,
            node: reply.node.clone(),
        };
        Ok((info, reply))
    }

    /// `POST /v1/transactions`: the node's hash for it, or its reason.
    pub fn submit(&self, tx: &Transaction) -> Result<(Digest, String), WalletError> {
        let body = serde_json::to_value(tx).expect("a transaction serializes");
        let reply = self.post_json("/v1/transactions", &body)?;
        if !reply.is_success() {
            let (code, message) = reply.error_parts();
            return Err(WalletError::Rejected {
                node: reply.node,
                code,
                message,
            });
        }
        let hash = reply.str_field("hash")?;
        let hash = Digest::from_hex(&hash).map_err(|e| reply.bad(format!("hash: {e}")))?;
        Ok((hash, reply.node))
    }

    /// `GET /v1/transactions/{hash}[?proof=true]`. A 404 is an answer
    /// (status "unknown"), not an error.
    pub fn transaction(&self, hash: &Digest, proof: bool) -> Result<Reply, WalletError> {
        let query = if proof { "?proof=true" } else { "" };
        let reply = self.get(&format!("/v1/transactions/{}{query}", hash.to_hex()))?;
        if reply.is_success() || (reply.status == 404 && reply.body["status"] == "unknown") {
            return Ok(reply);
        }
        Err(reply.into_error())
    }
}

/// Why a node did not answer, in a few words.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::ConnectionFailed => "connection refused".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::TimedOut => "timed out".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            _ => io.to_string(),
        },
        ureq::Error::BodyExceedsLimit(n) => format!("response over {n} bytes"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_ports_are_unreachable_with_every_attempt_named() {
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .collect();
        let nodes: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let err = Client::new(nodes.clone()).get("/v1/status").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, WalletError::Unreachable { .. }));
        for n in &nodes {
            assert!(text.contains(n.as_str()), "{text}");
        }
    }

    #[test]
    fn error_bodies_are_read() {
        let reply = Reply {
            node: "n".into(),
            status: 409,
            body: serde_json::json!({"error": {"code": "stale_nonce", "message": "nonce 1 is stale"}}),
        };
        assert_eq!(
            reply.error_parts(),
            ("stale_nonce".into(), "nonce 1 is stale".into())
        );
        let other = Reply {
            body: Value::String("<html>".into()),
            ..reply
        };
        assert_eq!(other.error_parts().0, "unexpected");
    }
}
