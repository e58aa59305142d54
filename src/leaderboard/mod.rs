//! The leaderboard: the top contacts by a group's decayed score or by the weighted total, answered from
//! an index kept per partition, never by scanning every contact.
//!
//! [`key`] is the time-invariant ordering key per decay law, [`entry`] what is indexed of a contact and
//! how it is laid out, and [`board`] one partition's index, kept in the state store's index column family
//! so that an instance's memory stays bounded however many contacts it holds. [`Leaderboard`] is the
//! shell part: the runtime updates a partition's board after each batch, builds it from the store when
//! the partition is assigned (after the changelog restore), and drops it when the partition goes; the
//! HTTP API merges the partitions' answers.

pub mod board;
pub mod entry;
pub mod key;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use board::{Board, Query, Ranked, Ranking};
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

/// The boards of the partitions this instance owns, their indexes in `store`.
pub struct Leaderboard {
    store: Arc<dyn StateStore>,
    partitions: RwLock<BTreeMap<i32, Mutex<Board>>>,
}

impl Leaderboard {
    /// The leaderboard of the partitions whose state `store` holds.
    pub fn new(store: Arc<dyn StateStore>) -> Leaderboard {
        Leaderboard { store, partitions: RwLock::default() }
    }

    /// Starts serving partition `partition` from `board`, built by [`build`] once it was assigned.
    pub fn open_partition(&self, partition: i32, board: Board) {
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.insert(partition, Mutex::new(board));
        }
    }

    /// Forgets a partition that moved to another instance, and its index.
    pub fn drop_partition(&self, partition: i32) {
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.remove(&partition);
        }
        if let Err(err) = self.store.index_clear(partition) {
            tracing::warn!(partition, error = %err, "the leaderboard index of a revoked partition stays until it is reassigned");
        }
    }

    /// Applies a batch's changed contacts to their partition's board.
    pub fn apply(
        &self,
        partition: i32,
        rules: &Rules,
        changes: Vec<(String, Option<BoardEntry>)>,
    ) -> Result<(), LeaderboardError> {
        if changes.is_empty() {
            return Ok(());
        }
        let Ok(partitions) = self.partitions.read() else {
            return Ok(());
        };
        if let Some(board) = partitions.get(&partition)
            && let Ok(mut board) = board.lock()
        {
            board.stage(rules, self.store.as_ref(), changes)?;
        }
        Ok(())
    }

    /// The top `query.limit` contacts of every partition this instance owns, best first.
    pub fn top(&self, rules: &Rules, query: Query, now_ms: i64) -> Result<Vec<Ranked>, LeaderboardError> {
        let query = Query { limit: query.limit.min(MAX_LIMIT), ..query };
        let mut merged: Vec<Ranked> = Vec::new();
        if let Ok(partitions) = self.partitions.read() {
            for board in partitions.values() {
                if let Ok(mut board) = board.lock() {
                    merged.extend(board.top(rules, self.store.as_ref(), query, now_ms)?);
                }
            }
        }
        merged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.contact.cmp(&b.contact)));
        merged.truncate(query.limit);
        Ok(merged)
    }

    /// Indexed contacts per phase, over every owned partition, staged changes written first.
    pub fn count_by_phase(&self, rules: &Rules) -> Vec<usize> {
        let mut counts = vec![0; rules.phases.len()];
        if let Ok(partitions) = self.partitions.read() {
            for (partition, board) in partitions.iter() {
                if let Ok(mut board) = board.lock() {
                    if let Err(err) = board.flush(rules, self.store.as_ref()) {
                        tracing::warn!(partition, error = %err, "the leaderboard's latest changes are not counted");
                    }
                    for (count, add) in counts.iter_mut().zip(board.count_by_phase()) {
                        *count += add;
                    }
                }
            }
        }
        counts
    }
}
