//! The Phalanx validator node: configuration and home directory, libp2p
//! networking, the mempool, the consensus event loop that drives the
//! `phalanx-consensus` replica over real network and disk, the HTTP API and
//! Prometheus metrics. The `phalanx` binary is a thin CLI over this crate.

pub mod api;
pub mod config;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod node;
pub mod openapi;
pub mod wallet;
