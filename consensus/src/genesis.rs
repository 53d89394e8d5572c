//! The genesis file: chain id, validators, consensus parameters and the
//! opening balances. Its hash is block 1's `prev_hash`.

use crate::ledger::Account;
use crate::{Config, ValidatorSet};
use phalanx_crypto::{codec, Address, Digest, HashDomain, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One validator as the genesis file lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub name: String,
    pub public_key: PublicKey,
    /// Where peers dial it: a libp2p multiaddr such as
    /// `/ip4/127.0.0.1/tcp/26000`.
    pub p2p_address: String,
}

/// An opening balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: u64,
}

/// Consensus parameters as the genesis file holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    pub checkpoint_interval: u64,
    pub window: u64,
    pub batch_txs_max: usize,
    pub batch_bytes_max: u64,
    pub batch_delay_ms: u64,
    pub pipeline_max: u64,
    pub propose_timeout_ms: u64,
    pub view_timeout_ms: u64,
    pub view_timeout_ms_max: u64,
    pub retransmit_ms: u64,
    pub pending_txs_max: usize,
}

impl Default for ConsensusParams {
    /// The defaults for four validators; [`ConsensusParams::for_validators`]
    /// for other sizes.
    fn default() -> Self {
        ConsensusParams::for_validators(4)
    }
}

impl ConsensusParams {
    /// The defaults for `n` validators: the batch byte limit shrinks as n
    /// grows so that the largest NEW-VIEW still fits one message.
    pub fn for_validators(n: usize) -> Self {
        let keys = (0..n.max(1)).map(|i| PublicKey([i as u8; 32])).collect();
        let c = Config::new("x", ValidatorSet::new(keys));
        ConsensusParams {
            checkpoint_interval: c.checkpoint_interval,
            window: c.window,
            batch_txs_max: c.batch_txs_max,
            batch_bytes_max: c.batch_bytes_max,
            batch_delay_ms: c.batch_delay_ms,
            pipeline_max: c.pipeline_max,
            propose_timeout_ms: c.propose_timeout_ms,
            view_timeout_ms: c.view_timeout_ms,
            view_timeout_ms_max: c.view_timeout_ms_max,
            retransmit_ms: c.retransmit_ms,
            pending_txs_max: c.pending_txs_max,
        }
    }
}

/// The genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time_ms: u64,
    /// A test network may run traitor behaviours; a real one refuses them.
    #[serde(default)]
    pub test_network: bool,
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub consensus: ConsensusParams,
    pub accounts: Vec<GenesisAccount>,
}

/// Why a genesis file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("genesis: {field}: {reason}")]
pub struct GenesisError {
    pub field: String,
    pub reason: String,
}

impl Genesis {
    /// The genesis hash: over the canonical encoding of the whole file.
    pub fn hash(&self) -> Digest {
        Digest::of(HashDomain::Genesis, &codec::encode(self))
    }

    pub fn validator_set(&self) -> ValidatorSet {
        ValidatorSet::new(self.validators.iter().map(|v| v.public_key).collect())
    }

    /// The consensus config this genesis defines.
    pub fn consensus_config(&self) -> Config {
        let p = &self.consensus;
        Config {
            chain_id: self.chain_id.clone(),
            validators: self.validator_set(),
            checkpoint_interval: p.checkpoint_interval,
            window: p.window,
            batch_txs_max: p.batch_txs_max,
            batch_bytes_max: p.batch_bytes_max,
            batch_delay_ms: p.batch_delay_ms,
            pipeline_max: p.pipeline_max,
            propose_timeout_ms: p.propose_timeout_ms,
            view_timeout_ms: p.view_timeout_ms,
            view_timeout_ms_max: p.view_timeout_ms_max,
            retransmit_ms: p.retransmit_ms,
            pending_txs_max: p.pending_txs_max,
            quorum_override: None,
        }
    }

    pub fn accounts(&self) -> BTreeMap<Address, Account> {
        self.accounts
            .iter()
            .map(|a| {
                (
                    a.address,
                    Account {
                        balance: a.balance,
                        nonce: 0,
                    },
                )
            })
            .collect()
    }

    pub fn total_supply(&self) -> u128 {
        self.accounts.iter().map(|a| a.balance as u128).sum()
    }

    /// Checks everything a node relies on, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |field: &str, reason: String| {
            Err(GenesisError {
                field: field.to_string(),
                reason,
            })
        };
        if self.validators.is_empty() {
            return bad("validators", "at least one validator is needed".into());
        }
        let mut keys: Vec<_> = self.validators.iter().map(|v| v.public_key).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != self.validators.len() {
            return bad("validators", "a public key appears twice".into());
        }
        let mut addresses: Vec<_> = self.accounts.iter().map(|a| a.address).collect();
        addresses.sort();
        addresses.dedup();
        if addresses.len() != self.accounts.len() {
            return bad("accounts", "an address appears twice".into());
        }
        if self.total_supply() > u64::MAX as u128 {
            return bad("accounts", "total supply does not fit in 64 bits".into());
        }
        self.consensus_config().validate().map_err(
            |crate::ConfigError::Invalid { field, reason }| GenesisError {
                field: format!("consensus.{field}"),
                reason,
            },
        )
    }
}
