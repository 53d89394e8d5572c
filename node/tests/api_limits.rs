//! The node's own API limits, on a real one-validator node with small
//! `[api]` limits: event subscribers beyond the cap are refused in JSON and
//! a freed slot is reused, a batch over the count and a batch with one
//! malformed item are refused whole, a bad query string is JSON, and
//! the OpenAPI document states the node's batch limit.

use phalanx_consensus::Transfer;
use phalanx_crypto::{Address, Keypair, Signed};
use phalanx_testnet::cluster::{Cluster, ClusterSpec};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn signed(chain: &str, key: &Keypair, nonce: u64) -> serde_json::Value {
    serde_json::to_value(Signed::sign(
        Transfer {
            chain_id: chain.into(),
            to: Address([3; 20]),
            amount: 1,
            nonce,
        },
        key,
        chain,
    ))
    .unwrap()
}

/// Opens `/v1/events` and reads the response head (and, on refusal, the
/// body): the status and what was read.
fn open_events(port: u16) -> (TcpStream, u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let status: u16 = text[9..12].parse().unwrap();
            // A refusal's JSON body is short and follows at once.
            if status != 200 && !text[end..].contains('}') {
                continue;
            }
            return (s, status, text);
        }
    }
}

#[test]
fn n1_event_subscribers_batches_and_queries_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Keypair::generate();
    let mut spec = ClusterSpec::new(1, dir.path());
    spec.accounts = vec![(alice.address(), 1_000)];
    let mut cluster = Cluster::generate(spec).unwrap();
    let toml = cluster.homes[0].join("config").join("node.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text = text
        .replace("max_batch_txs = 4096", "max_batch_txs = 4")
        .replace("max_event_subscribers = 128", "max_event_subscribers = 2");
    assert!(text.contains("max_event_subscribers = 2"), "{text}");
    std::fs::write(&toml, text).unwrap();
    cluster.start_all().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let chain = cluster.genesis.chain_id.clone();
    let api = cluster.api(0);
    let port = cluster.api_ports[0];

    // Event streams: two served, the third refused in JSON, and a slot
    // given back when a subscriber leaves.
    let (first, status, head) = open_events(port);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let (_second, status, _) = open_events(port);
    assert_eq!(status, 200);
    let (_, status, text) = open_events(port);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("application/json"), "{text}");
    assert!(text.contains("too_many_subscribers"), "{text}");
    drop(first);
    cluster
        .wait_for(Duration::from_secs(20), "a freed event slot", |_| {
            let (s, status, _) = open_events(port);
            (status == 200).then_some(s)
        })
        .unwrap();
    // /health answers all the while.
    assert_eq!(api.get("/health").unwrap()["status"], "ok");

    // A batch over the count: 413, nothing admitted.
    let five: Vec<_> = (0..5).map(|n| signed(&chain, &alice, n)).collect();
    let (status, body) = api
        .post_json(
            "/v1/transactions",
            &serde_json::json!({ "transactions": five }),
        )
        .unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "batch_too_large", "{body}");
    // A batch with one malformed item: 400 naming it, nothing admitted.
    let mixed = vec![signed(&chain, &alice, 0), serde_json::json!({"hello": 1})];
    let (status, body) = api
        .post_json(
            "/v1/transactions",
            &serde_json::json!({ "transactions": mixed }),
        )
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "malformed_transaction", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("transactions[1]")),
        "{body}"
    );
    let account = api
        .get(&format!("/v1/accounts/{}", alice.address().to_hex()))
        .unwrap();
    assert_eq!(account["pending_nonce"], 0, "nothing admitted: {account}");
    // Four is within the limit.
    let four: Vec<_> = (0..4).map(|n| signed(&chain, &alice, n)).collect();
    let (status, body) = api
        .post_json(
            "/v1/transactions",
            &serde_json::json!({ "transactions": four }),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");

    // A bad query string is JSON.
    let (status, body) = api
        .get_status(&format!("/v1/transactions/{}?proof=maybe", "ab".repeat(32)))
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_query", "{body}");

    let doc = api.get("/openapi.json").unwrap();
    let batch = &doc["paths"]["/v1/transactions"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["oneOf"][1];
    assert_eq!(
        batch["properties"]["transactions"]["maxItems"], 4,
        "{batch}"
    );
    assert_eq!(batch["additionalProperties"], false);
    cluster.stop_all();
}
