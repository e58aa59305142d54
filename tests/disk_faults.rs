//! Disk faults: a state directory that cannot be written at start-up, a store that fails mid-stream,
//! restarts on the surviving or on an empty directory, and a directory from an incompatible version.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use leadscore::app::Instance;
use leadscore::config::Config;
use leadscore::runtime::status::Status;
use leadscore::store::{
    IndexBatch, IndexRange, PartitionBatch, PartitionMeta, RocksOptions, RocksStore, StateStore, StoreError, StoreSize,
};

const PARTITIONS: u32 = 3;

/// Runs `leadscore run` to its end and returns its exit code and stderr.
fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap_or_else(|err| panic!("cannot start leadscore: {err}"));
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_state_directory_that_cannot_be_written_stops_start_up() {
    let (_cluster, bootstrap, names) = mock_broker("unwritable", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    // A regular file where the directory should be, and a directory below it: neither can be created,
    // whoever runs the test (root ignores permission bits, so a read-only directory proves nothing then).
    let file = dir.path().join("state-is-a-file");
    std::fs::write(&file, b"not a directory").unwrap_or_else(|err| panic!("{err}"));
    for state in [file.clone(), file.join("state")] {
        let config = dir.path().join("leadscore.toml");
        std::fs::write(&config, names.config_toml(&bootstrap, &state, PARTITIONS))
            .unwrap_or_else(|err| panic!("{err}"));
        let (code, stderr) = run_to_exit(&config);
        assert_eq!(code, Some(1), "exit status for {}; stderr:\n{stderr}", state.display());
        let expected = format!("cannot open the state store at {}", state.display());
        assert!(stderr.contains(&expected), "a clear message naming the directory; stderr:\n{stderr}");
    }
}

#[test]
fn a_state_directory_of_another_format_is_refused_not_misread() {
    let (_cluster, bootstrap, names) = mock_broker("format", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    drop(RocksStore::open(&state, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}")));
    {
        // What a future build with another on-disk layout would leave behind: its own format marker.
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &state, leadscore::store::ALL_CFS)
            .unwrap_or_else(|err| panic!("{err}"));
        let meta = db.cf_handle(leadscore::store::CF_META).unwrap_or_else(|| panic!("no meta column family"));
        db.put_cf(meta, b"", 7u32.to_be_bytes()).unwrap_or_else(|err| panic!("{err}"));
    }
    let config = dir.path().join("leadscore.toml");
    std::fs::write(&config, names.config_toml(&bootstrap, &state, PARTITIONS)).unwrap_or_else(|err| panic!("{err}"));
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "the state store has format 7, but this build reads format {}",
            leadscore::store::STORE_FORMAT
        )),
        "the version mismatch is named; stderr:\n{stderr}"
    );
}

/// A RocksDB store whose writes start failing after a number of batches, as a full or failing disk makes
/// RocksDB's writes fail.
struct FailingStore {
    inner: RocksStore,
    writes_left: AtomicUsize,
}

impl FailingStore {
    fn check(&self) -> Result<(), StoreError> {
        let left = self.writes_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::Rocks("write batch: IO error: No space left on device (injected)".into()));
        }
        Ok(())
    }
}

impl StateStore for FailingStore {
    fn get(&self, partition: i32, contact: &str) -> leadscore::store::Result<Option<Vec<u8>>> {
        self.inner.get(partition, contact)
    }
    fn multi_get(&self, partition: i32, contacts: &[&str]) -> leadscore::store::Result<Vec<Option<Vec<u8>>>> {
        self.inner.multi_get(partition, contacts)
    }
    fn write(&self, batch: PartitionBatch) -> leadscore::store::Result<()> {
        self.check()?;
        self.writes_left.fetch_sub(1, Ordering::SeqCst);
        self.inner.write(batch)
    }
    fn meta(&self, partition: i32) -> leadscore::store::Result<Option<PartitionMeta>> {
        self.inner.meta(partition)
    }
    fn timers(&self, partition: i32) -> leadscore::store::Result<Vec<(i64, String)>> {
        self.inner.timers(partition)
    }
    fn for_each_contact(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> leadscore::store::Result<()> {
        self.inner.for_each_contact(partition, f)
    }
    fn for_each_account(&self, partition: i32, f: &mut dyn FnMut(&str, &[u8]) -> bool) -> leadscore::store::Result<()> {
        self.inner.for_each_account(partition, f)
    }
    fn index_get(&self, partition: i32, keys: &[Vec<u8>]) -> leadscore::store::Result<Vec<Option<Vec<u8>>>> {
        self.inner.index_get(partition, keys)
    }
    fn index_write(&self, batch: IndexBatch) -> leadscore::store::Result<()> {
        self.check()?;
        self.inner.index_write(batch)
    }
    fn index_range(&self, partition: i32, range: IndexRange<'_>) -> leadscore::store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.index_range(partition, range)
    }
    fn index_clear(&self, partition: i32) -> leadscore::store::Result<()> {
        self.check()?;
        self.inner.index_clear(partition)
    }
    fn drop_partition(&self, partition: i32) -> leadscore::store::Result<()> {
        self.check()?;
        self.inner.drop_partition(partition)
    }
    fn partitions(&self) -> leadscore::store::Result<Vec<i32>> {
        self.inner.partitions()
    }
    fn flush(&self) -> leadscore::store::Result<()> {
        self.check()?;
        self.inner.flush()
    }
    fn approximate_size(&self) -> leadscore::store::Result<StoreSize> {
        self.inner.approximate_size()
    }
    fn compact(&self) -> leadscore::store::Result<()> {
        self.check()?;
        self.inner.compact()
    }
}

fn committed(bootstrap: &str, names: &Names) -> BTreeMap<i32, i64> {
    committed_offsets(bootstrap, &names.group, &names.input, PARTITIONS)
}

/// Runs an instance on `store` in this process until it stops by itself (`Err`) or has committed
/// `expected` (then it is stopped and returns `Ok`).
fn run_in_process(
    config: &Config,
    store: Arc<dyn StateStore>,
    bootstrap: &str,
    names: &Names,
    expected: &BTreeMap<i32, i64>,
) -> (Result<(), String>, Arc<Status>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let rules = Arc::new(leadscore::app::load_rules(config).unwrap_or_else(|err| panic!("{err}")));
    let status = Arc::new(Status::default());
    let instance = Arc::new(Instance::new(rules, store, status.clone(), PARTITIONS, config.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(leadscore::app::run_instance(instance, async {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    loop {
        if handle.is_finished() {
            let result = runtime.block_on(handle).unwrap_or_else(|err| panic!("{err}"));
            return (result.map(|_| ()).map_err(|err| err.to_string()), status);
        }
        let settled = status.ready() && status.owned().len() == PARTITIONS as usize;
        if settled && committed(bootstrap, names) == *expected {
            let _ = stop.send(());
            let result = runtime.block_on(handle).unwrap_or_else(|err| panic!("{err}"));
            return (result.map(|_| ()).map_err(|err| err.to_string()), status);
        }
        assert!(started.elapsed() < Duration::from_secs(180), "neither failed nor finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_store_failing_mid_stream_stops_committing_and_a_restart_recovers() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let (_cluster, bootstrap, names) = mock_broker("diskfault", PARTITIONS);
    let rules = rules();
    let events = stream(47, 6_000, 500);
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);
    let model = model_of_events(&rules, PARTITIONS, &events);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let config_path = dir.path().join("leadscore.toml");
    // Small batches that each write (a zero commit interval flushes every batch), so the stream takes many
    // writes and the failure lands mid-stream.
    let toml = names
        .config_toml(&bootstrap, &state, PARTITIONS)
        .replace("batch_size = 500", "batch_size = 50")
        .replace("[processing]\n", "[processing]\ncommit_interval_ms = 0\n");
    std::fs::write(&config_path, toml).unwrap_or_else(|err| panic!("{err}"));
    let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));

    let failing = Arc::new(FailingStore {
        inner: RocksStore::open(&state, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}")),
        writes_left: AtomicUsize::new(20),
    });
    let (result, status) = run_in_process(&config, failing.clone(), &bootstrap, &names, &expected);
    let Err(err) = result else { panic!("the instance must stop on a store error") };
    assert!(err.contains("No space left on device"), "the error names the cause: {err}");
    assert!(!status.ready(), "not ready after the failure");
    let reason = status.not_ready_reason().unwrap_or_default();
    assert!(reason.starts_with("stopped:") && reason.contains("No space left"), "{reason}");
    // Nothing past what the store holds was committed.
    let committed_after_fault = committed(&bootstrap, &names);
    let total: i64 = committed_after_fault.values().sum();
    assert!(total < expected.values().sum::<i64>(), "the fault came mid-stream: {committed_after_fault:?}");
    for (partition, offset) in &committed_after_fault {
        let written = failing.inner.meta(*partition).unwrap_or_else(|err| panic!("{err}"));
        let written = written.and_then(|meta| meta.input_offset(&names.input)).unwrap_or(0);
        assert!(*offset <= written, "partition {partition}: committed {offset} but the store holds only {written}");
    }
    drop(status);
    let failing = Arc::try_unwrap(failing).unwrap_or_else(|_| panic!("the store is still shared"));
    drop(failing);

    // The same directory, healthy again.
    let store = leadscore::app::open_store(&config).unwrap_or_else(|err| panic!("{err}"));
    let (result, _) = run_in_process(&config, store, &bootstrap, &names, &expected);
    result.unwrap_or_else(|err| panic!("{err}"));
    compare_states(&model, &stored_states(&rules, &state));

    // An empty directory: everything is restored from the changelog.
    std::fs::remove_dir_all(&state).unwrap_or_else(|err| panic!("{err}"));
    let store = leadscore::app::open_store(&config).unwrap_or_else(|err| panic!("{err}"));
    let (result, _) = run_in_process(&config, store, &bootstrap, &names, &expected);
    result.unwrap_or_else(|err| panic!("{err}"));
    compare_states(&model, &stored_states(&rules, &state));
    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
    let duplicates = compare_outputs(&model, &published);
    eprintln!(
        "disk fault: failed after 20 writes with {total} of {} records committed; recovered on the same and on an \
         empty directory; {} outputs, {duplicates} duplicates",
        expected.values().sum::<i64>(),
        published.len()
    );
}
