//! The verdict of a process testnet run, read from every honest node's API:
//! identical hash chains, valid commit certificates, every acknowledged
//! transaction committed exactly once, supply conserved, the expected
//! height reached, evidence against equivocators, and throughput/latency.

use crate::cluster::Api;
use phalanx_consensus::{Commit, CommitCertificate, Genesis, SeqNum, View};
use phalanx_crypto::{Digest, PublicKey, Signature, Signed};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One check and how it went.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Figures of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub height: u64,
    pub view_changes: u64,
    pub submitted: u64,
    pub acknowledged: u64,
    pub committed_acknowledged: u64,
    /// Acknowledged transactions that failed once (a nonce ahead, e.g.
    /// after a faulty primary left an earlier one out) and executed later.
    pub failed_then_executed: u64,
    /// Transactions the client sent again because they had not committed.
    pub resubmitted: u64,
    pub duration_s: f64,
    pub tps: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub evidence: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub scenario: String,
    pub checks: Vec<Check>,
    pub figures: Figures,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// `verdict: PASS` or `verdict: FAIL (reasons)`.
    pub fn line(&self) -> String {
        if self.passed() {
            "verdict: PASS".into()
        } else {
            let reasons: Vec<String> = self
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            format!("verdict: FAIL ({})", reasons.join("; "))
        }
    }

    /// A readable table of checks and figures.
    pub fn table(&self) -> String {
        let mut s = format!("scenario {}\n", self.scenario);
        for c in &self.checks {
            s.push_str(&format!(
                "  {:<4} {:<32} {}\n",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        let f = &self.figures;
        s.push_str(&format!(
            "  height {}  view changes {}  tx/s {:.1}  latency p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  acknowledged {}/{}  resubmitted {}  evidence {}\n",
            f.height, f.view_changes, f.tps, f.latency_ms_p50, f.latency_ms_p90, f.latency_ms_p99,
            f.acknowledged, f.submitted, f.resubmitted, f.evidence
        ));
        s
    }
}

/// A commit certificate from its API JSON, checked against the genesis.
pub fn check_certificate(cert: &Value, genesis: &Genesis) -> Result<(), String> {
    let view = cert["view"].as_u64().ok_or("certificate without view")?;
    let seq = cert["seq"].as_u64().ok_or("certificate without seq")?;
    let digest = Digest::from_hex(cert["batch_digest"].as_str().ok_or("no batch_digest")?)
        .map_err(|e| e.to_string())?;
    let payload = Commit {
        view: View(view),
        seq: SeqNum(seq),
        digest,
    };
    let mut votes = Vec::new();
    for s in cert["signatures"].as_array().ok_or("no signatures")? {
        let signer = PublicKey::from_hex(s["public_key"].as_str().unwrap_or(""))
            .map_err(|e| e.to_string())?;
        let signature = Signature::from_hex(s["signature"].as_str().unwrap_or(""))
            .map_err(|e| e.to_string())?;
        votes.push(Signed {
            payload: payload.clone(),
            signer,
            signature,
        });
    }
    CommitCertificate {
        view: View(view),
        seq: SeqNum(seq),
        batch_digest: digest,
        votes,
    }
    .verify(&genesis.validator_set(), &genesis.chain_id)
    .map_err(|e| e.to_string())
}

/// Everything the verdict needs to know about the run.
pub struct Inputs<'a> {
    pub scenario: String,
    pub genesis: &'a Genesis,
    /// Honest nodes that are up at the end.
    pub honest: Vec<(usize, Api)>,
    /// Equivocating traitors that were primary of some view.
    pub equivocators: Vec<usize>,
    pub require_evidence: bool,
    pub min_height: u64,
    pub acknowledged: Vec<String>,
    pub submitted: u64,
    pub latencies_ms: Vec<f64>,
    pub duration_s: f64,
    pub committed_in_window: u64,
    /// Transactions the client sent again because they had not committed.
    pub resubmitted: u64,
    /// Accounts whose balances must sum to the genesis supply.
    pub accounts: Vec<String>,
}

pub fn judge(inp: Inputs<'_>) -> Verdict {
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(Check {
            name: name.into(),
            passed,
            detail,
        })
    };
    let mut figures = Figures {
        submitted: inp.submitted,
        acknowledged: inp.acknowledged.len() as u64,
        resubmitted: inp.resubmitted,
        duration_s: inp.duration_s,
        ..Figures::default()
    };
    if inp.honest.is_empty() {
        check(
            "honest nodes answer",
            false,
            "no honest node answers its API".into(),
        );
        return Verdict {
            scenario: inp.scenario,
            checks,
            figures,
        };
    }
    // Chains: identical block hashes at every height all honest nodes have.
    let heights: Vec<u64> = inp
        .honest
        .iter()
        .map(|(_, api)| {
            api.get("/v1/status")
                .ok()
                .and_then(|s| s["height"].as_u64())
                .unwrap_or(0)
        })
        .collect();
    let common = *heights.iter().min().unwrap_or(&0);
    let top = *heights.iter().max().unwrap_or(&0);
    figures.height = top;
    let mut mismatch = None;
    let mut cert_error = None;
    // Executions per transaction hash, and the last failure of each one
    // that failed (a transaction whose nonce was ahead fails without being
    // used up, and may execute later).
    let mut executions: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    // Every account that may hold funds: the funded ones, and whoever a
    // committed transfer paid (a wallet user's new account, say).
    let mut holders: BTreeSet<String> = inp.accounts.iter().cloned().collect();
    let mut max_view = 0u64;
    let reference = &inp.honest[heights.iter().position(|h| *h == top).unwrap_or(0)].1;
    for h in 1..=top {
        let Ok(block) = reference.get(&format!("/v1/blocks/{h}")) else {
            mismatch = Some(format!("reference node cannot serve block {h}"));
            break;
        };
        let hash = block["hash"].as_str().unwrap_or("").to_string();
        max_view = max_view.max(block["certificate"]["view"].as_u64().unwrap_or(0));
        if h <= common {
            for (i, api) in &inp.honest {
                let other = api.get(&format!("/v1/blocks/{h}")).ok();
                let other_hash = other
                    .as_ref()
                    .and_then(|b| b["hash"].as_str())
                    .unwrap_or("");
                if other_hash != hash && mismatch.is_none() {
                    mismatch = Some(format!(
                        "node {i} has {} at height {h}, reference has {}",
                        short(other_hash),
                        short(&hash)
                    ));
                }
            }
        }
        if cert_error.is_none() {
            if let Err(e) = check_certificate(&block["certificate"], inp.genesis) {
                cert_error = Some(format!("height {h}: {e}"));
            }
        }
        for tx in block["transactions"].as_array().into_iter().flatten() {
            if let Some(to) = tx["payload"]["to"].as_str() {
                holders.insert(to.to_string());
            }
        }
        let results = block["results"].as_array().cloned().unwrap_or_default();
        for (i, tx) in block["tx_hashes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let hash = tx.as_str().unwrap_or("").to_string();
            if results.get(i).and_then(|r| r["status"].as_str()) == Some("executed") {
                *executions.entry(hash).or_default() += 1;
            } else {
                let reason = results.get(i).and_then(|r| r["reason"].as_str());
                failed.insert(hash, reason.unwrap_or("no result").to_string());
            }
        }
    }
    check(
        "identical chains",
        mismatch.is_none(),
        mismatch.unwrap_or_else(|| {
            format!(
                "{} honest nodes agree up to height {common} (max {top})",
                inp.honest.len()
            )
        }),
    );
    check(
        "commit certificates valid",
        cert_error.is_none(),
        cert_error
            .unwrap_or_else(|| format!("{top} certificates verify against the genesis validators")),
    );
    // The workload only sends transfers that can execute (consecutive
    // nonces, funded accounts), so each acknowledged one must execute, once.
    let missing: Vec<&String> = inp
        .acknowledged
        .iter()
        .filter(|h| !executions.contains_key(*h))
        .collect();
    let twice = executions.values().filter(|c| **c > 1).count();
    figures.committed_acknowledged = (inp.acknowledged.len() - missing.len()) as u64;
    figures.failed_then_executed = inp
        .acknowledged
        .iter()
        .filter(|h| executions.contains_key(*h) && failed.contains_key(*h))
        .count() as u64;
    check(
        "acknowledged txs executed once",
        missing.is_empty() && twice == 0,
        if missing.is_empty() && twice == 0 {
            format!(
                "{} acknowledged, all executed exactly once ({} after a failed attempt)",
                inp.acknowledged.len(),
                figures.failed_then_executed
            )
        } else {
            let example = missing.first().map(|h| match failed.get(*h) {
                Some(reason) => format!("{}: {reason}", short(h)),
                None => format!("{}: never in a block", short(h)),
            });
            format!(
                "{} acknowledged never executed (e.g. {}), {} executed twice",
                missing.len(),
                example.unwrap_or_default(),
                twice
            )
        },
    );
    let supply = inp.genesis.total_supply();
    let mut total: u128 = 0;
    let mut read_ok = true;
    for a in &holders {
        match reference.get(&format!("/v1/accounts/{a}")) {
            Ok(v) => total += v["balance"].as_u64().unwrap_or(0) as u128,
            Err(_) => read_ok = false,
        }
    }
    check(
        "supply conserved",
        read_ok && total == supply,
        format!("accounts hold {total}, genesis supply {supply}"),
    );
    check(
        "progress",
        common >= inp.min_height,
        format!(
            "every honest node at height ≥ {common}, expected ≥ {}",
            inp.min_height
        ),
    );
    // Evidence.
    let mut accused = BTreeSet::new();
    for (_, api) in &inp.honest {
        // Every page: evidence is paged by validator, so the first page
        // can name only the first validators.
        let mut path = "/v1/evidence?limit=1000".to_string();
        while let Ok(e) = api.get(&path) {
            for item in e["evidence"].as_array().cloned().unwrap_or_default() {
                figures.evidence += 1;
                if let Some(i) = item["validator_index"].as_u64() {
                    accused.insert(i as usize);
                }
            }
            match e["next"].as_str() {
                Some(next) => path = format!("/v1/evidence?limit=1000&after={next}"),
                None => break,
            }
        }
    }
    if inp.require_evidence {
        let unaccused: Vec<usize> = inp
            .equivocators
            .iter()
            .copied()
            .filter(|e| !accused.contains(e))
            .collect();
        check(
            "evidence against equivocators",
            unaccused.is_empty(),
            if unaccused.is_empty() {
                format!("recorded against {:?}", inp.equivocators)
            } else {
                format!("no evidence recorded against {unaccused:?}")
            },
        );
    }
    let honest_accused: Vec<usize> = accused
        .iter()
        .copied()
        .filter(|a| inp.honest.iter().any(|(i, _)| i == a))
        .collect();
    check(
        "no evidence against honest nodes",
        honest_accused.is_empty(),
        format!("accused: {:?}", accused),
    );
    figures.view_changes = max_view;
    figures.tps = if inp.duration_s > 0.0 {
        inp.committed_in_window as f64 / inp.duration_s
    } else {
        0.0
    };
    let mut lat = inp.latencies_ms;
    figures.latency_ms_p50 = crate::load::percentile(&mut lat, 50.0);
    figures.latency_ms_p90 = crate::load::percentile(&mut lat, 90.0);
    figures.latency_ms_p99 = crate::load::percentile(&mut lat, 99.0);
    Verdict {
        scenario: inp.scenario,
        checks,
        figures,
    }
}

fn short(h: &str) -> String {
    h.chars().take(8).collect()
}
