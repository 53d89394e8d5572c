//! Client transactions: signed transfers between accounts.

use phalanx_crypto::{codec, Address, Digest, HashDomain, Signed, SignedPayload};
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
    Digest::of(HashDomain::Transaction, &codec::encode(tx))
}

/// The size of a transaction on the wire.
pub fn tx_len(tx: &Transaction) -> u64 {
    codec::encoded_len(tx)
}

/// The Merkle root of a list of transactions' hashes.
pub fn merkle_root_of(txs: &[Transaction]) -> Digest {
    phalanx_crypto::merkle::root(&txs.iter().map(tx_hash).collect::<Vec<_>>())
}
