//! The client workload: funded genesis accounts sending signed transfers
//! with consecutive nonces, resubmitting what has not executed (a mempool
//! is volatile: a crash loses it, and a lost nonce blocks every later one).

use phalanx_consensus::{tx_hash, GenesisAccount, Transaction, Transfer};
use phalanx_crypto::{Address, Digest, Keypair, Signed};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

use super::config::WorkloadConfig;

/// Opening balance of every client account.
pub const CLIENT_BALANCE: u64 = 1_000_000_000_000;
/// Accounts that only receive.
const SINKS: usize = 4;

struct Client {
    key: Keypair,
    address: Address,
    next_nonce: u64,
    /// Nonce → (transaction, when last gossiped).
    unconfirmed: BTreeMap<u64, (Transaction, u64)>,
}

pub struct Workload {
    cfg: WorkloadConfig,
    chain_id: String,
    clients: Vec<Client>,
    by_address: BTreeMap<Address, usize>,
    recipients: Vec<Address>,
    pub created: u64,
    pub resubmitted: u64,
    pub resigned: u64,
}

impl Workload {
    pub fn new(cfg: WorkloadConfig, chain_id: &str) -> Workload {
        let clients: Vec<Client> = (0..cfg.clients)
            .map(|i| {
                let key = Keypair::insecure_from_label(&format!("sim-client-{i}"));
                Client {
                    address: key.address(),
                    key,
                    next_nonce: 0,
                    unconfirmed: BTreeMap::new(),
                }
            })
            .collect();
        let by_address = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.address, i))
            .collect();
        let mut recipients: Vec<Address> = clients.iter().map(|c| c.address).collect();
        recipients.extend(
            (0..SINKS).map(|i| Keypair::insecure_from_label(&format!("sim-sink-{i}")).address()),
        );
        Workload {
            cfg,
            chain_id: chain_id.to_string(),
            clients,
            by_address,
            recipients,
            created: 0,
            resubmitted: 0,
            resigned: 0,
        }
    }

    /// The funded accounts for the genesis file.
    pub fn genesis_accounts(&self) -> Vec<GenesisAccount> {
        self.clients
            .iter()
            .map(|c| GenesisAccount {
                address: c.address,
                balance: CLIENT_BALANCE,
            })
            .collect()
    }

    /// The mean time between two bursts.
    pub fn mean_gap_ms(&self) -> f64 {
        let per_burst = (1 + self.cfg.burst_max) as f64 / 2.0;
        1000.0 * per_burst / self.cfg.tx_per_sec.max(0.001)
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.cfg
    }

    /// One client submits 1..=burst_max new transfers (fewer if it has too
    /// many unconfirmed).
    pub fn burst(&mut self, now_ms: u64, rng: &mut ChaCha8Rng) -> Vec<Transaction> {
        let c = rng.gen_range(0..self.clients.len());
        let count = rng.gen_range(1..=self.cfg.burst_max.max(1));
        let mut txs = Vec::new();
        for _ in 0..count {
            if self.clients[c].unconfirmed.len() >= self.cfg.unconfirmed_max {
                break;
            }
            let mut to = self.recipients[rng.gen_range(0..self.recipients.len())];
            if to == self.clients[c].address {
                to = self.recipients[self.recipients.len() - 1];
            }
            let amount = rng.gen_range(1..=100);
            let client = &mut self.clients[c];
            let tx = Signed::sign(
                Transfer {
                    chain_id: self.chain_id.clone(),
                    to,
                    amount,
                    nonce: client.next_nonce,
                },
                &client.key,
                &self.chain_id,
            );
            client
                .unconfirmed
                .insert(client.next_nonce, (tx.clone(), now_ms));
            client.next_nonce += 1;
            self.created += 1;
            txs.push(tx);
        }
        txs
    }

    /// Unconfirmed transactions last gossiped at least `resubmit_ms` ago.
    pub fn due_for_resubmit(&mut self, now_ms: u64) -> Vec<Transaction> {
        let period = self.cfg.resubmit_ms;
        let mut txs = Vec::new();
        for c in &mut self.clients {
            for (tx, sent) in c.unconfirmed.values_mut() {
                if now_ms.saturating_sub(*sent) >= period {
                    *sent = now_ms;
                    txs.push(tx.clone());
                }
            }
        }
        self.resubmitted += txs.len() as u64;
        txs
    }

    /// A transfer from `from` with `nonce` executed (on the agreed chain).
    pub fn confirm(&mut self, from: &Address, nonce: u64) {
        if let Some(&c) = self.by_address.get(from) {
            self.clients[c].unconfirmed.remove(&nonce);
        }
    }

    /// A transfer was committed but failed (its nonce was not yet the
    /// account's: an earlier one was lost or reordered). Its bytes are
    /// spent — a mempool refuses a committed transaction — so the client
    /// signs a new transfer for the same nonce, sent at the next resubmit.
    pub fn failed(&mut self, from: &Address, nonce: u64, hash: &Digest) {
        let Some(&c) = self.by_address.get(from) else {
            return;
        };
        let client = &mut self.clients[c];
        let Some((tx, sent)) = client.unconfirmed.get_mut(&nonce) else {
            return;
        };
        if tx_hash(tx) != *hash {
            return;
        }
        let mut transfer = tx.payload.clone();
        transfer.amount += 1;
        *tx = Signed::sign(transfer, &client.key, &self.chain_id);
        *sent = 0;
        self.resigned += 1;
    }

    pub fn unconfirmed(&self) -> usize {
        self.clients.iter().map(|c| c.unconfirmed.len()).sum()
    }

    /// Each client's address and the nonce its account must reach once
    /// everything it submitted executed.
    pub fn expected_nonces(&self) -> impl Iterator<Item = (Address, u64)> + '_ {
        self.clients.iter().map(|c| (c.address, c.next_nonce))
    }
}
