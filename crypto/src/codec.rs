//! Canonical encoding: bincode with fixed-width little-endian integers.
//!
//! Everything signed or hashed is encoded here, and nothing signed or hashed
//! holds a hash map, so equal values always give equal bytes. Decoding takes
//! an explicit byte limit: a hostile length prefix fails with
//! [`DecodeError::TooLarge`] instead of allocating.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge { len: usize, limit: u64 },
    #[error("malformed encoding: {reason}")]
    Malformed { reason: String },
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
}

/// The canonical bytes of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing our own in-memory types cannot fail: no maps with
    // non-string keys, no unsized sequences.
    options()
        .serialize(value)
        .expect("canonical encoding of an in-memory value")
}

/// Appends the canonical bytes of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    options()
        .serialize_into(out, value)
        .expect("canonical encoding of an in-memory value")
}

/// The canonical encoded size of `value`, without allocating it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    options()
        .serialized_size(value)
        .expect("canonical encoding of an in-memory value")
}

/// Decodes `bytes`, reading at most `limit` bytes and rejecting trailing
/// bytes (so one value has exactly one encoding).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, DecodeError> {
    if bytes.len() as u64 > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    options()
        .with_limit(limit)
        .reject_trailing_bytes()
        .deserialize(bytes)
        .map_err(|e| match *e {
            bincode::ErrorKind::SizeLimit => DecodeError::TooLarge {
                len: bytes.len(),
                limit,
            },
            other => DecodeError::Malformed {
                reason: other.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let v: (u64, Vec<u8>, String) = (7, vec![1, 2, 3], "x".into());
        let bytes = encode(&v);
        assert_eq!(encoded_len(&v), bytes.len() as u64);
        assert_eq!(decode::<(u64, Vec<u8>, String)>(&bytes, 1024).unwrap(), v);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<(u64, Vec<u8>, String)>(&longer, 1024),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // A Vec<u64> claiming 2^60 elements, followed by a few bytes.
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        let err = decode::<Vec<u64>>(&bytes, 1 << 20).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooLarge { .. } | DecodeError::Malformed { .. }
        ));
        let big = vec![0u8; 2048];
        assert!(matches!(
            decode::<Vec<u8>>(&big, 1024),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
