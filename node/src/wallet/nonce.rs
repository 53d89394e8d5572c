//! Choosing the next nonce, so several sends in a row from one account get
//! consecutive nonces without waiting for each other to commit.
//!
//! The node tells the committed next nonce and the next one after its own
//! pending transactions. A node that has not yet heard of our last send
//! (another node, or gossip still in flight) would hand out a nonce we have
//! already used, so the wallet also remembers, next to the key
//! (`<key file>.nonce`), the nonce after its last send and that send's hash.
//! The remembered nonce wins when it is ahead — unless the node shows it is
//! stale: our last send committed and failed (a failed transaction uses no
//! nonce), or no node knows it long after it was sent (it was lost).

use super::client::AccountInfo;
use super::WalletError;
use phalanx_crypto::{Address, Digest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A send the node has never heard of after this long is taken as lost.
pub const LOST_AFTER_MS: u64 = 60_000;

/// What the wallet remembers about its last send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceState {
    pub chain_id: String,
    pub address: Address,
    /// The nonce after the last transaction sent.
    pub next_nonce: u64,
    pub last_hash: Digest,
    pub sent_at_ms: u64,
}

/// What the node says about our last send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastSend {
    Pending,
    Executed,
    Failed,
    Unknown,
}

/// The state file for the key at `key_path`.
pub fn state_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".nonce");
    PathBuf::from(name)
}

/// The remembered state, if it is for this chain and account. A missing or
/// unreadable file is no state: the node's word is used.
pub fn load(path: &Path, chain_id: &str, address: &Address) -> Option<NonceState> {
    let text = std::fs::read_to_string(path).ok()?;
    let state: NonceState = serde_json::from_str(&text).ok()?;
    (state.chain_id == chain_id && state.address == *address).then_some(state)
}

/// Replaces the state file atomically (write, then rename), mode 0600.
pub fn store(path: &Path, state: &NonceState) -> Result<(), WalletError> {
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".tmp{}", std::process::id()));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(&tmp);
    let text = serde_json::to_string_pretty(state).expect("nonce state serializes");
    super::keystore::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).map_err(WalletError::io(format!("replace {}", path.display())))
}

/// Whether the remembered nonce is worth asking the node about at all.
pub fn remembered_ahead(account: &AccountInfo, state: Option<&NonceState>) -> Option<NonceState> {
    state
        .filter(|s| s.next_nonce > account.pending_nonce && s.next_nonce >= account.nonce)
        .cloned()
}

/// The nonce to use: the node's pending nonce, or the remembered one when
/// it is ahead and not shown to be stale.
pub fn choose(
    account: &AccountInfo,
    remembered: Option<&NonceState>,
    last: Option<LastSend>,
    now_ms: u64,
) -> u64 {
    let node = account.pending_nonce.max(account.nonce);
    let Some(state) = remembered_ahead(account, remembered) else {
        return node;
    };
    let stale = match last.unwrap_or(LastSend::Unknown) {
        LastSend::Pending | LastSend::Executed => false,
        LastSend::Failed => true,
        LastSend::Unknown => now_ms.saturating_sub(state.sent_at_ms) > LOST_AFTER_MS,
    };
    if stale {
        node
    } else {
        state.next_nonce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(nonce: u64, pending_nonce: u64) -> AccountInfo {
        AccountInfo {
            node: "n".into(),
            address: Address([1; 20]),
            balance: 100,
            nonce,
            pending_nonce,
        }
    }

    fn state(next_nonce: u64, sent_at_ms: u64) -> NonceState {
        NonceState {
            chain_id: "c".into(),
            address: Address([1; 20]),
            next_nonce,
            last_hash: Digest::ZERO,
            sent_at_ms,
        }
    }

    #[test]
    fn nonce_choice_scenarios() {
        use LastSend::*;
        let now = 1_000_000;
        // (committed, pending, remembered next, last send, sent ms ago) → nonce
        type Step<'a> = (&'a str, u64, u64, Option<u64>, Option<LastSend>, u64, u64);
        let steps: &[Step<'_>] = &[
            ("fresh account, nothing remembered", 0, 0, None, None, 0, 0),
            ("node knows our pending sends", 3, 5, Some(5), None, 0, 5),
            (
                "node has not heard of our last send yet",
                3,
                3,
                Some(5),
                Some(Unknown),
                100,
                5,
            ),
            (
                "our last send is pending elsewhere",
                3,
                4,
                Some(5),
                Some(Pending),
                100,
                5,
            ),
            (
                "our last send failed: its nonce is free",
                3,
                3,
                Some(4),
                Some(Failed),
                100,
                3,
            ),
            (
                "our last send was lost a while ago",
                3,
                3,
                Some(5),
                Some(Unknown),
                LOST_AFTER_MS + 1,
                3,
            ),
            (
                "remembered state is behind the chain",
                9,
                9,
                Some(5),
                None,
                0,
                9,
            ),
        ];
        for (name, committed, pending, remembered, last, ago, want) in steps {
            let s = remembered.map(|n| state(n, now - ago));
            let got = choose(&account(*committed, *pending), s.as_ref(), *last, now);
            assert_eq!(got, *want, "step: {name}");
        }
    }

    #[test]
    fn state_round_trips_and_is_scoped_to_chain_and_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir.path().join("key.json"));
        assert!(path.to_string_lossy().ends_with("key.json.nonce"));
        let s = state(7, 1);
        store(&path, &s).unwrap();
        store(&path, &s).unwrap();
        assert_eq!(load(&path, "c", &Address([1; 20])), Some(s));
        assert_eq!(load(&path, "other", &Address([1; 20])), None);
        assert_eq!(load(&path, "c", &Address([2; 20])), None);
    }
}
