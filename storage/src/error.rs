//! The one error type of the storage crate.

use phalanx_consensus::SeqNum;
use phalanx_crypto::Digest;
use std::path::PathBuf;

/// Why a storage operation failed. Each variant says what the operator or
/// the caller can do about it: a locked or full disk is an operator's
/// problem, a refused block is the caller's bug, corruption means the data
/// directory cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// Another process has the database open (RocksDB's `LOCK` file).
    #[error(
        "database at {} is locked by another process (is another phalanx node running with this home?)",
        path.display()
    )]
    Locked { path: PathBuf },

    /// Stored bytes are damaged: a RocksDB checksum failure, bytes that do
    /// not decode, or records that contradict each other (a block whose
    /// height or hash does not match its index). Never answered with
    /// guessed data.
    #[error("storage corruption in {what}: {detail}")]
    Corruption { what: String, detail: String },

    /// The database was written by a different schema version.
    #[error("storage schema version {found}, this build reads version {expected}")]
    VersionMismatch { found: u32, expected: u32 },

    /// The disk (or quota) is full; nothing of the failed write was applied.
    #[error("disk full: {detail}")]
    DiskFull { detail: String },

    /// The store belongs to another chain.
    #[error("store was initialised with genesis {stored}, not the given genesis {given}")]
    GenesisMismatch { stored: Digest, given: Digest },

    /// The store has no genesis yet; call `init_genesis` first.
    #[error("store has no genesis: call init_genesis first")]
    NotInitialized,

    /// `apply_block` was given a block that is not the next height.
    #[error("block {got} is not the next block: expected height {expected}")]
    NotNextBlock { expected: SeqNum, got: SeqNum },

    /// `apply_block` was given a block whose `prev_hash` is not the stored
    /// last block hash.
    #[error("block {height} does not extend the chain: prev_hash {got}, last hash {expected}")]
    PrevHashMismatch {
        height: SeqNum,
        expected: Digest,
        got: Digest,
    },

    /// `apply_block` was given a block that contradicts itself or its
    /// certificate (caller's bug: nothing was written).
    #[error("block {height} refused: {reason}")]
    InvalidBlock { height: SeqNum, reason: String },

    /// `verify_range` found a block that is missing, unlinked or
    /// inconsistent with its certificate or indexes.
    #[error("chain broken at height {height}: {reason}")]
    BrokenChain { height: SeqNum, reason: String },

    /// Any other I/O failure of the database.
    #[error("storage I/O error: {0}")]
    Io(String),

    /// Anything else RocksDB reports (invalid options, unsupported, ...).
    #[error("storage error: {0}")]
    Other(String),
}

impl StorageError {
    /// A `Corruption` error about the record `what`.
    pub(crate) fn corruption(what: impl Into<String>, detail: impl Into<String>) -> StorageError {
        StorageError::Corruption {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Maps a RocksDB status to a typed error. `path` names the database for
    /// the lock message.
    pub(crate) fn from_rocksdb(err: &rocksdb::Error, path: &std::path::Path) -> StorageError {
        let message = err.to_string();
        let lower = message.to_ascii_lowercase();
        match err.kind() {
            rocksdb::ErrorKind::Corruption => StorageError::corruption("rocksdb", message),
            _ if is_disk_full(&lower) => StorageError::DiskFull { detail: message },
            rocksdb::ErrorKind::IOError if is_lock_held(&lower) => StorageError::Locked {
                path: path.to_path_buf(),
            },
            rocksdb::ErrorKind::IOError => StorageError::Io(message),
            _ => StorageError::Other(message),
        }
    }
}

/// RocksDB's two messages for a held `LOCK` file (env/fs_posix.cc):
/// another process holds the flock ("While lock file: <path>/LOCK:
/// Resource temporarily unavailable"), or this process already opened the
/// database ("lock hold by current process, ...").
fn is_lock_held(lower_message: &str) -> bool {
    lower_message.contains("while lock file")
        || lower_message.contains("lock hold by current process")
}

/// ENOSPC ("No space left on device") or a quota failure (EDQUOT).
fn is_disk_full(lower_message: &str) -> bool {
    lower_message.contains("no space left") || lower_message.contains("disk quota exceeded")
}

impl From<std::io::Error> for StorageError {
    fn from(err: std::io::Error) -> StorageError {
        if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT) {
            StorageError::DiskFull {
                detail: err.to_string(),
            }
        } else {
            StorageError::Io(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_message_names_the_path_and_the_likely_cause() {
        let err = StorageError::Locked {
            path: PathBuf::from("/home/op/.phalanx/data"),
        };
        assert_eq!(
            err.to_string(),
            "database at /home/op/.phalanx/data is locked by another process \
             (is another phalanx node running with this home?)"
        );
    }

    #[test]
    fn rocksdb_lock_and_space_messages_are_recognised() {
        let held = [
            "IO error: While lock file: /d/LOCK: Resource temporarily unavailable",
            "IO error: lock hold by current process, acquire time 1 acquiring thread 2: \
             /d/LOCK: No locks available",
        ];
        for m in held {
            assert!(is_lock_held(&m.to_ascii_lowercase()), "{m}");
        }
        let not_held = "IO error: While reading block at offset 10: /d/000009.sst";
        assert!(!is_lock_held(&not_held.to_ascii_lowercase()));
        let full = "IO error: No space left on device: While appending to file: /d/000012.log";
        assert!(is_disk_full(&full.to_ascii_lowercase()));
    }

    #[test]
    fn io_errors_map_enospc_to_disk_full() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(
            StorageError::from(full),
            StorageError::DiskFull { .. }
        ));
        let other = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(matches!(StorageError::from(other), StorageError::Io(_)));
    }
}
