//! The leaderboard: the top contacts by a group's decayed score or by the weighted total, answered from
//! an index kept per partition, never by scanning every contact.
//!
//! [`key`] is the time-invariant ordering key per decay law, [`entry`] what is indexed of a contact and
//! how it is laid out, and [`board`] one partition's index, kept in the state store's index column family
//! so that an instance's memory stays bounded however many contacts it holds. [`Leaderboard`] is the
//! shell part: the runtime stages a partition's changed contacts after each batch and a writer thread of
//! the leaderboard files them in the board's index, so that the processing threads never wait for index
//! writes; it builds a board from the store when the partition is assigned (after the changelog restore),
//! and drops it when the partition goes; the HTTP API merges the partitions' answers.

pub mod board;
pub mod entry;
pub mod key;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

pub use board::{Board, Query, Ranked, Ranking, Staged};
pub use entry::BoardEntry;

use crate::rules::Rules;
use crate::runtime::record::StoredContact;
use crate::store::{StateStore, StoreError};

/// Most contacts a leaderboard query returns.
pub const MAX_LIMIT: usize = 1_000;

/// Contacts indexed per write while a board is built.
const BUILD_BATCH: usize = 4_096;

/// Why a partition's board could not be built, updated or read.
#[derive(Debug, thiserror::Error)]
pub enum LeaderboardError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored contact or index entry could not be decoded (its id stays out of the message: ids are
    /// logged at debug).
    #[error("partition {partition}: {reason}")]
    Corrupt {
        /// Partition.
        partition: i32,
        /// Decoding error.
        reason: String,
    },
}

/// Builds partition `partition`'s board from its contacts in `store`: once per assignment, after the
/// restore and on the restore's thread, so that the processor keeps polling meanwhile. Whatever index
/// the partition had is dropped first, so that a board never outlives a crash or an earlier assignment.
/// Returns `None` if `cancel` is set meanwhile (the partition was revoked).
pub fn build(
    rules: &Rules,
    store: &dyn StateStore,
    partition: i32,
    cancel: &AtomicBool,
) -> Result<Option<Board>, LeaderboardError> {
    let started = std::time::Instant::now();
    let now_ms = crate::runtime::now_ms();
    store.index_clear(partition)?;
    let mut board = Board::new(rules, partition);
    let mut failure = None;
    let mut changes = Vec::with_capacity(BUILD_BATCH);
    store.for_each_contact(partition, &mut |contact, bytes| {
        match StoredContact::decode(rules, contact, bytes) {
            Ok(stored) => {
                if let Some(state) = stored.state {
                    changes.push((contact.to_owned(), BoardEntry::of(rules, &state)));
                }
            }
            Err(err) => {
                tracing::debug!(partition, contact, error = %err, "stored contact cannot be read");
                let reason = format!("a stored contact cannot be read: {err}");
                failure = Some(LeaderboardError::Corrupt { partition, reason });
                return false;
            }
        }
        if changes.len() < BUILD_BATCH {
            return true;
        }
        let written = board.insert_new(rules, store, &changes, now_ms);
        changes.clear();
        written.map_err(|err| failure = Some(err)).is_ok() && !cancel.load(Ordering::Relaxed)
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    if cancel.load(Ordering::Relaxed) {
        return Ok(None);
    }
    board.insert_new(rules, store, &changes, now_ms)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(partition, contacts = board.len(), seconds, "leaderboard built");
    Ok(Some(board))
}

/// How often the writer thread looks for staged changes that are due.
const WRITER_PERIOD: Duration = Duration::from_millis(100);

/// One owned partition: its board, and the changes the processing thread staged for it. A writer takes
/// the board's lock first and the staged changes' lock only to take them out, so that staging never
/// waits for an index write, and changes are written in the order they were staged.
struct Slot {
    partition: i32,
    board: Mutex<Board>,
    staged: Mutex<Pending>,
}

/// Changes waiting for a board, with the rules they were scored under.
#[derive(Default)]
struct Pending {
    staged: Staged,
    rules: Option<Arc<Rules>>,
    /// Why writing the staged changes failed, for the processing thread to report.
    failure: Option<LeaderboardError>,
    /// The partition was revoked: nothing more is written for it.
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    /// Writes the staged changes to the board's index; returns the board, locked, for a query.
    fn write(&self, store: &dyn StateStore) -> Result<MutexGuard<'_, Board>, LeaderboardError> {
        let mut board = lock(&self.board);
        let (changes, rules) = {
            let mut pending = lock(&self.staged);
            if pending.closed {
                return Ok(board);
            }
            (pending.staged.take(), pending.rules.clone())
        };
        if let (false, Some(rules)) = (changes.is_empty(), rules) {
            board.upsert(&rules, store, &changes)?;
        }
        Ok(board)
    }

    fn due(&self) -> bool {
        let pending = lock(&self.staged);
        !pending.closed && pending.staged.due()
    }
}

/// The boards of the partitions this instance owns, their indexes in `store`.
pub struct Leaderboard {
    store: Arc<dyn StateStore>,
    partitions: Arc<RwLock<BTreeMap<i32, Arc<Slot>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
}

impl Drop for Leaderboard {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

impl Leaderboard {
    /// The leaderboard of the partitions whose state `store` holds, with its writer thread, which runs
    /// until [`Leaderboard::stop_writer`] or until the leaderboard is dropped.
    pub fn new(store: Arc<dyn StateStore>) -> Leaderboard {
        let partitions: Arc<RwLock<BTreeMap<i32, Arc<Slot>>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let (watched, writing, stop) = (Arc::downgrade(&partitions), store.clone(), stopping.clone());
        let spawned = std::thread::Builder::new()
            .name("leaderboard".into())
            .spawn(move || write_due(&watched, writing.as_ref(), &stop));
        let writer = match spawned {
            Ok(writer) => Some(writer),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the leaderboard's writer; queries write staged changes");
                None
            }
        };
        Leaderboard { store, partitions, writer: Mutex::new(writer), stopping }
    }

    /// Stops the writer thread and waits for a write under way: once the processing threads have
    /// stopped, so that nothing writes to the store while the process ends. Queries still write what is
    /// staged.
    pub fn stop_writer(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(writer) = lock(&self.writer).take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }

    /// Starts serving partition `partition` from `board`, built by [`build`] once it was assigned.
    pub fn open_partition(&self, partition: i32, board: Board) {
        let slot = Slot { partition, board: Mutex::new(board), staged: Mutex::default() };
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.insert(partition, Arc::new(slot));
        }
    }

    /// Stops serving a partition: a write of its changes under way ends first, and none starts after,
    /// so that a board left from an earlier assignment never writes into the index a restore builds anew.
    pub fn close_partition(&self, partition: i32) {
        let slot = self.partitions.write().ok().and_then(|mut partitions| partitions.remove(&partition));
        if let Some(slot) = slot {
            let _board = lock(&slot.board);
            let mut pending = lock(&slot.staged);
            pending.closed = true;
            pending.staged.take();
        }
    }

    /// Forgets a partition that moved to another instance, and its index.
    pub fn drop_partition(&self, partition: i32) {
        self.close_partition(partition);
        if let Err(err) = self.store.index_clear(partition) {
            tracing::warn!(partition, error = %err, "the leaderboard index of a revoked partition stays until it is reassigned");
        }
    }

    /// Stages a batch's changed contacts for their partition's board; the writer thread files them. An
    /// error is that of an earlier write of the partition's changes.
    pub fn apply(
        &self,
        partition: i32,
        rules: &Arc<Rules>,
        changes: Vec<(String, Option<BoardEntry>)>,
    ) -> Result<(), LeaderboardError> {
        let slot = self.partitions.read().ok().and_then(|partitions| partitions.get(&partition).cloned());
        let Some(slot) = slot else {
            return Ok(());
        };
        let mut pending = lock(&slot.staged);
        if let Some(err) = pending.failure.take() {
            return Err(err);
        }
        if !changes.is_empty() {
            pending.staged.add(changes);
            pending.rules = Some(rules.clone());
        }
        Ok(())
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.partitions.read().map(|partitions| partitions.values().cloned().collect()).unwrap_or_default()
    }

    /// The top `query.limit` contacts of every partition this instance owns, best first; staged changes
    /// are written first.
    pub fn top(&self, rules: &Rules, query: Query, now_ms: i64) -> Result<Vec<Ranked>, LeaderboardError> {
        let query = Query { limit: query.limit.min(MAX_LIMIT), ..query };
        let mut merged: Vec<Ranked> = Vec::new();
        for slot in self.slots() {
            let mut board = slot.write(self.store.as_ref())?;
            merged.extend(board.top(rules, self.store.as_ref(), query, now_ms)?);
        }
        merged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.contact.cmp(&b.contact)));
        merged.truncate(query.limit);
        Ok(merged)
    }

    /// Indexed contacts per phase, over every owned partition, as written: the writer thread files a
    /// change within about a second.
    pub fn count_by_phase(&self, rules: &Rules) -> Vec<usize> {
        let mut counts = vec![0; rules.phases.len()];
        for slot in self.slots() {
            for (count, add) in counts.iter_mut().zip(lock(&slot.board).count_by_phase()) {
                *count += add;
            }
        }
        counts
    }
}

/// The writer thread: writes each board's staged changes once they are due, until the leaderboard is
/// dropped. A failed write is kept for the processing thread, whose next batch of the partition reports
/// it.
fn write_due(partitions: &Weak<RwLock<BTreeMap<i32, Arc<Slot>>>>, store: &dyn StateStore, stopping: &AtomicBool) {
    loop {
        std::thread::park_timeout(WRITER_PERIOD);
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        let Some(partitions) = partitions.upgrade() else { return };
        let slots: Vec<Arc<Slot>> =
            partitions.read().map(|partitions| partitions.values().cloned().collect()).unwrap_or_default();
        drop(partitions);
        for slot in slots.iter().filter(|slot| slot.due() && !stopping.load(Ordering::Relaxed)) {
            if let Err(err) = slot.write(store) {
                tracing::error!(partition = slot.partition, error = %err, "the leaderboard index was not written");
                lock(&slot.staged).failure = Some(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    use super::*;
    use crate::generator::EventGenerator;
    use crate::offline::MemoryStore as Contacts;
    use crate::store::MemoryStore;
    use crate::stream::{PartitionStream, TimerClock};

    const PARTITION: i32 = 2;

    /// The example rules, and the changed contacts of a generated stream as a batch stages them.
    fn changes() -> (Arc<Rules>, Vec<(String, Option<BoardEntry>)>) {
        let rules = Rules::parse(include_str!("../../examples/rules.toml"), Path::new("examples/rules.toml"))
            .unwrap_or_else(|err| panic!("{err}"));
        let mut generator = EventGenerator::new(3, 50, 1_772_366_400_000, 60_000);
        let mut stream = PartitionStream::new(TimerClock::StreamTime);
        let mut contacts = Contacts::default();
        for _ in 0..500 {
            stream.process(&rules, &mut contacts, &generator.next_event());
        }
        let changes = contacts
            .contacts()
            .values()
            .map(|state| (state.contact.clone(), BoardEntry::of(&rules, state)))
            .filter(|(_, entry)| entry.is_some())
            .collect();
        (Arc::new(rules), changes)
    }

    fn indexed(leaderboard: &Leaderboard, rules: &Rules) -> usize {
        leaderboard.count_by_phase(rules).iter().sum()
    }

    #[test]
    fn staging_never_waits_for_an_index_write() {
        let (rules, changes) = changes();
        let leaderboard = Arc::new(Leaderboard::new(Arc::new(MemoryStore::new())));
        leaderboard.open_partition(PARTITION, Board::new(&rules, PARTITION));
        let slot = leaderboard.slots().pop().unwrap_or_else(|| panic!("the partition is open"));
        // A write (or a query) holds the board while the processing thread stages the next batch.
        let board = lock(&slot.board);
        let (done, staged) = channel();
        let staging = leaderboard.clone();
        let rules_for_batch = rules.clone();
        std::thread::spawn(move || {
            let result = staging.apply(PARTITION, &rules_for_batch, changes);
            let _ = done.send(result.is_ok());
        });
        assert_eq!(staged.recv_timeout(Duration::from_secs(10)), Ok(true), "staging waited for the board");
        drop(board);
    }

    #[test]
    fn the_writer_files_staged_changes_within_a_second_and_a_query_sees_them_at_once() {
        let (rules, changes) = changes();
        let expected = changes.len();
        assert!(expected > 10, "the stream changed {expected} contacts");
        let leaderboard = Leaderboard::new(Arc::new(MemoryStore::new()));
        leaderboard.open_partition(PARTITION, Board::new(&rules, PARTITION));
        leaderboard.apply(PARTITION, &rules, changes.clone()).unwrap_or_else(|err| panic!("{err}"));
        // No query: the writer thread files them.
        let started = Instant::now();
        while indexed(&leaderboard, &rules) < expected && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(indexed(&leaderboard, &rules), expected);
        // A query writes what is staged before it reads.
        let erased: Vec<(String, Option<BoardEntry>)> =
            changes.iter().take(5).map(|(contact, _)| (contact.clone(), None)).collect();
        leaderboard.apply(PARTITION, &rules, erased).unwrap_or_else(|err| panic!("{err}"));
        let query = Query { ranking: Ranking::Total, phase: None, limit: MAX_LIMIT };
        let top = leaderboard.top(&rules, query, crate::runtime::now_ms()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(top.len(), expected - 5);
        // A revoked partition takes its staged changes with it, and counts no more.
        leaderboard.apply(PARTITION, &rules, changes).unwrap_or_else(|err| panic!("{err}"));
        leaderboard.drop_partition(PARTITION);
        assert_eq!(indexed(&leaderboard, &rules), 0);
    }
}
