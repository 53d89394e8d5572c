//! Key files an operator can keep: JSON with the public key (for humans and
//! tools) and the secret seed, written with mode 0600. A key file that others
//! can read is refused, the way ssh refuses an open private key.

use crate::{CryptoError, Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

const KEY_FILE_KIND: &str = "phalanx-ed25519-key";

/// The on-disk form of a key file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub kind: String,
    pub public_key: PublicKey,
    /// The 32-byte ed25519 seed, hex.
    pub secret_key: String,
}

/// Writes `key` to `path` with mode 0600. Refuses to overwrite a file.
pub fn write_key_file(path: &Path, key: &Keypair) -> Result<(), CryptoError> {
    let file = KeyFile {
        kind: KEY_FILE_KIND.into(),
        public_key: key.public(),
        secret_key: hex::encode(key.seed()),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let io = |source| CryptoError::KeyFileIo {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file, refusing one that group or others can read, and
/// checking that the stored public key matches the secret.
pub fn load_key_file(path: &Path) -> Result<Keypair, CryptoError> {
    let io = |source| CryptoError::KeyFileIo {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let bad = |reason: String| CryptoError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file: KeyFile =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a key file: {e}")))?;
    if file.kind != KEY_FILE_KIND {
        return Err(bad(format!(
            "kind is {:?}, expected {KEY_FILE_KIND:?}",
            file.kind
        )));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(file.secret_key.trim(), &mut seed)
        .map_err(|e| bad(format!("secret_key is not 32 bytes of hex: {e}")))?;
    let key = Keypair::from_seed(seed);
    if key.public() != file.public_key {
        return Err(bad(format!(
            "public_key {} does not belong to the secret key (which gives {})",
            file.public_key,
            key.public()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_load_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = Keypair::generate();
        write_key_file(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(load_key_file(&path).unwrap().public(), key.public());
        assert!(write_key_file(&path, &key).is_err(), "never overwrites");
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        write_key_file(&path, &Keypair::generate()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key_file(&path).unwrap_err();
        assert!(matches!(
            err,
            CryptoError::KeyFilePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn corrupt_and_mismatched_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        write_key_file(&path, &Keypair::generate()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Keypair::generate().public().to_hex();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let swapped = text.replace(json["public_key"].as_str().unwrap(), &other);
        std::fs::write(&path, swapped).unwrap();
        assert!(matches!(
            load_key_file(&path),
            Err(CryptoError::KeyFile { .. })
        ));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            load_key_file(&path),
            Err(CryptoError::KeyFile { .. })
        ));
    }
}
