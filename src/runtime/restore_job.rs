//! A changelog restore, and the build of the restored partitions' leaderboards, on a thread of its own, so that the processor keeps polling while it runs: a long
//! restore never costs the member its place in the group (librdkafka's `max.poll.interval.ms`), and the
//! partitions already restored go on scoring meanwhile.
//!
//! A processor runs one restore at a time. The partitions it restores are paused on the group consumer
//! until their tasks open. A revocation that takes one of them stops the restore and waits for its thread
//! before the partition goes, so that it never writes into the store while another thread or instance
//! restores or scores the same partition; the processor then starts again with what it still owns, from
//! the checkpoint the stopped restore left.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use metrics::{counter, gauge, histogram};
use tracing::{info, warn};

use super::ProcessorError;
use crate::kafka::restore::{RestoreProgress, restore_partitions};
use crate::leaderboard::{self, Board};
use crate::rules::Rules;
use crate::store::StateStore;
use crate::telemetry;

/// Per partition restored to its end, its leaderboard, built on the restore's thread too.
pub type Restored = Result<BTreeMap<i32, Board>, ProcessorError>;

/// The processor's running restore, shared with the revocation callback.
pub type RestoreSlot = Arc<Mutex<Option<RestoreJob>>>;

/// A restore running on its own thread.
pub struct RestoreJob {
    partitions: Vec<i32>,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<Restored>,
    started: Instant,
}

/// What the thread needs to read the changelog.
pub struct RestoreSource {
    /// librdkafka properties of the changelog reader.
    pub client: Vec<(String, String)>,
    /// The changelog topic.
    pub changelog: String,
    /// The processing thread the restore works for, for its log lines.
    pub thread: usize,
}

impl RestoreJob {
    /// Starts restoring `partitions` into `store` on a new thread.
    pub fn spawn(
        source: RestoreSource,
        partitions: Vec<i32>,
        store: Arc<dyn StateStore>,
        rules: Arc<Rules>,
    ) -> std::io::Result<RestoreJob> {
        let cancel = Arc::new(AtomicBool::new(false));
        gauge!(telemetry::RESTORING_PARTITIONS).increment(partitions.len() as f64);
        let handle = {
            let (cancel, partitions) = (cancel.clone(), partitions.clone());
            std::thread::Builder::new().name(format!("restore-{}", source.thread)).spawn(move || {
                let _span = tracing::info_span!("processor", thread = source.thread).entered();
                // The counter moves as the restore goes, so that a long restore does not look stuck.
                let mut counted = 0;
                let mut report = |progress: RestoreProgress| {
                    info!(records = progress.records, partitions_left = progress.partitions_left, "restoring");
                    counter!(telemetry::RESTORED_RECORDS_TOTAL).increment(progress.records - counted);
                    counted = progress.records;
                };
                let restored = restore_partitions(
                    &source.client,
                    &source.changelog,
                    &partitions,
                    store.as_ref(),
                    &rules,
                    &cancel,
                    &mut report,
                );
                let restored = restored?;
                let records: u64 = restored.values().map(|summary| summary.records).sum();
                counter!(telemetry::RESTORED_RECORDS_TOTAL).increment(records.saturating_sub(counted));
                let mut boards = BTreeMap::new();
                for partition in restored.into_keys() {
                    if let Some(board) = leaderboard::build(&rules, store.as_ref(), partition, &cancel)? {
                        boards.insert(partition, board);
                    }
                }
                Ok(boards)
            })
        };
        let handle =
            handle.inspect_err(|_| gauge!(telemetry::RESTORING_PARTITIONS).decrement(partitions.len() as f64))?;
        Ok(RestoreJob { partitions, cancel, handle, started: Instant::now() })
    }

    /// Whether the thread has finished, so that [`RestoreJob::join`] does not wait.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread and returns what it restored.
    pub fn join(self) -> Restored {
        gauge!(telemetry::RESTORING_PARTITIONS).decrement(self.partitions.len() as f64);
        // A panic in the restore is a bug: it goes on here, on the processor's thread.
        let restored = self.handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if restored.is_ok() {
            histogram!(telemetry::RESTORE_SECONDS).record(self.started.elapsed().as_secs_f64());
        }
        restored
    }

    /// Stops the restore and waits for its thread; what it wrote stays, up to its last checkpoint.
    pub fn stop(self) {
        self.cancel.store(true, Ordering::Relaxed);
        let partitions = self.partitions.clone();
        if let Err(err) = self.join() {
            warn!(error = %err, ?partitions, "the stopped restore had failed");
        } else {
            info!(?partitions, "restore stopped; its partitions were revoked");
        }
    }
}

/// Stops the running restore if it restores any of `revoked`.
pub fn stop_if_revoked(slot: &Mutex<Option<RestoreJob>>, revoked: &[i32]) {
    let Ok(mut slot) = slot.lock() else {
        return;
    };
    if slot.as_ref().is_some_and(|job| job.partitions.iter().any(|partition| revoked.contains(partition)))
        && let Some(job) = slot.take()
    {
        job.stop();
    }
}
