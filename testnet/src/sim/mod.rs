//! The deterministic simulator.
//!
//! n validators run the real [`phalanx_consensus::Replica`] (honest, or
//! wrapped in a [`phalanx_consensus::traitor::Participant`] traitor) in one
//! process. One seeded ChaCha8 RNG draws every delay, loss, duplicate and
//! client action; an event queue ordered by `(time, sequence number)` runs a
//! simulated clock in milliseconds. The driver carries out each replica's
//! outputs in order — persist to its simulated disk, prune it, send over the
//! simulated network, execute committed batches with
//! [`phalanx_consensus::ledger::MemoryLedger`] and report them back, serve
//! catch-up from stored batches, run timers — exactly as a node would, and
//! can crash a replica between two of those outputs.
//!
//! Messages travel as bytes and reach a replica only through
//! [`phalanx_consensus::verify_message`]. Its verdict is cached by sender
//! and SHA-256 of the bytes: identical bytes give an identical verdict, and
//! a broadcast then costs one signature check instead of n − 1, which keeps
//! sweeps of hundreds of seeds fast.
//!
//! Client transactions go through what `phalanx-node`'s mempool checks
//! before a replica sees them: a transaction already committed on that
//! validator, or whose nonce is behind its account's, is refused (the
//! replica itself keeps such a transaction pending forever and then
//! suspects the primary of leaving it out).
//!
//! Modules: [`config`] (what a run is made of), [`network`], [`workload`],
//! [`checker`] (safety invariants), [`cost`] (signature checks a message
//! costs), [`trace`] (the determinism digest),
//! [`engine`] (the event loop and driver), [`report`], [`describe`], [`scenario`] (a builder for
//! tests), [`sweep`] (seed sweeps with random traitors and faults).

pub mod checker;
pub mod config;
pub mod cost;
pub mod describe;
pub mod engine;
pub mod network;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod workload;

pub use checker::Violation;
pub use config::{
    sim_consensus_params, Fault, NetConfig, SimConfig, TraitorSpec, WorkloadConfig,
    SIM_TRAITOR_MESSAGE_BYTES_MAX,
};
pub use engine::{run, Sim, SIM_CHAIN_ID};
pub use report::{Report, Stats};
pub use scenario::Scenario;
pub use sweep::{default_threads, sweep, BehaviourChoice, FaultProfile, SweepSpec, SweepSummary};
