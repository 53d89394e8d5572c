//! Phalanx test networks.
//!
//! [`sim`] is the deterministic simulator: n real PBFT replicas from
//! `phalanx-consensus` in one process, driven by one seeded RNG over a
//! simulated clock and network that delays, drops, duplicates, reorders and
//! partitions messages, crashes and restarts replicas from their recorded
//! state (also between two outputs of one step), and plays traitors. After
//! every step checkers assert agreement, validity, supply and no honest
//! double-signing; after the faults heal, liveness within a stated bound. A
//! failing run names its seed and the command that replays it exactly.
//!
//! [`process`] runs real `phalanx` validators on loopback ([`cluster`]),
//! their peer traffic through the testnet's own TCP proxies ([`proxy`]) so
//! links can be cut, delayed and healed, a workload of pre-signed transfers
//! through the HTTP API ([`load`]), scenario [`manifest`]s with traitors
//! and perturbations, and a [`verdict`] read from every honest node: safety,
//! progress, throughput and latency. [`cli`] holds the `up`, `run`,
//! `generate` and `bench` subcommands.

pub mod cli;
pub mod cluster;
pub mod load;
pub mod manifest;
pub mod process;
pub mod proxy;
pub mod sim;
pub mod verdict;
