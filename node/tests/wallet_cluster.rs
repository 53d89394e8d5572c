//! The wallet binary against four real `phalanx` validators: a newcomer
//! makes a sealed key, receives funds from the testnet's faucet key (the
//! node's plain key format), sends with `--wait`, the faucet sends three
//! transfers back to back with consecutive nonces, `verify` proves a
//! transaction final from the genesis file alone, and every node agrees on
//! balances that add up to the genesis supply. Along the way: the config
//! file's node list with a dead first entry, and the user-facing errors
//! that need a real chain (insufficient balance, unknown account, a genesis
//! of another chain).

use phalanx_crypto::{write_key_file, Keypair};
use phalanx_testnet::cluster::{wallet_bin, Cluster, ClusterSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUPPLY: u64 = 1_000_000;
const PASSPHRASE: &str = "a newcomer's passphrase";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "wallet failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    fn assert_one_error_line(&self, want: &str) {
        assert_eq!(
            self.code, 1,
            "exit code; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", self.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(want),
            "want {want:?} in {:?}",
            lines[0]
        );
    }
}

/// The wallet with its own wallet directory and no terminal.
struct Wallet {
    bin: PathBuf,
    home: PathBuf,
}

impl Wallet {
    fn run(&self, args: &[&str], passphrase: Option<&str>) -> Run {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("PHALANX_WALLET_HOME", &self.home)
            .env_remove("PHALANX_WALLET_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = passphrase {
            cmd.env("PHALANX_WALLET_PASSPHRASE", p);
        }
        let mut child = cmd.spawn().expect("start phalanx-wallet");
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
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn n4_newcomer_funded_sends_waits_verifies_and_every_node_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let faucet = Keypair::generate();
    let mut spec = ClusterSpec::new(4, dir.path().join("net"));
    spec.accounts = vec![(faucet.address(), SUPPLY)];
    spec.local_consensus = vec![
        ("view_timeout_ms".into(), "2000".into()),
        ("retransmit_ms".into(), "200".into()),
    ];
    let mut cluster = Cluster::generate(spec).unwrap();
    cluster.start_all().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let genesis = cluster.spec.dir.join("genesis.json");

    // The testnet hands the user the faucet key in the node's own format.
    let faucet_key = dir.path().join("faucet.key.json");
    write_key_file(&faucet_key, &faucet).unwrap();
    let home = dir.path().join("wallet");
    std::fs::create_dir_all(&home).unwrap();
    // Defaults from the config: a dead node first, then two live ones.
    std::fs::write(
        home.join("config.toml"),
        format!(
            "nodes = [\"{}\", \"{}\", \"{}\"]\ngenesis = \"{}\"\n",
            closed_port_url(),
            cluster.api_url(0),
            cluster.api_url(1),
            genesis.display()
        ),
    )
    .unwrap();
    let w = Wallet {
        bin: wallet_bin().expect("build the binaries first: cargo build -p phalanx-node --bins"),
        home: home.clone(),
    };
    let fk = faucet_key.to_str().unwrap();

    // keygen: a sealed key at the default place, mode 0600.
    let made = w
        .run(&["--json", "keygen", "--encrypt"], Some(PASSPHRASE))
        .json();
    let alice_key = home.join("key.json");
    assert_eq!(made["key_file"], alice_key.display().to_string());
    assert_eq!(mode_of(&alice_key), 0o600);
    let alice = made["address"].as_str().unwrap().to_string();
    let shown = w.run(&["address"], Some(PASSPHRASE));
    assert_eq!(
        (shown.code, shown.stdout.trim()),
        (0, alice.as_str()),
        "{}",
        shown.stderr
    );
    w.run(&["balance"], None)
        .assert_one_error_line("unknown account");

    // Receive funds from the faucet, waiting for finality.
    let funded = w
        .run(
            &[
                "--json", "--key", fk, "send", "--to", &alice, "--amount", "1000", "--wait",
            ],
            None,
        )
        .json();
    assert_eq!(funded["status"], "committed");
    assert_eq!(funded["result"]["status"], "executed");
    assert_eq!(funded["nonce"], 0);
    assert!(funded["height"].as_u64().unwrap() >= 1);
    // Balance without the passphrase: the public key is readable.
    assert_eq!(w.run(&["--json", "balance"], None).json()["balance"], 1000);

    // Human output of a send with --wait: the hash, then height and result.
    let bob = Keypair::generate().address().to_hex();
    let sent = w.run(
        &[
            "send",
            "--to",
            &bob,
            "--amount",
            "400",
            "--wait",
            "--timeout",
            "60",
        ],
        Some(PASSPHRASE),
    );
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let lines: Vec<&str> = sent.stdout.lines().collect();
    assert!(
        lines[0].starts_with("sent ") && lines[0].contains("400 from"),
        "{}",
        sent.stdout
    );
    assert!(
        lines[1].starts_with("committed at height ") && lines[1].ends_with(": executed"),
        "{}",
        sent.stdout
    );
    let alice_tx = lines[0]["sent ".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(alice_tx.len(), 64);

    // Three sends in a row, not waiting: consecutive nonces.
    let mut hashes = Vec::new();
    for (i, amount) in ["1", "2", "3"].iter().enumerate() {
        let s = w
            .run(
                &[
                    "--json", "--key", fk, "send", "--to", &bob, "--amount", amount,
                ],
                None,
            )
            .json();
        assert_eq!(s["nonce"], 1 + i as u64, "send {i} of 3 in a row");
        hashes.push(s["hash"].as_str().unwrap().to_string());
    }
    for h in &hashes {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = w.run(&["--json", "tx", h], None).json();
            if t["status"] == "committed" {
                assert_eq!(t["result"]["status"], "executed", "{t}");
                break;
            }
            assert!(Instant::now() < deadline, "{h} did not commit: {t}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let tx_human = w.run(&["tx", &hashes[2]], None);
    assert!(
        tx_human.stdout.starts_with("committed at height "),
        "{}",
        tx_human.stdout
    );

    // verify: from the genesis in the config, against node 2 this time.
    let node2 = cluster.api_url(2);
    let v = w.run(&["--node", &node2, "verify", &alice_tx], None);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stdout
            .starts_with(&format!("final: transaction {alice_tx} is in block ")),
        "{}",
        v.stdout
    );
    let vj = w
        .run(&["--json", "--node", &node2, "verify", &hashes[0]], None)
        .json();
    assert_eq!(vj["final"], true);
    assert!(vj["signers"].as_array().unwrap().len() >= 3, "{vj}");
    assert_eq!(vj["quorum"], 3);

    // Balances add up on every node (each may lag a little behind).
    let want = [
        (faucet.address().to_hex(), SUPPLY - 1000 - 6),
        (alice.clone(), 600),
        (bob.clone(), 406),
    ];
    for i in 0..cluster.len() {
        let url = cluster.api_url(i);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<u64> = want
                .iter()
                .map(|(a, _)| {
                    w.run(&["--json", "--node", &url, "balance", a], None)
                        .json()["balance"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            let expected: Vec<u64> = want.iter().map(|(_, b)| *b).collect();
            if got == expected {
                assert_eq!(
                    got.iter().sum::<u64>(),
                    SUPPLY,
                    "node {i}: supply is conserved"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} balances {got:?}, want {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let n = w.run(&["--json", "--key", fk, "nonce"], None).json();
    assert_eq!(
        (n["nonce"].as_u64(), n["pending_nonce"].as_u64()),
        (Some(4), Some(4))
    );

    // Errors a user meets against a real chain.
    w.run(
        &["send", "--to", &bob, "--amount", "10000"],
        Some(PASSPHRASE),
    )
    .assert_one_error_line("insufficient balance: have 600, need 10000");
    let stranger = Keypair::generate().address().to_hex();
    w.run(&["balance", &stranger], None)
        .assert_one_error_line("unknown account");
    let mut other: Value =
        serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    other["chain_id"] = "another-chain".into();
    let other_genesis = dir.path().join("other-genesis.json");
    std::fs::write(&other_genesis, other.to_string()).unwrap();
    let og = other_genesis.to_str().unwrap();
    w.run(
        &["--genesis", og, "send", "--to", &bob, "--amount", "1"],
        Some(PASSPHRASE),
    )
    .assert_one_error_line("wrong chain id: node");
    w.run(&["--genesis", og, "verify", &alice_tx], None)
        .assert_one_error_line("block is from another chain");
    cluster.stop_all();
}
