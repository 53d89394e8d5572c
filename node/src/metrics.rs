//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::network::NetworkStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub view: Gauge,
    pub view_changes: Counter,
    pub commit_latency_seconds: Histogram,
    pub batch_size: Histogram,
    pub mempool_txs: Gauge,
    pub mempool_bytes: Gauge,
    pub peers_connected: Gauge,
    pub messages_rejected: Family<ReasonLabel, Counter>,
    pub txs_rejected: Family<ReasonLabel, Counter>,
    pub evidence: Counter,
    pub txs_executed: Counter,
    pub txs_failed: Counter,
    pub catching_up: Gauge,
    /// 1 once the node fail-stopped on a state divergence.
    pub fail_stopped: Gauge,
    pub catch_up_blocks_served: Counter,
    pub catch_up_serve_errors: Counter,
    pub new_view_answers_throttled: Counter,
    network_sent: Counter,
    network_received: Counter,
    network_dropped: Counter,
    network_peers_refused: Counter,
    network_oversized: Counter,
    network_over_budget: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phalanx");
        let m = Metrics {
            height: Gauge::default(),
            view: Gauge::default(),
            view_changes: Counter::default(),
            commit_latency_seconds: Histogram::new([
                0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ]),
            batch_size: Histogram::new([
                0.0, 1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            peers_connected: Gauge::default(),
            messages_rejected: Family::default(),
            txs_rejected: Family::default(),
            evidence: Counter::default(),
            txs_executed: Counter::default(),
            txs_failed: Counter::default(),
            catching_up: Gauge::default(),
            fail_stopped: Gauge::default(),
            catch_up_blocks_served: Counter::default(),
            catch_up_serve_errors: Counter::default(),
            new_view_answers_throttled: Counter::default(),
            network_sent: Counter::default(),
            network_received: Counter::default(),
            network_dropped: Counter::default(),
            network_peers_refused: Counter::default(),
            network_oversized: Counter::default(),
            network_over_budget: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "height",
            "Height of the last applied block",
            m.height.clone(),
        );
        registry.register("view", "Current PBFT view", m.view.clone());
        registry.register(
            "view_changes",
            "Views entered after view 0",
            m.view_changes.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from mempool admission to commit, per transaction",
            m.commit_latency_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Transactions per committed block",
            m.batch_size.clone(),
        );
        registry.register(
            "mempool_txs",
            "Transactions in the mempool",
            m.mempool_txs.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Bytes in the mempool",
            m.mempool_bytes.clone(),
        );
        registry.register(
            "peers_connected",
            "Connected validators",
            m.peers_connected.clone(),
        );
        registry.register(
            "messages_rejected",
            "Inbound messages (consensus, gossip, catch-up requests) rejected or dropped, by reason",
            m.messages_rejected.clone(),
        );
        registry.register(
            "transactions_rejected",
            "Submitted transactions rejected, by reason",
            m.txs_rejected.clone(),
        );
        registry.register(
            "evidence",
            "Evidence records of equivocation",
            m.evidence.clone(),
        );
        registry.register(
            "transactions_executed",
            "Transactions executed",
            m.txs_executed.clone(),
        );
        registry.register(
            "transactions_failed",
            "Transactions failed",
            m.txs_failed.clone(),
        );
        registry.register(
            "catching_up",
            "1 while catching up from peers",
            m.catching_up.clone(),
        );
        registry.register(
            "fail_stopped",
            "1 once this node's state differed from a checkpoint quorum's and it stopped",
            m.fail_stopped.clone(),
        );
        for (name, help, counter) in [
            (
                "catch_up_blocks_served",
                "Blocks sent to catching-up peers",
                &m.catch_up_blocks_served,
            ),
            (
                "catch_up_serve_errors",
                "Catch-up answers cut short because a block could not be read",
                &m.catch_up_serve_errors,
            ),
            (
                "new_view_answers_throttled",
                "NEW-VIEW answers not sent again to a peer that asked within the interval",
                &m.new_view_answers_throttled,
            ),
            (
                "network_messages_sent",
                "Consensus messages acknowledged by their recipient",
                &m.network_sent,
            ),
            (
                "network_messages_received",
                "Consensus messages and transaction batches received",
                &m.network_received,
            ),
            (
                "network_messages_dropped",
                "Messages dropped: peer not connected, a full queue, too many unacknowledged, no ack in time, gossip with no one to take it",
                &m.network_dropped,
            ),
            (
                "network_peers_refused",
                "Connections refused: not a genesis validator",
                &m.network_peers_refused,
            ),
            (
                "network_messages_oversized",
                "Messages over the size limit, refused either way",
                &m.network_oversized,
            ),
            (
                "network_messages_over_budget",
                "Received messages dropped: their sender had its share of the event channel's bytes waiting",
                &m.network_over_budget,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        Metrics { registry, ..m }
    }

    /// Brings the network counters up to `stats` (a snapshot of counters
    /// that only grow; one caller, the consensus loop).
    pub fn set_network(&self, stats: &NetworkStats) {
        for (counter, now) in [
            (&self.network_sent, stats.sent),
            (&self.network_received, stats.received),
            (&self.network_dropped, stats.dropped),
            (&self.network_peers_refused, stats.refused_peers),
            (&self.network_oversized, stats.oversized),
            (&self.network_over_budget, stats.over_budget),
        ] {
            counter.inc_by(now.saturating_sub(counter.get()));
        }
    }

    pub fn reject_message(&self, reason: &str) {
        self.messages_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn reject_tx(&self, reason: &str) {
        self.txs_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_counters_follow_the_snapshots() {
        let m = Metrics::new();
        let mut stats = NetworkStats {
            sent: 3,
            dropped: 2,
            ..NetworkStats::default()
        };
        m.set_network(&stats);
        stats.dropped = 7;
        m.set_network(&stats);
        m.set_network(&stats);
        let text = m.render();
        assert!(
            text.contains("phalanx_network_messages_dropped_total 7"),
            "{text}"
        );
        assert!(
            text.contains("phalanx_network_messages_sent_total 3"),
            "{text}"
        );
    }
}
