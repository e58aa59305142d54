//! Riding out external faults: when the brokers refuse or lose records (an outage, a broker restart, a
//! record over a topic's size limit, a missing or forbidden topic), or the schema registry cannot be
//! reached, the processor is rebuilt instead of exiting, and retries after a pause until the fault is gone.
//!
//! The local state needs no repair: RocksDB only receives a batch once all of its records were
//! acknowledged, so it never runs ahead of the changelog, and the restore on the next assignment replays
//! whatever the changelog holds beyond it. The input after the committed offsets is then scored again;
//! what the restored records already applied is skipped, and its outputs were delivered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use super::{ProcessorError, ProcessorSettings};
use crate::kafka::sink::SinkError;

/// Pause before rejoining the group after an external fault.
const REJOIN_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the processor can be rebuilt after `err`: Kafka refused or lost records, a revocation could
/// not be finished because of it, or the schema registry did not answer. Store, task and restore-decoding errors stay fatal, and so does
/// everything in exactly-once mode, whose transactions are not rebuilt here.
pub(super) fn recoverable(settings: &ProcessorSettings, err: &ProcessorError) -> bool {
    if settings.transactional_id.is_some() {
        return false;
    }
    matches!(
        err,
        ProcessorError::Consumer(_)
            | ProcessorError::Revocation(_)
            | ProcessorError::Sink(SinkError::Delivery { .. } | SinkError::Timeout(_))
            | ProcessorError::Restore(crate::kafka::restore::RestoreError::Kafka { .. })
            | ProcessorError::Restore(crate::kafka::restore::RestoreError::Stalled { .. })
            | ProcessorError::Task(super::task::TaskError::Registry(_))
    )
}

/// Waits before rejoining; returns false if shutdown was requested meanwhile.
pub(super) fn back_off(shutdown: &AtomicBool) -> bool {
    let started = Instant::now();
    while started.elapsed() < REJOIN_BACKOFF {
        if shutdown.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    warn!("rejoining the group after an external fault (the brokers or the schema registry)");
    !shutdown.load(Ordering::Relaxed)
}
