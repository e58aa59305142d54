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

use rdkafka::error::KafkaError;

use super::ProcessorError;
use crate::kafka::restore::RestoreError;
use crate::kafka::sink::SinkError;

/// Pause before rejoining the group after an external fault.
const REJOIN_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the processor can be rebuilt after `err`: Kafka refused or lost records, a revocation could
/// not be finished because of it, the schema registry did not answer, or (exactly-once mode) a
/// transaction failed without fencing the producer, such as offsets refused because their commit met a
/// rebalance, or its records not flushed in time. Store, task and restore-decoding errors stay fatal, and
/// so does a fenced producer: another process runs under this transactional id.
///
/// In exactly-once mode the rebuild aborts the open transaction, and RocksDB holds only what committed
/// transactions wrote, so it is a restart without the exit: the restore and the input after the
/// committed offsets bring the state back, and a `read_committed` reader never sees the aborted outputs.
pub(super) fn recoverable(err: &ProcessorError) -> bool {
    match err {
        ProcessorError::Sink(SinkError::Transaction(KafkaError::Transaction(cause))) => !cause.is_fatal(),
        // The flush that starts a commit timed out (every broker gone for longer than a transaction step).
        ProcessorError::Sink(SinkError::Transaction(KafkaError::Flush(_))) => true,
        _ => matches!(
            err,
            ProcessorError::Consumer(_)
                | ProcessorError::Revocation(_)
                | ProcessorError::Sink(SinkError::Delivery { .. } | SinkError::Timeout(_))
                | ProcessorError::Restore(RestoreError::Kafka { .. } | RestoreError::Stalled { .. })
                | ProcessorError::Task(super::task::TaskError::Registry(_))
        ),
    }
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
