//! The attacker traitors of issue 15, one scenario per behaviour at n = 4
//! with one traitor and at n = 7 with two. Each traitor attacks in a burst
//! and then sends nothing at all (a killed attacker), and every scenario
//! checks what an attacker must not achieve:
//!
//! - safety, and every honest validator at the target height;
//! - no view change while the burst lasts (one key, or f keys, cannot
//!   force one);
//! - every honest validator commits again within [`RESUME_MS`] of the
//!   burst's end;
//! - at the end every honest validator is in the common view, not waiting
//!   for a NEW-VIEW, not catching up toward a height nobody proved;
//! - cost before trust: no message from a traitor that an honest validator
//!   verified carried more signatures than the largest honest message
//!   ([`cost::honest_signatures_max`]) or a repeated entry;
//! - and the bound its attack class breaks (evidence, catch-up answers,
//!   NEW-VIEW answers, junk admitted).
//!
//! Every scenario runs: each failed before the defence its attack class
//! needs (issue 15: cost before trust, bounded evidence and catch-up
//! targets, per-validator request limits) and passes with it.

use phalanx_consensus::traitor::{Behaviour, FUTURE_VOTES_VIEWS_AHEAD};
use phalanx_consensus::CATCH_UP_RANGES_IN_FLIGHT;
use phalanx_testnet::manifest::Manifest;
use phalanx_testnet::sim::{cost, sim_consensus_params, Report, Scenario};
use std::path::Path;

/// Blocks every honest validator must reach.
const HEIGHT: u64 = 30;
/// The traitors attack from..until, then stop.
const BURST_FROM_MS: u64 = 1_000;
const BURST_UNTIL_MS: u64 = 4_000;
/// Every honest validator commits again this soon after the burst.
const RESUME_MS: u64 = 5_000;
/// Clients keep submitting until then (past the burst and the resume).
const LOAD_UNTIL_MS: u64 = 10_000;

struct Attack {
    validators: usize,
    traitors: &'static [u16],
    behaviour: Behaviour,
    seed: u64,
    from_ms: u64,
    until_ms: u64,
}

impl Attack {
    fn new(validators: usize, traitors: &'static [u16], behaviour: Behaviour, seed: u64) -> Attack {
        Attack {
            validators,
            traitors,
            behaviour,
            seed,
            from_ms: BURST_FROM_MS,
            until_ms: BURST_UNTIL_MS,
        }
    }

    fn burst(mut self, from_ms: u64, until_ms: u64) -> Attack {
        self.from_ms = from_ms;
        self.until_ms = until_ms;
        self
    }

    fn scenario(&self) -> Scenario {
        let mut s = Scenario::new(self.validators)
            .seed(self.seed)
            .load(20.0, LOAD_UNTIL_MS)
            .until_height(HEIGHT);
        for &t in self.traitors {
            s = s.traitor_burst(t, self.behaviour, self.from_ms, self.until_ms);
        }
        s
    }

    /// Runs `scenario` (this attack's, perhaps with more set up) and checks
    /// everything every attack must leave intact.
    fn run(&self, scenario: Scenario) -> Report {
        let report = scenario.run();
        let what = format!(
            "{} at n = {} by {:?}",
            self.behaviour, self.validators, self.traitors
        );
        report.assert_safe_and_live(HEIGHT);
        if let Some((view, at)) = report
            .stats
            .views_entered
            .iter()
            .find(|(_, at)| (self.from_ms..self.until_ms).contains(*at))
        {
            panic!(
                "{what}: view {view} entered at {at} ms, during the burst:\n{}",
                report.describe()
            );
        }
        let honest: Vec<u16> = (0..self.validators as u16)
            .filter(|i| !self.traitors.contains(i))
            .collect();
        for &node in &honest {
            let at_end = report.height_at(node, self.until_ms);
            let resumed = report.height_at(node, self.until_ms + RESUME_MS);
            assert!(
                resumed > at_end,
                "{what}: r{node} committed nothing within {RESUME_MS} ms of the burst's end \
                 (height {at_end}):\n{}",
                report.describe()
            );
            let i = node as usize;
            assert_eq!(
                report.views[i],
                report.views[honest[0] as usize],
                "{what}: r{node} is not in the common view:\n{}",
                report.describe()
            );
            assert!(
                !report.view_changing[i],
                "{what}: r{node} is still waiting for a NEW-VIEW:\n{}",
                report.describe()
            );
            assert!(
                !report.catching_up[i],
                "{what}: r{node} is catching up toward a height nobody proved:\n{}",
                report.describe()
            );
        }
        let bound = cost::honest_signatures_max(self.validators, sim_consensus_params().window);
        assert!(
            report.stats.traitor_signatures_verified_max <= bound,
            "{what}: an honest validator verified a traitor's message of {} signatures \
             (the largest honest one has {bound}):\n{}",
            report.stats.traitor_signatures_verified_max,
            report.describe()
        );
        assert_eq!(
            report.stats.traitor_signatures_repeated,
            0,
            "{what}: honest validators verified repeated entries in traitors' messages:\n{}",
            report.describe()
        );
        report
    }

    fn burst_ticks(&self) -> u64 {
        (self.until_ms - self.from_ms) / sim_consensus_params().retransmit_ms + 1
    }
}

// ---- newview-bomb ----

#[test]

fn n4_f1_newview_bomb() {
    let attack = Attack::new(4, &[0], Behaviour::NewviewBomb, 201);
    attack.run(attack.scenario());
}

#[test]

fn n7_f2_newview_bomb() {
    let attack = Attack::new(7, &[0, 3], Behaviour::NewviewBomb, 202);
    attack.run(attack.scenario());
}

// ---- padded-view-change ----

#[test]

fn n4_f1_padded_view_change() {
    let attack = Attack::new(4, &[1], Behaviour::PaddedViewChange, 211);
    attack.run(attack.scenario());
}

#[test]

fn n7_f2_padded_view_change() {
    let attack = Attack::new(7, &[1, 4], Behaviour::PaddedViewChange, 212);
    attack.run(attack.scenario());
}

// ---- future-votes ----

/// One evidence record per (validator, phase, view) at most (issue 15,
/// item 2): the traitors vote in the current view and the next
/// [`FUTURE_VOTES_VIEWS_AHEAD`], in three phases.
fn assert_evidence_bounded(attack: &Attack, report: &Report) {
    let views = FUTURE_VOTES_VIEWS_AHEAD + report.view_changes() + 1;
    let bound = attack.traitors.len() as u64 * 3 * views;
    for (node, records) in &report.stats.evidence_by_node {
        assert!(
            *records <= bound,
            "r{node} recorded {records} pieces of evidence against {} traitors \
             (at most {bound}: one per validator, phase and view):\n{}",
            attack.traitors.len(),
            report.describe()
        );
    }
}

#[test]

fn n4_f1_future_votes() {
    let attack = Attack::new(4, &[0], Behaviour::FutureVotes, 221);
    let report = attack.run(attack.scenario());
    assert_evidence_bounded(&attack, &report);
}

#[test]

fn n7_f2_future_votes() {
    let attack = Attack::new(7, &[0, 3], Behaviour::FutureVotes, 222);
    let report = attack.run(attack.scenario());
    assert_evidence_bounded(&attack, &report);
}

// ---- gossip-junk ----

/// Every junk transaction is refused at every peer's admission; none
/// reaches a replica (the validity checker would see it committed).
fn assert_junk_refused(attack: &Attack, report: &Report) {
    let s = &report.stats;
    assert!(
        s.traitor_gossip_txs > 0,
        "the attack never ran:\n{}",
        report.describe()
    );
    assert_eq!(
        s.traitor_gossip_refused,
        s.traitor_gossip_txs * (attack.validators as u64 - 1),
        "junk gossip admitted somewhere:\n{}",
        report.describe()
    );
}

#[test]
fn n4_f1_gossip_junk() {
    let attack = Attack::new(4, &[0], Behaviour::GossipJunk, 231);
    let report = attack.run(attack.scenario());
    assert_junk_refused(&attack, &report);
}

#[test]
fn n7_f2_gossip_junk() {
    let attack = Attack::new(7, &[0, 3], Behaviour::GossipJunk, 232);
    let report = attack.run(attack.scenario());
    assert_junk_refused(&attack, &report);
}

// ---- request-spam ----

/// An honest validator answers a peer no more than an honest peer asks:
/// [`CATCH_UP_RANGES_IN_FLIGHT`] catch-up ranges and one NEW-VIEW request
/// per retransmit period (issue 15, item 5: requests rate-limited per
/// peer). Counted over the burst, with a little room for what the traitor
/// asked honestly before it.
fn assert_requests_rate_limited(attack: &Attack, report: &Report) {
    let ticks = attack.burst_ticks();
    let traitors = attack.traitors.len() as u64;
    let catch_up_bound = traitors * (ticks * CATCH_UP_RANGES_IN_FLIGHT as u64 + 8);
    let new_view_bound = traitors * (ticks + 4 + report.view_changes());
    for (node, served) in &report.stats.catch_up_served_to_traitors {
        assert!(
            *served <= catch_up_bound,
            "r{node} served {served} catch-up ranges to the traitors \
             (an honest peer asks at most {catch_up_bound}):\n{}",
            report.describe()
        );
    }
    for (node, sent) in &report.stats.new_views_to_traitors {
        assert!(
            *sent <= new_view_bound,
            "r{node} sent {sent} NEW-VIEWs to the traitors (at most {new_view_bound}):\n{}",
            report.describe()
        );
    }
}

/// The primary of view 0 crashes first, so the honest validators hold a
/// NEW-VIEW (view 1) to be asked for when the spam starts.
fn request_spam_attack(
    validators: usize,
    traitors: &'static [u16],
    behaviour: Behaviour,
    seed: u64,
) -> (Attack, Scenario) {
    let attack = Attack::new(validators, traitors, behaviour, seed).burst(2_500, 5_500);
    let scenario = attack.scenario().crash(0, 200, 1_500);
    (attack, scenario)
}

fn request_spam(validators: usize, traitors: &'static [u16], seed: u64) {
    let (attack, scenario) =
        request_spam_attack(validators, traitors, Behaviour::RequestSpam, seed);
    let report = attack.run(scenario);
    assert!(
        report.stats.views_entered.contains_key(&1),
        "no view change before the spam: nothing to ask for:\n{}",
        report.describe()
    );
    assert_requests_rate_limited(&attack, &report);
}

#[test]

fn n4_f1_request_spam() {
    request_spam(4, &[3], 241);
}

#[test]

fn n7_f2_request_spam() {
    request_spam(7, &[5, 6], 242);
}

// ---- the checks can pass ----

/// Every scenario above, its attacker replaced by a polite traitor
/// (`flood`: copies of its honest messages, and junk that fails
/// verification) in the same burst: every check passes, the attack
/// classes' bounds included. So a failure above is the attack's doing,
/// not the scenario's.
#[test]
fn control_every_check_passes_with_a_polite_traitor_in_the_same_bursts() {
    let polite = Behaviour::Flood;
    let setups: [(usize, &'static [u16], u64); 8] = [
        (4, &[0], 201),
        (7, &[0, 3], 202),
        (4, &[1], 211),
        (7, &[1, 4], 212),
        (4, &[0], 221),
        (7, &[0, 3], 222),
        (4, &[0], 231),
        (7, &[0, 3], 232),
    ];
    for (n, traitors, seed) in setups {
        let attack = Attack::new(n, traitors, polite, seed);
        let report = attack.run(attack.scenario());
        assert_evidence_bounded(&attack, &report);
        assert_eq!(report.stats.traitor_gossip_refused, 0);
    }
    for (n, traitors, seed) in [(4, &[3][..], 241), (7, &[5, 6][..], 242)] {
        let (attack, scenario) = request_spam_attack(n, traitors, polite, seed);
        let report = attack.run(scenario);
        assert_requests_rate_limited(&attack, &report);
    }
}

// ---- the vocabulary everywhere ----

/// A manifest per attacker, naming it, loadable as `phalanx-testnet run`
/// loads it.
#[test]
fn every_attacker_has_a_manifest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for b in Behaviour::ATTACKERS {
        let path = dir.join(format!("traitor-{}.toml", b.name()));
        let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.traitors.len(), 1, "{}", path.display());
        assert_eq!(m.traitors[0].behaviour.parse::<Behaviour>(), Ok(b));
    }
}

/// `bench --traitor` and `up --traitor` take every behaviour by name.
#[test]
fn the_cli_takes_every_behaviour_by_name() {
    for b in Behaviour::ALL {
        let spec = phalanx_testnet::cli::parse_traitor(&format!("2={}", b.name()))
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!((spec.node, spec.behaviour.as_str()), (2, b.name()));
    }
    let err = phalanx_testnet::cli::parse_traitor("0=nonsense").unwrap_err();
    for b in Behaviour::ATTACKERS {
        assert!(err.contains(b.name()), "{err}");
    }
}
