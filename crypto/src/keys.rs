//! ed25519 keys, signatures and account addresses.

use crate::{CryptoError, Digest, HashDomain};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use std::fmt;

/// An ed25519 public key as its 32-byte compressed encoding. It is checked
/// to be a valid curve point when used to verify, not when decoded, so that
/// a malformed key from a peer is a verification failure, never a panic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (R || S).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

/// A 20-byte account address: the first 20 bytes of the domain-separated
/// hash of the account's public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

/// A signing key with its public key.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Keypair {
        Keypair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from a 32-byte seed (the ed25519 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A deterministic key for tests and simulations: the seed is the hash of
    /// `label`. Never use for a real chain.
    pub fn insecure_from_label(label: &str) -> Keypair {
        Keypair::from_seed(Digest::sha256(label.as_bytes()).0)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn address(&self) -> Address {
        self.public().address()
    }

    /// Signs raw bytes. Protocol code signs through [`crate::Signed::sign`],
    /// which adds the domain tag and chain id.
    pub fn sign_raw(&self, bytes: &[u8]) -> Signature {
        Signature(self.signing.sign(bytes).to_bytes())
    }

    /// The libp2p-compatible 64-byte form: secret seed followed by public key.
    pub fn to_keypair_bytes(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair::from_seed(self.seed())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair(public: {})", self.public())
    }
}

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<PublicKey, CryptoError> {
        Ok(PublicKey(decode_hex::<32>("public key", text)?))
    }

    pub fn from_base64(text: &str) -> Result<PublicKey, CryptoError> {
        Ok(PublicKey(decode_base64::<32>("public key", text)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn address(&self) -> Address {
        let d = Digest::of(HashDomain::Address, &self.0);
        let mut a = [0u8; 20];
        a.copy_from_slice(&d.0[..20]);
        Address(a)
    }

    /// Decompresses the key, rejecting encodings that are not curve points.
    pub(crate) fn to_dalek(self) -> Result<VerifyingKey, CryptoError> {
        VerifyingKey::from_bytes(&self.0).map_err(|e| CryptoError::MalformedPublicKey {
            reason: e.to_string(),
        })
    }

    /// Checks `signature` over `bytes` under Phalanx's rule, the one every
    /// node applies to every signature, alone or in a batch
    /// ([`crate::verify_batch`]): canonical `S`, canonical encodings of a key
    /// and `R` not of small order, and the cofactored equation
    /// `[8](S·B − k·A − R) = 0` (RFC 8032 §5.1.7, ZIP 215). Use this, not
    /// [`PublicKey::verify_strict`], wherever a verdict must match the
    /// nodes'.
    pub fn verify(&self, bytes: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let item = crate::BatchItem {
            message: bytes,
            key: self,
            signature,
        };
        if crate::batch::verify_one(item) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Checks `signature` over `bytes` with `ed25519_dalek`'s `verify_strict`:
    /// RFC 8032 plus canonical S, no small-order key or R, and the
    /// uncofactored equation `R = S·B − k·A`. Stricter than
    /// [`PublicKey::verify`] on mixed-order points (and laxer on
    /// non-canonical keys): a reference for tests, not the nodes' rule.
    pub fn verify_strict(&self, bytes: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let key = self.to_dalek()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(bytes, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl Signature {
    pub fn from_hex(text: &str) -> Result<Signature, CryptoError> {
        Ok(Signature(decode_hex::<64>("signature", text)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Address {
    pub fn from_hex(text: &str) -> Result<Address, CryptoError> {
        Ok(Address(decode_hex::<20>("address", text)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn decode_hex<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], CryptoError> {
    let text = text.trim().trim_start_matches("0x");
    if text.len() != 2 * N {
        return Err(CryptoError::BadLength {
            what,
            expected: N,
            got: text.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| CryptoError::BadEncoding {
        what,
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn decode_base64<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], CryptoError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| CryptoError::BadEncoding {
            what,
            reason: e.to_string(),
        })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::BadLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

macro_rules! hex_newtype_impls {
    ($ty:ident, $name:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({})"), hex::encode(&self.0[..4]))
            }
        }
        impl std::str::FromStr for $ty {
            type Err = CryptoError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::from_hex(s)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::hex_bytes::serialize(&self.0, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::hex_bytes::deserialize(d).map($ty)
            }
        }
    };
}

hex_newtype_impls!(PublicKey, "PublicKey");
hex_newtype_impls!(Signature, "Signature");
hex_newtype_impls!(Address, "Address");

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 test vectors (TEST 1, 2, 3, 1024 and SHA(abc)).
    const RFC8032: &[(&str, &str, &str, &str)] = &[
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
        (
            "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        ),
    ];

    #[test]
    fn rfc8032_vectors() {
        for (i, (seed, public, msg, sig)) in RFC8032.iter().enumerate() {
            let mut s = [0u8; 32];
            hex::decode_to_slice(seed, &mut s).unwrap();
            let kp = Keypair::from_seed(s);
            assert_eq!(kp.public().to_hex(), *public, "vector {i}: public key");
            let msg = hex::decode(msg).unwrap();
            let got = kp.sign_raw(&msg);
            assert_eq!(got.to_hex(), *sig, "vector {i}: signature");
            kp.public()
                .verify_strict(&msg, &got)
                .unwrap_or_else(|e| panic!("vector {i}: {e}"));
            let mut tampered = msg.clone();
            tampered.push(0);
            assert!(kp.public().verify_strict(&tampered, &got).is_err());
        }
    }

    #[test]
    fn text_forms_round_trip() {
        let kp = Keypair::insecure_from_label("round-trip");
        let pk = kp.public();
        assert_eq!(PublicKey::from_hex(&pk.to_hex()).unwrap(), pk);
        assert_eq!(PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
        let sig = kp.sign_raw(b"m");
        assert_eq!(Signature::from_hex(&sig.to_hex()).unwrap(), sig);
        let addr = kp.address();
        assert_eq!(addr.to_hex().parse::<Address>().unwrap(), addr);
        assert!(matches!(
            PublicKey::from_hex("abcd"),
            Err(CryptoError::BadLength { .. })
        ));
        assert!(PublicKey::from_base64("!!!").is_err());
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        assert_eq!(bincode::serialize(&sig).unwrap().len(), 64);
    }

    #[test]
    fn malformed_key_is_an_error_not_a_panic() {
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        let err = PublicKey(bad).verify_strict(b"m", &Signature([0u8; 64]));
        assert!(err.is_err());
    }
}
