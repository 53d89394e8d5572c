//! The record layer shared by both stores: what `apply_block` checks and
//! writes, how each record is encoded, and how each read is checked before
//! it is returned.

use crate::kv::{Kv, WriteSet};
use crate::schema::{self, meta_key, Cf};
use crate::wal::{Admit, WalLatest};
use crate::{ChainTip, EvidenceCursor, EvidencePage, StorageError, TxLocation};
use phalanx_consensus::ledger::{genesis_state_root, Account};
use phalanx_consensus::{
    tx_hash, Block, CheckpointCertificate, CommitCertificate, Evidence, Genesis, SeqNum, TxResult,
    WalEntry,
};
use phalanx_crypto::{codec, Address, Digest, PublicKey};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Decodes stored bytes; any failure is corruption of the record `what`.
fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    limit: u64,
    what: impl FnOnce() -> String,
) -> Result<T, StorageError> {
    codec::decode(bytes, limit).map_err(|e| StorageError::corruption(what(), e.to_string()))
}

/// State only writers touch, behind one lock: `apply_block` reads the tip
/// and writes the next block as one step, and WAL appends take counters.
struct Writer {
    /// The counter the next WAL entry gets: one more than any stored.
    wal_next: u64,
    /// The WAL records kept once (see `wal`); `None` until the WAL is
    /// first read (`load_wal`, or the first append or prune).
    wal_latest: Option<WalLatest>,
    /// Evidence records stored per validator, counted on first use.
    evidence_counts: BTreeMap<PublicKey, usize>,
}

pub(crate) struct Records<K> {
    kv: K,
    writer: Mutex<Writer>,
    /// Whether block, checkpoint and evidence writes are synced.
    sync_blocks: bool,
}

impl<K: Kv> Records<K> {
    /// Checks (or, on a fresh store, writes) the schema version and finds
    /// the next WAL counter.
    pub fn open(kv: K, sync_blocks: bool) -> Result<Records<K>, StorageError> {
        if check_schema(&kv)? == schema::SCHEMA_VERSION_EVIDENCE_BY_SEQ {
            migrate_evidence_by_seq(&kv)?;
        }
        let mut wal_next = 0u64;
        for (key, _) in kv.scan(Cf::Wal, &[], None, usize::MAX)? {
            let counter = schema::wal_counter(&key)
                .ok_or_else(|| StorageError::corruption("wal key", "not 16 bytes"))?;
            wal_next = wal_next.max(counter.saturating_add(1));
        }
        Ok(Records {
            kv,
            writer: Mutex::new(Writer {
                wal_next,
                wal_latest: None,
                evidence_counts: BTreeMap::new(),
            }),
            sync_blocks,
        })
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave the database half
        // written (writes are atomic batches), and the counter only grows.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn meta<T: DeserializeOwned>(&self, key: &'static [u8]) -> Result<Option<T>, StorageError> {
        match self.kv.get(Cf::Meta, key)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, schema::META_BYTES_MAX, || {
                format!("meta {}", String::from_utf8_lossy(key))
            })
            .map(Some),
        }
    }

    // ---- genesis and tip -------------------------------------------------

    pub fn genesis_hash(&self) -> Result<Option<Digest>, StorageError> {
        self.meta(meta_key::GENESIS_HASH)
    }

    pub fn init_genesis(&self, genesis: &Genesis) -> Result<(), StorageError> {
        let _writer = self.lock_writer();
        let given = genesis.hash();
        if let Some(stored) = self.genesis_hash()? {
            return if stored == given {
                Ok(())
            } else {
                Err(StorageError::GenesisMismatch { stored, given })
            };
        }
        let accounts = genesis.accounts();
        let tip = ChainTip {
            height: SeqNum(0),
            last_hash: given,
            state_root: genesis_state_root(&accounts),
        };
        let mut writes = WriteSet::default();
        for (address, account) in &accounts {
            writes.put(
                Cf::Accounts,
                &schema::address_key(address),
                codec::encode(account),
            );
        }
        writes.put(Cf::Meta, meta_key::TIP, codec::encode(&tip));
        // Last, so a reader that sees the genesis hash sees everything.
        writes.put(Cf::Meta, meta_key::GENESIS_HASH, codec::encode(&given));
        self.kv.write(writes, true)
    }

    pub fn tip(&self) -> Result<ChainTip, StorageError> {
        self.meta(meta_key::TIP)?
            .ok_or(StorageError::NotInitialized)
    }

    // ---- blocks ----------------------------------------------------------

    pub fn apply_block(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        changes: &BTreeMap<Address, Account>,
    ) -> Result<(), StorageError> {
        let _writer = self.lock_writer();
        let tip = self.tip()?;
        let height = block.header.height;
        if height != tip.height.next() {
            return Err(StorageError::NotNextBlock {
                expected: tip.height.next(),
                got: height,
            });
        }
        if block.header.prev_hash != tip.last_hash {
            return Err(StorageError::PrevHashMismatch {
                height,
                expected: tip.last_hash,
                got: block.header.prev_hash,
            });
        }
        check_block_and_certificate(block, cert)
            .map_err(|reason| StorageError::InvalidBlock { height, reason })?;

        let hash = block.hash();
        let key = schema::height_key(height);
        let mut writes = WriteSet::default();
        writes.put(Cf::Blocks, &key, codec::encode(block));
        writes.put(
            Cf::BlockHashIndex,
            &schema::hash_key(&hash),
            codec::encode(&height),
        );
        writes.put(Cf::Certificates, &key, codec::encode(cert));
        for (tx, location) in self.tx_index_updates(block)? {
            writes.put(
                Cf::TxIndex,
                &schema::hash_key(&tx),
                codec::encode(&location),
            );
        }
        for (address, account) in changes {
            writes.put(
                Cf::Accounts,
                &schema::address_key(address),
                codec::encode(account),
            );
        }
        let next = ChainTip {
            height,
            last_hash: hash,
            state_root: block.header.state_root,
        };
        writes.put(Cf::Meta, meta_key::TIP, codec::encode(&next));
        self.kv.write(writes, self.sync_blocks)
    }

    /// The tx index entries `block` adds. A transaction's entry is where it
    /// executed; if it never executed (a replay that failed its nonce
    /// check, say), where it first appeared. A transaction executes at most
    /// once, because executing consumes its nonce.
    fn tx_index_updates(
        &self,
        block: &Block,
    ) -> Result<BTreeMap<Digest, TxLocation>, StorageError> {
        let height = block.header.height;
        let mut updates: BTreeMap<Digest, TxLocation> = BTreeMap::new();
        for (position, (tx, result)) in block.txs.iter().zip(&block.results).enumerate() {
            let position = u32::try_from(position).map_err(|_| StorageError::InvalidBlock {
                height,
                reason: "more than 2^32 transactions".into(),
            })?;
            let new = TxLocation {
                height,
                position,
                result: result.clone(),
            };
            let hash = tx_hash(tx);
            let keep_old = match updates.get(&hash) {
                Some(old) => !supersedes(old, &new),
                None => self
                    .tx_location(&hash)?
                    .is_some_and(|old| !supersedes(&old, &new)),
            };
            if !keep_old {
                updates.insert(hash, new);
            }
        }
        Ok(updates)
    }

    /// Block `height`, checked: it claims that height and the hash index
    /// maps its hash back to it.
    pub fn block(&self, height: SeqNum) -> Result<Option<Block>, StorageError> {
        let what = || format!("block {height}");
        let Some(bytes) = self.kv.get(Cf::Blocks, &schema::height_key(height))? else {
            return Ok(None);
        };
        let block: Block = decode(&bytes, schema::BLOCK_BYTES_MAX, what)?;
        if block.header.height != height {
            return Err(StorageError::corruption(
                what(),
                format!(
                    "stored under height {height} but claims {}",
                    block.header.height
                ),
            ));
        }
        let hash = block.hash();
        match self.indexed_height(&hash)? {
            Some(indexed) if indexed == height => Ok(Some(block)),
            Some(indexed) => Err(StorageError::corruption(
                what(),
                format!("hash index maps its hash {hash} to height {indexed}"),
            )),
            None => Err(StorageError::corruption(
                what(),
                format!("its hash {hash} is not in the hash index"),
            )),
        }
    }

    fn indexed_height(&self, hash: &Digest) -> Result<Option<SeqNum>, StorageError> {
        match self.kv.get(Cf::BlockHashIndex, &schema::hash_key(hash))? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, schema::META_BYTES_MAX, || {
                format!("block hash index entry {hash}")
            })
            .map(Some),
        }
    }

    pub fn block_by_hash(&self, hash: &Digest) -> Result<Option<Block>, StorageError> {
        let Some(height) = self.indexed_height(hash)? else {
            return Ok(None);
        };
        match self.block(height)? {
            Some(block) if block.hash() == *hash => Ok(Some(block)),
            Some(_) => Err(StorageError::corruption(
                format!("block hash index entry {hash}"),
                format!("block {height} has a different hash"),
            )),
            None => Err(StorageError::corruption(
                format!("block hash index entry {hash}"),
                format!("points at missing block {height}"),
            )),
        }
    }

    pub fn certificate(&self, height: SeqNum) -> Result<Option<CommitCertificate>, StorageError> {
        let what = || format!("certificate {height}");
        let Some(bytes) = self.kv.get(Cf::Certificates, &schema::height_key(height))? else {
            return Ok(None);
        };
        let cert: CommitCertificate = decode(&bytes, schema::CERTIFICATE_BYTES_MAX, what)?;
        if cert.seq != height {
            return Err(StorageError::corruption(
                what(),
                format!(
                    "stored under height {height} but certifies seq {}",
                    cert.seq
                ),
            ));
        }
        Ok(Some(cert))
    }

    pub fn blocks_range(
        &self,
        from: SeqNum,
        to: SeqNum,
    ) -> Result<Vec<(Block, CommitCertificate)>, StorageError> {
        let first = from.0.max(1);
        let last =
            to.0.min(self.tip()?.height.0)
                .min(first.saturating_add(schema::BLOCKS_RANGE_MAX - 1));
        let mut out = Vec::new();
        for h in first..=last {
            let height = SeqNum(h);
            let block = self.block(height)?.ok_or_else(|| {
                StorageError::corruption(format!("block {height}"), "missing below the tip")
            })?;
            let cert = self.certificate(height)?.ok_or_else(|| {
                StorageError::corruption(format!("certificate {height}"), "missing below the tip")
            })?;
            out.push((block, cert));
        }
        Ok(out)
    }

    pub fn tx_location(&self, tx: &Digest) -> Result<Option<TxLocation>, StorageError> {
        match self.kv.get(Cf::TxIndex, &schema::hash_key(tx))? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, schema::TX_LOCATION_BYTES_MAX, || {
                format!("tx index entry {tx}")
            })
            .map(Some),
        }
    }

    pub fn account(&self, address: &Address) -> Result<Account, StorageError> {
        match self.kv.get(Cf::Accounts, &schema::address_key(address))? {
            None => Ok(Account::default()),
            Some(bytes) => decode(&bytes, schema::ACCOUNT_BYTES_MAX, || {
                format!("account {}", address.to_hex())
            }),
        }
    }

    // ---- verification ----------------------------------------------------

    /// Walks blocks `from..=to` (clamped to `1..=height`) and reports the
    /// first broken one.
    pub fn verify_range(&self, from: SeqNum, to: SeqNum) -> Result<(), StorageError> {
        let tip = self.tip()?;
        let first = SeqNum(from.0.max(1));
        let last = SeqNum(to.0.min(tip.height.0));
        if first > last {
            return Ok(());
        }
        let mut prev_hash = if first.0 == 1 {
            self.genesis_hash()?.ok_or(StorageError::NotInitialized)?
        } else {
            let below = SeqNum(first.0 - 1);
            broken_if_corrupt(below, self.block(below))?
                .ok_or_else(|| broken(below, "block missing below the tip"))?
                .hash()
        };
        for h in first.0..=last.0 {
            prev_hash = self.verify_one(SeqNum(h), &prev_hash)?;
        }
        if last == tip.height && prev_hash != tip.last_hash {
            return Err(broken(
                last,
                format!(
                    "block hash {prev_hash} is not the stored last hash {}",
                    tip.last_hash
                ),
            ));
        }
        Ok(())
    }

    /// Checks block `height` against the previous block's hash; returns
    /// its own hash.
    fn verify_one(&self, height: SeqNum, prev_hash: &Digest) -> Result<Digest, StorageError> {
        let block = broken_if_corrupt(height, self.block(height))?
            .ok_or_else(|| broken(height, "block missing below the tip"))?;
        if block.header.prev_hash != *prev_hash {
            return Err(broken(
                height,
                format!(
                    "prev_hash {} is not the previous block's hash {prev_hash}",
                    block.header.prev_hash
                ),
            ));
        }
        block
            .check_contents()
            .map_err(|e| broken(height, e.to_string()))?;
        let cert = broken_if_corrupt(height, self.certificate(height))?
            .ok_or_else(|| broken(height, "commit certificate missing"))?;
        if cert.batch_digest != block.header.batch_digest {
            return Err(broken(
                height,
                "certificate batch digest does not match the header",
            ));
        }
        Ok(block.hash())
    }

    // ---- checkpoints -----------------------------------------------------

    pub fn put_checkpoint(&self, cert: &CheckpointCertificate) -> Result<(), StorageError> {
        let mut writes = WriteSet::default();
        writes.put(
            Cf::Checkpoints,
            &schema::height_key(cert.seq),
            codec::encode(cert),
        );
        self.kv.write(writes, self.sync_blocks)
    }

    pub fn checkpoint(&self, seq: SeqNum) -> Result<Option<CheckpointCertificate>, StorageError> {
        match self.kv.get(Cf::Checkpoints, &schema::height_key(seq))? {
            None => Ok(None),
            Some(bytes) => decode_checkpoint(&schema::height_key(seq), &bytes).map(Some),
        }
    }

    pub fn latest_checkpoint(&self) -> Result<Option<CheckpointCertificate>, StorageError> {
        match self.kv.last(Cf::Checkpoints)? {
            None => Ok(None),
            Some((key, bytes)) => decode_checkpoint(&key, &bytes).map(Some),
        }
    }

    // ---- consensus write-ahead records -----------------------------------

    pub fn sync(&self) -> Result<(), StorageError> {
        self.kv.sync()
    }

    /// Appends `entries` in one write. Records restore reads only the
    /// latest of (see `wal`) are written only if they are the latest, and
    /// delete the one they supersede in the same write.
    pub fn append_wal(&self, entries: &[WalEntry], sync: bool) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut writer = self.lock_writer();
        let mut latest = match writer.wal_latest.take() {
            Some(latest) => latest,
            None => self.read_wal_and_drop_superseded()?.0,
        };
        // Decided on a copy: if the write fails, nothing it decided holds.
        let before = latest.clone();
        let mut next = writer.wal_next;
        let mut writes = WriteSet::default();
        for entry in entries {
            let key = schema::wal_key(entry.seq(), next);
            match latest.admit(entry, key) {
                Admit::Skip => continue,
                Admit::Store | Admit::Replace(None) => {}
                Admit::Replace(Some(old)) => writes.delete(Cf::Wal, &old),
            }
            writes.put(Cf::Wal, &key, codec::encode(entry));
            next += 1;
        }
        if let Err(e) = self.kv.write(writes, sync) {
            writer.wal_latest = Some(before);
            return Err(e);
        }
        writer.wal_next = next;
        writer.wal_latest = Some(latest);
        Ok(())
    }

    /// Every stored WAL entry, in append order. The first read also deletes
    /// records that later ones supersede (left by an older build): restore
    /// would ignore them.
    pub fn load_wal(&self) -> Result<Vec<WalEntry>, StorageError> {
        let mut writer = self.lock_writer();
        let (latest, entries) = self.read_wal_and_drop_superseded()?;
        writer.wal_latest = Some(latest);
        Ok(entries)
    }

    /// Reads the whole WAL in append order, finds the latest record of each
    /// kind kept once, and deletes the records they supersede. Call with
    /// the writer lock held.
    fn read_wal_and_drop_superseded(&self) -> Result<(WalLatest, Vec<WalEntry>), StorageError> {
        let mut numbered = Vec::new();
        for (key, bytes) in self.kv.scan(Cf::Wal, &[], None, usize::MAX)? {
            let key: [u8; 16] = key
                .try_into()
                .map_err(|_| StorageError::corruption("wal key", "not 16 bytes"))?;
            let counter = schema::wal_counter(&key)
                .ok_or_else(|| StorageError::corruption("wal key", "not 16 bytes"))?;
            let entry: WalEntry = decode(&bytes, schema::WAL_ENTRY_BYTES_MAX, || {
                format!("wal entry {counter}")
            })?;
            numbered.push((counter, key, entry));
        }
        numbered.sort_by_key(|(counter, _, _)| *counter);
        let (latest, superseded) =
            WalLatest::build(numbered.iter().map(|(_, key, entry)| (key, entry)));
        if !superseded.is_empty() {
            let mut writes = WriteSet::default();
            for key in &superseded {
                writes.delete(Cf::Wal, key);
            }
            // Not synced, like a prune: a lost delete is done again later.
            self.kv.write(writes, false)?;
        }
        let entries = numbered
            .into_iter()
            .filter(|(_, key, _)| !superseded.contains(key))
            .map(|(_, _, entry)| entry)
            .collect();
        Ok((latest, entries))
    }

    pub fn prune_wal(&self, below: SeqNum) -> Result<(), StorageError> {
        let mut writer = self.lock_writer();
        let end = schema::wal_prune_end(below);
        let mut writes = WriteSet::default();
        writes.delete_range(Cf::Wal, &[0u8; 16], &end);
        // Not synced: if a crash loses the prune, the entries are pruned
        // again after restart; keeping them is always safe.
        self.kv.write(writes, false)?;
        if let Some(latest) = writer.wal_latest.as_mut() {
            latest.pruned_below(&end);
        }
        Ok(())
    }

    // ---- evidence --------------------------------------------------------

    /// Stores `evidence` unless a record for its (validator, view, phase)
    /// is stored, keeping at most [`schema::EVIDENCE_PER_VALIDATOR_MAX`]
    /// records per validator: the newest by (view, phase). A record older
    /// than all of a full validator's records is not written.
    pub fn put_evidence(&self, evidence: &Evidence) -> Result<(), StorageError> {
        let key = schema::evidence_key_of(evidence);
        let validator = evidence.validator;
        let mut writer = self.lock_writer();
        if self.kv.get(Cf::Evidence, &key)?.is_some() {
            return Ok(());
        }
        let stored = match writer.evidence_counts.get(&validator) {
            Some(count) => *count,
            None => self.evidence_keys(&validator, usize::MAX)?.len(),
        };
        let mut writes = WriteSet::default();
        // How many records must go for this one to fit.
        let over = (stored + 1).saturating_sub(schema::EVIDENCE_PER_VALIDATOR_MAX);
        let oldest = self.evidence_keys(&validator, over)?;
        let write_new = oldest
            .last()
            .is_none_or(|last| key.as_slice() > last.as_slice());
        let evicted = if write_new {
            &oldest[..]
        } else {
            // The new record is among the oldest: it goes, and one fewer
            // of the stored ones.
            &oldest[..oldest.len() - 1]
        };
        for old in evicted {
            writes.delete(Cf::Evidence, old);
        }
        if write_new {
            writes.put(Cf::Evidence, &key, codec::encode(evidence));
        }
        let count = stored + usize::from(write_new) - evicted.len();
        if !writes.ops.is_empty() {
            self.kv.write(writes, self.sync_blocks)?;
        }
        writer.evidence_counts.insert(validator, count);
        Ok(())
    }

    /// The first `limit` evidence keys of `validator`, ascending.
    fn evidence_keys(
        &self,
        validator: &PublicKey,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = schema::evidence_validator_end(validator);
        Ok(self
            .kv
            .scan(
                Cf::Evidence,
                &validator.0,
                end.as_ref().map(|e| &e[..]),
                limit,
            )?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// At most `limit` records after `after` (from the first if `None`),
    /// in (validator, view, phase) order, and the cursor of the last one if
    /// more follow.
    pub fn evidence_page(
        &self,
        after: Option<&EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StorageError> {
        // The smallest key above the cursor's: its key followed by a zero.
        let from = after.map_or_else(Vec::new, |c| {
            let mut from = schema::evidence_key(&c.validator, c.view, c.phase).to_vec();
            from.push(0);
            from
        });
        let mut rows = self
            .kv
            .scan(Cf::Evidence, &from, None, limit.saturating_add(1))?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let records = rows
            .iter()
            .map(|(key, bytes)| decode_evidence(key, bytes))
            .collect::<Result<Vec<Evidence>, _>>()?;
        let next = match records.last() {
            Some(last) if more => Some(EvidenceCursor::of(last)),
            _ => None,
        };
        Ok(EvidencePage { records, next })
    }

    pub fn evidence(&self) -> Result<Vec<Evidence>, StorageError> {
        self.kv
            .scan(Cf::Evidence, &[], None, usize::MAX)?
            .iter()
            .map(|(key, bytes)| decode_evidence(key, bytes))
            .collect()
    }
}

/// An evidence record must be stored under its own key.
fn decode_evidence(key: &[u8], bytes: &[u8]) -> Result<Evidence, StorageError> {
    let what = || format!("evidence record {}", hex_of(key));
    let evidence: Evidence = decode(bytes, schema::EVIDENCE_BYTES_MAX, what)?;
    if schema::evidence_key_of(&evidence).as_slice() != key {
        return Err(StorageError::corruption(
            what(),
            "stored under another validator, view or phase",
        ));
    }
    Ok(evidence)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-keys a version-1 evidence family by (validator, view, phase),
/// keeping the lowest-seq proof of each key and the newest
/// [`schema::EVIDENCE_PER_VALIDATOR_MAX`] per validator, and marks the
/// store as the current version, in one write.
fn migrate_evidence_by_seq<K: Kv>(kv: &K) -> Result<(), StorageError> {
    let mut kept: BTreeMap<[u8; schema::EVIDENCE_KEY_LEN], Evidence> = BTreeMap::new();
    for (i, (_, bytes)) in kv
        .scan(Cf::Evidence, &[], None, usize::MAX)?
        .iter()
        .enumerate()
    {
        let evidence: Evidence = decode(bytes, schema::EVIDENCE_BYTES_MAX, || {
            format!("version-1 evidence record {i}")
        })?;
        // Version-1 keys sort by seq first: the first proof seen is the
        // lowest seq's.
        kept.entry(schema::evidence_key_of(&evidence))
            .or_insert(evidence);
    }
    let mut per_validator: BTreeMap<PublicKey, usize> = BTreeMap::new();
    let mut writes = WriteSet::default();
    // Every key of either version is below 50 bytes of 0xff.
    writes.delete_range(Cf::Evidence, &[], &[0xff; 50]);
    for (key, evidence) in kept.iter().rev() {
        let count = per_validator.entry(evidence.validator).or_default();
        if *count < schema::EVIDENCE_PER_VALIDATOR_MAX {
            *count += 1;
            writes.put(Cf::Evidence, key, codec::encode(evidence));
        }
    }
    writes.put(
        Cf::Meta,
        meta_key::SCHEMA_VERSION,
        codec::encode(&schema::SCHEMA_VERSION),
    );
    kv.write(writes, true)
}

/// A fresh store gets the current schema version; an existing one must
/// have it, or be the one older version that is migrated. Returns the
/// version found.
fn check_schema<K: Kv>(kv: &K) -> Result<u32, StorageError> {
    match kv.get(Cf::Meta, meta_key::SCHEMA_VERSION)? {
        Some(bytes) => {
            let found: u32 = decode(&bytes, schema::META_BYTES_MAX, || {
                "meta schema_version".into()
            })?;
            if found == schema::SCHEMA_VERSION || found == schema::SCHEMA_VERSION_EVIDENCE_BY_SEQ {
                Ok(found)
            } else {
                Err(StorageError::VersionMismatch {
                    found,
                    expected: schema::SCHEMA_VERSION,
                })
            }
        }
        None if kv.last(Cf::Meta)?.is_some() => Err(StorageError::corruption(
            "meta schema_version",
            "missing from a store that has other metadata",
        )),
        None => {
            let mut writes = WriteSet::default();
            writes.put(
                Cf::Meta,
                meta_key::SCHEMA_VERSION,
                codec::encode(&schema::SCHEMA_VERSION),
            );
            kv.write(writes, true)?;
            Ok(schema::SCHEMA_VERSION)
        }
    }
}

/// A checkpoint certificate must certify the seq it is stored under.
fn decode_checkpoint(key: &[u8], bytes: &[u8]) -> Result<CheckpointCertificate, StorageError> {
    let seq = <[u8; 8]>::try_from(key)
        .map(|k| SeqNum(u64::from_be_bytes(k)))
        .map_err(|_| StorageError::corruption("checkpoint key", "not 8 bytes"))?;
    let what = || format!("checkpoint {seq}");
    let cert: CheckpointCertificate = decode(bytes, schema::CERTIFICATE_BYTES_MAX, what)?;
    if cert.seq != seq {
        return Err(StorageError::corruption(
            what(),
            format!("stored under seq {seq} but certifies seq {}", cert.seq),
        ));
    }
    Ok(cert)
}

/// What `apply_block` checks of a block against itself and its certificate.
fn check_block_and_certificate(block: &Block, cert: &CommitCertificate) -> Result<(), String> {
    let header = &block.header;
    if cert.seq != header.height {
        return Err(format!("certificate is for seq {}", cert.seq));
    }
    if cert.batch_digest != header.batch_digest {
        return Err("certificate batch digest does not match the header".into());
    }
    block.check_contents().map_err(|e| e.to_string())
}

/// Whether `new` replaces `old` in the tx index: only an execution
/// replaces a failure.
fn supersedes(old: &TxLocation, new: &TxLocation) -> bool {
    old.result != TxResult::Executed && new.result == TxResult::Executed
}

fn broken(height: SeqNum, reason: impl Into<String>) -> StorageError {
    StorageError::BrokenChain {
        height,
        reason: reason.into(),
    }
}

/// In `verify_range`, damaged records are a broken chain at that height;
/// other failures (I/O) are passed on.
fn broken_if_corrupt<T>(height: SeqNum, read: Result<T, StorageError>) -> Result<T, StorageError> {
    read.map_err(|e| match e {
        StorageError::Corruption { what, detail } => broken(height, format!("{what}: {detail}")),
        other => other,
    })
}
