//! `RocksStore`: the records in RocksDB, one column family per kind.

use crate::kv::{Entry, Kv, Op, WriteSet};
use crate::records::Records;
use crate::schema::Cf;
use crate::StorageError;
use phalanx_consensus::Genesis;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// How a [`RocksStore`] is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Sync (fsync) block, checkpoint and evidence writes. WAL appends say
    /// per call whether they sync.
    pub sync_blocks: bool,
    /// RocksDB's limit on open SST files; modest, a node shares its file
    /// descriptors with libp2p and HTTP.
    pub max_open_files: i32,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            sync_blocks: true,
            max_open_files: 256,
        }
    }
}

pub(crate) struct RocksKv {
    db: DB,
    path: PathBuf,
    /// Test hook: fail a write after staging this many operations, to show
    /// that nothing staged reaches the database before the batch commits.
    #[cfg(test)]
    pub(crate) fail_write_after_ops: std::sync::Mutex<Option<usize>>,
}

impl RocksKv {
    fn open(path: &Path, options: &RocksOptions) -> Result<RocksKv, StorageError> {
        std::fs::create_dir_all(path)?;
        let mut db_options = base_options();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_paranoid_checks(true);
        db_options.set_max_open_files(options.max_open_files);
        let families = Cf::ALL.iter().map(|cf| {
            let mut cf_options = base_options();
            if cf.point_lookups() {
                let mut table = BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                cf_options.set_block_based_table_factory(&table);
                // A bloom filter on the memtable too: most lookups here miss
                // (is this transaction already committed? — asked of every
                // transaction admitted) and a miss searched the memtable's
                // skip list (measured ~9 % of a node's CPU at 6,000 tx/s).
                cf_options.set_memtable_prefix_bloom_ratio(0.1);
                cf_options.set_memtable_whole_key_filtering(true);
            }
            ColumnFamilyDescriptor::new(cf.name(), cf_options)
        });
        let db = DB::open_cf_descriptors(&db_options, path, families)
            .map_err(|e| StorageError::from_rocksdb(&e, path))?;
        Ok(RocksKv {
            db,
            path: path.to_path_buf(),
            #[cfg(test)]
            fail_write_after_ops: std::sync::Mutex::new(None),
        })
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StorageError::Other(format!("column family {} is missing", cf.name())))
    }

    fn error(&self, err: rocksdb::Error) -> StorageError {
        StorageError::from_rocksdb(&err, &self.path)
    }

    /// Every read verifies block checksums: damaged bytes are an error,
    /// never an answer.
    fn read_options() -> ReadOptions {
        let mut read = ReadOptions::default();
        read.set_verify_checksums(true);
        read
    }

    fn flush(&self) -> Result<(), StorageError> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)?).map_err(|e| self.error(e))?;
        }
        self.db.flush_wal(true).map_err(|e| self.error(e))
    }

    fn compact(&self) -> Result<(), StorageError> {
        for cf in Cf::ALL {
            self.db
                .compact_range_cf(self.cf(cf)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    #[cfg(test)]
    fn injected_failure(&self, staged: usize) -> Result<(), StorageError> {
        let fail_after = *self
            .fail_write_after_ops
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match fail_after {
            Some(n) if staged == n => Err(StorageError::Other(format!(
                "injected failure after staging {n} operations"
            ))),
            _ => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn injected_failure(&self, _staged: usize) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Options shared by the database and every column family.
fn base_options() -> Options {
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

impl Kv for RocksKv {
    fn sync(&self) -> Result<(), StorageError> {
        // RocksDB's log is one sequence: syncing it covers every write
        // appended before.
        self.db.flush_wal(true).map_err(|e| self.error(e))
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf_opt(self.cf(cf)?, key, &Self::read_options())
            .map_err(|e| self.error(e))
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut read = Self::read_options();
        if let Some(to) = to {
            read.set_iterate_upper_bound(to.to_vec());
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(cf)?,
            read,
            IteratorMode::From(from, Direction::Forward),
        );
        iter.take(limit)
            .map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(|e| self.error(e))
            })
            .collect()
    }

    fn last(&self, cf: Cf) -> Result<Option<Entry>, StorageError> {
        let mut iter =
            self.db
                .iterator_cf_opt(self.cf(cf)?, Self::read_options(), IteratorMode::End);
        iter.next()
            .transpose()
            .map(|found| found.map(|(k, v)| (k.into_vec(), v.into_vec())))
            .map_err(|e| self.error(e))
    }

    fn write(&self, writes: WriteSet, sync: bool) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for (staged, op) in writes.ops.into_iter().enumerate() {
            self.injected_failure(staged)?;
            match op {
                Op::Put { cf, key, value } => batch.put_cf(self.cf(cf)?, key, value),
                Op::Delete { cf, key } => batch.delete_cf(self.cf(cf)?, key),
                Op::DeleteRange { cf, from, to } => batch.delete_range_cf(self.cf(cf)?, from, to),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.error(e))
    }
}

/// A [`crate::Store`] in RocksDB. One process at a time: a second open of
/// the same path fails with [`StorageError::Locked`].
pub struct RocksStore {
    pub(crate) records: Records<RocksKv>,
}

impl RocksStore {
    /// Opens (creating if missing) the database at `path`, checking its
    /// schema version. The store may have no genesis yet.
    pub fn open(path: &Path, options: &RocksOptions) -> Result<RocksStore, StorageError> {
        let kv = RocksKv::open(path, options)?;
        Ok(RocksStore {
            records: Records::open(kv, options.sync_blocks)?,
        })
    }

    /// Opens the database at `path` for the chain of `genesis`: initialises
    /// a fresh store, and refuses one made for another genesis with
    /// [`StorageError::GenesisMismatch`].
    pub fn open_with_genesis(
        path: &Path,
        genesis: &Genesis,
        options: &RocksOptions,
    ) -> Result<RocksStore, StorageError> {
        let store = RocksStore::open(path, options)?;
        store.records.init_genesis(genesis)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.records.kv().path
    }

    /// Writes every memtable to SST files and syncs the RocksDB log.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.records.kv().flush()
    }

    /// Compacts every column family (after a flush, all data is in SSTs).
    pub fn compact(&self) -> Result<(), StorageError> {
        self.records.kv().compact()
    }
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// Test support: flips one byte of the stored block at `height` behind the
/// store's back (inside its `prev_hash`), so tests can show that reads and
/// `phalanx verify-ledger` catch damaged data. The node never calls it.
pub fn tamper_block_for_test(path: &Path, height: u64) -> Result<(), StorageError> {
    let kv = RocksKv::open(path, &RocksOptions::default())?;
    let cf = kv.cf(Cf::Blocks)?;
    let key = crate::schema::height_key(phalanx_consensus::SeqNum(height));
    let mut value = kv
        .db
        .get_cf(cf, key)
        .map_err(|e| kv.error(e))?
        .ok_or_else(|| StorageError::Other(format!("no block at height {height}")))?;
    if value.len() < 21 {
        return Err(StorageError::Other("stored block is too short".into()));
    }
    value[20] ^= 0x01;
    kv.db.put_cf(cf, key, value).map_err(|e| kv.error(e))?;
    kv.flush()
}
