//! Client transactions: signed transfers between accounts.

use phalanx_crypto::{Address, Digest, HashDomain, Signed, SignedPayload};
use serde::{Deserialize, Serialize};

/// The largest encoded transaction accepted anywhere.
pub const TX_BYTES_MAX: u64 = 1024;

/// What a client signs: move `amount` from the signer's account to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub chain_id: String,
    pub to: Address,
    pub amount: u64,
    /// The sender's next nonce; transactions from one account execute in
    /// nonce order, each nonce once.
    pub nonce: u64,
}

impl SignedPayload for Transfer {
    const DOMAIN: &'static str = "phalanx/transfer/v1";
}

/// A transaction as submitted: the transfer, its sender's public key and
/// signature.
pub type Transaction = Signed<Transfer>;

/// The hash that names a transaction: over its whole signed encoding.
pub fn tx_hash(tx: &Transaction) -> Digest {
    Digest::of(HashDomain::Transaction, &encode_tx(tx))
}

/// The size of a transaction on the wire.
pub fn tx_len(tx: &Transaction) -> u64 {
    let Signed {
        payload: Transfer { chain_id, .. },
        ..
    } = tx;
    // The length prefix and bytes of the chain id, the address, amount,
    // nonce, public key and signature.
    8 + chain_id.len() as u64 + 20 + 8 + 8 + 32 + 64
}

/// `codec::encode(tx)`, written out: every transaction is hashed on every
/// validator, and serde's field-by-field (for keys and signatures,
/// byte-by-byte) encoding costs more than the SHA-256 over it. The
/// exhaustive destructuring stops compiling if a field is added; a test
/// checks the bytes against the codec.
fn encode_tx(tx: &Transaction) -> Vec<u8> {
    let Signed {
        payload:
            Transfer {
                chain_id,
                to,
                amount,
                nonce,
            },
        signer,
        signature,
    } = tx;
    let mut out = Vec::with_capacity(tx_len(tx) as usize);
    out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(&to.0);
    out.extend_from_slice(&amount.to_le_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
    out.extend_from_slice(&signer.0);
    out.extend_from_slice(&signature.0);
    debug_assert_eq!(out.len() as u64, tx_len(tx));
    out
}

/// The Merkle root of a list of transactions' hashes.
pub fn merkle_root_of(txs: &[Transaction]) -> Digest {
    phalanx_crypto::merkle::root(&txs.iter().map(tx_hash).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::{codec, Keypair};

    #[test]
    fn hand_encoding_matches_the_codec() {
        let key = Keypair::insecure_from_label("client");
        for (chain_id, amount, nonce) in [("", 0, 0), ("phalanx-test", 7, 1), ("x", u64::MAX, 9)] {
            let tx = Signed::sign(
                Transfer {
                    chain_id: chain_id.into(),
                    to: Address([0xa5; 20]),
                    amount,
                    nonce,
                },
                &key,
                chain_id,
            );
            let bytes = codec::encode(&tx);
            assert_eq!(encode_tx(&tx), bytes, "chain id {chain_id:?}");
            assert_eq!(tx_len(&tx), codec::encoded_len(&tx));
            assert_eq!(tx_hash(&tx), Digest::of(HashDomain::Transaction, &bytes));
        }
    }
}
