//! The bodies of Phalanx's fuzz targets, one plain function per target.
//!
//! Each takes the fuzzer's bytes, feeds them to the real decoder or loader
//! (or, where the real one is private, to the public path that reaches the
//! same code: see each module) and then checks what must hold of anything
//! accepted. A body returns whether the input was accepted; it panics only
//! when an invariant is broken, which is what the fuzzer reports as a crash.
//!
//! The same functions are called by the libFuzzer targets in `fuzz/libfuzzer/`
//! (built by `cargo fuzz`, outside the workspace) and by `tests/replay.rs`, which
//! replays the committed corpus `fuzz/corpus/<target>/` under an ordinary
//! `cargo test`. The corpus seeds are real encodings, written by
//! `cargo run -p phalanx-fuzz --bin gen-corpus` from [`seeds`].

mod api;
mod consensus;
mod files;
mod fixture;
mod merkle;
mod records;
pub mod seeds;

pub use api::{api_batch, api_transaction};
pub use consensus::{catch_up_response, consensus_message};
pub use files::{genesis, key_file, node_config};
pub use fixture::{fixture, Fixture, CHAIN};
pub use merkle::merkle_proof;
pub use records::{record_kind, stored_record, RecordKind};

/// What a target did with an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded, loaded or verified: the input reached the deepest checks.
    Accepted,
    /// Refused with an error (never a panic).
    Rejected,
}

/// A target's body.
pub type Body = fn(&[u8]) -> Verdict;

/// Every target: its name (the corpus directory and the cargo-fuzz binary)
/// and its body.
pub const TARGETS: [(&str, Body); 9] = [
    ("consensus_message", consensus_message),
    ("catch_up_response", catch_up_response),
    ("api_transaction", api_transaction),
    ("api_batch", api_batch),
    ("key_file", key_file),
    ("genesis", genesis),
    ("node_config", node_config),
    ("merkle_proof", merkle_proof),
    ("stored_record", stored_record),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
