//! `phalanx-wallet verify` against a lying node. Four real validators commit
//! two transfers; a fake API server in this test then serves tampered
//! copies of the real `GET /v1/transactions/{hash}?proof=true` answer — a
//! forged signature, signatures dropped below the quorum, a repeated
//! signer, a stranger's signature, no certificate, a proof or transaction
//! of the other transfer, a header from another block, a block of another
//! chain signed by the very same validators — and `verify` must reject
//! each, naming the check that failed. The untampered copy passes, so the
//! fake server itself is not what fails.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use phalanx_consensus::{Batch, BlockHeader, Commit, SeqNum, Transfer, View};
use phalanx_crypto::{merkle, write_key_file, Address, Digest, Keypair, Signed};
use phalanx_testnet::cluster::{wallet_bin, Cluster, ClusterSpec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Separates fragments of an expected message that must all appear.
const ALSO: &str = " … ";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn wallet(bin: &Path, home: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .env("PHALANX_WALLET_HOME", home)
        .env_remove("PHALANX_WALLET_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start phalanx-wallet");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("phalanx-wallet {args:?} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the lying node serves.
#[derive(Clone)]
struct Lies {
    validators: Arc<Mutex<Value>>,
    transaction: Arc<Mutex<Value>>,
}

fn lying_node(validators: Value) -> (String, Lies) {
    let lies = Lies {
        validators: Arc::new(Mutex::new(validators)),
        transaction: Arc::new(Mutex::new(Value::Null)),
    };
    let app = Router::new()
        .route(
            "/v1/validators",
            get(|State(l): State<Lies>| async move { Json(l.validators.lock().unwrap().clone()) }),
        )
        .route(
            "/v1/transactions/{hash}",
            get(|State(l): State<Lies>| async move { Json(l.transaction.lock().unwrap().clone()) }),
        )
        .with_state(lies.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let port = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("lying node listening");
    (format!("http://127.0.0.1:{port}"), lies)
}

/// A committed transfer's hash, sent with the wallet and waited for.
fn send_and_wait(
    bin: &Path,
    home: &Path,
    node: &str,
    key: &str,
    to: &Address,
    amount: &str,
) -> String {
    let run = wallet(
        bin,
        home,
        &[
            "--json",
            "--node",
            node,
            "--key",
            key,
            "send",
            "--to",
            &to.to_hex(),
            "--amount",
            amount,
            "--wait",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(run.code, 0, "send: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    v["hash"].as_str().unwrap().to_string()
}

/// A complete, internally consistent answer for a transfer committed on
/// chain `chain`, signed by `signers` — the cluster's own validators.
fn block_of_another_chain(chain: &str, signers: &[Keypair], sender: &Keypair) -> (String, Value) {
    let tx = Signed::sign(
        Transfer {
            chain_id: chain.into(),
            to: Address([9; 20]),
            amount: 7,
            nonce: 0,
        },
        sender,
        chain,
    );
    let batch = Batch {
        txs: vec![tx.clone()],
        timestamp_ms: 1_700_000_000_000,
    };
    let hashes = batch.tx_hashes();
    let header = BlockHeader {
        height: SeqNum(1),
        prev_hash: Digest::ZERO,
        batch_digest: batch.digest(),
        tx_root: merkle::root(&hashes),
        tx_count: 1,
        state_root: Digest::ZERO,
        timestamp_ms: batch.timestamp_ms,
    };
    let vote = Commit {
        view: View(0),
        seq: SeqNum(1),
        digest: batch.digest(),
    };
    let signatures: Vec<Value> = signers
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let s = Signed::sign(vote.clone(), k, chain);
            json!({
                "validator_index": i,
                "public_key": s.signer.to_hex(),
                "signature": s.signature.to_hex(),
                "signed_bytes": hex::encode(s.signing_bytes(chain)),
            })
        })
        .collect();
    let hash = hashes[0].to_hex();
    let body = json!({
        "hash": hash,
        "status": "committed",
        "height": 1,
        "position": 0,
        "block_hash": header.hash().to_hex(),
        "result": {"status": "executed"},
        "transaction": tx,
        "proof": merkle::prove(&hashes, 0).unwrap(),
        "header": header,
        "certificate": {"view": 0, "seq": 1, "batch_digest": batch.digest().to_hex(), "signatures": signatures},
    });
    (hash, body)
}

fn flip_hex_char(text: &str, at: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[at] = if chars[at] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

#[test]
fn n4_verify_rejects_each_lie_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let faucet = Keypair::generate();
    let mut spec = ClusterSpec::new(4, dir.path().join("net"));
    spec.accounts = vec![(faucet.address(), 1_000_000)];
    spec.local_consensus = vec![("retransmit_ms".into(), "200".into())];
    let mut cluster = Cluster::generate(spec).unwrap();
    cluster.start_all().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let genesis: PathBuf = cluster.spec.dir.join("genesis.json");
    let g = genesis.to_str().unwrap();
    let bin = wallet_bin().expect("build the binaries first: cargo build -p phalanx-node --bins");
    let home = dir.path().join("wallet");
    let key = dir.path().join("faucet.key.json");
    write_key_file(&key, &faucet).unwrap();
    let k = key.to_str().unwrap();
    let node0 = cluster.api_url(0);

    // Two transfers, each waited for: two different blocks.
    let a = send_and_wait(&bin, &home, &node0, k, &Address([1; 20]), "5");
    let b = send_and_wait(&bin, &home, &node0, k, &Address([2; 20]), "6");
    let api = cluster.api(0);
    let real_a = api
        .get(&format!("/v1/transactions/{a}?proof=true"))
        .unwrap();
    let real_b = api
        .get(&format!("/v1/transactions/{b}?proof=true"))
        .unwrap();
    let validators = api.get("/v1/validators").unwrap();
    assert_ne!(
        real_a["height"], real_b["height"],
        "waited-for transfers are in different blocks"
    );
    // The cluster stays up only to produce these answers; the rest is
    // between the wallet and the liar.
    let (liar, lies) = lying_node(validators.clone());

    let sigs = real_a["certificate"]["signatures"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        sigs.len() >= 3,
        "a real certificate has a quorum: {}",
        sigs.len()
    );
    let name_of = |sig: &Value| -> String {
        let pk = sig["public_key"].as_str().unwrap();
        let i = cluster
            .keys
            .iter()
            .position(|k| k.public().to_hex() == pk)
            .unwrap();
        format!("v{i}")
    };
    let (other_hash, other_block) =
        block_of_another_chain("other-chain", &cluster.keys[..3], &faucet);

    type Case = (&'static str, String, Value, Value, String);
    let mut cases: Vec<Case> = Vec::new();
    let mut add =
        |name: &'static str, hash: &str, validators: &Value, body: Value, want: String| {
            cases.push((name, hash.to_string(), validators.clone(), body, want));
        };

    add(
        "honest copy",
        &a,
        &validators,
        real_a.clone(),
        String::new(),
    );

    let mut forged = real_a.clone();
    let s1 = forged["certificate"]["signatures"][1]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    forged["certificate"]["signatures"][1]["signature"] = json!(flip_hex_char(&s1, 70));
    add(
        "forged signature",
        &a,
        &validators,
        forged,
        format!(
            "certificate: signature 1 (validator {}) does not verify",
            name_of(&sigs[1])
        ),
    );

    let mut short = real_a.clone();
    short["certificate"]["signatures"] = json!(sigs[..2]);
    add(
        "missing signature",
        &a,
        &validators,
        short,
        "certificate: only 2 distinct validators signed, need 3".into(),
    );

    let mut repeated = real_a.clone();
    repeated["certificate"]["signatures"] = json!([sigs[0], sigs[1], sigs[0]]);
    add(
        "repeated signer",
        &a,
        &validators,
        repeated,
        "certificate: only 2 distinct validators signed, need 3".into(),
    );

    let mut stranger = real_a.clone();
    let outsider = Keypair::generate().public().to_hex();
    stranger["certificate"]["signatures"][0]["public_key"] = json!(outsider);
    add(
        "stranger's signature",
        &a,
        &validators,
        stranger,
        format!("certificate: signature 0 is by {outsider}, which is not a genesis validator"),
    );

    let mut no_cert = real_a.clone();
    no_cert["certificate"] = Value::Null;
    add(
        "missing certificate",
        &a,
        &validators,
        no_cert,
        "certificate: the node served none for this block".into(),
    );

    // b's block, certificate and proof — all genuine — passed off as a's.
    let mut wrong_proof = real_b.clone();
    wrong_proof["hash"] = json!(a);
    wrong_proof["transaction"] = real_a["transaction"].clone();
    add(
        "proof for another transaction",
        &a,
        &validators,
        wrong_proof,
        format!(
            "proof: leads to root {ALSO}block's tx_root is {}",
            real_b["header"]["tx_root"].as_str().unwrap()
        ),
    );

    let mut wrong_tx = real_a.clone();
    wrong_tx["transaction"] = real_b["transaction"].clone();
    add(
        "another transaction served",
        &a,
        &validators,
        wrong_tx,
        format!("transaction: the node served one that hashes to {b}, not {a}"),
    );

    let mut other_header = real_a.clone();
    other_header["header"] = real_b["header"].clone();
    add(
        "header of another block",
        &a,
        &validators,
        other_header,
        format!(
            "certificate: it is for seq {}, the header is height {}",
            real_a["certificate"]["seq"], real_b["header"]["height"]
        ),
    );

    let mut lying_bytes = real_a.clone();
    lying_bytes["certificate"]["signatures"][0]["signed_bytes"] = json!("deadbeef");
    add(
        "signed bytes that are not the vote",
        &a,
        &validators,
        lying_bytes,
        "certificate: signature 0".to_string(),
    );

    add(
        "block of another chain, same validators",
        &other_hash,
        &validators,
        other_block.clone(),
        "block is from another chain: certificate signature 0 (validator v0) was made for chain \"other-chain\", the genesis chain is \"phalanx-testnet\"".into(),
    );

    let mut other_validators = validators.clone();
    other_validators["chain_id"] = json!("other-chain");
    add(
        "node of another chain",
        &other_hash,
        &other_validators,
        other_block,
        "block is from another chain: the node serves chain \"other-chain\"".into(),
    );

    for (name, hash, validators, body, want) in cases {
        *lies.validators.lock().unwrap() = validators;
        *lies.transaction.lock().unwrap() = body;
        let run = wallet(
            &bin,
            &home,
            &["--node", &liar, "--genesis", g, "verify", &hash],
        );
        if want.is_empty() {
            assert_eq!(run.code, 0, "case {name}: {}", run.stderr);
            assert!(
                run.stdout.starts_with("final: "),
                "case {name}: {}",
                run.stdout
            );
            continue;
        }
        assert_eq!(
            run.code, 1,
            "case {name}: verify must fail; stdout {}",
            run.stdout
        );
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "case {name}: one line, got {:?}",
            run.stderr
        );
        assert!(
            lines[0].starts_with("error: verification failed: ")
                && want.split(ALSO).all(|part| lines[0].contains(part)),
            "case {name}: want {want:?}, got {:?}",
            lines[0]
        );
    }

    // A genesis with other validators (same chain id): the real node is
    // refused before any certificate is read.
    let mut g2: Value = serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    g2["validators"][0]["public_key"] = json!(Keypair::generate().public().to_hex());
    let other_genesis = dir.path().join("other-validators.json");
    std::fs::write(&other_genesis, g2.to_string()).unwrap();
    let run = wallet(
        &bin,
        &home,
        &[
            "--node",
            &node0,
            "--genesis",
            other_genesis.to_str().unwrap(),
            "verify",
            &a,
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("block is from another chain") && run.stderr.contains("genesis hash"),
        "{}",
        run.stderr
    );
    cluster.stop_all();
}
