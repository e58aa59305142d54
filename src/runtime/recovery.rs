//! Riding out Kafka failures: when the brokers refuse or lose records (an outage, a broker restart), the
//! processor is rebuilt instead of exiting, after the instance's local state is dropped so that it is
//! restored from the changelog.
//!
//! Why drop it: a batch whose changelog records were refused is already in RocksDB. Reprocessing its
//! uncommitted input on the same state would count it as replayed and commit past it, leaving the
//! changelog without those updates for whoever restores the partition next. Restoring from the changelog
//! instead gives a state that matches what was published, and the input after it is applied again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use super::{ProcessorError, ProcessorSettings};
use crate::kafka::sink::SinkError;
use crate::store::{StateStore, StoreError};

/// Pause before rejoining the group after a Kafka failure.
const REJOIN_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the processor can be rebuilt after `err`: Kafka refused or lost records, or a revocation
/// could not be finished because of it. Store, task and restore-decoding errors stay fatal, and so does
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
    )
}

/// Drops every partition's local state, so that the next assignment restores it from the changelog.
pub(super) fn drop_local_state(store: &dyn StateStore) -> Result<(), StoreError> {
    for partition in store.partitions()? {
        store.drop_partition(partition)?;
    }
    Ok(())
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
    warn!("rejoining the group after a Kafka failure");
    !shutdown.load(Ordering::Relaxed)
}
