//! Which consensus write-ahead records restore still needs.
//!
//! `Replica::restore` reads three kinds of record for their latest value
//! only: the stable checkpoint with the highest seq, the highest view
//! entered and the highest view left (which give the view and whether a
//! view change is under way), and the NEW-VIEW with the highest view. Any
//! other record of those kinds changes nothing a restore computes, so it is
//! not kept: a record that an equal or later one already covers is not
//! written, and a record that supersedes one deletes it in the same write.
//! At most one `Stable`, two `View` (one entered, one left) and one
//! `NewView` record are then stored, however old the chain is, and restart
//! time does not grow with it.
//!
//! Votes, accepted pre-prepares and prepared proofs are all needed (the
//! guard against double-signing) until a stable checkpoint passes their seq
//! (`prune_wal`), as before.

use phalanx_consensus::{SeqNum, View, WalEntry};

/// A stored record's key and what ranks it among its kind.
type Slot<T> = Option<([u8; 16], T)>;

/// The latest stored record of each kind restore reads only the latest of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WalLatest {
    stable: Slot<SeqNum>,
    entered: Slot<View>,
    left: Slot<View>,
    new_view: Slot<View>,
}

/// What to do with a record about to be appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Not a kind kept once: store it.
    Store,
    /// An equal or later record of its kind is stored; restore would ignore
    /// this one, so it is not written.
    Skip,
    /// Store it, and delete the record it supersedes (if one is stored).
    Replace(Option<[u8; 16]>),
}

/// `Replace` if `rank` is above the stored record's, else `Skip`; on
/// `Replace` the slot takes the new record.
fn take_if_later<T: Ord + Copy>(slot: &mut Slot<T>, key: [u8; 16], rank: T) -> Admit {
    // Replay keeps the first record of the highest rank (a strict
    // comparison), so a later record of equal rank changes nothing.
    if slot.is_some_and(|(_, stored)| stored >= rank) {
        return Admit::Skip;
    }
    Admit::Replace(slot.replace((key, rank)).map(|(old, _)| old))
}

impl WalLatest {
    /// Decides on `entry`, to be stored under `key`, and records it as the
    /// latest of its kind if it is.
    pub fn admit(&mut self, entry: &WalEntry, key: [u8; 16]) -> Admit {
        match entry {
            WalEntry::Stable(cert) => take_if_later(&mut self.stable, key, cert.seq),
            WalEntry::View {
                view,
                entered: true,
            } => take_if_later(&mut self.entered, key, *view),
            WalEntry::View {
                view,
                entered: false,
            } => take_if_later(&mut self.left, key, *view),
            // A view's NEW-VIEW is entered (and recorded) at most once, and
            // restore uses the latest only if it is for the current view,
            // which is at least the latest entered. An earlier NEW-VIEW is
            // therefore never used: dropping it changes nothing, even where
            // `prune_wal` would have removed the later one first.
            WalEntry::NewView(nv) => take_if_later(&mut self.new_view, key, nv.payload.view),
            WalEntry::Voted { .. } | WalEntry::Accepted { .. } | WalEntry::Prepared(_) => {
                Admit::Store
            }
        }
    }

    /// Scans the records as stored, in append order: returns the latest of
    /// each kind and the keys of the records they supersede (stored before
    /// this rule, or by an older build), to delete.
    pub fn build<'a>(
        records: impl IntoIterator<Item = (&'a [u8; 16], &'a WalEntry)>,
    ) -> (WalLatest, Vec<[u8; 16]>) {
        let mut latest = WalLatest::default();
        let mut superseded = Vec::new();
        for (key, entry) in records {
            match latest.admit(entry, *key) {
                Admit::Store | Admit::Replace(None) => {}
                Admit::Skip => superseded.push(*key),
                Admit::Replace(Some(old)) => superseded.push(old),
            }
        }
        (latest, superseded)
    }

    /// `prune_wal` deleted every key below `end`: forget the NEW-VIEW
    /// record if it was one of them (the others sort above every numbered
    /// key), so that a later, lower one is stored as it would have been.
    pub fn pruned_below(&mut self, end: &[u8; 16]) {
        if self.new_view.is_some_and(|(key, _)| key < *end) {
            self.new_view = None;
        }
    }
}
