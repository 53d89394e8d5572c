//! The small key-value interface both backends provide. All record logic
//! (validation, encoding, read checks) lives once, in `records`, on top of
//! it, so `RocksStore` and `MemStore` cannot drift apart.

use crate::schema::Cf;
use crate::StorageError;

/// One write inside a [`WriteSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes every key `from <= key < to`.
    DeleteRange {
        cf: Cf,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Writes applied all together or not at all by [`Kv::write`], in order
/// (a key put and then deleted in one set ends up deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteSet {
    pub ops: Vec<Op>,
}

impl WriteSet {
    pub fn put(&mut self, cf: Cf, key: &[u8], value: Vec<u8>) {
        self.ops.push(Op::Put {
            cf,
            key: key.to_vec(),
            value,
        });
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.ops.push(Op::Delete {
            cf,
            key: key.to_vec(),
        });
    }

    pub fn delete_range(&mut self, cf: Cf, from: &[u8], to: &[u8]) {
        self.ops.push(Op::DeleteRange {
            cf,
            from: from.to_vec(),
            to: to.to_vec(),
        });
    }
}

/// A key-value pair read back.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// What a backend provides. Reads see every write set whose `write`
/// returned, and none whose `write` failed.
pub(crate) trait Kv: Send + Sync {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Entries with `from <= key` (and `key < to` if given), ascending, at
    /// most `limit` of them.
    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The entry with the greatest key.
    fn last(&self, cf: Cf) -> Result<Option<Entry>, StorageError>;

    /// Applies `writes` atomically; with `sync`, durably (fsync) before
    /// returning.
    fn write(&self, writes: WriteSet, sync: bool) -> Result<(), StorageError>;

    /// Makes every write that has returned durable (one fsync for all the
    /// unsynced writes before it).
    fn sync(&self) -> Result<(), StorageError>;
}
