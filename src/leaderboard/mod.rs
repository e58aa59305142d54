//! The leaderboard: the top contacts by a group's decayed score or by the weighted total, answered from
//! an index kept per partition, never by scanning every contact.
//!
//! [`key`] is the time-invariant ordering key per decay law and [`board`] the pure per-partition index.
//! [`Leaderboard`] is the shell part: the runtime updates a partition's board after each batch, builds
//! it from the store when the partition is assigned (after the changelog restore), and drops it when the
//! partition goes; the HTTP API merges the partitions' answers.

pub mod board;
pub mod key;

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

pub use board::{Board, BoardEntry, Ranked, Ranking};

use crate::rules::Rules;
use crate::runtime::record::StoredContact;
use crate::store::{StateStore, StoreError};

/// Most contacts a leaderboard query returns.
pub const MAX_LIMIT: usize = 1_000;

/// Why a partition's board could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LeaderboardError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored contact could not be decoded (its id stays out of the message: ids are logged at debug).
    #[error("partition {partition}: a stored contact cannot be read: {reason}")]
    Corrupt {
        /// Partition.
        partition: i32,
        /// Decoding error.
        reason: String,
    },
}

/// The boards of the partitions this instance owns.
#[derive(Default)]
pub struct Leaderboard {
    partitions: RwLock<BTreeMap<i32, Mutex<Board>>>,
}

impl Leaderboard {
    /// Builds partition `partition`'s board from the store: once per assignment, after the restore.
    pub fn open_partition(
        &self,
        partition: i32,
        rules: &Rules,
        store: &dyn StateStore,
    ) -> Result<(), LeaderboardError> {
        let mut board = Board::new(rules);
        let mut failure = None;
        store.for_each_contact(
            partition,
            &mut |contact, bytes| match StoredContact::decode(rules, contact, bytes) {
                Ok(stored) => {
                    if let Some(state) = stored.state {
                        board.upsert(rules, contact, BoardEntry::of(rules, &state));
                    }
                    true
                }
                Err(err) => {
                    tracing::debug!(partition, contact, error = %err, "stored contact cannot be read");
                    failure = Some(LeaderboardError::Corrupt { partition, reason: err.to_string() });
                    false
                }
            },
        )?;
        if let Some(err) = failure {
            return Err(err);
        }
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.insert(partition, Mutex::new(board));
        }
        Ok(())
    }

    /// Forgets a partition that moved to another instance.
    pub fn drop_partition(&self, partition: i32) {
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.remove(&partition);
        }
    }

    /// Applies a batch's changed contacts to their partition's board.
    pub fn apply(&self, partition: i32, rules: &Rules, changes: Vec<(String, Option<BoardEntry>)>) {
        if changes.is_empty() {
            return;
        }
        let Ok(partitions) = self.partitions.read() else {
            return;
        };
        if let Some(board) = partitions.get(&partition)
            && let Ok(mut board) = board.lock()
        {
            for (contact, entry) in changes {
                board.upsert(rules, &contact, entry);
            }
        }
    }

    /// The top `limit` contacts of every partition this instance owns, best first.
    pub fn top(&self, rules: &Rules, ranking: Ranking, phase: Option<usize>, limit: usize, now_ms: i64) -> Vec<Ranked> {
        let limit = limit.min(MAX_LIMIT);
        let mut merged: Vec<Ranked> = Vec::new();
        if let Ok(partitions) = self.partitions.read() {
            for board in partitions.values() {
                if let Ok(mut board) = board.lock() {
                    merged.extend(board.top(rules, ranking, phase, limit, now_ms));
                }
            }
        }
        merged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.contact.cmp(&b.contact)));
        merged.truncate(limit);
        merged
    }

    /// Indexed contacts per phase, over every owned partition.
    pub fn count_by_phase(&self, phases: usize) -> Vec<usize> {
        let mut counts = vec![0; phases];
        if let Ok(partitions) = self.partitions.read() {
            for board in partitions.values() {
                if let Ok(board) = board.lock() {
                    for (count, add) in counts.iter_mut().zip(board.count_by_phase()) {
                        *count += add;
                    }
                }
            }
        }
        counts
    }
}
