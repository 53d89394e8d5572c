//! `MemStore`: the same records in memory, one `BTreeMap` per column
//! family, for tests and the simulator. It stores the same encoded bytes
//! as `RocksStore` and goes through the same record layer, so the two have
//! the same semantics; only durability differs (a `MemStore` is gone when
//! dropped, and `sync` is meaningless).

use crate::kv::{Entry, Kv, Op, WriteSet};
use crate::records::Records;
use crate::schema::Cf;
use crate::StorageError;
use phalanx_consensus::Genesis;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

pub(crate) struct MemKv {
    tables: Mutex<Vec<Table>>,
}

impl MemKv {
    fn new() -> MemKv {
        MemKv {
            tables: Mutex::new(vec![Table::new(); Cf::ALL.len()]),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Vec<Table>> {
        // Writes apply under the lock in one step and cannot panic halfway,
        // so a poisoned lock still guards consistent tables.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kv for MemKv {
    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables()[cf.index()].get(key).cloned())
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let tables = self.tables();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(tables[cf.index()]
            .range::<[u8], _>((Bound::Included(from), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, cf: Cf) -> Result<Option<Entry>, StorageError> {
        Ok(self.tables()[cf.index()]
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn write(&self, writes: WriteSet, _sync: bool) -> Result<(), StorageError> {
        let mut tables = self.tables();
        for op in writes.ops {
            match op {
                Op::Put { cf, key, value } => {
                    tables[cf.index()].insert(key, value);
                }
                Op::Delete { cf, key } => {
                    tables[cf.index()].remove(&key);
                }
                Op::DeleteRange { cf, from, to } => {
                    let table = &mut tables[cf.index()];
                    let doomed: Vec<Vec<u8>> = table
                        .range::<[u8], _>((Bound::Included(&from[..]), Bound::Excluded(&to[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        table.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// An in-memory [`crate::Store`].
pub struct MemStore {
    pub(crate) records: Records<MemKv>,
}

impl MemStore {
    /// An empty store with no genesis: call
    /// [`crate::Store::init_genesis`] before applying blocks.
    pub fn new() -> MemStore {
        // An empty in-memory table set has no schema to mismatch and
        // cannot fail to write.
        let records = Records::open(MemKv::new(), false).expect("a fresh in-memory store opens");
        MemStore { records }
    }

    /// A store initialised with `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> MemStore {
        let store = MemStore::new();
        store
            .records
            .init_genesis(genesis)
            .expect("an empty in-memory store accepts any genesis");
        store
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}
