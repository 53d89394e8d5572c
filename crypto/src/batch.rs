//! Verification of ed25519 signatures, one at a time or in batches, under
//! one rule, so that every node gives every signature the same verdict
//! however the signatures are grouped.
//!
//! The rule: a signature `(R, S)` by key `A` on message `M` is valid when
//! - `S` is canonical (below the group order ℓ);
//! - `A` and `R` are canonical encodings (`y < p`) of curve points that are
//!   not of small order;
//! - `[8](S·B − k·A − R) = 0` with `k = H(R ‖ A ‖ M)`: the *cofactored*
//!   equation, which RFC 8032 §5.1.7 states and ZIP 215 mandates.
//!
//! It accepts every signature `verify_strict` accepts under a canonical key,
//! and also those whose `R` or `A` carries a torsion component (a
//! *mixed-order* point: a point of the prime-order group plus one of the
//! eight points of order dividing 8) that the cofactor removes. Honest
//! signers never make such signatures, and nobody can make one for a key
//! whose secret they lack. What the cofactor buys is agreement: a batch checks one
//! random combination `Σ zᵢ(Rᵢ + kᵢAᵢ − SᵢB)`, where a torsion residue `T`
//! of one signature adds `zᵢT`, zero for some coefficients and not others;
//! without the cofactor such a signature failed alone and passed some
//! batches. Multiplied by 8, every torsion residue vanishes alone and in any
//! batch, and what remains lies in the prime-order group, where 128-bit
//! coefficients let a batch with a bad signature pass with probability
//! 2⁻¹²⁸. A valid signature never makes a batch fail.
//!
//! The batch is computed here, not by `ed25519_dalek::verify_batch`
//! (uncofactored, and more lenient on encodings), so that each key and `R`
//! is decompressed once (keys through a cache, see `key_cache`), the terms
//! of one signer are merged into a single point of the multiplication
//! (`(Σ zᵢkᵢ)·A`), and bisection reuses the hashes and points. The
//! coefficients `zᵢ` (128 bits) are derived by hashing the whole batch, so
//! every validator computes the very same equation.
//!
//! When a batch fails, it is split in halves until each bad signature is
//! found, so one forged signature costs O(log n) extra multiplications, not a
//! verdict on the whole batch; the last few are checked one by one, by the
//! same function that checks a signature alone ([`verify_one`]).

use crate::key_cache;
use crate::{PublicKey, Signature};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use sha2::{Digest as _, Sha512};
use std::iter::once;

/// Below this many candidates, strict one-by-one checking is as fast.
const BATCH_MIN: usize = 4;
/// Larger batches gain little and make bisection after a failure costlier.
const BATCH_MAX: usize = 512;

/// One signature to check.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    pub message: &'a [u8],
    pub key: &'a PublicKey,
    pub signature: &'a Signature,
}

/// A signature whose encodings passed the rule's checks, with what its
/// equation needs.
struct Candidate {
    /// Index in the caller's items.
    item: usize,
    /// Index of its key in [`key_cache::StrictKeys::points`].
    key: usize,
    r: EdwardsPoint,
    s: Scalar,
    /// `H(R ‖ A ‖ M)` reduced mod ℓ.
    k: Scalar,
}

/// Checks one signature under the rule of this module: what
/// [`crate::PublicKey::verify`] and [`crate::Signed::verify`] run.
pub(crate) fn verify_one(item: BatchItem<'_>) -> bool {
    verify_batch(&[item])[0]
}

/// Checks every item; `result[i]` is exactly `verify_one(items[i])`.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<bool> {
    let mut verdicts = vec![false; items.len()];
    let keys = key_cache::strict_keys(items.iter().map(|item| &item.key.0));
    let candidates: Vec<Candidate> = items
        .iter()
        .zip(&keys.slots)
        .enumerate()
        .filter_map(|(i, (item, &key))| {
            keys.points[key]?;
            prefilter(item).map(|(r, s, k)| Candidate {
                item: i,
                key,
                r,
                s,
                k,
            })
        })
        .collect();
    let points: Vec<EdwardsPoint> = keys.points.iter().map(|p| p.unwrap_or_default()).collect();
    let mut batch = Equation::new(&points);
    for chunk in candidates.chunks(BATCH_MAX) {
        check_chunk(items, &mut batch, chunk, &mut verdicts);
    }
    verdicts
}

/// The rule's checks on `S` and `R`, and the hash `k`; `None` means the
/// item is invalid whatever the equation says. The key was checked already.
fn prefilter(item: &BatchItem<'_>) -> Option<(EdwardsPoint, Scalar, Scalar)> {
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&item.signature.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&item.signature.0[..32]);
    let r = strict_r(&r_bytes)?;
    let hash = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(item.key.0)
        .chain_update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some((r, s, k))
}

/// `R`'s point if the rule accepts it (as `verify_strict` does): it
/// decompresses, is not of small order, and re-compresses to the same
/// bytes. The last holds exactly when `y < p`: compression writes `y`
/// reduced and the sign of `x`, and the sign bit given is kept unless
/// `x = 0`, which only `y = ±1` (small order) have. This saves the inversion of a compression per signature.
fn strict_r(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_y(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes)
        .decompress()
        .filter(|r| !r.is_small_order())
}

/// Whether the low 255 bits of `bytes` (little endian) are below
/// p = 2²⁵⁵ − 19, i.e. not one of 2²⁵⁵ − 19 … 2²⁵⁵ − 1.
pub(crate) fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let at_least_p =
        bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed;
    !at_least_p
}

fn check_chunk(
    items: &[BatchItem<'_>],
    batch: &mut Equation<'_>,
    chunk: &[Candidate],
    verdicts: &mut [bool],
) {
    if chunk.len() < BATCH_MIN {
        for c in chunk {
            verdicts[c.item] = batch.holds_alone(c);
        }
        return;
    }
    if batch.holds(items, chunk) {
        for c in chunk {
            verdicts[c.item] = true;
        }
        return;
    }
    let (left, right) = chunk.split_at(chunk.len() / 2);
    check_chunk(items, batch, left, verdicts);
    check_chunk(items, batch, right, verdicts);
}

/// The batch equation over the distinct keys of one call, with scratch space
/// to merge the coefficients of each key.
struct Equation<'k> {
    /// Points of the distinct keys (a placeholder for rejected ones, which
    /// no candidate refers to).
    keys: &'k [EdwardsPoint],
    /// Per distinct key, its merged coefficient while a chunk is summed.
    key_coefficients: Vec<Option<Scalar>>,
}

impl<'k> Equation<'k> {
    fn new(keys: &'k [EdwardsPoint]) -> Equation<'k> {
        Equation {
            keys,
            key_coefficients: vec![None; keys.len()],
        }
    }

    /// Whether `[8]([s]B − [k]A − R) = 0`: the rule's equation for one
    /// signature, on the points already decompressed (the key from the
    /// cache).
    fn holds_alone(&self, c: &Candidate) -> bool {
        let minus_key = -self.keys[c.key];
        let residue =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&c.k, &minus_key, &c.s) - c.r;
        residue.is_small_order()
    }

    /// Whether `[8]Σ zᵢ(Rᵢ + kᵢAᵢ − sᵢB) = 0` for coefficients derived from
    /// the chunk: `−(Σ zᵢsᵢ)·B + Σ zᵢ·Rᵢ + Σ_A (Σ_{i: Aᵢ = A} zᵢkᵢ)·A`, times
    /// the cofactor. True whenever [`Equation::holds_alone`] holds for every
    /// candidate, whatever the coefficients: each term's residue is then of
    /// small order, and so is any combination of them.
    fn holds(&mut self, items: &[BatchItem<'_>], chunk: &[Candidate]) -> bool {
        let zs = coefficients(items, chunk);
        let mut b_coefficient = Scalar::ZERO;
        let mut used_keys: Vec<usize> = Vec::new();
        for (c, z) in chunk.iter().zip(&zs) {
            b_coefficient -= z * c.s;
            let merged = self.key_coefficients[c.key].get_or_insert_with(|| {
                used_keys.push(c.key);
                Scalar::ZERO
            });
            *merged += z * c.k;
        }
        let key_scalars: Vec<Scalar> = used_keys
            .iter()
            .map(|&key| self.key_coefficients[key].take().unwrap_or(Scalar::ZERO))
            .collect();
        debug_assert!(self.key_coefficients.iter().all(Option::is_none));
        let sum = EdwardsPoint::vartime_multiscalar_mul(
            once(b_coefficient).chain(zs).chain(key_scalars),
            once(ED25519_BASEPOINT_POINT)
                .chain(chunk.iter().map(|c| c.r))
                .chain(used_keys.iter().map(|&key| self.keys[key])),
        );
        sum.is_small_order()
    }
}

/// 128-bit coefficients, one per candidate, derived from a hash of the whole
/// chunk (every `R`, `A`, `s` and, through `k`, every message), as dalek does
/// with its transcript: a forger must fix the batch before learning them.
fn coefficients(items: &[BatchItem<'_>], chunk: &[Candidate]) -> Vec<Scalar> {
    let mut transcript = Sha512::new();
    transcript.update(b"phalanx/batch-verify/v1");
    transcript.update((chunk.len() as u64).to_le_bytes());
    for c in chunk {
        let item = &items[c.item];
        transcript.update(&item.signature.0[..32]);
        transcript.update(item.key.0);
        transcript.update(c.s.as_bytes());
        transcript.update(c.k.as_bytes());
    }
    let seed = transcript.finalize();
    let mut zs = Vec::with_capacity(chunk.len());
    for block in 0..chunk.len().div_ceil(4) as u64 {
        let out = Sha512::new()
            .chain_update(seed)
            .chain_update(block.to_le_bytes())
            .finalize();
        for z in out.chunks_exact(16) {
            let mut z_bytes = [0u8; 16];
            z_bytes.copy_from_slice(z);
            zs.push(Scalar::from(u128::from_le_bytes(z_bytes)));
        }
    }
    zs.truncate(chunk.len());
    zs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::traits::IsIdentity;
    use proptest::prelude::*;

    /// How an item in a random batch is made.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Valid,
        ForgedMessage,
        WrongKey,
        FlippedSignatureBit,
        NonCanonicalS,
        SmallOrderKey,
        SmallOrderR,
        GarbageKey,
        ZeroSignature,
        /// `R` replaced by an encoding with `y ≥ p` (some decode to points).
        NonCanonicalR,
        /// The key replaced by an encoding with `y ≥ p`.
        NonCanonicalKey,
        /// `R`'s sign bit flipped: another point, or a rejected encoding.
        FlippedRSign,
        /// Signed with `R + T`, `T` the given point of `EIGHT_TORSION`:
        /// valid under the cofactored rule, refused by `verify_strict`
        /// unless `T` is the identity.
        TorsionR(usize),
        /// Signed for the key `A + T` by the holder of `A`'s secret: valid
        /// under the cofactored rule; `verify_strict` accepts it only when
        /// `k·T = 0`.
        TorsionKey(usize),
        /// Both of the above, with two torsion points.
        TorsionBoth(usize, usize),
        /// `T` added to a valid signature's `R` afterwards: `k` changes, so
        /// it is invalid under every rule.
        TorsionRAfterSigning(usize),
        /// A `TorsionBoth` signature on another message.
        TorsionForged(usize, usize),
    }

    impl Kind {
        /// The verdict the rule must give, known from how the item is made.
        fn is_valid(self) -> bool {
            matches!(
                self,
                Kind::Valid | Kind::TorsionR(_) | Kind::TorsionKey(_) | Kind::TorsionBoth(..)
            )
        }

        fn has_torsion(self) -> bool {
            matches!(
                self,
                Kind::TorsionR(_)
                    | Kind::TorsionKey(_)
                    | Kind::TorsionBoth(..)
                    | Kind::TorsionRAfterSigning(_)
                    | Kind::TorsionForged(..)
            )
        }
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            6 => Just(Kind::Valid),
            1 => Just(Kind::ForgedMessage),
            1 => Just(Kind::WrongKey),
            1 => Just(Kind::FlippedSignatureBit),
            1 => Just(Kind::NonCanonicalS),
            1 => Just(Kind::SmallOrderKey),
            1 => Just(Kind::SmallOrderR),
            1 => Just(Kind::GarbageKey),
            1 => Just(Kind::ZeroSignature),
            1 => Just(Kind::NonCanonicalR),
            1 => Just(Kind::NonCanonicalKey),
            1 => Just(Kind::FlippedRSign),
            3 => (0..8usize).prop_map(Kind::TorsionR),
            3 => (0..8usize).prop_map(Kind::TorsionKey),
            3 => (0..8usize, 0..8usize).prop_map(|(r, a)| Kind::TorsionBoth(r, a)),
            1 => (1..8usize).prop_map(Kind::TorsionRAfterSigning),
            1 => (0..8usize, 0..8usize).prop_map(|(r, a)| Kind::TorsionForged(r, a)),
        ]
    }

    /// The identity point's encoding: small order (order 1).
    const IDENTITY: [u8; 32] = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };

    fn scalar_from_label(label: &str) -> Scalar {
        Scalar::from_bytes_mod_order_wide(&Sha512::digest(label.as_bytes()).into())
    }

    /// Signs `msg` as ed25519 does, from the secret scalar `a` and the nonce
    /// `r`, with `t_r` added to `R` and `t_a` to the key before hashing: the
    /// signer of a mixed-order point.
    fn sign_mixed(
        a: Scalar,
        r: Scalar,
        t_r: EdwardsPoint,
        t_a: EdwardsPoint,
        msg: &[u8],
    ) -> (PublicKey, Signature) {
        let key = (EdwardsPoint::mul_base(&a) + t_a).compress().0;
        let r_bytes = (EdwardsPoint::mul_base(&r) + t_r).compress().0;
        let hash = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key)
            .chain_update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        (PublicKey(key), Signature(sig))
    }

    fn make(kind: Kind, i: usize, seed: u64) -> (Vec<u8>, PublicKey, Signature) {
        let key = Keypair::insecure_from_label(&format!("batch-{seed}-{}", i % 7));
        let msg = format!("message {seed} {i}").into_bytes();
        let mut sig = key.sign_raw(&msg);
        let mut pk = key.public();
        let mut msg_out = msg.clone();
        // Secrets for the mixed-order signer; keys repeat as above.
        let a = scalar_from_label(&format!("secret-{seed}-{}", i % 7));
        let r = scalar_from_label(&format!("nonce-{seed}-{i}"));
        let none = EdwardsPoint::default();
        match kind {
            Kind::Valid => {}
            Kind::ForgedMessage => msg_out.push(b'!'),
            Kind::WrongKey => pk = Keypair::insecure_from_label(&format!("other-{i}")).public(),
            Kind::FlippedSignatureBit => sig.0[(i * 13) % 64] ^= 1 << (i % 8),
            Kind::NonCanonicalS => {
                // S + l is a non-canonical encoding of the same scalar.
                let bumped = add_l(&sig.0[32..]);
                sig.0[32..].copy_from_slice(&bumped);
            }
            Kind::SmallOrderKey => pk = PublicKey(IDENTITY),
            Kind::SmallOrderR => sig.0[..32].copy_from_slice(&IDENTITY),
            Kind::GarbageKey => {
                pk = PublicKey([0xff; 32]);
            }
            Kind::ZeroSignature => sig = Signature([0u8; 64]),
            Kind::NonCanonicalR => sig.0[..32].copy_from_slice(&non_canonical_y(i)),
            Kind::NonCanonicalKey => pk = PublicKey(non_canonical_y(i)),
            Kind::FlippedRSign => sig.0[31] ^= 0x80,
            Kind::TorsionR(t) => (pk, sig) = sign_mixed(a, r, EIGHT_TORSION[t], none, &msg),
            Kind::TorsionKey(t) => (pk, sig) = sign_mixed(a, r, none, EIGHT_TORSION[t], &msg),
            Kind::TorsionBoth(tr, ta) => {
                (pk, sig) = sign_mixed(a, r, EIGHT_TORSION[tr], EIGHT_TORSION[ta], &msg);
            }
            Kind::TorsionRAfterSigning(t) => {
                (pk, sig) = sign_mixed(a, r, none, none, &msg);
                let mut r_bytes = [0u8; 32];
                r_bytes.copy_from_slice(&sig.0[..32]);
                let moved = CompressedEdwardsY(r_bytes).decompress().unwrap() + EIGHT_TORSION[t];
                sig.0[..32].copy_from_slice(moved.compress().as_bytes());
            }
            Kind::TorsionForged(tr, ta) => {
                (pk, sig) = sign_mixed(a, r, EIGHT_TORSION[tr], EIGHT_TORSION[ta], &msg);
                msg_out.push(b'!');
            }
        }
        (msg_out, pk, sig)
    }

    /// The rule written out from its definition, point by point, with no
    /// cache, no batch, no shortcut on encodings: the reference that
    /// `verify_one` and `verify_batch` must both match.
    fn reference(message: &[u8], key: &PublicKey, signature: &Signature) -> bool {
        let canonical_point = |bytes: &[u8]| -> Option<EdwardsPoint> {
            let compressed = CompressedEdwardsY::from_slice(bytes).ok()?;
            let point = compressed.decompress()?;
            let small_order = (Scalar::from(8u8) * point).is_identity();
            (!small_order && point.compress() == compressed).then_some(point)
        };
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature.0[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let (Some(a), Some(r)) = (canonical_point(&key.0), canonical_point(&signature.0[..32]))
        else {
            return false;
        };
        let mut hash = Sha512::new();
        hash.update(&signature.0[..32]);
        hash.update(key.0);
        hash.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let residue = EdwardsPoint::mul_base(&s) - k * a - r;
        (Scalar::from(8u8) * residue).is_identity()
    }

    /// The `i`-th (mod 38) encoding whose `y` is p + j, j < 19, with either
    /// sign bit.
    fn non_canonical_y(i: usize) -> [u8; 32] {
        let j = (i % 19) as u8;
        let mut b = [0xffu8; 32];
        b[0] = 0xed + j;
        b[31] = if i % 38 < 19 { 0x7f } else { 0xff };
        b
    }

    /// The checks the batch verifier made on `R` before: decompress, reject
    /// small order, re-compress and compare.
    fn reference_strict_r(bytes: &[u8; 32]) -> bool {
        CompressedEdwardsY(*bytes)
            .decompress()
            .is_some_and(|r| !r.is_small_order() && r.compress().0 == *bytes)
    }

    /// The order of each point of `EIGHT_TORSION`: [4] has order 2, [2] and
    /// [6] order 4, the odd ones order 8.
    fn torsion_order(t: usize) -> usize {
        let mut p = EIGHT_TORSION[t];
        let mut order = 1;
        while !p.is_identity() {
            p += EIGHT_TORSION[t];
            order += 1;
        }
        order
    }

    #[test]
    fn eight_torsion_is_the_group_of_order_8() {
        let orders: Vec<usize> = (0..8).map(torsion_order).collect();
        assert_eq!(orders, [1, 8, 4, 8, 2, 8, 4, 8]);
    }

    /// `strict_r` replaces decompress → compress → compare with a check on
    /// the bytes. Checked on every small-order encoding (both sign bits),
    /// every `y ≥ p` (both sign bits), mixed-order points, and many valid
    /// and random encodings.
    #[test]
    fn strict_r_matches_recompression() {
        let mut encodings: Vec<[u8; 32]> = Vec::new();
        let mut distinct: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|t| t.compress().0).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 8, "eight distinct small-order points");
        for t in &EIGHT_TORSION {
            assert!(t.is_small_order());
            let b = t.compress().0;
            encodings.push(b);
            let mut flipped = b;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        encodings.extend((0..38).map(non_canonical_y));
        for y in 0u8..=40 {
            for sign in [0u8, 0x80] {
                let mut b = [0u8; 32];
                b[0] = y;
                b[31] = sign;
                encodings.push(b);
            }
        }
        for i in 0..2000u32 {
            let key = Keypair::insecure_from_label(&format!("r-{}", i % 5));
            let sig = key.sign_raw(&i.to_le_bytes());
            let mut r = [0u8; 32];
            r.copy_from_slice(&sig.0[..32]);
            encodings.push(r);
            let mixed = CompressedEdwardsY(r).decompress().unwrap() + EIGHT_TORSION[i as usize % 8];
            encodings.push(mixed.compress().0);
            r[31] ^= 0x80;
            encodings.push(r);
            encodings.push(crate::Digest::sha256(&i.to_le_bytes()).0);
        }
        let mut accepted = 0;
        for b in &encodings {
            let expected = reference_strict_r(b);
            assert_eq!(strict_r(b).is_some(), expected, "R = {}", hex::encode(b));
            accepted += usize::from(expected);
        }
        assert!(
            accepted > 4000,
            "the valid and mixed-order R values are accepted"
        );
    }

    /// s + l (little endian), the group order l = 2^252 + 27742317777372353535851937790883648493.
    fn add_l(s: &[u8]) -> [u8; 32] {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = s[i] as u16 + L[i] as u16 + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    /// Checks a batch made of `kinds`: for every item, the batch verdict,
    /// the verdict alone (`verify_one`, what `Signed::verify` runs), the
    /// public `PublicKey::verify` and the reference are one and the same,
    /// and the one the item's kind calls for. `verify_strict` accepts
    /// nothing the rule refuses, and agrees with it wherever no torsion was
    /// added.
    fn agree(kinds: &[Kind], seed: u64) -> Result<(), TestCaseError> {
        let made: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| make(*k, i, seed))
            .collect();
        let items: Vec<BatchItem<'_>> = made
            .iter()
            .map(|(m, k, s)| BatchItem {
                message: m,
                key: k,
                signature: s,
            })
            .collect();
        let batched = verify_batch(&items);
        for (i, item) in items.iter().enumerate() {
            let kind = kinds[i];
            let alone = verify_one(*item);
            let public = item.key.verify(item.message, item.signature).is_ok();
            let expected = reference(item.message, item.key, item.signature);
            let strict = item.key.verify_strict(item.message, item.signature).is_ok();
            prop_assert_eq!(
                batched[i],
                alone,
                "item {} of kind {:?}: batch vs alone",
                i,
                kind
            );
            prop_assert_eq!(public, alone, "item {} of kind {:?}: public", i, kind);
            prop_assert_eq!(alone, expected, "item {} of kind {:?}: reference", i, kind);
            prop_assert_eq!(expected, kind.is_valid(), "item {} of kind {:?}", i, kind);
            prop_assert!(
                !strict || expected,
                "item {} of kind {:?}: strict only",
                i,
                kind
            );
            if !kind.has_torsion() {
                prop_assert_eq!(strict, expected, "item {} of kind {:?}: strict", i, kind);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn batch_agrees_with_single_on_random_mixes(kinds in prop::collection::vec(kind(), 0..40), seed in any::<u64>()) {
            agree(&kinds, seed)?;
        }
    }

    /// Mixed-order signatures that `verify_strict` refuses, each put alone
    /// among valid ones in batches of many sizes. Before the cofactor, such a
    /// signature failed alone and passed the batch equation whenever its
    /// coefficient killed its torsion residue (an even coefficient for a
    /// residue of order 2: about half the batches), so nodes that batched
    /// it differently gave it different verdicts.
    #[test]
    fn a_mixed_order_signature_gets_one_verdict_alone_and_in_every_batch() {
        let crafted_kinds = [
            Kind::TorsionR(4),
            Kind::TorsionKey(4),
            Kind::TorsionBoth(2, 1),
        ];
        for (which, crafted_kind) in crafted_kinds.into_iter().enumerate() {
            let (m, k, s) = make(crafted_kind, 3, 7);
            assert!(
                k.verify_strict(&m, &s).is_err(),
                "{crafted_kind:?} is crafted to fail verify_strict"
            );
            let crafted = BatchItem {
                message: &m,
                key: &k,
                signature: &s,
            };
            let alone = verify_one(crafted);
            for size in 1..=40usize {
                let fillers: Vec<_> = (0..size - 1)
                    .map(|i| make(Kind::Valid, i, 1000 * which as u64 + size as u64))
                    .collect();
                let mut items: Vec<BatchItem<'_>> = fillers
                    .iter()
                    .map(|(m, k, s)| BatchItem {
                        message: m,
                        key: k,
                        signature: s,
                    })
                    .collect();
                let at = size / 2;
                items.insert(at, crafted);
                let verdicts = verify_batch(&items);
                assert_eq!(
                    verdicts[at], alone,
                    "{crafted_kind:?} in a batch of {size}: batch verdict differs from alone"
                );
                let fillers_pass = verdicts.iter().enumerate().all(|(i, ok)| *ok || i == at);
                assert!(fillers_pass, "batch of {size}");
            }
            assert!(alone, "{crafted_kind:?} is valid under the cofactored rule");
        }
    }

    /// Every batch size from 1 to 24 (below, at and above `BATCH_MIN`), each
    /// position in turn holding a mixed-order item of each kind, the rest a
    /// fixed mix of valid, invalid and mixed-order items.
    #[test]
    fn batches_of_every_small_size_agree() {
        let mix = [
            Kind::Valid,
            Kind::TorsionKey(6),
            Kind::Valid,
            Kind::TorsionRAfterSigning(4),
            Kind::TorsionR(3),
            Kind::Valid,
            Kind::ForgedMessage,
            Kind::TorsionBoth(4, 4),
        ];
        let probes = [
            Kind::TorsionR(4),
            Kind::TorsionKey(1),
            Kind::TorsionBoth(7, 2),
            Kind::TorsionRAfterSigning(2),
            Kind::TorsionForged(4, 0),
        ];
        for size in 1..=24usize {
            for (p, probe) in probes.iter().enumerate() {
                let at = (size * 5 + p) % size;
                let kinds: Vec<Kind> = (0..size)
                    .map(|i| if i == at { *probe } else { mix[i % mix.len()] })
                    .collect();
                agree(&kinds, (size * 10 + p) as u64).unwrap();
            }
        }
    }

    #[test]
    fn large_batch_with_one_forgery_finds_it() {
        let mut kinds = vec![Kind::Valid; 700];
        kinds[123] = Kind::ForgedMessage;
        kinds[650] = Kind::WrongKey;
        agree(&kinds, 1).unwrap();
    }

    #[test]
    fn many_signers_with_bad_items_spread_over_chunks() {
        // More candidates than BATCH_MAX, so at least two chunks.
        let mut kinds = vec![Kind::Valid; BATCH_MAX + 300];
        for (i, kind) in [
            Kind::ForgedMessage,
            Kind::NonCanonicalR,
            Kind::FlippedRSign,
            Kind::NonCanonicalKey,
            Kind::SmallOrderR,
            Kind::TorsionR(4),
            Kind::TorsionRAfterSigning(4),
            Kind::TorsionKey(2),
            Kind::TorsionForged(1, 4),
        ]
        .into_iter()
        .enumerate()
        {
            kinds[17 + 89 * i] = kind;
        }
        agree(&kinds, 2).unwrap();
        agree(&[Kind::Valid; BATCH_MAX + 1], 3).unwrap();
        agree(&[Kind::TorsionBoth(4, 4); BATCH_MAX + 1], 4).unwrap();
    }

    #[test]
    fn non_canonical_s_is_rejected_by_strict() {
        let (m, k, s) = make(Kind::NonCanonicalS, 0, 0);
        assert!(k.verify_strict(&m, &s).is_err());
    }
}
