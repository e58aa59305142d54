//! [`MemoryStore`]: the [`StateStore`] for tests, with the same key layout as RocksDB so ordering and
//! range semantics match, in ordered maps behind one lock.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use super::{
    IndexBatch, IndexRange, PARTITION_LEN, PartitionBatch, PartitionMeta, Result, StateStore, StoreError, StoreSize,
    contact_from_key, contact_key, decode_meta, index_key, meta_key, partition_of_meta_key, partition_range,
    timer_from_key, timer_key,
};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory store for unit and integration tests: no disk, no RocksDB build, same behaviour.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

/// One ordered map per column family.
#[derive(Debug, Default)]
struct Tables {
    contacts: Table,
    timers: Table,
    meta: Table,
    board: Table,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>> {
        self.tables.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// The bounds of a partition's keys, for `BTreeMap::range`.
fn bounds(partition: i32) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (start, end) = partition_range(partition);
    (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded))
}

/// Removes every key of the partition from `table`.
fn clear(table: &mut Table, partition: i32) {
    let keys: Vec<Vec<u8>> = table.range(bounds(partition)).map(|(key, _)| key.clone()).collect();
    for key in keys {
        table.remove(&key);
    }
}

impl StateStore for MemoryStore {
    fn get(&self, partition: i32, contact: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.contacts.get(&contact_key(partition, contact)).cloned())
    }

    fn multi_get(&self, partition: i32, contacts: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let tables = self.lock()?;
        Ok(contacts.iter().map(|contact| tables.contacts.get(&contact_key(partition, contact)).cloned()).collect())
    }

    fn write(&self, batch: PartitionBatch) -> Result<()> {
        let p = batch.partition;
        let mut tables = self.lock()?;
        for contact in &batch.deletes {
            tables.contacts.remove(&contact_key(p, contact));
        }
        for (contact, value) in batch.puts {
            tables.contacts.insert(contact_key(p, &contact), value);
        }
        for (due_ms, contact) in &batch.timer_deletes {
            tables.timers.remove(&timer_key(p, *due_ms, contact));
        }
        for (due_ms, contact) in &batch.timer_puts {
            tables.timers.insert(timer_key(p, *due_ms, contact), Vec::new());
        }
        if let Some(meta) = &batch.meta {
            tables.meta.insert(meta_key(p), meta.encode());
        }
        Ok(())
    }

    fn meta(&self, partition: i32) -> Result<Option<PartitionMeta>> {
        let tables = self.lock()?;
        tables.meta.get(&meta_key(partition)).map(|bytes| decode_meta(partition, bytes)).transpose()
    }

    fn timers(&self, partition: i32) -> Result<Vec<(i64, String)>> {
        let tables = self.lock()?;
        tables.timers.range(bounds(partition)).map(|(key, _)| timer_from_key(key)).collect()
    }

    fn for_each_contact(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()> {
        // Copy the partition out so `f` runs without the lock, on a consistent view, as with RocksDB.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let tables = self.lock()?;
            tables.contacts.range(bounds(partition)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        for (key, value) in &entries {
            let contact = contact_from_key(key)?;
            if !contact.starts_with(super::ACCOUNT_KEY_PREFIX) && !f(contact, value) {
                break;
            }
        }
        Ok(())
    }

    fn for_each_account(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let tables = self.lock()?;
            tables.contacts.range(bounds(partition)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        for (key, value) in &entries {
            match contact_from_key(key)?.strip_prefix(super::ACCOUNT_KEY_PREFIX) {
                Some(account) if f(account, value) => {}
                _ => break,
            }
        }
        Ok(())
    }

    fn index_get(&self, partition: i32, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let tables = self.lock()?;
        Ok(keys.iter().map(|key| tables.board.get(&index_key(partition, key)).cloned()).collect())
    }

    fn index_write(&self, batch: IndexBatch) -> Result<()> {
        let mut tables = self.lock()?;
        for key in &batch.deletes {
            tables.board.remove(&index_key(batch.partition, key));
        }
        for (key, value) in batch.puts {
            tables.board.insert(index_key(batch.partition, &key), value);
        }
        Ok(())
    }

    fn index_range(&self, partition: i32, range: IndexRange<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (from, to) = (index_key(partition, range.from), index_key(partition, range.to));
        if from >= to {
            return Ok(Vec::new());
        }
        let tables = self.lock()?;
        let entries = tables.board.range(from..to);
        let copy = |(key, value): (&Vec<u8>, &Vec<u8>)| (key[PARTITION_LEN..].to_vec(), value.clone());
        Ok(if range.reverse {
            entries.rev().take(range.limit).map(copy).collect()
        } else {
            entries.take(range.limit).map(copy).collect()
        })
    }

    fn index_clear(&self, partition: i32) -> Result<()> {
        clear(&mut self.lock()?.board, partition);
        Ok(())
    }

    fn drop_partition(&self, partition: i32) -> Result<()> {
        let mut tables = self.lock()?;
        let Tables { contacts, timers, meta, board } = &mut *tables;
        for table in [contacts, timers, meta, board] {
            clear(table, partition);
        }
        Ok(())
    }

    fn partitions(&self) -> Result<Vec<i32>> {
        Ok(self.lock()?.meta.keys().filter_map(|key| partition_of_meta_key(key)).collect())
    }

    fn flush(&self) -> Result<()> {
        // Nothing to persist; still report a poisoned lock, as every other call does.
        self.lock().map(|_| ())
    }

    fn approximate_size(&self) -> Result<StoreSize> {
        let tables = self.lock()?;
        let live_bytes = tables.contacts.iter().map(|(key, value)| (key.len() + value.len()) as u64).sum();
        Ok(StoreSize { live_bytes, estimated_keys: tables.contacts.len() as u64 })
    }

    fn compact(&self) -> Result<()> {
        // Removed entries are gone at once; nothing to compact.
        self.lock().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance::{Fixture, conformance_tests};

    fn fixture() -> Fixture {
        Fixture::new(Box::new(MemoryStore::new()), None)
    }

    conformance_tests!(fixture);

    #[test]
    fn a_poisoned_lock_is_an_error_not_a_panic() {
        let store = Arc::new(MemoryStore::new());
        let holder = Arc::clone(&store);
        let outcome = std::thread::spawn(move || {
            let _guard = holder.tables.lock();
            panic!("poison the lock on purpose");
        })
        .join();
        assert!(outcome.is_err());
        assert!(matches!(store.get(0, "c"), Err(StoreError::Poisoned)));
        assert!(matches!(store.write(PartitionBatch::new(0)), Err(StoreError::Poisoned)));
        assert!(matches!(store.flush(), Err(StoreError::Poisoned)));
    }
}
