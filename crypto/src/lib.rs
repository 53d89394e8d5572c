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
mod key_cache;
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
///
/// In binary formats an array is a serde tuple (no length prefix). Its
/// elements are little-endian `u64` words (then a `u32` and single bytes for
/// the tail), not single bytes: under the canonical encoding (bincode,
/// fixed-width little-endian integers, see [`codec`]) that is the very same
/// bytes, in an eighth of the serde calls. A variable-width or big-endian
/// binary format would see different bytes; Phalanx has none (every binary
/// encoding goes through [`codec`]), and `tests::array_encoding_is_pinned`
/// pins the bytes.
pub(crate) mod hex_bytes {
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt;

    /// How an N-byte array is split into words: `u64`s, then at most one
    /// `u32`, then single bytes.
    const fn words<const N: usize>() -> (usize, bool, usize) {
        let u64s = N / 8;
        let has_u32 = N % 8 >= 4;
        let u8s = N % 4;
        (u64s, has_u32, u8s)
    }

    const fn element_count<const N: usize>() -> usize {
        let (u64s, has_u32, u8s) = words::<N>();
        u64s + has_u32 as usize + u8s
    }

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.serialize_str(&hex::encode(bytes));
        }
        let (u64s, has_u32, _) = words::<N>();
        let mut t = s.serialize_tuple(element_count::<N>())?;
        let (head, mut tail) = bytes.split_at(8 * u64s);
        for word in head.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            t.serialize_element(&u64::from_le_bytes(w))?;
        }
        if has_u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&tail[..4]);
            t.serialize_element(&u32::from_le_bytes(w))?;
            tail = &tail[4..];
        }
        for b in tail {
            t.serialize_element(b)?;
        }
        t.end()
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
            d.deserialize_tuple(element_count::<N>(), WordsVisitor::<N>)
        }
    }

    struct WordsVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for WordsVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let (u64s, has_u32, _) = words::<N>();
            let mut out = [0u8; N];
            let mut element = 0;
            let (head, mut tail) = out.split_at_mut(8 * u64s);
            for word in head.chunks_exact_mut(8) {
                let w: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(element, &self))?;
                word.copy_from_slice(&w.to_le_bytes());
                element += 1;
            }
            if has_u32 {
                let w: u32 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(element, &self))?;
                tail[..4].copy_from_slice(&w.to_le_bytes());
                tail = &mut tail[4..];
                element += 1;
            }
            for b in tail {
                *b = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(element, &self))?;
                element += 1;
            }
            debug_assert_eq!(element, element_count::<N>());
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{codec, Address, Digest, PublicKey, Signature};

    fn pattern<const N: usize>(seed: u8) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(seed);
        }
        out
    }

    /// The wire and storage bytes of keys, signatures, addresses and digests
    /// are the raw bytes: no length prefix, no reordering. This is what the
    /// byte-by-byte tuple encoding produced before the word-wise one.
    #[test]
    fn array_encoding_is_pinned() {
        let key: [u8; 32] = pattern(5);
        let sig: [u8; 64] = pattern(9);
        let addr: [u8; 20] = pattern(200);
        assert_eq!(codec::encode(&PublicKey(key)), key.to_vec());
        assert_eq!(codec::encode(&Digest(key)), key.to_vec());
        assert_eq!(codec::encode(&Signature(sig)), sig.to_vec());
        assert_eq!(codec::encode(&Address(addr)), addr.to_vec());
        assert_eq!(bincode::serialize(&Signature(sig)).unwrap(), sig.to_vec());
        // serde's own `[u8; N]` (N ≤ 32) is a tuple of single bytes.
        assert_eq!(codec::encode(&PublicKey(key)), codec::encode(&key));
        assert_eq!(codec::encode(&Address(addr)), codec::encode(&addr));
        // Pinned literally, so a change of the codec's options shows up too.
        assert_eq!(
            hex::encode(codec::encode(&Address(addr))),
            "c8ed12375c81a6cbf0153a5f84a9cef3183d6287"
        );
    }

    #[test]
    fn arrays_round_trip_and_short_input_fails() {
        let sig = Signature(pattern(1));
        let key = PublicKey(pattern(2));
        let addr = Address(pattern(3));
        let value = (sig, key, addr, 7u64);
        let bytes = codec::encode(&value);
        assert_eq!(bytes.len(), 64 + 32 + 20 + 8);
        assert_eq!(
            codec::decode::<(Signature, PublicKey, Address, u64)>(&bytes, 1024),
            Ok(value)
        );
        for len in [0, 1, 7, 8, 19, 63] {
            assert!(codec::decode::<Signature>(&bytes[..len], 1024).is_err());
        }
        for len in [0, 3, 16, 17, 19] {
            assert!(codec::decode::<Address>(&bytes[..len], 1024).is_err());
        }
        // Human-readable formats keep the hex form.
        let json = serde_json::to_string(&addr).unwrap();
        assert_eq!(json, format!("\"{}\"", addr.to_hex()));
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), addr);
    }
}
