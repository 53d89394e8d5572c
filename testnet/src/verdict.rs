//! The verdict of a process testnet run, read from every honest node's API:
//! identical hash chains, valid commit certificates, every acknowledged
//! transaction committed exactly once, supply conserved, the expected
//! height reached, evidence against equivocators, every honest validator
//! back in the quorum after the last fault heals (participation), and
//! throughput/latency.

use crate::cluster::Api;
use crate::manifest::Action;
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
    /// What the participation check needs (None: not checked).
    pub participation: Option<ParticipationInputs>,
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
    // Height → the validators whose COMMIT is in some honest node's
    // certificate for it (each node keeps the votes it had when it
    // committed, its own among them unless it caught the block up).
    let mut signers: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let reference = &inp.honest[heights.iter().position(|h| *h == top).unwrap_or(0)].1;
    for h in 1..=top {
        let Ok(block) = reference.get(&format!("/v1/blocks/{h}")) else {
            mismatch = Some(format!("reference node cannot serve block {h}"));
            break;
        };
        let hash = block["hash"].as_str().unwrap_or("").to_string();
        max_view = max_view.max(block["certificate"]["view"].as_u64().unwrap_or(0));
        signers
            .entry(h)
            .or_default()
            .extend(certificate_signers(&block["certificate"], inp.genesis));
        if h <= common {
            for (i, api) in &inp.honest {
                let other = api.get(&format!("/v1/blocks/{h}")).ok();
                if let Some(b) = &other {
                    signers
                        .entry(h)
                        .or_default()
                        .extend(certificate_signers(&b["certificate"], inp.genesis));
                }
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
    if let Some(p) = &inp.participation {
        let status: BTreeMap<usize, Option<NodeView>> = inp
            .honest
            .iter()
            .map(|(i, api)| {
                let s = api.get("/v1/status").ok().and_then(|s| {
                    Some(NodeView {
                        view: s["view"].as_u64()?,
                        view_changing: s["view_changing"].as_bool()?,
                    })
                });
                (*i, s)
            })
            .collect();
        let (passed, detail) = participation(p, &signers, &status);
        check("participation", passed, detail);
    }
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

/// The validator indices (by public key, from the genesis) whose
/// signatures a certificate in API JSON carries.
pub fn certificate_signers(cert: &Value, genesis: &Genesis) -> BTreeSet<usize> {
    cert["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let key = s["public_key"].as_str()?;
            genesis
                .validators
                .iter()
                .position(|v| v.public_key.to_hex() == key)
        })
        .collect()
}

/// How soon after the last fault heals every honest validator must be
/// back in the quorum: its COMMIT in a commit certificate.
pub const PARTICIPATION_BOUND_S: f64 = 10.0;

/// Without faults (or faults that all come earlier), the check starts
/// here: the nodes have connected and the first blocks committed.
pub const PARTICIPATION_WARMUP_S: f64 = 3.0;

/// A perturbation as it was applied (`target = "primary"` resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Seconds since the load started.
    pub at_s: f64,
    pub action: Action,
    pub nodes: Vec<usize>,
    pub groups: Vec<Vec<usize>>,
}

/// When the participation check starts, and who is excused from it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSchedule {
    /// Seconds since the load started: the last perturbation (in a healing
    /// manifest, the last heal), or the warm-up if later.
    pub reference_s: f64,
    /// What happened then, for the report.
    pub reference: String,
    /// Validators the run keeps down or cut off to the end, and why.
    pub exempt: BTreeMap<usize, String>,
}

/// Reads the applied perturbations of a run with `n` validators.
///
/// The check starts at the last perturbation: after a heal, resume or
/// restart every fault is over; after a kill, pause or partition that
/// lasts to the end, the validators it keeps out are exempt and all the
/// others must still be in the quorum. A delay excuses no one: a slow
/// link still carries votes.
pub fn fault_schedule(applied: &[Applied], n: usize) -> FaultSchedule {
    enum State {
        Up,
        Killed(f64),
        Paused(f64),
    }
    let mut state: Vec<State> = (0..n).map(|_| State::Up).collect();
    let mut partition: Option<(f64, Vec<Vec<usize>>)> = None;
    let mut last: Option<&Applied> = None;
    for a in applied {
        for &x in a.nodes.iter().filter(|x| **x < n) {
            match a.action {
                Action::Kill => state[x] = State::Killed(a.at_s),
                Action::Pause => state[x] = State::Paused(a.at_s),
                Action::Restart | Action::Resume => state[x] = State::Up,
                Action::Partition | Action::Heal | Action::Delay => {}
            }
        }
        match a.action {
            Action::Partition => partition = Some((a.at_s, a.groups.clone())),
            Action::Heal => partition = None,
            _ => {}
        }
        if last.is_none_or(|l| a.at_s >= l.at_s) {
            last = Some(a);
        }
    }
    let mut exempt = BTreeMap::new();
    let quorum = 2 * ((n.max(1) - 1) / 3) + 1;
    if let Some((at, groups)) = &partition {
        for x in 0..n {
            let with_quorum = groups.iter().any(|g| g.contains(&x) && g.len() >= quorum);
            if !with_quorum {
                exempt.insert(
                    x,
                    format!("cut off by the partition at {at:.1} s, never healed"),
                );
            }
        }
    }
    for (x, s) in state.iter().enumerate() {
        match s {
            State::Killed(at) => {
                exempt.insert(x, format!("killed at {at:.1} s, not restarted"));
            }
            State::Paused(at) => {
                exempt.insert(x, format!("paused at {at:.1} s, not resumed"));
            }
            State::Up => {}
        }
    }
    let (reference_s, reference) = match last {
        Some(l) if l.at_s >= PARTICIPATION_WARMUP_S => (
            l.at_s,
            format!("the last fault change ({:?} at {:.1} s)", l.action, l.at_s).to_lowercase(),
        ),
        Some(l) => (
            PARTICIPATION_WARMUP_S,
            format!(
                "the warm-up ({PARTICIPATION_WARMUP_S:.0} s; last fault change {:?} at {:.1} s)",
                l.action, l.at_s
            )
            .to_lowercase(),
        ),
        None => (
            PARTICIPATION_WARMUP_S,
            format!("the warm-up ({PARTICIPATION_WARMUP_S:.0} s, no faults)"),
        ),
    };
    FaultSchedule {
        reference_s,
        reference,
        exempt,
    }
}

/// What the participation check needs besides the chains.
#[derive(Clone, Debug)]
pub struct ParticipationInputs {
    /// Every honest validator (not a traitor), running or not.
    pub honest: Vec<usize>,
    pub schedule: FaultSchedule,
    /// `height_seen_s[h - 1]`: seconds since the load started when some
    /// honest node first reported height `h` (its commit time, to the
    /// watcher's polling interval).
    pub height_seen_s: Vec<f64>,
    /// When the watching stopped: heights seen later count as this late.
    pub observed_s: f64,
    /// The bound, seconds (normally [`PARTICIPATION_BOUND_S`]).
    pub bound_s: f64,
}

/// A node's view at the end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub view: u64,
    pub view_changing: bool,
}

/// The participation check: every honest validator that the run does not
/// keep out (a) is, at the end, in the view most of them are in and not
/// changing view, and (b) has its COMMIT in a commit certificate of a block
/// committed within `bound_s` of the schedule's reference time.
/// `signers`: height → validators in some honest node's certificate for
/// it; `status`: the end view of each honest node that runs (None: it
/// did not answer).
pub fn participation(
    p: &ParticipationInputs,
    signers: &BTreeMap<u64, BTreeSet<usize>>,
    status: &BTreeMap<usize, Option<NodeView>>,
) -> (bool, String) {
    let t0 = p.schedule.reference_s;
    let seen = |h: u64| -> f64 {
        p.height_seen_s
            .get((h as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(p.observed_s)
            .max(0.0)
    };
    let required: Vec<usize> = p
        .honest
        .iter()
        .copied()
        .filter(|v| !p.schedule.exempt.contains_key(v))
        .collect();
    let exempt: Vec<String> = p
        .schedule
        .exempt
        .iter()
        .filter(|(v, _)| p.honest.contains(v))
        .map(|(v, why)| format!("v{v} exempt ({why})"))
        .collect();
    let mut problems = Vec::new();
    // (a) The common view at the end.
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for v in &required {
        if let Some(Some(s)) = status.get(v) {
            *counts.entry(s.view).or_default() += 1;
        }
    }
    // The view most of them report (the highest of equals).
    let common = counts
        .iter()
        .max_by_key(|(view, c)| (**c, **view))
        .map(|(view, _)| *view);
    for v in &required {
        match status.get(v) {
            None => problems.push(format!("v{v} is not running at the end")),
            Some(None) => problems.push(format!("v{v} does not answer at the end")),
            Some(Some(s)) => {
                if Some(s.view) != common {
                    problems.push(format!(
                        "v{v} in view {} at the end, the others in view {}",
                        s.view,
                        common.unwrap_or(0)
                    ));
                }
                if s.view_changing {
                    problems.push(format!("v{v} still changing view at the end"));
                }
            }
        }
    }
    // (b) Its signature in certificates within the bound.
    let mut back = Vec::new();
    for v in &required {
        let first = signers
            .iter()
            .find(|(h, s)| seen(**h) >= t0 && s.contains(v))
            .map(|(h, _)| (*h, seen(*h) - t0));
        let last_before = signers
            .iter()
            .rev()
            .find(|(h, s)| seen(**h) < t0 && s.contains(v))
            .map(|(h, _)| *h);
        let since = match last_before {
            Some(h) => format!("last signed height {h}, seen at {:.1} s", seen(h)),
            None => "never signed before".into(),
        };
        match first {
            Some((h, after)) if after <= p.bound_s => {
                back.push(format!("v{v} +{after:.1} s (height {h})"));
            }
            Some((h, after)) => problems.push(format!(
                "v{v} back in a certificate only {after:.1} s after {} (height {h}; {since})",
                p.schedule.reference
            )),
            None => {
                let observed = p.observed_s - t0;
                let short_run = if observed < p.bound_s {
                    format!("; only {observed:.1} s were observed after it")
                } else {
                    String::new()
                };
                problems.push(format!(
                    "v{v} in no commit certificate since {} ({since}){short_run}",
                    p.schedule.reference
                ));
            }
        }
    }
    let mut detail = if problems.is_empty() {
        format!(
            "{} within {:.0} s of {}; all in view {}, none changing view",
            if back.is_empty() {
                "no validator required".to_string()
            } else {
                back.join(", ")
            },
            p.bound_s,
            p.schedule.reference,
            common.unwrap_or(0)
        )
    } else {
        problems.join("; ")
    };
    if !exempt.is_empty() {
        detail.push_str(&format!("; {}", exempt.join(", ")));
    }
    (problems.is_empty(), detail)
}

fn short(h: &str) -> String {
    h.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_s: f64, action: Action, nodes: &[usize], groups: &[&[usize]]) -> Applied {
        Applied {
            at_s,
            action,
            nodes: nodes.to_vec(),
            groups: groups.iter().map(|g| g.to_vec()).collect(),
        }
    }

    /// partition-1-3.toml as applied: v3 cut off at 6 s, healed at 14 s.
    fn partition_1_3() -> FaultSchedule {
        fault_schedule(
            &[
                at(6.0, Action::Partition, &[], &[&[0, 1, 2], &[3]]),
                at(14.0, Action::Heal, &[], &[]),
            ],
            4,
        )
    }

    /// Blocks every 0.5 s up to 25 s, signed by v0..v2, and by v3 until
    /// 6 s and again from `v3_back_s` on (if ever).
    fn chain(v3_back_s: Option<f64>) -> (Vec<f64>, BTreeMap<u64, BTreeSet<usize>>) {
        let mut seen = Vec::new();
        let mut signers = BTreeMap::new();
        for h in 1..=50u64 {
            let t = h as f64 * 0.5;
            seen.push(t);
            let mut s: BTreeSet<usize> = [0, 1, 2].into();
            if t < 6.0 || v3_back_s.is_some_and(|b| t >= b) {
                s.insert(3);
            }
            signers.insert(h, s);
        }
        (seen, signers)
    }

    fn inputs(schedule: FaultSchedule, seen: Vec<f64>) -> ParticipationInputs {
        ParticipationInputs {
            honest: vec![0, 1, 2, 3],
            schedule,
            height_seen_s: seen,
            observed_s: 26.0,
            bound_s: PARTICIPATION_BOUND_S,
        }
    }

    fn all_in_view(view: u64) -> BTreeMap<usize, Option<NodeView>> {
        (0..4)
            .map(|i| {
                (
                    i,
                    Some(NodeView {
                        view,
                        view_changing: false,
                    }),
                )
            })
            .collect()
    }

    #[test]
    fn the_check_starts_when_the_last_fault_heals() {
        let s = partition_1_3();
        assert_eq!(s.reference_s, 14.0);
        assert!(s.reference.contains("heal"), "{}", s.reference);
        assert!(s.exempt.is_empty(), "{:?}", s.exempt);
    }

    #[test]
    fn without_faults_the_check_starts_after_the_warm_up() {
        let s = fault_schedule(&[], 4);
        assert_eq!(s.reference_s, PARTICIPATION_WARMUP_S);
        assert!(s.exempt.is_empty());
    }

    #[test]
    fn a_validator_kept_down_or_cut_off_to_the_end_is_exempt() {
        let s = fault_schedule(&[at(8.0, Action::Kill, &[0], &[])], 4);
        assert_eq!(s.reference_s, 8.0);
        assert_eq!(s.exempt.keys().copied().collect::<Vec<_>>(), vec![0]);
        let s = fault_schedule(
            &[
                at(6.0, Action::Kill, &[2], &[]),
                at(14.0, Action::Restart, &[2], &[]),
                at(15.0, Action::Pause, &[1], &[]),
            ],
            4,
        );
        assert_eq!(s.exempt.keys().copied().collect::<Vec<_>>(), vec![1]);
        let s = fault_schedule(&[at(6.0, Action::Partition, &[], &[&[0, 1, 2], &[3]])], 4);
        assert_eq!(s.exempt.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert!(s.exempt[&3].contains("never healed"));
        // A delay keeps nobody out.
        let s = fault_schedule(&[at(6.0, Action::Delay, &[3], &[])], 4);
        assert!(s.exempt.is_empty());
        assert_eq!(s.reference_s, 6.0);
    }

    #[test]
    fn a_validator_back_within_the_bound_passes() {
        let (seen, signers) = chain(Some(16.0));
        let (ok, detail) = participation(&inputs(partition_1_3(), seen), &signers, &all_in_view(0));
        assert!(ok, "{detail}");
        assert!(detail.contains("v3 +2.0 s"), "{detail}");
    }

    #[test]
    fn a_validator_back_only_after_the_bound_fails() {
        let (seen, signers) = chain(Some(24.5));
        let (ok, detail) = participation(&inputs(partition_1_3(), seen), &signers, &all_in_view(0));
        assert!(!ok, "{detail}");
        assert!(
            detail.contains("v3 back in a certificate only 10.5 s"),
            "{detail}"
        );
    }

    #[test]
    fn a_stranded_validator_fails_named_with_when_it_last_signed() {
        let (seen, signers) = chain(None);
        let mut status = all_in_view(0);
        status.insert(
            3,
            Some(NodeView {
                view: 1,
                view_changing: true,
            }),
        );
        let (ok, detail) = participation(&inputs(partition_1_3(), seen), &signers, &status);
        assert!(!ok, "{detail}");
        assert!(detail.contains("v3 in view 1 at the end"), "{detail}");
        assert!(detail.contains("v3 still changing view"), "{detail}");
        assert!(
            detail.contains("v3 in no commit certificate since the last fault change (heal at 14.0 s) (last signed height 11, seen at 5.5 s)"),
            "{detail}"
        );
        assert!(!detail.contains("v0"), "{detail}");
    }

    #[test]
    fn signing_again_is_not_enough_without_the_common_view() {
        let (seen, signers) = chain(Some(15.0));
        let mut status = all_in_view(2);
        status.insert(
            1,
            Some(NodeView {
                view: 2,
                view_changing: true,
            }),
        );
        status.insert(0, None);
        let (ok, detail) = participation(&inputs(partition_1_3(), seen), &signers, &status);
        assert!(!ok, "{detail}");
        assert!(detail.contains("v0 does not answer"), "{detail}");
        assert!(detail.contains("v1 still changing view"), "{detail}");
        assert!(!detail.contains("v3"), "{detail}");
    }

    #[test]
    fn an_exempt_validator_is_not_required() {
        let (seen, signers) = chain(None);
        let schedule = fault_schedule(&[at(6.0, Action::Kill, &[3], &[])], 4);
        let mut status = all_in_view(0);
        status.remove(&3);
        let (ok, detail) = participation(&inputs(schedule, seen), &signers, &status);
        assert!(ok, "{detail}");
        assert!(detail.contains("v3 exempt (killed at 6.0 s"), "{detail}");
        // Not exempt, not running: a failure.
        let (ok, detail) =
            participation(&inputs(partition_1_3(), chain(None).0), &signers, &status);
        assert!(!ok);
        assert!(detail.contains("v3 is not running"), "{detail}");
    }

    #[test]
    fn a_run_too_short_after_the_heal_says_so() {
        let (seen, signers) = chain(None);
        let schedule = fault_schedule(&[at(20.0, Action::Heal, &[], &[])], 4);
        let mut p = inputs(schedule, seen);
        p.observed_s = 25.0;
        let (ok, detail) = participation(&p, &signers, &all_in_view(0));
        assert!(!ok);
        assert!(detail.contains("only 5.0 s were observed"), "{detail}");
    }
}
