use std::path::PathBuf;

/// Everything that can go wrong in this crate, with what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("signer {signer} is not in the key set")]
    UnknownSigner { signer: String },
    #[error("malformed public key: {reason}")]
    MalformedPublicKey { reason: String },
    #[error("malformed {what}: expected {expected} bytes, got {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("malformed {what}: {reason}")]
    BadEncoding { what: &'static str, reason: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path}: {source}")]
    KeyFileIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
