//! What a run reports: its violations, the trace digest, heights, views,
//! and counters.

use super::checker::Violation;
use phalanx_crypto::Digest;
use std::collections::BTreeMap;

/// Counters of one run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_cut: u64,
    pub messages_lost: u64,
    pub messages_to_down: u64,
    pub messages_duplicated: u64,
    /// Refused by `verify_message` (or undecodable), by reason.
    pub verify_rejected: BTreeMap<&'static str, u64>,
    /// `Rejected` outputs of replicas, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    pub evidence: u64,
    /// Views (above 0) some honest replica entered, with when it first did.
    pub views_entered: BTreeMap<u64, u64>,
    pub view_changes_started: u64,
    pub faults_injected: u64,
    pub crashes: u64,
    pub mid_output_crashes: u64,
    pub restarts: u64,
    pub commit_outputs: u64,
    pub catch_up_served: u64,
    pub verify_cache_hits: u64,
    /// Gossiped transactions a node's mempool refused (stale nonce, or
    /// already committed).
    pub mempool_refused: u64,
    /// Evidence outputs per honest validator.
    pub evidence_by_node: BTreeMap<u16, u64>,
    /// Deliveries from a traitor to an honest validator that passed
    /// verification, by message kind.
    pub traitor_verified: BTreeMap<&'static str, u64>,
    /// The most signatures one message from a traitor carried that an
    /// honest validator verified (and so checked, every one).
    pub traitor_signatures_verified_max: u64,
    /// Signatures in verified traitor messages that repeat an entry of the
    /// same message (each checked again), summed over deliveries.
    pub traitor_signatures_repeated: u64,
    /// Catch-up answers an honest validator sent to traitors, by sender.
    pub catch_up_served_to_traitors: BTreeMap<u16, u64>,
    /// NEW-VIEWs an honest validator sent to traitors, by sender.
    pub new_views_to_traitors: BTreeMap<u16, u64>,
    /// Transactions traitors gossiped, and how many of them (counted per
    /// receiving validator) admission refused for a bad signature.
    pub traitor_gossip_txs: u64,
    pub traitor_gossip_refused: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub trace_digest: Digest,
    pub trace_records: u64,
    /// Final committed height per validator (its disk).
    pub heights: Vec<u64>,
    pub honest: Vec<bool>,
    /// Final view per validator, `None` if down at the end.
    pub views: Vec<Option<u64>>,
    /// Per validator at the end: waiting for a NEW-VIEW, and catching up
    /// toward a height it has not reached (false if down).
    pub view_changing: Vec<bool>,
    pub catching_up: Vec<bool>,
    /// Heights some honest validator committed.
    pub agreed_height: u64,
    pub stats: Stats,
    pub txs_created: u64,
    pub txs_unconfirmed: usize,
    pub end_ms: u64,
    /// When every honest validator had executed every transaction (and
    /// reached the target height), if it happened.
    pub done_ms: Option<u64>,
    /// Per validator, `(time, height)` of every block it committed.
    pub commit_times: Vec<Vec<(u64, u64)>>,
    /// With `record_steps`: `(time, validator, outputs carried out)` of
    /// every step, nested ones (after a commit) included.
    pub steps: Vec<(u64, u16, usize)>,
    pub replay: Option<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Distinct views above 0 entered by honest validators.
    pub fn view_changes(&self) -> u64 {
        self.stats.views_entered.len() as u64
    }

    pub fn min_honest_height(&self) -> u64 {
        self.heights
            .iter()
            .zip(&self.honest)
            .filter(|(_, h)| **h)
            .map(|(h, _)| *h)
            .min()
            .unwrap_or(0)
    }

    /// The height validator `node` had committed at time `t_ms`.
    pub fn height_at(&self, node: u16, t_ms: u64) -> u64 {
        self.commit_times[node as usize]
            .iter()
            .take_while(|(t, _)| *t <= t_ms)
            .map(|(_, h)| *h)
            .last()
            .unwrap_or(0)
    }

    pub fn has_violation(&self, checker: &str) -> bool {
        self.violations.iter().any(|v| v.checker == checker)
    }

    /// A multi-line account of the run, for test failures and `--verbose`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "seed {}: heights {:?}, views {:?}, honest {:?}, agreed height {}, view changes {}, \
             faults {}, crashes {} ({} mid-output), txs {} ({} unconfirmed), end {} ms, done {:?}, \
             evidence {}, replica rejections {:?}, verify rejections {:?}, trace {}\n",
            self.seed,
            self.heights,
            self.views,
            self.honest,
            self.agreed_height,
            self.view_changes(),
            self.stats.faults_injected,
            self.stats.crashes,
            self.stats.mid_output_crashes,
            self.txs_created,
            self.txs_unconfirmed,
            self.end_ms,
            self.done_ms,
            self.stats.evidence,
            self.stats.rejected,
            self.stats.verify_rejected,
            self.trace_digest.short(),
        );
        for v in &self.violations {
            s.push_str(&format!("  {v}\n"));
        }
        if let Some(r) = &self.replay {
            s.push_str(&format!("  replay: {r}\n"));
        }
        s
    }
}
