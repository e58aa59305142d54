//! Byte-level state storage: the contacts, timers and per-partition bookkeeping of the runtime, behind
//! the [`StateStore`] trait, with a RocksDB implementation ([`RocksStore`]) and an in-memory one for tests
//! ([`MemoryStore`]). The store knows nothing about scoring: values are opaque bytes.
//!
//! # Key layout
//!
//! Every key starts with the Kafka partition it belongs to, as 4 big-endian bytes with the sign bit
//! flipped, so byte order is numeric order (`i32::MIN` sorts first, `-1` just before `0`):
//!
//! | column family  | key                                          | value                        |
//! |----------------|----------------------------------------------|------------------------------|
//! | [`CF_CONTACTS`] | partition ++ contact id (UTF-8)              | opaque contact state         |
//! | [`CF_ACCOUNTS`] | partition ++ account id (UTF-8)              | opaque account state         |
//! | [`CF_TIMERS`]   | partition ++ due ms (i64, sign-flipped BE) ++ contact id | empty            |
//! | [`CF_META`]     | partition ++ `b"meta"`                       | encoded [`PartitionMeta`]    |
//! | [`CF_META`]     | the empty key                                | [`STORE_FORMAT`], u32 BE     |
//! | [`CF_BOARD`]    | partition ++ the leaderboard's own key       | the leaderboard's own value  |
//!
//! Why this shape:
//!
//! - **Range-deletable partitions.** One task owns one partition. When the consumer group moves a
//!   partition away, its data is dropped with one range delete per column family
//!   (`[partition, partition + 1)`), which costs the same whatever the partition holds.
//! - **Ordered timers.** The due time sits right after the partition and sorts numerically, negative
//!   times included, so the timers of a partition are read in due order by a plain range scan.
//! - **No prefix extractor.** The partition prefix has a fixed width, so a contact id never needs a
//!   terminator or escaping, and no id can be a prefix that leaks into another partition.
//! - **A format marker no partition can reach.** The marker is the empty key: every partition's range
//!   starts at 4 bytes or more, so no range delete can remove it. (A key such as
//!   `b"\xff\xff\xff\xffformat"` would sit inside partition `i32::MAX`.)

mod memory;
mod meta;
mod rocks;

#[cfg(test)]
mod conformance;

use std::path::PathBuf;

pub use memory::MemoryStore;
pub use meta::{MetaDecodeError, PartitionMeta};
pub use rocks::{RocksOptions, RocksStore};

/// Per-contact state, keyed by partition and contact id.
pub const CF_CONTACTS: &str = "contacts";
/// Per-account state, keyed by partition and account id: named in a [`PartitionBatch`] under
/// [`ACCOUNT_KEY_PREFIX`], and written in the same atomic batch as the contacts beside it.
pub const CF_ACCOUNTS: &str = "accounts";
/// Decay timers, keyed by partition, due time and contact id, so due ones are a prefix of a range scan.
pub const CF_TIMERS: &str = "timers";
/// Per-partition offsets and stream time (where to resume), plus the store-format marker.
pub const CF_META: &str = "meta";
/// The leaderboard's index of each partition (see `leaderboard::board`): derived from the contacts and
/// rebuilt whenever the partition opens, so it is written without the write-ahead log.
pub const CF_BOARD: &str = "board";
/// Every column family the store opens, so opening and dropping partitions miss none.
pub const ALL_CFS: &[&str] = &[CF_CONTACTS, CF_ACCOUNTS, CF_TIMERS, CF_META, CF_BOARD];

/// The on-disk layout written by this build. A directory of format 1 (account records among the
/// contacts), 2 or 3 is brought up to it when opened; one written with any other format is refused.
/// Format 3 writes the bottommost level in zstd, which builds of format 2 cannot read; format 4 holds
/// contact records of state format 3, which builds of format 3 cannot read. The marker makes such a
/// build refuse the directory when it opens, rather than fail on the first block or record it reads.
pub const STORE_FORMAT: u32 = 4;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// The store is the local disk: none of these are caused by input, and a retry in place rarely helps
/// (RocksDB stops accepting writes after a failed one). The runtime handles every variant as internal:
/// stop cleanly without committing input offsets, so a restart reprocesses the uncommitted window.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created or opened (permissions, a file in the way, a lock
    /// held by another process, a damaged database).
    #[error("cannot open the state store at {}: {reason}", dir.display())]
    Open {
        /// The state directory.
        dir: PathBuf,
        /// What RocksDB or the file system said.
        reason: String,
    },
    /// The directory was written by a build with another on-disk layout.
    #[error(
        "the state store has format {found}, but this build reads format {expected}; \
         move the directory away and let the store restore from the changelog"
    )]
    IncompatibleFormat {
        /// The format recorded in the directory.
        found: u32,
        /// [`STORE_FORMAT`].
        expected: u32,
    },
    /// A read, write, flush or compaction failed.
    #[error("state store operation failed: {0}")]
    Rocks(String),
    /// A partition's meta record could not be decoded.
    #[error("partition {partition} has a corrupt meta record: {reason}")]
    CorruptMeta {
        /// The partition.
        partition: i32,
        /// What is wrong with the record.
        reason: MetaDecodeError,
    },
    /// A stored key does not follow the key layout (the module docs describe it).
    #[error("column family {cf} holds a malformed key: {reason}")]
    CorruptKey {
        /// The column family.
        cf: &'static str,
        /// What is wrong with the key.
        reason: String,
    },
    /// A thread panicked while holding the in-memory store's lock, so its contents are suspect.
    #[error("the in-memory state store is poisoned: a thread panicked while holding its lock")]
    Poisoned,
}

impl StoreError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "open",
            StoreError::IncompatibleFormat { .. } => "incompatible_format",
            StoreError::Rocks(_) => "rocksdb",
            StoreError::CorruptMeta { .. } => "corrupt_meta",
            StoreError::CorruptKey { .. } => "corrupt_key",
            StoreError::Poisoned => "poisoned",
        }
    }
}

/// The prefix that names an account record among a partition's records (in a [`PartitionBatch`], in
/// [`StateStore::get`] and in the changelog), so that one batch, one changelog and one restore carry
/// contacts and accounts alike. Contact ids never begin with NUL. The RocksDB store keeps account
/// records in [`CF_ACCOUNTS`], without the prefix.
pub const ACCOUNT_KEY_PREFIX: &str = "\0account:";

/// All changes one task makes for one batch of input, applied atomically so state, timers and
/// offsets never disagree after a crash.
///
/// Deletes are applied before puts, in both contacts and timers: a contact (or timer) both deleted
/// and put in one batch ends up present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionBatch {
    /// The partition every change belongs to.
    pub partition: i32,
    /// Contact states to write, by contact id.
    pub puts: Vec<(String, Vec<u8>)>,
    /// Contact ids to delete (erasure).
    pub deletes: Vec<String>,
    /// Timers to add, as (due ms, contact id).
    pub timer_puts: Vec<(i64, String)>,
    /// Timers to remove, as (due ms, contact id).
    pub timer_deletes: Vec<(i64, String)>,
    /// The partition's new bookkeeping, written with the changes it accounts for.
    pub meta: Option<PartitionMeta>,
}

impl PartitionBatch {
    /// An empty batch for `partition`, to be filled by the task.
    pub fn new(partition: i32) -> Self {
        PartitionBatch { partition, ..PartitionBatch::default() }
    }

    /// Whether the batch changes nothing, so the task can skip the write.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.timer_puts.is_empty()
            && self.timer_deletes.is_empty()
            && self.meta.is_none()
    }
}

/// Changes to one partition's leaderboard index, applied together; keys are the index's own, without the
/// partition prefix. Deletes are applied before puts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexBatch {
    /// The partition every change belongs to.
    pub partition: i32,
    /// Keys to remove.
    pub deletes: Vec<Vec<u8>>,
    /// Keys to write, with their values.
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
}

impl IndexBatch {
    /// An empty batch for `partition`.
    pub fn new(partition: i32) -> Self {
        IndexBatch { partition, ..IndexBatch::default() }
    }
}

/// Which entries of a partition's index [`StateStore::index_range`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRange<'a> {
    /// The least key read (inclusive).
    pub from: &'a [u8],
    /// The key reading stops before (exclusive).
    pub to: &'a [u8],
    /// Highest key first instead of lowest.
    pub reverse: bool,
    /// Most entries returned.
    pub limit: usize,
}

/// The size of the contacts column family, for capacity metrics and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreSize {
    /// Estimated bytes of live contact data (keys and values).
    pub live_bytes: u64,
    /// Estimated number of stored contacts.
    pub estimated_keys: u64,
}

/// Estimates a store reports for metrics (RocksDB properties; exact counts for the in-memory store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreEstimates {
    /// Estimated keys per column family.
    pub keys: Vec<(&'static str, u64)>,
    /// Estimated live data in bytes, memtables included.
    pub live_bytes: u64,
    /// Bytes held by the block cache.
    pub block_cache_bytes: u64,
}

/// The runtime's storage interface: the RocksDB store in production, the in-memory store in tests,
/// each usable as `Arc<dyn StateStore>` from the task threads.
pub trait StateStore: Send + Sync {
    /// One contact's stored state.
    fn get(&self, partition: i32, contact: &str) -> Result<Option<Vec<u8>>>;

    /// Many contacts' states at once, in the order asked, read from one consistent view (a batch's
    /// contacts are loaded in one call).
    fn multi_get(&self, partition: i32, contacts: &[&str]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Applies a batch atomically: after a crash, either all of it or none of it is visible.
    fn write(&self, batch: PartitionBatch) -> Result<()>;

    /// The partition's bookkeeping as of its last written batch, if any.
    fn meta(&self, partition: i32) -> Result<Option<PartitionMeta>>;

    /// Every timer of the partition, as (due ms, contact id), in due order (ties by contact id).
    fn timers(&self, partition: i32) -> Result<Vec<(i64, String)>>;

    /// Calls `f` with every contact of the partition and its state, in contact id byte order, until `f`
    /// returns false; account records (under [`ACCOUNT_KEY_PREFIX`]) are passed over. Sees one consistent
    /// view, the one at the call: `f` may write (the leaderboard writes its index as it reads), and the
    /// scan does not see what it writes.
    fn for_each_contact(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()>;

    /// Calls `f` with every account record of the partition (the account id, without the key prefix, and
    /// the record), in id byte order, until `f` returns false. Account keys sort before every contact id,
    /// so this reads nothing else.
    fn for_each_account(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> Result<()>;

    /// The values of the partition's leaderboard index keys, in the order asked.
    fn index_get(&self, partition: i32, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Applies changes to the partition's leaderboard index.
    fn index_write(&self, batch: IndexBatch) -> Result<()>;

    /// Up to `range.limit` (key, value) entries of the partition's leaderboard index with keys in
    /// `[range.from, range.to)`, in key order (or reverse order), keys without the partition prefix.
    fn index_range(&self, partition: i32, range: IndexRange<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Removes the partition's leaderboard index, and nothing else.
    fn index_clear(&self, partition: i32) -> Result<()>;

    /// Removes everything the partition holds (contacts, timers, meta, index), for a revoked partition.
    fn drop_partition(&self, partition: i32) -> Result<()>;

    /// Partitions that have meta (so local state to resume from), in numeric order.
    fn partitions(&self) -> Result<Vec<i32>>;

    /// Persists memtables and the write-ahead log, so a clean shutdown leaves durable files.
    fn flush(&self) -> Result<()>;

    /// The estimated size of the contacts column family.
    fn approximate_size(&self) -> Result<StoreSize>;

    /// The store's own estimates, for metrics: keys per column family, live data and block-cache use.
    fn estimates(&self) -> Result<StoreEstimates> {
        let size = self.approximate_size()?;
        Ok(StoreEstimates {
            keys: vec![(CF_CONTACTS, size.estimated_keys)],
            live_bytes: size.live_bytes,
            block_cache_bytes: 0,
        })
    }

    /// Fully compacts every column family, so deleted (erased) contacts leave no trace in data files.
    /// Slow on a large store: for maintenance, not the hot path.
    fn compact(&self) -> Result<()>;
}

/// Width of the partition prefix that starts every key.
pub(crate) const PARTITION_LEN: usize = 4;
/// Width of the due time in a timer key.
const DUE_LEN: usize = 8;
/// Suffix of a partition's meta key.
const META_SUFFIX: &[u8] = b"meta";
/// The store-format marker's key in [`CF_META`]; empty, so it is outside every partition's range.
const FORMAT_KEY: &[u8] = b"";

/// The partition as 4 bytes whose byte order is its numeric order.
fn partition_prefix(partition: i32) -> [u8; PARTITION_LEN] {
    (partition.cast_unsigned() ^ 0x8000_0000).to_be_bytes()
}

/// Inverse of [`partition_prefix`].
fn partition_from_prefix(bytes: [u8; PARTITION_LEN]) -> i32 {
    (u32::from_be_bytes(bytes) ^ 0x8000_0000).cast_signed()
}

/// The key range `[start, end)` that holds every key of a partition in every column family. `end` is
/// `None` for `i32::MAX`: its keys run to the end of the key space.
fn partition_range(partition: i32) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = partition_prefix(partition).to_vec();
    let end = partition.checked_add(1).map(|next| partition_prefix(next).to_vec());
    (start, end)
}

/// Key of a contact's state in [`CF_CONTACTS`].
fn contact_key(partition: i32, contact: &str) -> Vec<u8> {
    index_key(partition, contact.as_bytes())
}

/// The contact id of a [`CF_CONTACTS`] key.
fn contact_from_key(key: &[u8]) -> Result<&str> {
    let id = key.get(PARTITION_LEN..).ok_or_else(|| malformed(CF_CONTACTS, "shorter than the partition prefix"))?;
    std::str::from_utf8(id).map_err(|_| malformed(CF_CONTACTS, "contact id is not UTF-8"))
}

/// Key of an entry of the leaderboard index in [`CF_BOARD`].
fn index_key(partition: i32, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(PARTITION_LEN + key.len());
    prefixed(&mut full, partition, key);
    full
}

/// `key` under the partition's prefix, written into `buffer` (cleared first), so that keys built one
/// after another can share it.
fn prefixed<'b>(buffer: &'b mut Vec<u8>, partition: i32, key: &[u8]) -> &'b [u8] {
    buffer.clear();
    buffer.extend_from_slice(&partition_prefix(partition));
    buffer.extend_from_slice(key);
    buffer
}

/// Key of a timer in [`CF_TIMERS`].
fn timer_key(partition: i32, due_ms: i64, contact: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(PARTITION_LEN + DUE_LEN + contact.len());
    key.extend_from_slice(&partition_prefix(partition));
    key.extend_from_slice(&(due_ms.cast_unsigned() ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(contact.as_bytes());
    key
}

/// The (due ms, contact id) of a [`CF_TIMERS`] key.
fn timer_from_key(key: &[u8]) -> Result<(i64, String)> {
    let due: [u8; DUE_LEN] = key
        .get(PARTITION_LEN..PARTITION_LEN + DUE_LEN)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| malformed(CF_TIMERS, "shorter than partition and due time"))?;
    let due_ms = (u64::from_be_bytes(due) ^ (1 << 63)).cast_signed();
    let contact = std::str::from_utf8(&key[PARTITION_LEN + DUE_LEN..])
        .map_err(|_| malformed(CF_TIMERS, "contact id is not UTF-8"))?;
    Ok((due_ms, contact.to_owned()))
}

/// Key of a partition's meta record in [`CF_META`].
fn meta_key(partition: i32) -> Vec<u8> {
    let mut key = partition_prefix(partition).to_vec();
    key.extend_from_slice(META_SUFFIX);
    key
}

/// The partition of a [`CF_META`] key, or `None` for a key that is not a partition's meta record (the
/// format marker).
fn partition_of_meta_key(key: &[u8]) -> Option<i32> {
    let (prefix, suffix) = key.split_first_chunk::<PARTITION_LEN>()?;
    (suffix == META_SUFFIX).then(|| partition_from_prefix(*prefix))
}

/// Decodes a partition's meta record, naming the partition on failure.
fn decode_meta(partition: i32, bytes: &[u8]) -> Result<PartitionMeta> {
    PartitionMeta::decode(bytes).map_err(|reason| StoreError::CorruptMeta { partition, reason })
}

fn malformed(cf: &'static str, reason: &str) -> StoreError {
    StoreError::CorruptKey { cf, reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_prefix_orders_numerically() {
        let partitions = [i32::MIN, -70_000, -1, 0, 1, 255, 256, 70_000, i32::MAX];
        for pair in partitions.windows(2) {
            assert!(partition_prefix(pair[0]) < partition_prefix(pair[1]), "{pair:?}");
        }
        for partition in partitions {
            assert_eq!(partition_from_prefix(partition_prefix(partition)), partition);
        }
    }

    #[test]
    fn timer_keys_order_by_due_time_then_contact() {
        let times = [i64::MIN, -86_400_000, -1, 0, 1, 1_772_366_400_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(timer_key(3, pair[0], "z") < timer_key(3, pair[1], "a"), "{pair:?}");
        }
        assert!(timer_key(3, 5, "a") < timer_key(3, 5, "b"));
        for due in times {
            assert_eq!(timer_from_key(&timer_key(-2, due, "c-é")).ok(), Some((due, "c-é".to_owned())));
        }
    }

    #[test]
    fn every_key_of_a_partition_is_inside_its_range() {
        for partition in [i32::MIN, -1, 0, 7, i32::MAX] {
            let (start, end) = partition_range(partition);
            let keys = [
                contact_key(partition, ""),
                contact_key(partition, "\u{10ffff}\u{10ffff}"),
                timer_key(partition, i64::MIN, ""),
                timer_key(partition, i64::MAX, "\u{10ffff}"),
                meta_key(partition),
            ];
            for key in keys {
                assert!(key >= start && end.as_ref().is_none_or(|end| &key < end), "{partition} {key:?}");
            }
            assert!(FORMAT_KEY < start.as_slice());
            assert_eq!(partition_of_meta_key(&meta_key(partition)), Some(partition));
        }
        assert_eq!(partition_of_meta_key(FORMAT_KEY), None);
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(matches!(contact_from_key(b"ab"), Err(StoreError::CorruptKey { cf: CF_CONTACTS, .. })));
        assert!(matches!(contact_from_key(b"\0\0\0\0\xff"), Err(StoreError::CorruptKey { .. })));
        assert!(matches!(timer_from_key(b"\0\0\0\0\0"), Err(StoreError::CorruptKey { cf: CF_TIMERS, .. })));
    }

    #[test]
    fn batch_emptiness() {
        let mut batch = PartitionBatch::new(4);
        assert!(batch.is_empty());
        batch.meta = Some(PartitionMeta::default());
        assert!(!batch.is_empty());
    }
}
