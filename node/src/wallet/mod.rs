//! `phalanx-wallet`: a command-line wallet for one Phalanx account.
//!
//! It keeps the account key on disk ([`keystore`]: mode 0600, optionally
//! sealed with Argon2id and XChaCha20-Poly1305), talks to any validator that
//! answers ([`client`]), signs and submits transfers with consecutive nonces
//! ([`commands`], [`nonce`]), and checks a transaction's finality itself
//! ([`verify`]): it trusts only the genesis file, never the node — the
//! commit certificate must carry 2f + 1 genesis validators' signatures over
//! the batch digest, the header must produce that digest, and the Merkle
//! proof must lead from the transaction hash to the header's root.
//!
//! Every failure is one [`WalletError`], printed as a single
//! `error: ...` line with exit code 1.

pub mod client;
pub mod commands;
pub mod keystore;
pub mod nonce;
pub mod settings;
pub mod verify;

use std::path::PathBuf;

pub use commands::main_with_args;

/// Everything a wallet command can fail with, as the user should read it.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(
        "no node answered ({attempts}); is a validator running there? pass another with --node URL"
    )]
    Unreachable { attempts: String },
    #[error("unknown account {address}: chain {chain_id:?} has no record of it (an account appears once it receives funds)")]
    UnknownAccount { address: String, chain_id: String },
    #[error("insufficient balance: have {have}, need {need}")]
    InsufficientBalance { have: u64, need: u64 },
    #[error("wrong chain id: {detail}")]
    WrongChain { detail: String },
    #[error("bad passphrase for key file {path} (or the file has been altered)")]
    BadPassphrase { path: PathBuf },
    #[error("no passphrase for encrypted key file {path}: set PHALANX_WALLET_PASSPHRASE or run in a terminal")]
    NoPassphrase { path: PathBuf },
    #[error("transaction rejected by {node}: {message} ({code})")]
    Rejected {
        node: String,
        code: String,
        message: String,
    },
    #[error("no key file at {path}; create one with `phalanx-wallet keygen` or pass --key FILE")]
    NoKeyFile { path: PathBuf },
    #[error("key file {path} is corrupt: {reason}")]
    CorruptKeyFile { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("node {node} answered HTTP {status}: {message} ({code})")]
    Api {
        node: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("node {node} sent an unexpected answer: {reason}")]
    BadResponse { node: String, reason: String },
    #[error("unknown transaction {hash}: {node} has neither committed it nor holds it pending")]
    UnknownTransaction { hash: String, node: String },
    #[error("transaction {hash} is not final yet (status {status}); try again shortly")]
    NotFinal { hash: String, status: String },
    #[error("timed out after {seconds} s waiting for transaction {hash} to commit (last status: {status}); see it later with `phalanx-wallet tx {hash}`")]
    Timeout {
        hash: String,
        seconds: u64,
        status: String,
    },
    #[error("transaction {hash} committed at height {height} but failed: {reason}")]
    TxFailed {
        hash: String,
        height: u64,
        reason: String,
    },
    #[error("verification failed: {0}")]
    Verify(#[from] verify::VerifyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl WalletError {
    /// A stable code for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            WalletError::Unreachable { .. } => "node_unreachable",
            WalletError::UnknownAccount { .. } => "unknown_account",
            WalletError::InsufficientBalance { .. } => "insufficient_balance",
            WalletError::WrongChain { .. } => "wrong_chain_id",
            WalletError::BadPassphrase { .. } => "bad_passphrase",
            WalletError::NoPassphrase { .. } => "no_passphrase",
            WalletError::Rejected { .. } => "transaction_rejected",
            WalletError::NoKeyFile { .. } => "no_key_file",
            WalletError::CorruptKeyFile { .. } => "corrupt_key_file",
            WalletError::KeyFile { .. } => "key_file",
            WalletError::Usage(_) => "usage",
            WalletError::Config { .. } => "config",
            WalletError::Genesis(_) => "genesis",
            WalletError::Api { .. } => "node_error",
            WalletError::BadResponse { .. } => "bad_response",
            WalletError::UnknownTransaction { .. } => "unknown_transaction",
            WalletError::NotFinal { .. } => "not_final",
            WalletError::Timeout { .. } => "timeout",
            WalletError::TxFailed { .. } => "transaction_failed",
            WalletError::Verify(_) => "verify_failed",
            WalletError::Io { .. } => "io",
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WalletError {
        let what = what.into();
        move |source| WalletError::Io { what, source }
    }
}
