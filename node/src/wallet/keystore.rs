//! The account key on disk.
//!
//! Two formats, both JSON with mode 0600, both refused when group or others
//! can read them:
//!
//! - plain: the node's own key file (`"kind": "phalanx-ed25519-key"`,
//!   [`phalanx_crypto::write_key_file`]), so a testnet faucet key works as is;
//! - encrypted (`"kind": "phalanx-wallet-encrypted-key"`): the ed25519 seed
//!   sealed with XChaCha20-Poly1305 under a key derived by Argon2id from a
//!   passphrase. The KDF parameters and a random salt are stored in the file;
//!   the AEAD's associated data binds the public key and those parameters,
//!   so a swapped header fails to open just like a wrong passphrase.

use super::WalletError;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use phalanx_crypto::{CryptoError, Keypair, PublicKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;
use zeroize::Zeroizing;

/// The `kind` of an encrypted wallet key file.
pub const ENCRYPTED_KIND: &str = "phalanx-wallet-encrypted-key";
/// The `kind` of a plain key file (the node's format).
pub const PLAIN_KIND: &str = "phalanx-ed25519-key";

/// Argon2id cost for new files: 64 MiB, 3 passes, 1 lane (RFC 9106's
/// second recommended option, with the memory it allows on small machines).
pub const KDF_M_COST_KIB: u32 = 64 * 1024;
pub const KDF_T_COST: u32 = 3;
pub const KDF_P_COST: u32 = 1;
/// The most a key file may ask of us, so a hostile file cannot make the
/// wallet allocate without bound or spin for hours.
pub const KDF_M_COST_KIB_MAX: u32 = 1024 * 1024;
pub const KDF_T_COST_MAX: u32 = 64;
pub const KDF_P_COST_MAX: u32 = 16;
/// The largest key file read.
pub const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const SEED_LEN: usize = 32;

/// Argon2id parameters as stored in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `"argon2id"`.
    pub algorithm: String,
    /// Argon2 version, 19 (0x13).
    pub version: u32,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hex.
    pub salt: String,
}

/// The sealed seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherParams {
    /// Always `"xchacha20poly1305"`.
    pub algorithm: String,
    /// Hex, 24 bytes.
    pub nonce: String,
    /// Hex: the 32-byte seed plus the 16-byte tag.
    pub ciphertext: String,
}

/// An encrypted key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedKeyFile {
    pub kind: String,
    pub version: u32,
    pub public_key: PublicKey,
    pub kdf: KdfParams,
    pub cipher: CipherParams,
}

/// Where a passphrase comes from when a key file needs one.
pub trait PassphraseSource {
    /// The passphrase for opening `path`; `confirm` asks twice (new files).
    fn passphrase(&self, path: &Path, confirm: bool) -> Result<Zeroizing<String>, WalletError>;
}

/// `$PHALANX_WALLET_PASSPHRASE`, else a prompt when stdin is a terminal.
pub struct EnvOrPrompt;

/// The environment variable a passphrase may be given in.
pub const PASSPHRASE_ENV: &str = "PHALANX_WALLET_PASSPHRASE";

impl PassphraseSource for EnvOrPrompt {
    fn passphrase(&self, path: &Path, confirm: bool) -> Result<Zeroizing<String>, WalletError> {
        use std::io::IsTerminal as _;
        if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
            return Ok(Zeroizing::new(p));
        }
        if !std::io::stdin().is_terminal() {
            return Err(WalletError::NoPassphrase {
                path: path.to_path_buf(),
            });
        }
        let prompt_io = WalletError::io("read the passphrase from the terminal");
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                .map_err(prompt_io)?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ")
                    .map_err(WalletError::io("read the passphrase from the terminal"))?,
            );
            if *again != *first {
                return Err(WalletError::Usage("the passphrases do not match".into()));
            }
        }
        Ok(first)
    }
}

/// A fixed passphrase, for tests and embedding.
pub struct Fixed(pub String);

impl PassphraseSource for Fixed {
    fn passphrase(&self, _path: &Path, _confirm: bool) -> Result<Zeroizing<String>, WalletError> {
        Ok(Zeroizing::new(self.0.clone()))
    }
}

/// The associated data: everything in the file but the ciphertext, so no
/// field can be swapped without the tag failing.
fn associated_data(public_key: &PublicKey, kdf: &KdfParams, nonce_hex: &str) -> Vec<u8> {
    format!(
        "{ENCRYPTED_KIND}/v1|public_key={}|kdf={}:{}:m={}:t={}:p={}:salt={}|cipher=xchacha20poly1305:nonce={}",
        public_key.to_hex(),
        kdf.algorithm,
        kdf.version,
        kdf.m_cost_kib,
        kdf.t_cost,
        kdf.p_cost,
        kdf.salt,
        nonce_hex
    )
    .into_bytes()
}

fn derive_key(
    passphrase: &str,
    kdf: &KdfParams,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| format!("kdf parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| format!("kdf: {e}"))?;
    Ok(key)
}

/// Seals `key` under `passphrase` with fresh salt and nonce.
pub fn encrypt(key: &Keypair, passphrase: &str) -> EncryptedKeyFile {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let kdf = KdfParams {
        algorithm: "argon2id".into(),
        version: 0x13,
        m_cost_kib: KDF_M_COST_KIB,
        t_cost: KDF_T_COST,
        p_cost: KDF_P_COST,
        salt: hex::encode(salt),
    };
    let nonce_hex = hex::encode(nonce);
    let aad = associated_data(&key.public(), &kdf, &nonce_hex);
    // Our own constants are valid Argon2 parameters.
    let derived = derive_key(passphrase, &kdf, &salt).expect("built-in kdf parameters are valid");
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&derived[..]));
    let seed = Zeroizing::new(key.seed());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &seed[..],
                aad: &aad,
            },
        )
        .expect("encrypting 32 bytes cannot fail");
    EncryptedKeyFile {
        kind: ENCRYPTED_KIND.into(),
        version: 1,
        public_key: key.public(),
        kdf,
        cipher: CipherParams {
            algorithm: "xchacha20poly1305".into(),
            nonce: nonce_hex,
            ciphertext: hex::encode(ciphertext),
        },
    }
}

/// Opens an encrypted key file's contents.
pub fn decrypt(
    file: &EncryptedKeyFile,
    passphrase: &str,
    path: &Path,
) -> Result<Keypair, WalletError> {
    let corrupt = |reason: String| WalletError::CorruptKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    if file.version != 1 {
        return Err(corrupt(format!(
            "version {} is not supported (1 is)",
            file.version
        )));
    }
    let kdf = &file.kdf;
    if kdf.algorithm != "argon2id" || kdf.version != 0x13 {
        return Err(corrupt(format!(
            "kdf {} version {} is not supported (argon2id version 19 is)",
            kdf.algorithm, kdf.version
        )));
    }
    if kdf.m_cost_kib > KDF_M_COST_KIB_MAX
        || kdf.t_cost > KDF_T_COST_MAX
        || kdf.p_cost > KDF_P_COST_MAX
    {
        return Err(corrupt(format!(
            "kdf cost m={} KiB t={} p={} is over the limit (m ≤ {KDF_M_COST_KIB_MAX}, t ≤ {KDF_T_COST_MAX}, p ≤ {KDF_P_COST_MAX})",
            kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
        )));
    }
    if file.cipher.algorithm != "xchacha20poly1305" {
        return Err(corrupt(format!(
            "cipher {} is not supported (xchacha20poly1305 is)",
            file.cipher.algorithm
        )));
    }
    let salt = hex::decode(&kdf.salt).map_err(|e| corrupt(format!("kdf.salt: {e}")))?;
    if salt.len() < 8 {
        return Err(corrupt("kdf.salt is shorter than 8 bytes".into()));
    }
    let nonce =
        hex::decode(&file.cipher.nonce).map_err(|e| corrupt(format!("cipher.nonce: {e}")))?;
    if nonce.len() != NONCE_LEN {
        return Err(corrupt(format!(
            "cipher.nonce is {} bytes, expected {NONCE_LEN}",
            nonce.len()
        )));
    }
    let ciphertext = hex::decode(&file.cipher.ciphertext)
        .map_err(|e| corrupt(format!("cipher.ciphertext: {e}")))?;
    let derived = derive_key(passphrase, kdf, &salt).map_err(corrupt)?;
    let aad = associated_data(&file.public_key, kdf, &file.cipher.nonce);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&derived[..]));
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| WalletError::BadPassphrase {
                path: path.to_path_buf(),
            })?,
    );
    let seed: [u8; SEED_LEN] = plain.as_slice().try_into().map_err(|_| {
        corrupt(format!(
            "the sealed secret is {} bytes, expected {SEED_LEN}",
            plain.len()
        ))
    })?;
    let key = Keypair::from_seed(seed);
    if key.public() != file.public_key {
        return Err(corrupt(format!(
            "public_key {} does not belong to the sealed secret key",
            file.public_key
        )));
    }
    Ok(key)
}

/// Writes `key` to `path` with mode 0600: sealed under a passphrase from
/// `passphrase` when given, else in the node's plain format. Refuses to
/// overwrite a file; creates the parent directory (mode 0700).
pub fn write_new(
    path: &Path,
    key: &Keypair,
    passphrase: Option<&dyn PassphraseSource>,
) -> Result<(), WalletError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    if path.exists() {
        return Err(WalletError::KeyFile {
            path: path.to_path_buf(),
            reason: "already exists; refusing to overwrite a key".into(),
        });
    }
    let Some(source) = passphrase else {
        return phalanx_crypto::write_key_file(path, key).map_err(|e| from_crypto(path, e));
    };
    let pass = source.passphrase(path, true)?;
    if pass.is_empty() {
        return Err(WalletError::Usage("the passphrase is empty".into()));
    }
    let file = encrypt(key, &pass);
    let mut text = serde_json::to_string_pretty(&file).expect("a key file serializes");
    text.push('\n');
    write_private(path, text.as_bytes())
}

/// Creates `dir` (and parents) with mode 0700 where it is created.
pub fn create_private_dir(dir: &Path) -> Result<(), WalletError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(WalletError::io(format!("create {}", dir.display())))
}

/// Writes a new file with mode 0600 (never overwriting).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let io = WalletError::io(format!("write {}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    result.map_err(io)
}

fn from_crypto(path: &Path, e: CryptoError) -> WalletError {
    match e {
        CryptoError::KeyFileIo { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            WalletError::NoKeyFile {
                path: path.to_path_buf(),
            }
        }
        CryptoError::KeyFile { reason, .. } => WalletError::CorruptKeyFile {
            path: path.to_path_buf(),
            reason,
        },
        CryptoError::KeyFilePermissions { mode, .. } => WalletError::KeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "readable by others (mode {mode:o}); run `chmod 600 {}`",
                path.display()
            ),
        },
        other => WalletError::KeyFile {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Refuses a key file that group or others can read, as ssh does.
fn check_permissions(path: &Path) -> Result<(), WalletError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WalletError::NoKeyFile {
            path: path.to_path_buf(),
        },
        _ => WalletError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    if !meta.is_file() {
        return Err(WalletError::KeyFile {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > KEY_FILE_BYTES_MAX {
        return Err(WalletError::CorruptKeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, a key file is at most {KEY_FILE_BYTES_MAX}",
                meta.len()
            ),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(from_crypto(
                path,
                CryptoError::KeyFilePermissions {
                    path: path.to_path_buf(),
                    mode,
                },
            ));
        }
    }
    Ok(())
}

/// The public key in the file at `path`, without opening a sealed one: for
/// read-only queries (balance, nonce), which need no passphrase.
pub fn public_key_of(path: &Path) -> Result<PublicKey, WalletError> {
    match read_kind(path)? {
        (ENCRYPTED_KIND, value) => {
            let file: EncryptedKeyFile =
                serde_json::from_value(value).map_err(|e| WalletError::CorruptKeyFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            Ok(file.public_key)
        }
        _ => load(path, &Fixed(String::new())).map(|k| k.public()),
    }
}

/// Reads the file (permissions checked) and its `kind`.
fn read_kind(path: &Path) -> Result<(&'static str, serde_json::Value), WalletError> {
    check_permissions(path)?;
    let corrupt = |reason: String| WalletError::CorruptKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(WalletError::io(format!("read {}", path.display())))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not JSON ({e})")))?;
    let kind = match value.get("kind").and_then(|k| k.as_str()) {
        Some(PLAIN_KIND) => PLAIN_KIND,
        Some(ENCRYPTED_KIND) => ENCRYPTED_KIND,
        Some(other) => {
            return Err(corrupt(format!(
                "kind {other:?} is not a key (expected {PLAIN_KIND:?} or {ENCRYPTED_KIND:?})"
            )))
        }
        None => return Err(corrupt("no \"kind\" field: not a key file".into())),
    };
    Ok((kind, value))
}

/// Loads the key at `path`, asking `passphrase` only if the file is sealed.
pub fn load(path: &Path, passphrase: &dyn PassphraseSource) -> Result<Keypair, WalletError> {
    match read_kind(path)? {
        (ENCRYPTED_KIND, value) => {
            let file: EncryptedKeyFile =
                serde_json::from_value(value).map_err(|e| WalletError::CorruptKeyFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            let pass = passphrase.passphrase(path, false)?;
            decrypt(&file, &pass, path)
        }
        _ => phalanx_crypto::load_key_file(path).map_err(|e| from_crypto(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_kdf(file: &mut EncryptedKeyFile, key: &Keypair, pass: &str) {
        // Re-seal with cheap parameters so unit tests stay fast.
        file.kdf.m_cost_kib = 64;
        file.kdf.t_cost = 1;
        let salt = hex::decode(&file.kdf.salt).unwrap();
        let derived = derive_key(pass, &file.kdf, &salt).unwrap();
        let aad = associated_data(&file.public_key, &file.kdf, &file.cipher.nonce);
        let nonce = hex::decode(&file.cipher.nonce).unwrap();
        let ct = XChaCha20Poly1305::new(Key::from_slice(&derived[..]))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &key.seed(),
                    aad: &aad,
                },
            )
            .unwrap();
        file.cipher.ciphertext = hex::encode(ct);
    }

    #[test]
    fn seal_open_and_every_tampering_fails() {
        let key = Keypair::generate();
        let path = Path::new("k.json");
        let mut file = encrypt(&key, "pw");
        assert_eq!(decrypt(&file, "pw", path).unwrap().public(), key.public());
        small_kdf(&mut file, &key, "pw");
        assert_eq!(decrypt(&file, "pw", path).unwrap().public(), key.public());
        assert!(matches!(
            decrypt(&file, "wrong", path),
            Err(WalletError::BadPassphrase { .. })
        ));
        let mut swapped = file.clone();
        swapped.public_key = Keypair::generate().public();
        assert!(matches!(
            decrypt(&swapped, "pw", path),
            Err(WalletError::BadPassphrase { .. })
        ));
        let mut cheaper = file.clone();
        cheaper.kdf.t_cost = 2;
        assert!(decrypt(&cheaper, "pw", path).is_err());
        let mut greedy = file.clone();
        greedy.kdf.m_cost_kib = KDF_M_COST_KIB_MAX + 1;
        assert!(matches!(
            decrypt(&greedy, "pw", path),
            Err(WalletError::CorruptKeyFile { .. })
        ));
    }

    #[test]
    fn files_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("sub").join("plain.json");
        let key = Keypair::generate();
        write_new(&plain, &key, None).unwrap();
        assert_eq!(
            load(&plain, &Fixed(String::new())).unwrap().public(),
            key.public()
        );
        assert!(write_new(&plain, &key, None).is_err(), "never overwrites");
        let sealed = dir.path().join("sealed.json");
        write_new(&sealed, &key, Some(&Fixed("pw".into()))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = load(&sealed, &Fixed("pw".into())).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            load(&sealed, &Fixed("nope".into())),
            Err(WalletError::BadPassphrase { .. })
        ));
        let garbage = dir.path().join("garbage.json");
        write_private(&garbage, b"{ not json").unwrap();
        assert!(matches!(
            load(&garbage, &Fixed("pw".into())),
            Err(WalletError::CorruptKeyFile { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("absent.json"), &Fixed("pw".into())),
            Err(WalletError::NoKeyFile { .. })
        ));
    }
}
