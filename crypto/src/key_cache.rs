//! Public keys as curve points, decompressed once: senders repeat, and a
//! decompression (a field exponentiation) costs about as much as the rest of
//! a batched verification of one signature.
//!
//! The cache is process-wide and bounded: two generations of at most
//! [`GENERATION_MAX`] keys each, the older dropped when the newer fills (a
//! cheap approximation of least-recently-used). It holds only keys that
//! the rule of `batch` accepts as keys (canonical encodings of points not of
//! small order); the point is a pure function of the 32 bytes, so whatever is in
//! the cache cannot change a verdict, only its cost.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Keys per generation; the cache holds at most twice this (about 200 bytes
/// each).
const GENERATION_MAX: usize = 4096;

#[derive(Default)]
struct Generations {
    current: HashMap<[u8; 32], EdwardsPoint>,
    previous: HashMap<[u8; 32], EdwardsPoint>,
}

impl Generations {
    fn get(&mut self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        if let Some(point) = self.current.get(key) {
            return Some(*point);
        }
        let point = *self.previous.get(key)?;
        self.insert(*key, point);
        Some(point)
    }

    fn insert(&mut self, key: [u8; 32], point: EdwardsPoint) {
        if self.current.len() >= GENERATION_MAX {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, point);
        debug_assert!(self.current.len() <= GENERATION_MAX);
    }
}

static CACHE: LazyLock<Mutex<Generations>> = LazyLock::new(Mutex::default);

/// The distinct keys of a batch, each resolved to its point or to `None`
/// when the rule rejects it as a key.
pub(crate) struct StrictKeys {
    /// One entry per distinct key, in order of first appearance.
    pub points: Vec<Option<EdwardsPoint>>,
    /// For each input key, its index in `points`.
    pub slots: Vec<usize>,
}

/// Resolves `keys`, decompressing only those neither repeated in `keys` nor
/// cached.
pub(crate) fn strict_keys<'a>(keys: impl ExactSizeIterator<Item = &'a [u8; 32]>) -> StrictKeys {
    let mut distinct: Vec<[u8; 32]> = Vec::new();
    let mut slot_of: HashMap<[u8; 32], usize> = HashMap::new();
    let mut slots = Vec::with_capacity(keys.len());
    for key in keys {
        let next = distinct.len();
        let slot = *slot_of.entry(*key).or_insert(next);
        if slot == next {
            distinct.push(*key);
        }
        slots.push(slot);
    }
    let mut points: Vec<Option<EdwardsPoint>> = {
        // A poisoned lock still guards a consistent map of correct points.
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        distinct.iter().map(|key| cache.get(key)).collect()
    };
    let mut fresh = Vec::new();
    for (key, point) in distinct.iter().zip(points.iter_mut()) {
        if point.is_none() {
            *point = strict_key(key);
            if let Some(p) = point {
                fresh.push((*key, *p));
            }
        }
    }
    if !fresh.is_empty() {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        for (key, point) in fresh {
            cache.insert(key, point);
        }
    }
    StrictKeys { points, slots }
}

/// The key's point if the rule of `batch` accepts it as a key: a canonical
/// encoding (`y < p`) of a point not of small order. `verify_strict` takes
/// the same keys and also non-canonical encodings (`y ≥ p`). Honest keys are
/// compressed points, always canonical; refusing the others costs a byte
/// comparison and gives every accepted key exactly one encoding, hence one
/// address.
fn strict_key(key: &[u8; 32]) -> Option<EdwardsPoint> {
    if !crate::batch::is_canonical_y(key) {
        return None;
    }
    CompressedEdwardsY(*key)
        .decompress()
        .filter(|point| !point.is_small_order())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    /// Encodings with `y = p + j` (j < 19), either sign bit.
    fn non_canonical_keys() -> Vec<[u8; 32]> {
        (0..38u8)
            .map(|i| {
                let mut b = [0xffu8; 32];
                b[0] = 0xed + i % 19;
                b[31] = if i < 19 { 0x7f } else { 0xff };
                b
            })
            .collect()
    }

    /// Keys resolve as dalek's `verify_strict` takes them, except that a
    /// non-canonical encoding is refused; a mixed-order key is a key.
    #[test]
    fn repeated_and_invalid_keys_resolve_like_dalek_but_canonical_only() {
        let a = Keypair::insecure_from_label("cache-a").public().0;
        let b = Keypair::insecure_from_label("cache-b").public().0;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        let mixed_order = (CompressedEdwardsY(a).decompress().unwrap()
            + curve25519_dalek::constants::EIGHT_TORSION[1])
            .compress()
            .0;
        let mut keys = vec![a, b, identity, a, off_curve, b, a, mixed_order];
        keys.extend(non_canonical_keys());
        let mut dalek_takes_non_canonical = 0;
        // Twice: the second time every valid key comes from the cache.
        for _ in 0..2 {
            let resolved = strict_keys(keys.iter());
            assert_eq!(resolved.points.len(), keys.len() - 3);
            assert_eq!(resolved.slots[..7], [0, 1, 2, 0, 3, 1, 0]);
            for (key, slot) in keys.iter().zip(&resolved.slots) {
                let dalek = ed25519_dalek::VerifyingKey::from_bytes(key)
                    .ok()
                    .filter(|k| !k.is_weak());
                let canonical = dalek.is_some_and(|k| k.to_edwards().compress().0 == *key);
                dalek_takes_non_canonical += usize::from(dalek.is_some() && !canonical);
                assert_eq!(
                    resolved.points[*slot].map(|p| p.compress().0),
                    dalek
                        .filter(|_| canonical)
                        .map(|k| k.to_edwards().compress().0),
                    "key {}",
                    hex::encode(key)
                );
            }
            assert!(resolved.points[resolved.slots[7]].is_some(), "mixed order");
        }
        assert!(
            dalek_takes_non_canonical > 0,
            "some y >= p decompress: the canonical check is what refuses them"
        );
    }

    #[test]
    fn generations_stay_bounded() {
        let mut g = Generations::default();
        let point = CompressedEdwardsY(Keypair::insecure_from_label("g").public().0)
            .decompress()
            .unwrap();
        for i in 0..(3 * GENERATION_MAX) as u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            g.insert(key, point);
            assert!(g.current.len() + g.previous.len() <= 2 * GENERATION_MAX);
        }
        // The most recent keys are still there, the oldest are gone.
        let newest = ((3 * GENERATION_MAX - 1) as u32).to_le_bytes();
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&newest);
        assert!(g.get(&key).is_some());
        assert!(g.get(&[0u8; 32]).is_none());
    }
}
