//! Everything Phalanx trusts: ed25519 keys and signatures, SHA-256 digests
//! with domain separation, canonical encoding with decode limits, and Merkle
//! trees over transaction hashes.
//!
//! The one rule this crate enforces by type: bytes that arrive from outside
//! are a [`Signed<M>`], and the only way to obtain a [`Verified<M>`] — the
//! only form the consensus core accepts — is to check the signature against a
//! known [`KeySet`] under the right domain tag and chain id.

mod batch;
pub mod codec;
mod digest;
mod error;
mod keyfile;
mod keys;
pub mod merkle;
mod signed;

pub use batch::{verify_batch, BatchItem};
pub use digest::{Digest, HashDomain};
pub use error::CryptoError;
pub use keyfile::{load_key_file, write_key_file, KeyFile};
pub use keys::{Address, Keypair, PublicKey, Signature};
pub use signed::{signing_bytes, AnyKey, KeySet, Signed, SignedPayload, Verified};

/// Serde helper: fixed-size byte arrays as hex strings in human-readable
/// formats (JSON, TOML) and as raw bytes in bincode.
pub(crate) mod hex_bytes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            // Fixed-size arrays are a tuple in serde: no length prefix.
            serde::Serialize::serialize(&serde_big_array(bytes), s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let mut out = [0u8; N];
            hex::decode_to_slice(text.trim_start_matches("0x"), &mut out)
                .map_err(|e| D::Error::custom(format!("expected {N} bytes of hex: {e}")))?;
            Ok(out)
        } else {
            struct V<const N: usize>;
            impl<'de, const N: usize> serde::de::Visitor<'de> for V<N> {
                type Value = [u8; N];
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "{N} bytes")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<[u8; N], A::Error> {
                    let mut out = [0u8; N];
                    for (i, b) in out.iter_mut().enumerate() {
                        *b = seq
                            .next_element()?
                            .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                    }
                    Ok(out)
                }
            }
            d.deserialize_tuple(N, V::<N>)
        }
    }

    /// A tuple view of a byte array, so bincode writes exactly N bytes.
    fn serde_big_array<const N: usize>(bytes: &[u8; N]) -> Tuple<'_, N> {
        Tuple(bytes)
    }

    struct Tuple<'a, const N: usize>(&'a [u8; N]);

    impl<const N: usize> serde::Serialize for Tuple<'_, N> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(N)?;
            for b in self.0 {
                t.serialize_element(b)?;
            }
            t.end()
        }
    }
}
