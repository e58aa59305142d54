//! The RocksDB store: the conformance tests, and reopening, formats, open errors and erasure.

use std::os::unix::fs::PermissionsExt;

use rocksdb::Options;

use super::*;
use crate::store::conformance::{Fixture, conformance_tests, ok};

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"))
}

fn open(dir: &Path, options: &RocksOptions) -> RocksStore {
    ok(RocksStore::open(dir, options))
}

fn fixture() -> Fixture {
    let dir = temp_dir();
    let store = open(&dir.path().join("state"), &RocksOptions::default());
    Fixture::new(Box::new(store), Some(dir))
}

conformance_tests!(fixture);

fn sample_batch(partition: i32) -> PartitionBatch {
    let mut batch = PartitionBatch::new(partition);
    batch.puts.push(("alice".to_owned(), b"state of alice".to_vec()));
    batch.timer_puts.push((-5, "alice".to_owned()));
    batch.meta = Some(PartitionMeta {
        input_offsets: vec![("events".to_owned(), 17)],
        changelog_offset: Some(4),
        stream_time_ms: Some(1_772_366_400_000),
    });
    batch
}

fn assert_sample(store: &RocksStore, partition: i32) {
    assert_eq!(ok(store.get(partition, "alice")), Some(b"state of alice".to_vec()));
    assert_eq!(ok(store.timers(partition)), vec![(-5, "alice".to_owned())]);
    assert_eq!(ok(store.meta(partition)), sample_batch(partition).meta);
    assert_eq!(ok(store.partitions()), vec![partition]);
}

/// Every column family reads through the one cache of `cache_mb`, so that it bounds the store's read
/// memory: a column family without it would get RocksDB's own 32 MiB cache.
#[test]
fn every_column_family_shares_the_configured_block_cache() {
    let dir = temp_dir();
    let store = open(dir.path(), &RocksOptions { cache_mb: 8, disable_wal: true });
    for name in ALL_CFS {
        let cf = ok(store.cf(name));
        let capacity = store.db.property_int_value_cf(cf, "rocksdb.block-cache-capacity");
        assert_eq!(ok(capacity.map_err(rocks_error("property"))), Some(8 << 20), "column family {name}");
    }
}

#[test]
fn reopening_keeps_data() {
    let dir = temp_dir();
    let store = open(dir.path(), &RocksOptions::default());
    ok(store.write(sample_batch(3)));
    drop(store);
    let store = open(dir.path(), &RocksOptions::default());
    assert_sample(&store, 3);
}

#[test]
fn reopening_keeps_flushed_data_written_without_a_wal() {
    let dir = temp_dir();
    let options = RocksOptions { cache_mb: 8, disable_wal: true };
    let store = open(dir.path(), &options);
    ok(store.write(sample_batch(0)));
    ok(store.flush());
    drop(store);
    let store = open(dir.path(), &options);
    assert_sample(&store, 0);
}

/// Creates a store in `dir`, then marks it with `format` and hands the raw database to `write`, as a
/// build with that format would leave it.
fn written_by_format(dir: &Path, format: u32, write: impl FnOnce(&DB)) {
    drop(open(dir, &RocksOptions::default()));
    let db = DB::open_cf(&Options::default(), dir, ALL_CFS)
        .unwrap_or_else(|err| panic!("cannot open the raw database: {err}"));
    let meta = db.cf_handle(CF_META).unwrap_or_else(|| panic!("no meta column family"));
    db.put_cf(meta, FORMAT_KEY, format.to_be_bytes()).unwrap_or_else(|err| panic!("cannot write: {err}"));
    write(&db);
}

#[test]
fn another_store_format_is_refused() {
    let dir = temp_dir();
    written_by_format(dir.path(), STORE_FORMAT + 1, |_| {});
    match RocksStore::open(dir.path(), &RocksOptions::default()) {
        Err(StoreError::IncompatibleFormat { found, expected: STORE_FORMAT }) if found == STORE_FORMAT + 1 => {}
        other => panic!("expected IncompatibleFormat, got {other:?}"),
    }
}

/// The format marker the store holds.
fn marker(store: &RocksStore) -> Option<Vec<u8>> {
    ok(store.db.get_cf(ok(store.cf(CF_META)), FORMAT_KEY).map_err(rocks_error("read")))
}

#[test]
fn a_store_of_format_2_or_3_keeps_its_data_and_takes_the_current_marker() {
    for format in [2, 3] {
        let dir = temp_dir();
        written_by_format(dir.path(), format, |db| {
            let contacts = db.cf_handle(CF_CONTACTS).unwrap_or_else(|| panic!("no contacts column family"));
            let put = db.put_cf(contacts, contact_key(4, "ana"), b"state of ana");
            put.unwrap_or_else(|err| panic!("cannot write: {err}"));
        });
        let store = open(dir.path(), &RocksOptions::default());
        assert_eq!(ok(store.get(4, "ana")), Some(b"state of ana".to_vec()), "format {format}");
        assert_eq!(marker(&store), Some(STORE_FORMAT.to_be_bytes().to_vec()), "format {format}");
    }
    assert_eq!(STORE_FORMAT, 4, "a new format needs its own step up from 2 and 3");
}

/// Compacted into the bottommost level, records that share long runs of bytes across blocks but
/// rarely within one (here 64 random templates of 200 bytes, each record one of them and its own
/// number) compress well only with a dictionary trained on the file: LZ4 block by block, or zstd
/// without a dictionary, leave them at about their raw size.
#[test]
fn the_bottommost_level_is_compressed_with_a_trained_dictionary() {
    let dir = temp_dir();
    let store = open(dir.path(), &RocksOptions::default());
    let mut random = crate::generator::SplitMix64::new(7);
    let templates: Vec<Vec<u8>> =
        (0..64).map(|_| (0..25).flat_map(|_| random.next_u64().to_le_bytes()).collect()).collect();
    let mut batch = PartitionBatch::new(0);
    for index in 0..20_000_u64 {
        let template = &templates[random.below(64) as usize];
        batch.puts.push((format!("contact-{index:07}"), [template.as_slice(), &index.to_le_bytes()].concat()));
    }
    ok(store.write(batch));
    ok(store.compact());
    let contacts = ok(store.cf(CF_CONTACTS));
    let property = |name: String| ok(store.db.property_value_cf(contacts, &name).map_err(rocks_error("property")));
    let files_at = |level: usize| property(format!("rocksdb.num-files-at-level{level}"));
    let bottom = (0..7).rev().find(|&level| files_at(level).is_some_and(|files| files != "0"));
    let bottom = bottom.unwrap_or_else(|| panic!("no level holds a file after the compaction"));
    let ratio = property(format!("rocksdb.compression-ratio-at-level{bottom}")).unwrap_or_default();
    let ratio: f64 = ratio.parse().unwrap_or_else(|err| panic!("compression ratio {ratio:?}: {err}"));
    assert!(ratio > 4.0, "level {bottom} compresses its data {ratio:.2} times");
}

#[test]
fn a_store_of_format_1_has_its_accounts_moved_to_their_family() {
    let dir = temp_dir();
    // Format 1: account records among the contacts, first in their partitions.
    written_by_format(dir.path(), 1, |db| {
        let contacts = db.cf_handle(CF_CONTACTS).unwrap_or_else(|| panic!("no contacts column family"));
        let records =
            [(1, "\0account:acme"), (1, "\0account:globex"), (1, "ana"), (2, "ben"), (3, "\0account:initech")];
        for (partition, record) in records {
            let put = db.put_cf(contacts, contact_key(partition, record), record.as_bytes());
            put.unwrap_or_else(|err| panic!("cannot write: {err}"));
        }
    });
    let listed = |store: &RocksStore, partition: i32, accounts: bool| {
        let mut ids = Vec::new();
        let mut visit = |id: &str, _: &[u8]| {
            ids.push(id.to_owned());
            true
        };
        if accounts {
            ok(store.for_each_account(partition, &mut visit));
        } else {
            ok(store.for_each_contact(partition, &mut visit));
        }
        ids
    };
    let store = open(dir.path(), &RocksOptions::default());
    assert_eq!(listed(&store, 1, true), ["acme", "globex"]);
    assert_eq!(listed(&store, 1, false), ["ana"]);
    assert_eq!(listed(&store, 2, false), ["ben"]);
    assert_eq!(listed(&store, 3, true), ["initech"]);
    assert_eq!(ok(store.get(1, "\0account:acme")), Some(b"\0account:acme".to_vec()));
    drop(store);
    // Marked with the current format: opened again as it is.
    let store = open(dir.path(), &RocksOptions::default());
    assert_eq!(listed(&store, 3, true), ["initech"]);
}

#[test]
fn data_without_a_format_marker_is_refused() {
    let dir = temp_dir();
    {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = DB::open_cf(&options, dir.path(), ALL_CFS)
            .unwrap_or_else(|err| panic!("cannot open the raw database: {err}"));
        let contacts = db.cf_handle(CF_CONTACTS).unwrap_or_else(|| panic!("no contacts column family"));
        db.put_cf(contacts, b"someone else's key", b"x").unwrap_or_else(|err| panic!("cannot write: {err}"));
    }
    match RocksStore::open(dir.path(), &RocksOptions::default()) {
        Err(StoreError::Open { reason, .. }) => assert!(reason.contains("no format marker"), "{reason}"),
        other => panic!("expected Open, got {other:?}"),
    }
}

#[test]
fn a_file_in_the_way_is_an_open_error() {
    let dir = temp_dir();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap_or_else(|err| panic!("cannot write: {err}"));
    for path in [file.clone(), file.join("state")] {
        match RocksStore::open(&path, &RocksOptions::default()) {
            Err(err @ StoreError::Open { .. }) => {
                let message = err.to_string();
                assert!(message.contains("cannot open the state store at"), "{message}");
                assert!(message.contains(&*path.to_string_lossy()), "{message}");
            }
            other => panic!("expected Open for {}, got {other:?}", path.display()),
        }
    }
}

#[test]
fn a_read_only_parent_is_an_open_error() {
    let dir = temp_dir();
    let parent = dir.path().join("read-only");
    std::fs::create_dir(&parent).unwrap_or_else(|err| panic!("cannot create: {err}"));
    let set_mode = |mode| {
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|err| panic!("cannot chmod: {err}"));
    };
    set_mode(0o500);
    // Root (and some file systems) ignore the mode; then there is nothing to assert.
    let enforced = std::fs::write(parent.join("probe"), b"x").is_err();
    let result = RocksStore::open(&parent.join("state"), &RocksOptions::default());
    set_mode(0o700);
    if !enforced {
        eprintln!("skipped: permissions are not enforced for this user");
        return;
    }
    match result {
        Err(StoreError::Open { dir, reason }) => {
            assert_eq!(dir, parent.join("state"));
            assert!(reason.contains("ermission denied"), "{reason}");
        }
        other => panic!("expected Open, got {other:?}"),
    }
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|err| panic!("cannot list: {err}")).path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        if bytes.windows(needle.len()).any(|window| window == needle) {
            found.push(path);
        }
    }
    found
}

#[test]
fn compaction_leaves_no_trace_of_a_deleted_contact() {
    const ERASED: &str = "m-erased-7f3a9c0b5e1d";
    let dir = temp_dir();
    let store = open(dir.path(), &RocksOptions::default());
    let mut batch = PartitionBatch::new(2);
    for index in 0..50 {
        batch.puts.push((format!("a-kept-{index:03}"), vec![1; 64]));
        batch.puts.push((format!("z-kept-{index:03}"), vec![2; 64]));
    }
    batch.puts.push((ERASED.to_owned(), b"erased state".to_vec()));
    batch.timer_puts.push((1_772_366_400_000, ERASED.to_owned()));
    batch.timer_puts.push((1_772_366_400_000, "a-kept-000".to_owned()));
    ok(store.write(batch));
    ok(store.flush());
    assert!(!files_containing(dir.path(), ERASED.as_bytes()).is_empty(), "the scan must see the id first");

    let mut erase = PartitionBatch::new(2);
    erase.deletes.push(ERASED.to_owned());
    erase.timer_deletes.push((1_772_366_400_000, ERASED.to_owned()));
    ok(store.write(erase));
    ok(store.compact());
    ok(store.flush());

    // Data files and logs are clean at once; the MANIFEST only once rewritten, which reopening does.
    let is_manifest =
        |path: &PathBuf| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("MANIFEST"));
    let leftover: Vec<PathBuf> =
        files_containing(dir.path(), ERASED.as_bytes()).into_iter().filter(|path| !is_manifest(path)).collect();
    assert_eq!(leftover, Vec::<PathBuf>::new());
    drop(store);
    let store = open(dir.path(), &RocksOptions::default());
    let hex: String = ERASED.bytes().map(|byte| format!("{byte:02X}")).collect();
    for needle in [ERASED.to_owned(), hex.clone(), hex.to_lowercase()] {
        assert_eq!(files_containing(dir.path(), needle.as_bytes()), Vec::<PathBuf>::new(), "{needle}");
    }
    assert_eq!(ok(store.get(2, ERASED)), None);
    assert_eq!(ok(store.get(2, "z-kept-049")), Some(vec![2; 64]));
    assert_eq!(ok(store.timers(2)), vec![(1_772_366_400_000, "a-kept-000".to_owned())]);
}
