//! The RocksDB options of the state store: the database's, and each column family's table format,
//! filters and compression.

use rocksdb::{BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options};

use super::RocksOptions;
use crate::store::{CF_BOARD, CF_CONTACTS};

/// Least size at which the MANIFEST (RocksDB's log of file changes) is rewritten; RocksDB's default is
/// 1 GiB and it now recommends 1 MiB. The log records each data file's first and last key, so the key
/// of an erased contact can outlive its data there until the log is rewritten (at every open, and
/// when it outgrows this size); a small limit bounds how long.
const MANIFEST_ROLL_BYTES: usize = 1 << 20;

/// The memory all column families' memtables may take together before the largest is flushed: without
/// it each of them may hold two 64 MiB memtables, and an instance's memory would depend on its write
/// pattern rather than on its settings.
const MEMTABLE_BUDGET_BYTES: usize = 128 << 20;

/// The size of a partition of a file's filter and index (RocksDB's default).
const METADATA_BLOCK_BYTES: usize = 4096;

/// zstd's level for the bottommost level (its own default), and the size of the dictionary trained for
/// each of that level's files from samples of its blocks (zstd recommends about 100 times the
/// dictionary's size). On contacts as `leadscore bench` writes them, 4 KiB blocks compressed with LZ4
/// take 150 bytes per contact, with zstd 117, with zstd and a 16 KiB dictionary 83. A 64 KiB one takes
/// 3% fewer bytes again for the same compaction time; higher levels take 10% fewer at twice the time.
const ZSTD_LEVEL: i32 = 3;
const DICTIONARY_BYTES: i32 = 64 << 10;
const DICTIONARY_TRAINING_BYTES: i32 = 100 * DICTIONARY_BYTES;
/// The data of a file compaction holds in memory to train its dictionary on: the first 4 MiB.
const DICTIONARY_BUFFER_BYTES: usize = 4 << 20;
/// The zlib window the option call also takes, which zstd ignores (RocksDB's default).
const ZSTD_WINDOW_BITS_UNUSED: i32 = -14;

/// The database's options: atomic flushes without the WAL, and the bounds on its memtables and MANIFEST.
pub(super) fn database_options(options: &RocksOptions) -> Options {
    let mut db_options = Options::default();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    db_options.set_compression_type(DBCompressionType::Lz4);
    // Without a WAL, only flushed data survives a crash: flush all column families at the same
    // sequence number so state, timers and meta always come back from the same batch.
    db_options.set_atomic_flush(options.disable_wal);
    db_options.set_max_manifest_file_size(MANIFEST_ROLL_BYTES);
    db_options.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
    db_options
}

/// Options of one column family. Blocks of all of them share `cache`, so `cache_mb` bounds the
/// read memory of the whole store; index and filter blocks live in the cache too, for the same reason.
pub(super) fn column_family_options(name: &str, cache: &Cache) -> Result<Options, rocksdb::Error> {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let point_lookups = name == CF_CONTACTS || name == CF_BOARD;
    if point_lookups {
        // Contacts (and their leaderboard entries) are read by point lookups, many of them for contacts
        // seen for the first time.
        table.set_bloom_filter(10.0, false);
        // In partitions of 4 KiB, found through a top-level index pinned in the cache. Whole, a file's
        // filter and index are several hundred KiB each once a store holds millions of contacts, close
        // to a block cache shard's size (a 64 MiB cache has 64 shards): they were evicted between
        // lookups and read from their file again for nearly every one, and a restore that looks each record's
        // contact up spent most of its time reading and checksumming them.
        table.set_partition_filters(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_metadata_block_size(METADATA_BLOCK_BYTES);
        table.set_pin_top_level_index_and_filter(true);
    }
    let mut options = Options::default();
    if name == CF_CONTACTS {
        // The same for the memtable, which holds the recent writes a new contact is looked up in first.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.05);
    }
    options.set_block_based_table_factory(&table);
    // Flushes and the upper levels stay fast with LZ4. The bottommost level, where compaction leaves
    // most of a store, is written in zstd with a dictionary trained on each file's blocks: a 4 KiB block
    // holds about fifteen contacts, too few for a compressor to learn the rule keys, field tags and id
    // prefixes every record repeats, which the dictionary knows before the block starts.
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_bottommost_compression_type(DBCompressionType::Zstd);
    options.set_bottommost_compression_options(ZSTD_WINDOW_BITS_UNUSED, ZSTD_LEVEL, 0, DICTIONARY_BYTES, true);
    options.set_bottommost_zstd_max_train_bytes(DICTIONARY_TRAINING_BYTES, true);
    // The one bound the typed setters lack: how much of a file compaction buffers to sample before it
    // trains the dictionary (by default the whole file, up to 64 MiB, on top of the block cache).
    let buffer = format!("bottommost_compression_opts={{max_dict_buffer_bytes={DICTIONARY_BUFFER_BYTES}}}");
    options.get_options_from_string(buffer)
}
