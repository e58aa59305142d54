//! [`RocksStore`]: the [`StateStore`] on embedded RocksDB, one database per state directory with one
//! column family per kind of data ([`ALL_CFS`]).

use std::path::{Path, PathBuf};

use rocksdb::{
    BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor, CompactOptions, DB, FlushOptions,
    ReadOptions, WaitForCompactOptions, WriteBatch, WriteOptions,
};

use super::{
    ACCOUNT_KEY_PREFIX, ALL_CFS, CF_ACCOUNTS, CF_BOARD, CF_CONTACTS, CF_META, CF_TIMERS, DUE_LEN, FORMAT_KEY,
    IndexBatch, IndexRange, PARTITION_LEN, PartitionBatch, PartitionMeta, Result, STORE_FORMAT, StateStore, StoreError,
    StoreEstimates, StoreSize, contact_from_key, contact_key, decode_meta, index_key, meta_key, partition_of_meta_key,
    partition_range, prefixed, timer_from_key, timer_key,
};

/// Tuning of the RocksDB store, from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksOptions {
    /// Size of the block cache shared by all column families, in MiB: the memory budget for reads.
    pub cache_mb: usize,
    /// Write without the write-ahead log. Faster, but a crash loses everything since the last flush, to
    /// be restored from the changelog; column families are then flushed together so they stay
    /// consistent with each other.
    pub disable_wal: bool,
}

/// The WAL is off by default: the changelog is the durability source. A crash rolls the store back to
/// its last (atomic) flush, whose meta names the changelog offset it reflects; the restore on start
/// replays the changelog from there, and every committed input has its changelog records acknowledged
/// before its offset was committed. So losing the WAL's tail loses nothing the changelog lacks, and the
/// per-contact offsets make the replayed window idempotent. The WAL write was 5% of the instructions
/// per event of `examples/profile_engine.rs`.
impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions { cache_mb: 64, disable_wal: true }
    }
}

/// The production state store: RocksDB in one state directory, shared by all of a process's tasks.
pub struct RocksStore {
    db: DB,
    dir: PathBuf,
    disable_wal: bool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("dir", &self.dir).field("disable_wal", &self.disable_wal).finish()
    }
}

/// Bytes a WriteBatch takes for one entry beyond its key and value (a tag, a column family id, two
/// length varints), and for its header.
const BATCH_ENTRY_BYTES: usize = 16;
const BATCH_HEADER_BYTES: usize = 12;

/// The byte order of two keys, decided by their first 16 bytes as one integer where those differ: most
/// comparisons of a sort then take no call to `memcmp`.
fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let head = |key: &[u8]| key.first_chunk::<16>().map(|head| u128::from_be_bytes(*head));
    match (head(a), head(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// A WriteBatch with room for `entries` entries of `bytes` key and value bytes in all (partition prefixes
/// aside), so that it does not grow as it is filled: each growth copies everything written before.
fn sized_batch(entries: usize, bytes: usize) -> WriteBatch {
    WriteBatch::with_capacity_bytes(BATCH_HEADER_BYTES + entries * (BATCH_ENTRY_BYTES + PARTITION_LEN) + bytes)
}

/// The column family that keeps a record named `record` in a [`PartitionBatch`], and its id there: an
/// account (named under [`ACCOUNT_KEY_PREFIX`]) in [`CF_ACCOUNTS`] by its bare id, a contact in
/// [`CF_CONTACTS`].
fn family_of(record: &str) -> (&'static str, &str) {
    match record.strip_prefix(ACCOUNT_KEY_PREFIX) {
        Some(account) => (CF_ACCOUNTS, account),
        None => (CF_CONTACTS, record),
    }
}

/// A callback over stored (key, value) pairs that may stop the scan (false) or fail it.
type EntryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Maps a RocksDB error to [`StoreError::Rocks`], naming the operation that failed.
fn rocks_error(operation: &'static str) -> impl Fn(rocksdb::Error) -> StoreError {
    move |err| StoreError::Rocks(format!("{operation}: {err}"))
}

impl RocksStore {
    /// Opens (or creates) the store in `dir`, refusing a directory written with another
    /// [`STORE_FORMAT`].
    pub fn open(dir: &Path, options: &RocksOptions) -> Result<RocksStore> {
        let open_error = |reason: String| StoreError::Open { dir: dir.to_path_buf(), reason };
        std::fs::create_dir_all(dir).map_err(|err| open_error(format!("cannot create the directory: {err}")))?;

        let cache = Cache::new_lru_cache(options.cache_mb.saturating_mul(1 << 20));
        let descriptors = ALL_CFS
            .iter()
            .map(|name| Ok(ColumnFamilyDescriptor::new(*name, tuning::column_family_options(name, &cache)?)))
            .collect::<Result<Vec<_>, rocksdb::Error>>()
            .map_err(|err| open_error(format!("column family options: {err}")))?;
        let db = DB::open_cf_descriptors(&tuning::database_options(options), dir, descriptors)
            .map_err(|err| open_error(err.to_string()))?;

        let store = RocksStore { db, dir: dir.to_path_buf(), disable_wal: options.disable_wal };
        store.check_format()?;
        let (cache_mb, disable_wal) = (options.cache_mb, options.disable_wal);
        tracing::debug!(dir = %dir.display(), cache_mb, disable_wal, "state store open");
        Ok(store)
    }

    /// The state directory, for logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until the flushes and compactions RocksDB has pending or running are done, or `timeout`
    /// has passed: the directory then holds what it will hold once the store is left alone (flushed
    /// data rewritten into the bottommost level, in its compression).
    pub fn wait_for_compactions(&self, timeout: std::time::Duration) -> Result<()> {
        let mut options = WaitForCompactOptions::default();
        options.set_timeout(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX));
        self.db.wait_for_compact(&options).map_err(rocks_error("wait for compactions"))
    }

    /// Verifies the format marker, or writes it into a new, empty store.
    fn check_format(&self) -> Result<()> {
        let meta = self.cf(CF_META)?;
        let marker = self.db.get_pinned_cf(meta, FORMAT_KEY).map_err(rocks_error("read the format marker"))?;
        if let Some(bytes) = marker {
            let found = <[u8; 4]>::try_from(&*bytes).map(u32::from_be_bytes).map_err(|_| StoreError::Open {
                dir: self.dir.clone(),
                reason: format!("the store-format marker is {} bytes long, not 4", bytes.len()),
            })?;
            return match found {
                STORE_FORMAT => Ok(()),
                1 => self.move_accounts_to_their_family(),
                2 | 3 => self.write_format_marker(),
                _ => Err(StoreError::IncompatibleFormat { found, expected: STORE_FORMAT }),
            };
        }
        for name in ALL_CFS {
            let mut iter = self.db.raw_iterator_cf(self.cf(name)?);
            iter.seek_to_first();
            iter.status().map_err(rocks_error("scan for existing data"))?;
            if iter.valid() {
                return Err(StoreError::Open {
                    dir: self.dir.clone(),
                    reason: format!("column family {name} holds data but the store has no format marker"),
                });
            }
        }
        self.write_format_marker()
    }

    /// Marks the store with [`STORE_FORMAT`], durably.
    fn write_format_marker(&self) -> Result<()> {
        let meta = self.cf(CF_META)?;
        self.db.put_cf(meta, FORMAT_KEY, STORE_FORMAT.to_be_bytes()).map_err(rocks_error("write the format marker"))?;
        self.db.flush_cf(meta).map_err(rocks_error("flush the format marker"))
    }

    /// Brings a store of format 1, which kept account records among the contacts under
    /// [`ACCOUNT_KEY_PREFIX`] (where they sort first in each partition), to the current format: moves
    /// them to [`CF_ACCOUNTS`] and writes the new marker, in one atomic write.
    fn move_accounts_to_their_family(&self) -> Result<()> {
        let (contacts, accounts) = (self.cf(CF_CONTACTS)?, self.cf(CF_ACCOUNTS)?);
        let mut write = WriteBatch::default();
        let mut moved = 0_usize;
        let mut iter = self.db.raw_iterator_cf(contacts);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            match contact_from_key(key)?.strip_prefix(ACCOUNT_KEY_PREFIX) {
                Some(account) => {
                    write.put_cf(accounts, [&key[..PARTITION_LEN], account.as_bytes()].concat(), value);
                    write.delete_cf(contacts, key);
                    moved += 1;
                    iter.next();
                }
                None => {
                    // Past this partition's accounts: on to the next partition.
                    let prefix: [u8; PARTITION_LEN] = key[..PARTITION_LEN].try_into().unwrap_or_default();
                    match partition_range(super::partition_from_prefix(prefix)).1 {
                        Some(next) => iter.seek(next),
                        None => break,
                    }
                }
            }
        }
        iter.status().map_err(rocks_error("read account records to move"))?;
        drop(iter);
        write.put_cf(self.cf(CF_META)?, FORMAT_KEY, STORE_FORMAT.to_be_bytes());
        self.db.write(write).map_err(rocks_error("move account records"))?;
        self.flush()?;
        tracing::info!(dir = %self.dir.display(), moved, "state store: account records moved to a column family of their own");
        Ok(())
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Rocks(format!("column family {name} is not open")))
    }

    fn write_options(&self) -> WriteOptions {
        let mut options = WriteOptions::default();
        options.disable_wal(self.disable_wal);
        options
    }

    /// Adds to `write` the deletion of every key of the partition in `cf`.
    fn delete_partition(&self, write: &mut WriteBatch, cf: &'static str, partition: i32) -> Result<()> {
        let (start, end) = partition_range(partition);
        let cf = self.cf(cf)?;
        match &end {
            Some(end) => write.delete_range_cf(cf, start.as_slice(), end.as_slice()),
            None => {
                // Partition i32::MAX runs to the end of the key space, which no key bounds: delete up to its
                // last key, then that key. Its task is stopped, so no key can appear meanwhile.
                let mut iter = self.db.raw_iterator_cf(cf);
                iter.seek_to_last();
                iter.status().map_err(rocks_error("find the end of a partition"))?;
                if let Some(last) = iter.key().filter(|last| *last >= start.as_slice()) {
                    write.delete_range_cf(cf, start.as_slice(), last);
                    write.delete_cf(cf, last);
                }
            }
        }
        Ok(())
    }

    /// The values of `keys` in `cf`, in order, read in one batched lookup. The keys go to RocksDB sorted
    /// (every column family orders keys bytewise), which spares it sorting them through its comparator.
    fn read_many(&self, cf: &'static str, keys: &[Vec<u8>], operation: &'static str) -> Result<Vec<Option<Vec<u8>>>> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]));
        let sorted: Vec<&[u8]> = order.iter().map(|&place| keys[place].as_slice()).collect();
        let mut values = vec![None; keys.len()];
        for (place, value) in order.into_iter().zip(self.db.batched_multi_get_cf(self.cf(cf)?, &sorted, true)) {
            values[place] = value.map_err(rocks_error(operation))?.map(|slice| slice.to_vec());
        }
        Ok(values)
    }

    /// Index writes never go to the write-ahead log: the index is rebuilt when its partition opens.
    fn index_write_options() -> WriteOptions {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        options
    }

    /// Calls `f` with each key and value of the partition in `cf`, in key order, until it returns false.
    fn scan(&self, cf: &'static str, partition: i32, f: &mut EntryVisitor<'_>) -> Result<()> {
        let (start, end) = partition_range(partition);
        let mut read = ReadOptions::default();
        if let Some(end) = end {
            read.set_iterate_upper_bound(end);
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf)?, read);
        iter.seek(&start);
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !f(key, value)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(rocks_error("scan a partition"))
    }
}

impl StateStore for RocksStore {
    fn get(&self, partition: i32, contact: &str) -> Result<Option<Vec<u8>>> {
        let (family, id) = family_of(contact);
        let value = self.db.get_pinned_cf(self.cf(family)?, contact_key(partition, id));
        Ok(value.map_err(rocks_error("read a contact"))?.map(|slice| slice.to_vec()))
    }

    fn multi_get(&self, partition: i32, contacts: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values = vec![None; contacts.len()];
        for family in [CF_CONTACTS, CF_ACCOUNTS] {
            let (places, keys): (Vec<usize>, Vec<Vec<u8>>) = contacts
                .iter()
                .enumerate()
                .filter_map(|(place, contact)| {
                    let (within, id) = family_of(contact);
                    (within == family).then(|| (place, contact_key(partition, id)))
                })
                .unzip();
            if !keys.is_empty() {
                for (place, value) in places.into_iter().zip(self.read_many(family, &keys, "read contacts")?) {
                    values[place] = value;
                }
            }
        }
        Ok(values)
    }

    fn write(&self, mut batch: PartitionBatch) -> Result<()> {
        // In key order, as in `index_write`. The sort of the records is stable: of two records of one
        // contact, the later still wins.
        batch.deletes.sort_unstable();
        batch.puts.sort_by(|a, b| a.0.cmp(&b.0));
        batch.timer_deletes.sort_unstable();
        batch.timer_puts.sort_unstable();
        let (contacts, accounts) = (self.cf(CF_CONTACTS)?, self.cf(CF_ACCOUNTS)?);
        let (timers, meta) = (self.cf(CF_TIMERS)?, self.cf(CF_META)?);
        let family = |name: &str| if name == CF_ACCOUNTS { accounts } else { contacts };
        let p = batch.partition;
        let meta_entry = batch.meta.as_ref().map(|partition_meta| (meta_key(p), partition_meta.encode()));
        let timer_bytes =
            |timers: &[(i64, String)]| timers.iter().map(|(_, contact)| DUE_LEN + contact.len()).sum::<usize>();
        let bytes = batch.deletes.iter().map(String::len).sum::<usize>()
            + batch.puts.iter().map(|(contact, value)| contact.len() + value.len()).sum::<usize>()
            + timer_bytes(&batch.timer_deletes)
            + timer_bytes(&batch.timer_puts)
            + meta_entry.as_ref().map_or(0, |(key, value)| key.len() + value.len());
        let entries = batch.deletes.len() + batch.puts.len() + batch.timer_deletes.len() + batch.timer_puts.len() + 1;
        let mut write = sized_batch(entries, bytes);
        let mut key = Vec::new();
        // Within a WriteBatch later entries win, so deletes go first (see `PartitionBatch`).
        for contact in &batch.deletes {
            let (name, id) = family_of(contact);
            write.delete_cf(family(name), prefixed(&mut key, p, id.as_bytes()));
        }
        for (contact, value) in &batch.puts {
            let (name, id) = family_of(contact);
            write.put_cf(family(name), prefixed(&mut key, p, id.as_bytes()), value);
        }
        for (due_ms, contact) in &batch.timer_deletes {
            write.delete_cf(timers, timer_key(p, *due_ms, contact));
        }
        for (due_ms, contact) in &batch.timer_puts {
            write.put_cf(timers, timer_key(p, *due_ms, contact), b"");
        }
        if let Some((key, value)) = meta_entry {
            write.put_cf(meta, key, value);
        }
        self.db.write_opt(write, &self.write_options()).map_err(rocks_error("write a batch"))
    }

    fn meta(&self, partition: i32) -> Result<Option<PartitionMeta>> {
        let value = self.db.get_pinned_cf(self.cf(CF_META)?, meta_key(partition));
        value.map_err(rocks_error("read partition meta"))?.map(|bytes| decode_meta(partition, &bytes)).transpose()
    }

    fn timers(&self, partition: i32) -> Result<Vec<(i64, String)>> {
        let mut timers = Vec::new();
        self.scan(CF_TIMERS, partition, &mut |key, _| {
            timers.push(timer_from_key(key)?);
            Ok(true)
        })?;
        Ok(timers)
    }

    fn for_each_contact(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()> {
        self.scan(CF_CONTACTS, partition, &mut |key, value| Ok(f(contact_from_key(key)?, value)))
    }

    fn for_each_account(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()> {
        self.scan(CF_ACCOUNTS, partition, &mut |key, value| Ok(f(contact_from_key(key)?, value)))
    }

    fn index_get(&self, partition: i32, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|key| index_key(partition, key)).collect();
        self.read_many(CF_BOARD, &keys, "read the index")
    }

    fn index_write(&self, mut batch: IndexBatch) -> Result<()> {
        let board = self.cf(CF_BOARD)?;
        // In key order the memtable inserts each key next to the one before it, for a fraction of a search.
        batch.deletes.sort_unstable_by(|a, b| key_order(a, b));
        batch.puts.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
        let bytes = batch.deletes.iter().map(Vec::len).sum::<usize>()
            + batch.puts.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>();
        let mut write = sized_batch(batch.deletes.len() + batch.puts.len(), bytes);
        let mut full = Vec::new();
        for key in &batch.deletes {
            write.delete_cf(board, prefixed(&mut full, batch.partition, key));
        }
        for (key, value) in &batch.puts {
            write.put_cf(board, prefixed(&mut full, batch.partition, key), value);
        }
        self.db.write_opt(write, &Self::index_write_options()).map_err(rocks_error("write the index"))
    }

    fn index_range(&self, partition: i32, range: IndexRange<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(index_key(partition, range.from));
        read.set_iterate_upper_bound(index_key(partition, range.to));
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_BOARD)?, read);
        if range.reverse {
            iter.seek_to_last();
        } else {
            iter.seek_to_first();
        }
        let mut entries = Vec::new();
        while entries.len() < range.limit
            && let (Some(key), Some(value)) = (iter.key(), iter.value())
        {
            entries.push((key[PARTITION_LEN..].to_vec(), value.to_vec()));
            if range.reverse {
                iter.prev();
            } else {
                iter.next();
            }
        }
        iter.status().map_err(rocks_error("read the index"))?;
        Ok(entries)
    }

    fn index_clear(&self, partition: i32) -> Result<()> {
        let mut write = WriteBatch::default();
        self.delete_partition(&mut write, CF_BOARD, partition)?;
        self.db.write_opt(write, &Self::index_write_options()).map_err(rocks_error("clear the index"))
    }

    fn drop_partition(&self, partition: i32) -> Result<()> {
        let mut write = WriteBatch::default();
        for name in ALL_CFS {
            self.delete_partition(&mut write, name, partition)?;
        }
        self.db.write_opt(write, &self.write_options()).map_err(rocks_error("drop a partition"))
    }

    fn partitions(&self) -> Result<Vec<i32>> {
        let mut partitions = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_META)?);
        iter.seek_to_first();
        while let Some(key) = iter.key() {
            partitions.extend(partition_of_meta_key(key));
            iter.next();
        }
        iter.status().map_err(rocks_error("list partitions"))?;
        Ok(partitions)
    }

    fn flush(&self) -> Result<()> {
        let cfs = ALL_CFS.iter().map(|name| self.cf(name)).collect::<Result<Vec<_>>>()?;
        let mut options = FlushOptions::default();
        options.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &options).map_err(rocks_error("flush memtables"))?;
        self.db.flush_wal(true).map_err(rocks_error("sync the write-ahead log"))
    }

    fn approximate_size(&self) -> Result<StoreSize> {
        let contacts = self.cf(CF_CONTACTS)?;
        let property = |name: &'static str| -> Result<u64> {
            let value = self.db.property_int_value_cf(contacts, name).map_err(rocks_error("read a property"))?;
            Ok(value.unwrap_or(0))
        };
        // Live data counts flushed files only; add the memtables so recent writes show before a flush.
        let live_bytes =
            property("rocksdb.estimate-live-data-size")?.saturating_add(property("rocksdb.cur-size-all-mem-tables")?);
        Ok(StoreSize { live_bytes, estimated_keys: property("rocksdb.estimate-num-keys")? })
    }

    fn estimates(&self) -> Result<StoreEstimates> {
        let property = |cf: &'static str, name: &'static str| -> Result<u64> {
            let value = self.db.property_int_value_cf(self.cf(cf)?, name).map_err(rocks_error("read a property"))?;
            Ok(value.unwrap_or(0))
        };
        let mut estimates = StoreEstimates::default();
        for cf in ALL_CFS {
            estimates.keys.push((cf, property(cf, "rocksdb.estimate-num-keys")?));
            estimates.live_bytes = estimates
                .live_bytes
                .saturating_add(property(cf, "rocksdb.estimate-live-data-size")?)
                .saturating_add(property(cf, "rocksdb.cur-size-all-mem-tables")?);
        }
        // One cache is shared by every column family, so any of them reports the whole of it.
        estimates.block_cache_bytes = property(CF_CONTACTS, "rocksdb.block-cache-usage")?;
        Ok(estimates)
    }

    /// Leaves no deleted key in data files or the write-ahead log once followed by [`flush`]. The
    /// MANIFEST may still name a deleted key as the first or last key of a removed file until it is
    /// rewritten, which the next open always does (see `MANIFEST_ROLL_BYTES`).
    ///
    /// [`flush`]: StateStore::flush
    fn compact(&self) -> Result<()> {
        let mut options = CompactOptions::default();
        // Rewrite the last level too: only that drops deleted values and their tombstones for good.
        options.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        for name in ALL_CFS {
            // Flushes the memtable first. The C API reports no error: a failure only shows as data
            // left behind, which the next compaction retries.
            self.db.compact_range_cf_opt(self.cf(name)?, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }
}

mod tuning;

#[cfg(test)]
mod tests;
