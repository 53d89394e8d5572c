//! PBFT (Castro & Liskov, OSDI '99 / TOCS '02) with signed messages, as a
//! pure, deterministic state machine.
//!
//! [`Replica::handle`] takes the time and one [`Input`] and returns the
//! [`Output`]s to carry out, **in order**: persist before send before
//! commit. There is no I/O, no clock, no randomness and no hash-map
//! iteration here, so the same inputs always give the same outputs, byte for
//! byte — the simulator in `phalanx-testnet` relies on it to replay any run
//! from its seed.
//!
//! Peer input reaches the replica only as a [`VerifiedMessage`], made by
//! [`verify_message`], which checks every signature a message carries (the
//! node runs it off the consensus loop, batched). Inside, the replica
//! enforces the protocol: views, watermarks, quorums of `2f + 1`, and a
//! guard that refuses to sign two different digests for one
//! `(view, seq, phase)`, recorded durably before any vote leaves.
//!
//! Modules follow the paper: [`normal_case`] (§4.2), [`checkpoint`] (§4.3),
//! [`view_change`] (§4.4), [`catch_up`] (state transfer, §5.3), with
//! [`replica`] holding the state they share and [`traitor`] the Byzantine
//! behaviours used by the simulator and test networks.

mod block;
mod catch_up;
mod checkpoint;
mod genesis;
mod ids;
pub mod ledger;
mod message;
mod normal_case;
mod replica;
pub mod traitor;
mod tx;
mod tx_set;
mod validators;
mod view_change;

pub use block::{
    batch_digest, verify_votes, Batch, Block, BlockHeader, CertError, CheckpointCertificate,
    CommitCertificate, TxFailure, TxResult,
};
pub use catch_up::CATCH_UP_RANGES_IN_FLIGHT;
pub use genesis::{ConsensusParams, Genesis, GenesisAccount, GenesisError, GenesisValidator};
pub use ids::{SeqNum, ValidatorIndex, View};
pub use message::{
    precheck_message, signature_checks_max, verify_batch, verify_committed, verify_message,
    CatchUpRequest, Checkpoint, Commit, CommittedBatch, Complaint, Horizon, Message, NewView,
    NewViewRequest, PrePrepare, Prepare, PreparedProof, Rejected, VerifiedMessage, VerifyContext,
    ViewChange, BATCH_TXS_MAX, CATCH_UP_BLOCKS_MAX, MESSAGE_BYTES_MAX, VIEWS_AHEAD_MAX,
};
pub use replica::{
    Config, ConfigError, Event, Evidence, Input, Output, Phase, Replica, Timer, WalEntry,
};
pub use tx::{merkle_root_of, tx_hash, tx_len, Transaction, Transfer, TX_BYTES_MAX};
pub use validators::ValidatorSet;
