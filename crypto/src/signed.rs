//! `Signed<M>` → `Verified<M>`: the only door from untrusted bytes into the
//! protocol.
//!
//! A signature covers `len(domain) || domain || len(chain_id) || chain_id ||
//! bincode(payload)`, so a vote can never be replayed as a transaction, and a
//! message from one chain never verifies on another.

use crate::{batch, codec, CryptoError, Keypair, PublicKey, Signature};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A payload that can be signed: it names its signing domain.
pub trait SignedPayload: Serialize + DeserializeOwned {
    /// The domain tag, unique per message kind, e.g. `"phalanx/prepare/v1"`.
    const DOMAIN: &'static str;
}

/// The set of keys whose signatures are acceptable for some message kind.
pub trait KeySet {
    fn contains_key(&self, key: &PublicKey) -> bool;
}

/// Every well-formed key: for transactions, whose signer is any account.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyKey;

impl KeySet for AnyKey {
    fn contains_key(&self, _key: &PublicKey) -> bool {
        true
    }
}

impl KeySet for [PublicKey] {
    fn contains_key(&self, key: &PublicKey) -> bool {
        self.contains(key)
    }
}

impl KeySet for Vec<PublicKey> {
    fn contains_key(&self, key: &PublicKey) -> bool {
        self.contains(key)
    }
}

/// The exact bytes a signature covers.
pub fn signing_bytes(domain: &str, chain_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + domain.len() + chain_id.len() + payload.len());
    signing_prefix_into(&mut out, domain, chain_id);
    out.extend_from_slice(payload);
    out
}

/// Appends what a signature covers before the payload.
fn signing_prefix_into(out: &mut Vec<u8>, domain: &str, chain_id: &str) {
    out.extend_from_slice(&(domain.len() as u32).to_le_bytes());
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
}

/// A payload with a claimed signer and signature, as it arrives on the wire.
/// Nothing in it has been checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<M> {
    pub payload: M,
    pub signer: PublicKey,
    pub signature: Signature,
}

/// A payload whose signature was checked against a key set. The field is
/// private: this type is only made by [`Signed::verify`], by the batch
/// verifier, or by signing with one's own key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Verified<M>(Signed<M>);

impl<M: SignedPayload> Signed<M> {
    /// Signs `payload` for `chain_id`.
    pub fn sign(payload: M, key: &Keypair, chain_id: &str) -> Signed<M> {
        let bytes = signing_bytes(M::DOMAIN, chain_id, &codec::encode(&payload));
        Signed {
            signature: key.sign_raw(&bytes),
            signer: key.public(),
            payload,
        }
    }

    /// The exact bytes the signature must cover on `chain_id`.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        signing_bytes(M::DOMAIN, chain_id, &codec::encode(&self.payload))
    }

    /// Checks the signer is in `keys` and the signature is valid under
    /// [`PublicKey::verify`]'s rule.
    pub fn verify<K: KeySet + ?Sized>(
        self,
        chain_id: &str,
        keys: &K,
    ) -> Result<Verified<M>, CryptoError> {
        if !keys.contains_key(&self.signer) {
            return Err(CryptoError::UnknownSigner {
                signer: self.signer.to_hex(),
            });
        }
        // The rule of the batch path, on one item, with the signer's key
        // from the cache of decompressed keys (validators sign every vote).
        self.signer
            .verify(&self.signing_bytes(chain_id), &self.signature)?;
        Ok(Verified(self))
    }

    /// Verifies many at once with batch verification. The verdict for each
    /// item is the one [`Signed::verify`] would give.
    pub fn verify_all<K: KeySet + ?Sized>(
        items: Vec<Signed<M>>,
        chain_id: &str,
        keys: &K,
    ) -> Vec<Result<Verified<M>, CryptoError>> {
        let known: Vec<bool> = items.iter().map(|s| keys.contains_key(&s.signer)).collect();
        // Every signed message in one buffer: one allocation, not two per item.
        let mut bytes = Vec::new();
        let mut ranges = Vec::with_capacity(items.len());
        for (s, _) in items.iter().zip(&known).filter(|(_, known)| **known) {
            let start = bytes.len();
            signing_prefix_into(&mut bytes, M::DOMAIN, chain_id);
            codec::encode_into(&mut bytes, &s.payload);
            ranges.push(start..bytes.len());
        }
        let batch_items: Vec<batch::BatchItem<'_>> = items
            .iter()
            .zip(&known)
            .filter(|(_, known)| **known)
            .zip(ranges)
            .map(|((s, _), range)| batch::BatchItem {
                message: &bytes[range],
                key: &s.signer,
                signature: &s.signature,
            })
            .collect();
        let mut verdicts = batch::verify_batch(&batch_items).into_iter();
        items
            .into_iter()
            .zip(known)
            .map(|(s, known)| {
                if !known {
                    return Err(CryptoError::UnknownSigner {
                        signer: s.signer.to_hex(),
                    });
                }
                match verdicts.next() {
                    Some(true) => Ok(Verified(s)),
                    _ => Err(CryptoError::BadSignature),
                }
            })
            .collect()
    }
}

impl<M: SignedPayload> Verified<M> {
    /// Signs with our own key: the result is verified by construction.
    pub fn sign(payload: M, key: &Keypair, chain_id: &str) -> Verified<M> {
        Verified(Signed::sign(payload, key, chain_id))
    }
}

impl<M> Verified<M> {
    pub fn payload(&self) -> &M {
        &self.0.payload
    }

    pub fn signer(&self) -> &PublicKey {
        &self.0.signer
    }

    pub fn signature(&self) -> &Signature {
        &self.0.signature
    }

    /// The signed form, e.g. to forward or store.
    pub fn signed(&self) -> &Signed<M> {
        &self.0
    }

    pub fn into_signed(self) -> Signed<M> {
        self.0
    }
}

impl<M> std::ops::Deref for Verified<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.0.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Vote(u64);
    impl SignedPayload for Vote {
        const DOMAIN: &'static str = "phalanx/test-vote/v1";
    }
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct OtherVote(u64);
    impl SignedPayload for OtherVote {
        const DOMAIN: &'static str = "phalanx/test-other/v1";
    }

    #[test]
    fn verify_checks_signer_chain_and_domain() {
        let k = Keypair::insecure_from_label("a");
        let stranger = Keypair::insecure_from_label("b");
        let keys = vec![k.public()];
        let s = Signed::sign(Vote(7), &k, "chain-a");
        assert_eq!(s.clone().verify("chain-a", &keys).unwrap().payload().0, 7);
        assert!(matches!(
            s.clone().verify("chain-b", &keys),
            Err(CryptoError::BadSignature)
        ));
        let by_stranger = Signed::sign(Vote(7), &stranger, "chain-a");
        assert!(matches!(
            by_stranger.verify("chain-a", &keys),
            Err(CryptoError::UnknownSigner { .. })
        ));
        // Same payload bytes under another domain do not verify.
        let other = Signed {
            payload: OtherVote(7),
            signer: s.signer,
            signature: s.signature,
        };
        assert!(other.verify("chain-a", &keys).is_err());
        let mut altered = s;
        altered.payload.0 = 8;
        assert!(altered.verify("chain-a", &keys).is_err());
    }

    #[test]
    fn verify_all_matches_verify() {
        let k = Keypair::insecure_from_label("a");
        let keys = vec![k.public()];
        let mut items: Vec<Signed<Vote>> =
            (0..20).map(|i| Signed::sign(Vote(i), &k, "c")).collect();
        items[3].payload.0 = 99;
        items[11].signature.0[5] ^= 1;
        items[17].signer = Keypair::insecure_from_label("z").public();
        let single: Vec<bool> = items
            .iter()
            .map(|s| s.clone().verify("c", &keys).is_ok())
            .collect();
        let batched: Vec<bool> = Signed::verify_all(items, "c", &keys)
            .iter()
            .map(|r| r.is_ok())
            .collect();
        assert_eq!(single, batched);
        assert_eq!(batched.iter().filter(|ok| !**ok).count(), 3);
    }
}
