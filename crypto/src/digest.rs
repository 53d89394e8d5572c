//! SHA-256 digests with domain separation.
//!
//! Every hash is `SHA-256(len(tag) || tag || bytes)` with a tag per kind of
//! object, so a transaction hash can never collide with a block hash or a
//! Merkle node computed over the same bytes.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A SHA-256 digest. Displays as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

/// What a digest is of. The tag is hashed in front of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashDomain {
    Transaction,
    Batch,
    BlockHeader,
    MerkleLeaf,
    MerkleNode,
    MerkleRoot,
    StateRoot,
    Account,
    Address,
    Genesis,
    Checkpoint,
}

impl HashDomain {
    pub fn tag(self) -> &'static [u8] {
        match self {
            HashDomain::Transaction => b"phalanx/tx/v1",
            HashDomain::Batch => b"phalanx/batch/v1",
            HashDomain::BlockHeader => b"phalanx/block-header/v1",
            HashDomain::MerkleLeaf => b"phalanx/merkle-leaf/v1",
            HashDomain::MerkleNode => b"phalanx/merkle-node/v1",
            HashDomain::MerkleRoot => b"phalanx/merkle-root/v1",
            HashDomain::StateRoot => b"phalanx/state-root/v1",
            HashDomain::Account => b"phalanx/account/v1",
            HashDomain::Address => b"phalanx/address/v1",
            HashDomain::Genesis => b"phalanx/genesis/v1",
            HashDomain::Checkpoint => b"phalanx/checkpoint/v1",
        }
    }
}

impl Digest {
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Plain SHA-256, for test vectors and interop. Protocol code uses
    /// [`Digest::of`].
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The domain-separated hash of `bytes`.
    pub fn of(domain: HashDomain, bytes: &[u8]) -> Digest {
        Self::of_parts(domain, &[bytes])
    }

    /// The domain-separated hash of several byte strings, each length-prefixed
    /// so that `("ab", "c")` and `("a", "bc")` differ.
    pub fn of_parts(domain: HashDomain, parts: &[&[u8]]) -> Digest {
        let mut h = Sha256::new();
        let tag = domain.tag();
        h.update((tag.len() as u64).to_le_bytes());
        h.update(tag);
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Digest(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Digest, crate::CryptoError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim_start_matches("0x"), &mut out).map_err(|e| {
            crate::CryptoError::BadEncoding {
                what: "digest",
                reason: format!("expected 64 hex characters: {e}"),
            }
        })?;
        Ok(Digest(out))
    }

    /// The first 8 hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl std::str::FromStr for Digest {
    type Err = crate::CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_hex(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::hex_bytes::serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::hex_bytes::deserialize(d).map(Digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-2 / NIST SHA-256 known answers.
    #[test]
    fn sha256_known_answers() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Digest::sha256(input).to_hex(), *want, "input {:?}", input);
        }
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            Digest::sha256(&million_a).to_hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn domains_separate_equal_bytes() {
        let bytes = b"same bytes";
        let tx = Digest::of(HashDomain::Transaction, bytes);
        let block = Digest::of(HashDomain::BlockHeader, bytes);
        assert_ne!(tx, block);
        assert_ne!(tx, Digest::sha256(bytes));
    }

    #[test]
    fn parts_are_length_prefixed() {
        let a = Digest::of_parts(HashDomain::Batch, &[b"ab", b"c"]);
        let b = Digest::of_parts(HashDomain::Batch, &[b"a", b"bc"]);
        assert_ne!(a, b);
    }

    #[test]
    fn hex_round_trip_and_serde_forms() {
        let d = Digest::of(HashDomain::Transaction, b"x");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.to_hex()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let bin = bincode::serialize(&d).unwrap();
        assert_eq!(bin.len(), 32, "bincode form is the raw 32 bytes");
        assert_eq!(bincode::deserialize::<Digest>(&bin).unwrap(), d);
        assert!(Digest::from_hex("zz").is_err());
    }
}
