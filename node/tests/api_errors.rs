//! Every kind of bad input to the HTTP API gets a 4xx with a JSON reason
//! and changes nothing; the node keeps serving.

use phalanx_consensus::Transfer;
use phalanx_crypto::{Address, Keypair, Signed};
use phalanx_testnet::cluster::{Cluster, ClusterSpec};

use std::time::Duration;

fn signed(chain: &str, key: &Keypair, nonce: u64, amount: u64) -> Signed<Transfer> {
    Signed::sign(
        Transfer {
            chain_id: chain.into(),
            to: Address([3; 20]),
            amount,
            nonce,
        },
        key,
        chain,
    )
}

#[test]
fn bad_inputs_get_json_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Keypair::generate();
    // Funded, so that a transfer forged in its name gets as far as the
    // signature check (an unknown account is refused before it).
    let impersonated = Keypair::generate();
    let mut spec = ClusterSpec::new(1, dir.path());
    spec.accounts = vec![(alice.address(), 1_000), (impersonated.address(), 1_000)];
    let mut cluster = Cluster::generate(spec).unwrap();
    cluster.start_all().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let chain = cluster.genesis.chain_id.clone();
    let api = cluster.api(0);

    // One good transfer first, so duplicates and stale nonces exist.
    let good = signed(&chain, &alice, 0, 10);
    let (status, body) = api
        .post_json("/v1/transactions", &serde_json::to_value(&good).unwrap())
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let account = format!("/v1/accounts/{}", alice.address().to_hex());
    cluster
        .wait_for(Duration::from_secs(20), "first transfer committed", |c| {
            (c.api(0).get(&account).ok()?["nonce"] == 1).then_some(())
        })
        .unwrap();
    let before_status = api.get("/v1/status").unwrap();
    let before_account = api.get(&account).unwrap();

    let mut bad_sig = signed(&chain, &alice, 1, 10);
    bad_sig.signature.0[3] ^= 1;
    let wrong_chain = signed("another-chain", &alice, 1, 10);
    let forged_sender = {
        let mut t = signed(&chain, &alice, 1, 10);
        t.signer = impersonated.public();
        t
    };
    let oversized = {
        let mut t = signed(&chain, &alice, 1, 10);
        t.payload.chain_id = "x".repeat(2000);
        t
    };
    let to_json = |t: &Signed<Transfer>| serde_json::to_vec(t).unwrap();
    // (name, method, content type, body, status, error code)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            "POST",
            "application/json",
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "not a transaction",
            "POST",
            "application/json",
            br#"{"hello": 1}"#.to_vec(),
            400,
            "malformed_transaction",
        ),
        (
            "wrong content type",
            "POST",
            "text/plain",
            to_json(&signed(&chain, &alice, 1, 1)),
            415,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            "POST",
            "application/json",
            // Just over the 4 MiB default: the node answers 413 once the
            // limit is passed, and a much longer body would still be
            // being written when it closes (a broken pipe, not an answer).
            vec![b' '; (4 << 20) + 1024],
            413,
            "body_too_large",
        ),
        (
            "bad signature",
            "POST",
            "application/json",
            to_json(&bad_sig),
            400,
            "bad_signature",
        ),
        (
            "forged sender",
            "POST",
            "application/json",
            to_json(&forged_sender),
            400,
            "bad_signature",
        ),
        (
            "wrong chain id",
            "POST",
            "application/json",
            to_json(&wrong_chain),
            400,
            "wrong_chain_id",
        ),
        (
            "oversized chain id",
            "POST",
            "application/json",
            to_json(&oversized),
            400,
            "wrong_chain_id",
        ),
        (
            "duplicate",
            "POST",
            "application/json",
            to_json(&good),
            409,
            "already_committed",
        ),
        (
            "stale nonce",
            "POST",
            "application/json",
            to_json(&signed(&chain, &alice, 0, 11)),
            409,
            "stale_nonce",
        ),
        (
            "nonce far ahead",
            "POST",
            "application/json",
            to_json(&signed(&chain, &alice, 1_000_000, 1)),
            400,
            "nonce_too_far_ahead",
        ),
    ];
    for (name, _method, content_type, body, want_status, want_code) in cases {
        let (status, reply) = api
            .post_raw("/v1/transactions", content_type, &body)
            .unwrap();
        assert_eq!(status, want_status, "{name}: {reply}");
        assert_eq!(reply["error"]["code"], want_code, "{name}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {reply}"
        );
    }
    for (path, want) in [
        ("/v1/nope", 404),
        ("/v1/transactions/zz", 400),
        ("/v1/accounts/123", 400),
        ("/v1/blocks/abc", 400),
        ("/v1/blocks/999999", 404),
    ] {
        let (status, reply) = api.get_status(path).unwrap();
        assert_eq!(status, want, "{path}: {reply}");
        assert!(reply["error"]["code"].is_string(), "{path}: {reply}");
    }
    let (status, _) = api
        .get_status(&format!("/v1/transactions/{}", "ab".repeat(32)))
        .unwrap();
    assert_eq!(status, 404);

    // Nothing changed but the one accepted transfer above.
    let after_account = api.get(&account).unwrap();
    assert!(after_account["balance"].as_u64() <= before_account["balance"].as_u64());
    let after_status = api.get("/v1/status").unwrap();
    assert_eq!(after_status["chain_id"], before_status["chain_id"]);
    assert!(cluster.is_running(0), "the node survived every input");
    let metrics = api.get_status("/metrics").unwrap().1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("phalanx_transactions_rejected_total"),
        "{metrics}"
    );
    let openapi = api.get("/openapi.json").unwrap();
    for route in [
        "/v1/transactions",
        "/v1/transactions/{hash}",
        "/v1/accounts/{address}",
        "/v1/blocks/{height}",
        "/v1/events",
        "/metrics",
    ] {
        assert!(openapi["paths"][route].is_object(), "openapi lacks {route}");
    }
    cluster.stop_all();
}
