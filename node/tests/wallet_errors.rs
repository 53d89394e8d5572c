//! The errors a wallet user meets, each one clear line on stderr and exit
//! code 1: a wrong passphrase, a missing one, a corrupt or over-readable key
//! file, an unreachable node, an unknown account, an insufficient balance, a
//! node of another chain, and a transaction the node rejects with its
//! reason. The node side is a small fake API server, so no cluster is
//! needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use phalanx_crypto::{write_key_file, Keypair};
use phalanx_testnet::cluster::wallet_bin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One wallet invocation's outcome.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exactly one `error: ...` line on stderr, exit 1, containing `want`.
    fn assert_one_error_line(&self, want: &str) {
        assert_eq!(
            self.code, 1,
            "exit code; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        assert!(lines[0].contains(want), "want {want:?} in {:?}", lines[0]);
    }
}

/// Runs the wallet binary with its own wallet directory, no terminal and
/// no inherited passphrase; kills it after 60 s.
fn wallet(home: &Path, args: &[&str], passphrase: Option<&str>) -> Run {
    let mut cmd = Command::new(
        wallet_bin().expect("build the binaries first: cargo build -p phalanx-node --bins"),
    );
    cmd.args(args)
        .env("PHALANX_WALLET_HOME", home)
        .env_remove("PHALANX_WALLET_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = passphrase {
        cmd.env("PHALANX_WALLET_PASSPHRASE", p);
    }
    let mut child = cmd.spawn().expect("start phalanx-wallet");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("phalanx-wallet {args:?} did not finish in 60 s");
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

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// What the fake node answers.
#[derive(Clone)]
struct Fake {
    account: Arc<Mutex<Value>>,
    submit: Arc<Mutex<(u16, Value)>>,
}

/// A fake node API on loopback: `/v1/validators` for chain "fake-chain",
/// `/v1/accounts/{a}` and `POST /v1/transactions` as set in `Fake`.
fn fake_node() -> (String, Fake) {
    let fake = Fake {
        account: Arc::new(Mutex::new(
            json!({"balance": 0, "nonce": 0, "pending_nonce": 0}),
        )),
        submit: Arc::new(Mutex::new((202, json!({})))),
    };
    let app = Router::new()
        .route(
            "/v1/validators",
            get(|| async {
                Json(json!({"chain_id": "fake-chain", "genesis_hash": "00".repeat(32), "f": 0, "quorum": 1, "validators": []}))
            }),
        )
        .route(
            "/v1/accounts/{address}",
            get(|State(f): State<Fake>| async move { Json(f.account.lock().unwrap().clone()) }),
        )
        .route(
            "/v1/transactions",
            post(|State(f): State<Fake>| async move {
                let (status, body) = f.submit.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), Json(body))
            }),
        )
        .with_state(fake.clone());
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
        .expect("fake node listening");
    (format!("http://127.0.0.1:{port}"), fake)
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_path(home: &Path, name: &str) -> PathBuf {
    home.join(name)
}

#[test]
fn sealed_key_wrong_or_missing_passphrase_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let key = key_path(home, "alice.json");
    let key_s = key.to_str().unwrap();
    let made = wallet(
        home,
        &["--json", "keygen", "--encrypt", "--out", key_s],
        Some("correct horse"),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let made: Value = serde_json::from_str(&made.stdout).unwrap();
    assert_eq!(made["encrypted"], true);
    assert_eq!(mode_of(&key), 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let secret_hex_absent = !text.contains("secret_key");
    assert!(secret_hex_absent, "a sealed file holds no plain secret");

    let ok = wallet(home, &["--key", key_s, "address"], Some("correct horse"));
    assert_eq!(
        (ok.code, ok.stdout.trim()),
        (0, made["address"].as_str().unwrap())
    );

    wallet(home, &["--key", key_s, "address"], Some("battery staple"))
        .assert_one_error_line("bad passphrase for key file");
    wallet(home, &["--key", key_s, "address"], None)
        .assert_one_error_line("no passphrase for encrypted key file");
    // A wrong passphrase stops a send before any node is asked.
    let to = Keypair::generate().address().to_hex();
    wallet(
        home,
        &[
            "--key",
            key_s,
            "--node",
            &closed_port_url(),
            "send",
            "--to",
            &to,
            "--amount",
            "1",
        ],
        Some("battery staple"),
    )
    .assert_one_error_line("bad passphrase");

    // A swapped public key fails like a wrong passphrase: the header is
    // bound into the AEAD.
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["public_key"] = json!(Keypair::generate().public().to_hex());
    std::fs::write(&key, serde_json::to_string(&v).unwrap()).unwrap();
    wallet(home, &["--key", key_s, "address"], Some("correct horse"))
        .assert_one_error_line("or the file has been altered");
}

#[test]
fn corrupt_or_exposed_key_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let garbage = key_path(home, "garbage.json");
    std::fs::write(&garbage, "{ this is not json").unwrap();
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let g = garbage.to_str().unwrap();
    wallet(home, &["--key", g, "address"], None).assert_one_error_line("is corrupt: not JSON");

    // A node-format key whose secret was cut short.
    let plain = key_path(home, "plain.json");
    write_key_file(&plain, &Keypair::generate()).unwrap();
    let text = std::fs::read_to_string(&plain).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let secret = v["secret_key"].as_str().unwrap();
    std::fs::write(&plain, text.replace(secret, &secret[..20])).unwrap();
    let p = plain.to_str().unwrap();
    wallet(home, &["--key", p, "address"], None)
        .assert_one_error_line("is corrupt: secret_key is not 32 bytes of hex");

    // A sealed key whose ciphertext was altered.
    let sealed = key_path(home, "sealed.json");
    let s = sealed.to_str().unwrap();
    assert_eq!(
        wallet(home, &["keygen", "--encrypt", "--out", s], Some("pw")).code,
        0
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&sealed).unwrap()).unwrap();
    v["cipher"]["ciphertext"] = json!("zz");
    std::fs::write(&sealed, v.to_string()).unwrap();
    wallet(home, &["--key", s, "address"], Some("pw"))
        .assert_one_error_line("is corrupt: cipher.ciphertext");

    // Readable by others: refused, with the fix.
    let open = key_path(home, "open.json");
    let o = open.to_str().unwrap();
    assert_eq!(wallet(home, &["keygen", "--out", o], None).code, 0);
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    wallet(home, &["--key", o, "address"], None)
        .assert_one_error_line(&format!("run `chmod 600 {o}`"));

    // No key file at all (the default one under the wallet dir).
    wallet(home, &["address"], None).assert_one_error_line("no key file at");
    // keygen never overwrites.
    wallet(home, &["keygen", "--out", o], None).assert_one_error_line("refusing to overwrite");
}

#[test]
fn unreachable_nodes_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (a, b) = (closed_port_url(), closed_port_url());
    let addr = Keypair::generate().address().to_hex();
    let run = wallet(home, &["--node", &a, "--node", &b, "balance", &addr], None);
    run.assert_one_error_line("no node answered");
    assert!(
        run.stderr.contains(&a) && run.stderr.contains(&b),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );

    // --json adds a machine-readable error on stdout.
    let run = wallet(home, &["--json", "--node", &a, "nonce", &addr], None);
    run.assert_one_error_line("no node answered");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["error"]["code"], "node_unreachable");

    // The config file supplies nodes; a node given on the command line wins.
    std::fs::write(home.join("config.toml"), format!("nodes = [\"{a}\"]\n")).unwrap();
    wallet(home, &["balance", &addr], None).assert_one_error_line(&a);
}

#[test]
fn node_side_refusals_are_one_clear_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (node, fake) = fake_node();
    let key = key_path(home, "k.json");
    let k = key.to_str().unwrap();
    assert_eq!(wallet(home, &["keygen", "--out", k], None).code, 0);
    let to = Keypair::generate().address().to_hex();
    let send = [
        "--node",
        node.as_str(),
        "--key",
        k,
        "send",
        "--to",
        to.as_str(),
        "--amount",
        "10",
    ];

    // A fresh address: nothing on chain.
    wallet(home, &send, None).assert_one_error_line("unknown account");
    wallet(home, &["--node", &node, "--key", k, "balance"], None)
        .assert_one_error_line("unknown account");

    *fake.account.lock().unwrap() = json!({"balance": 5, "nonce": 0, "pending_nonce": 0});
    wallet(home, &send, None).assert_one_error_line("insufficient balance: have 5, need 10");

    *fake.account.lock().unwrap() = json!({"balance": 500, "nonce": 3, "pending_nonce": 3});
    *fake.submit.lock().unwrap() = (
        409,
        json!({"error": {"code": "stale_nonce", "message": "nonce 3 is stale: the account's next nonce is 4"}}),
    );
    wallet(home, &send, None).assert_one_error_line(&format!(
        "transaction rejected by {node}: nonce 3 is stale: the account's next nonce is 4 (stale_nonce)"
    ));
    *fake.submit.lock().unwrap() = (
        400,
        json!({"error": {"code": "wrong_chain_id", "message": "wrong chain id: this chain is \"x\", the transaction says \"fake-chain\""}}),
    );
    wallet(home, &send, None).assert_one_error_line("wrong chain id: this chain is");

    // A genesis for another chain than the node serves.
    let genesis = home.join("genesis.json");
    std::fs::write(&genesis, other_genesis("my-chain")).unwrap();
    let g = genesis.to_str().unwrap();
    wallet(
        home,
        &["--genesis", g, "--node", &node, "--key", k, "balance"],
        None,
    )
    .assert_one_error_line("wrong chain id: node");
    wallet(
        home,
        &["--genesis", g, "--node", &node, "verify", &"ab".repeat(32)],
        None,
    )
    .assert_one_error_line("block is from another chain: the node serves chain \"fake-chain\"");
}

#[test]
fn usage_mistakes_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    wallet(home, &["verify", &"ab".repeat(32)], None)
        .assert_one_error_line("`verify` needs the chain's genesis file");
    wallet(home, &["tx", "xyz"], None).assert_one_error_line("bad transaction hash");
    wallet(home, &["balance", "not-an-address"], None).assert_one_error_line("bad address");
    wallet(
        home,
        &["send", "--to", &"11".repeat(20), "--amount", "0"],
        None,
    )
    .assert_one_error_line("error:");
    wallet(home, &["frobnicate"], None).assert_one_error_line("unrecognized subcommand");
    let help = wallet(home, &["--help"], None);
    assert_eq!(help.code, 0);
    for command in [
        "keygen", "address", "balance", "nonce", "send", "tx", "verify",
    ] {
        assert!(help.stdout.contains(command), "--help lists {command}");
    }
}

/// A valid genesis file for `chain` with one validator.
fn other_genesis(chain: &str) -> String {
    let v = Keypair::generate();
    let g = phalanx_consensus::Genesis {
        chain_id: chain.into(),
        genesis_time_ms: 1,
        test_network: true,
        validators: vec![phalanx_consensus::GenesisValidator {
            name: "v0".into(),
            public_key: v.public(),
            p2p_address: "/ip4/127.0.0.1/tcp/1".into(),
        }],
        consensus: Default::default(),
        accounts: vec![],
    };
    serde_json::to_string_pretty(&g).unwrap()
}
