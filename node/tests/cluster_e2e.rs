//! Four real `phalanx` processes on loopback: 1000 signed transfers over
//! HTTP, a SIGKILLed node that restarts and catches up, a stopped primary
//! replaced by a view change, and `verify-ledger` on the result — including
//! after a stored block is tampered with.

use phalanx_consensus::Transfer;
use phalanx_crypto::{Address, Keypair, Signed};
use phalanx_testnet::cluster::{Api, Cluster, ClusterSpec};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const CLIENTS: usize = 20;
const TXS_PER_CLIENT: u64 = 50;
const BALANCE: u64 = 1_000_000;

fn transfer(chain: &str, from: &Keypair, to: Address, amount: u64, nonce: u64) -> Value {
    let tx = Signed::sign(
        Transfer {
            chain_id: chain.into(),
            to,
            amount,
            nonce,
        },
        from,
        chain,
    );
    serde_json::to_value(tx).unwrap()
}

fn recipient(i: u64) -> Address {
    Address([(i % 7) as u8 + 1; 20])
}

fn wait_nonces(
    cluster: &mut Cluster,
    node: usize,
    clients: &[Keypair],
    want: u64,
    timeout: Duration,
) {
    cluster
        .wait_for(timeout, "every transfer committed", |c| {
            let api = c.api(node);
            let all = clients.iter().all(|k| {
                api.get(&format!("/v1/accounts/{}", k.address().to_hex()))
                    .ok()
                    .and_then(|v| v["nonce"].as_u64())
                    == Some(want)
            });
            all.then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; heights {:?}", cluster.heights()));
}

fn block_hashes(api: &Api, height: u64) -> Vec<String> {
    (1..=height)
        .map(|h| {
            api.get(&format!("/v1/blocks/{h}")).unwrap()["hash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn four_nodes_commit_1000_transfers_survive_a_kill_and_a_dead_primary() {
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<Keypair> = (0..CLIENTS).map(|_| Keypair::generate()).collect();
    let mut spec = ClusterSpec::new(4, dir.path());
    spec.chain_id = "e2e-chain".into();
    spec.accounts = clients.iter().map(|k| (k.address(), BALANCE)).collect();
    spec.local_consensus = vec![
        ("view_timeout_ms".into(), "1500".into()),
        ("propose_timeout_ms".into(), "1000".into()),
        ("retransmit_ms".into(), "200".into()),
    ];
    let supply = BALANCE * CLIENTS as u64;
    let mut cluster = Cluster::generate(spec).unwrap();
    cluster.start_all().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let chain = cluster.genesis.chain_id.clone();

    // 1000 transfers, 50 per request, round-robin over the nodes; node 2 is
    // SIGKILLed after 400 and restarted after 700.
    let mut hashes = BTreeSet::new();
    let mut all_batches = Vec::new();
    let mut sent = 0u64;
    for nonce in 0..TXS_PER_CLIENT {
        let batch: Vec<Value> = clients
            .iter()
            .enumerate()
            .map(|(c, k)| transfer(&chain, k, recipient(c as u64 + nonce), 1 + nonce % 5, nonce))
            .collect();
        let mut node = (nonce as usize) % 4;
        if !cluster.is_running(node) {
            node = (node + 1) % 4;
        }
        let (status, body) = cluster
            .api(node)
            .post_json("/v1/transactions", &json!({"transactions": batch.clone()}))
            .unwrap();
        all_batches.push(batch);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], CLIENTS, "{body}");
        for r in body["results"].as_array().unwrap() {
            assert!(hashes.insert(r["hash"].as_str().unwrap().to_string()));
        }
        sent += CLIENTS as u64;
        if sent == 400 {
            // Let gossip carry what node 2 accepted, then kill it mid-load.
            std::thread::sleep(Duration::from_millis(500));
            cluster.kill(2).unwrap();
        }
        if sent == 700 {
            cluster.start(2).unwrap();
            // Its API answers once it is up, and takes transactions once it
            // reaches a quorum (before, it answers 503 no_quorum).
            cluster.wait_healthy(Duration::from_secs(30)).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while cluster
                .api(2)
                .get("/v1/status")
                .ok()
                .and_then(|s| s["peers_connected"].as_u64())
                .unwrap_or(0)
                < 2
            {
                assert!(std::time::Instant::now() < deadline, "v2 never reconnected");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hashes.len(), 1000);
    // "Accepted" means pending, not final: transfers node 2 accepted just
    // before its SIGKILL may have died with its mempool. A client resubmits
    // until final, as the wallet does; duplicates are refused harmlessly.
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    for batch in &all_batches {
        let _ = cluster
            .api(0)
            .post_json("/v1/transactions", &json!({"transactions": batch}));
    }
    wait_nonces(
        &mut cluster,
        0,
        &clients,
        TXS_PER_CLIENT,
        Duration::from_secs(120),
    );

    // Every node reaches the same height with the same hashes.
    let height = cluster
        .wait_for(Duration::from_secs(60), "all nodes at one height", |c| {
            let hs = c.heights();
            let first = hs[0]?;
            hs.iter().all(|h| *h == Some(first)).then_some(first)
        })
        .unwrap();
    let reference = block_hashes(&cluster.api(0), height);
    for i in 1..4 {
        assert_eq!(
            block_hashes(&cluster.api(i), height),
            reference,
            "node {i} chain differs"
        );
    }

    // Each transfer committed exactly once, executed, supply unchanged.
    let api = cluster.api(0);
    let mut seen = BTreeSet::new();
    for h in 1..=height {
        let b = api.get(&format!("/v1/blocks/{h}")).unwrap();
        for (hash, result) in b["tx_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["results"].as_array().unwrap())
        {
            assert!(
                seen.insert(hash.as_str().unwrap().to_string()),
                "tx {hash} committed twice"
            );
            assert_eq!(result["status"], "executed", "{hash}: {result}");
        }
        let signatures = b["certificate"]["signatures"].as_array().unwrap();
        assert!(
            signatures.len() >= 3,
            "height {h}: certificate with {} signatures",
            signatures.len()
        );
    }
    assert_eq!(seen, hashes, "committed set = submitted set");
    let mut total = 0u64;
    for k in &clients {
        total += api
            .get(&format!("/v1/accounts/{}", k.address().to_hex()))
            .unwrap()["balance"]
            .as_u64()
            .unwrap();
    }
    for r in 0..7 {
        total += api
            .get(&format!("/v1/accounts/{}", recipient(r).to_hex()))
            .unwrap()["balance"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(total, supply, "supply conserved");

    // Stop the primary: a view change, then more commits.
    let status = api.get("/v1/status").unwrap();
    let primary = status["primary"].as_u64().unwrap() as usize;
    let view = status["view"].as_u64().unwrap();
    cluster.terminate(primary, Duration::from_secs(10)).unwrap();
    let other = (primary + 1) % 4;
    let more: Vec<Value> = clients
        .iter()
        .enumerate()
        .map(|(c, k)| transfer(&chain, k, recipient(c as u64), 1, TXS_PER_CLIENT))
        .collect();
    let (status_code, body) = cluster
        .api(other)
        .post_json("/v1/transactions", &json!({"transactions": more}))
        .unwrap();
    assert_eq!(status_code, 200, "{body}");
    wait_nonces(
        &mut cluster,
        other,
        &clients,
        TXS_PER_CLIENT + 1,
        Duration::from_secs(60),
    );
    let new_view = cluster.api(other).get("/v1/status").unwrap()["view"]
        .as_u64()
        .unwrap();
    assert!(new_view > view, "view {view} → {new_view}");

    // verify-ledger on a cleanly stopped node, then on a tampered copy.
    cluster.terminate(other, Duration::from_secs(10)).unwrap();
    let bin = phalanx_testnet::cluster::phalanx_bin().unwrap();
    let home = cluster.homes[other].clone();
    let out = std::process::Command::new(&bin)
        .arg("verify-ledger")
        .arg("--home")
        .arg(&home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify-ledger: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");

    let tampered_height = 3;
    phalanx_storage::tamper_block_for_test(&home.join("data").join("db"), tampered_height).unwrap();
    let out = std::process::Command::new(&bin)
        .arg("verify-ledger")
        .arg("--home")
        .arg(&home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "tampered ledger passed verify-ledger"
    );
    assert!(
        stderr.contains(&format!("height {tampered_height}")),
        "{stderr}"
    );
    cluster.stop_all();
}
