//! What the processor tells the outside world: readiness, assigned partitions, restore progress and a
//! fatal error. Shared with the HTTP server; cheap to read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::RunSummary;

/// The processor's observable status.
#[derive(Debug, Default)]
pub struct Status {
    subscribed: AtomicBool,
    brokers_up: AtomicBool,
    /// The partitions each processing thread owns.
    owned: Mutex<BTreeMap<usize, BTreeSet<i32>>>,
    restoring: Mutex<BTreeSet<i32>>,
    fatal: Mutex<Option<String>>,
    /// Events scored since start (for live views).
    pub events: AtomicU64,
    /// What each processing thread that stopped cleanly (state flushed, offsets committed) had done.
    stopped_cleanly: Mutex<Vec<RunSummary>>,
}

impl Status {
    /// Ready: subscribed, brokers reachable, nothing restoring, no fatal error.
    pub fn ready(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
            && self.brokers_up.load(Ordering::Relaxed)
            && self.restoring.lock().map(|set| set.is_empty()).unwrap_or(false)
            && self.fatal.lock().map(|fatal| fatal.is_none()).unwrap_or(false)
    }

    /// Why the instance is not ready, for `/readyz`.
    pub fn not_ready_reason(&self) -> Option<String> {
        if let Ok(fatal) = self.fatal.lock()
            && let Some(reason) = fatal.as_ref()
        {
            return Some(format!("stopped: {reason}"));
        }
        if !self.subscribed.load(Ordering::Relaxed) {
            return Some("not subscribed yet".into());
        }
        if !self.brokers_up.load(Ordering::Relaxed) {
            return Some("brokers unreachable".into());
        }
        match self.restoring.lock() {
            Ok(set) if !set.is_empty() => Some(format!("restoring partitions {set:?}")),
            Ok(_) => None,
            Err(_) => Some("status poisoned".into()),
        }
    }

    pub(crate) fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }

    /// Whether the brokers answered last: a client of the instance that finds them all down clears it, and
    /// a processor's probe sets it again.
    pub(crate) fn brokers_up(&self) -> bool {
        self.brokers_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_brokers_up(&self, up: bool) {
        self.brokers_up.store(up, Ordering::Relaxed);
    }

    pub(crate) fn set_fatal(&self, reason: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(reason);
        }
    }

    /// Marks input partition `partition` as restoring (or done). Public so embedders and tests can show
    /// a restore to the HTTP API.
    pub fn restoring(&self, partition: i32, restoring: bool) {
        if let Ok(mut set) = self.restoring.lock() {
            if restoring {
                set.insert(partition);
            } else {
                set.remove(&partition);
            }
        }
    }

    /// Sets the partitions that processing thread `thread` owns.
    pub fn set_owned(&self, thread: usize, partitions: impl IntoIterator<Item = i32>) {
        if let Ok(mut owned) = self.owned.lock() {
            owned.insert(thread, partitions.into_iter().collect());
        }
    }

    /// Whether this instance owns input partition `partition`.
    pub fn owns(&self, partition: i32) -> bool {
        self.owned.lock().map(|owned| owned.values().any(|set| set.contains(&partition))).unwrap_or(false)
    }

    /// Whether input partition `partition` is being restored.
    pub fn is_restoring(&self, partition: i32) -> bool {
        self.restoring.lock().map(|set| set.contains(&partition)).unwrap_or(false)
    }

    /// The partitions this instance owns, over all its processing threads.
    pub fn owned(&self) -> Vec<i32> {
        let owned = self.owned.lock().map(|owned| owned.values().flatten().copied().collect::<BTreeSet<i32>>());
        owned.unwrap_or_default().into_iter().collect()
    }

    /// Notes that a processing thread stopped cleanly, with what it did: only its Kafka clients are left
    /// to close.
    pub(crate) fn stopped_cleanly(&self, summary: RunSummary) {
        if let Ok(mut stopped) = self.stopped_cleanly.lock() {
            stopped.push(summary);
        }
    }

    /// What the processing threads did, once `threads` of them have stopped cleanly.
    pub fn clean_stop(&self, threads: usize) -> Option<RunSummary> {
        let stopped = self.stopped_cleanly.lock().ok()?;
        (stopped.len() >= threads).then(|| {
            stopped.iter().fold(RunSummary::default(), |total, summary| RunSummary {
                records: total.records + summary.records,
                outputs: total.outputs + summary.outputs,
            })
        })
    }

    /// The partitions processing thread `thread` owns.
    pub fn owned_by(&self, thread: usize) -> Vec<i32> {
        let owned = self.owned.lock().map(|owned| owned.get(&thread).cloned().unwrap_or_default());
        owned.unwrap_or_default().into_iter().collect()
    }
}
