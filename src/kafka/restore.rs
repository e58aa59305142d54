//! Restoring a partition's state from the changelog.
//!
//! The changelog is compacted and keyed by contact; partition p holds the contacts of input partition p,
//! plus checkpoint records with the partition's applied offsets and stream time. A restore replays it
//! from the locally checkpointed offset (or from the start for an empty state directory) into RocksDB.
//! Its end is detected by the partition-EOF event of fetching, never by a watermark query: some brokers
//! report a low high watermark through ListOffsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::EndIsNotAnError;
use crate::rules::Rules;
use crate::runtime::record::StoredContact;
use crate::runtime::task::CHECKPOINT_KEY;
use crate::store::{PartitionBatch, PartitionMeta, StateStore, StoreError};

/// Records written to RocksDB per batch while restoring.
const RESTORE_BATCH: usize = 5_000;
/// How long a changelog fetch may wait for more data, in ms.
const RESTORE_FETCH_WAIT_MS: &str = "10";
/// Idle time after which the restore compares its position with the high watermark.
const IDLE_CHECK: Duration = Duration::from_secs(3);
/// How long a restore may see no progress before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Changelog records applied.
    pub records: u64,
    /// Next changelog offset.
    pub next_offset: i64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The changelog could not be read.
    #[error("reading changelog {topic} partition {partition}: {source}")]
    Kafka {
        /// Changelog topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The client error.
        source: KafkaError,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The changelog holds a record this build cannot read.
    #[error("changelog {topic} partition {partition} offset {offset}: {reason}")]
    Corrupt {
        /// Changelog topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// No progress and no end of partition for too long.
    #[error("restore of {topic} partition {partition} stalled at offset {offset}")]
    Stalled {
        /// Changelog topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Last offset reached.
        offset: i64,
    },
}

/// Progress callback data: records so far, and records per second.
#[derive(Debug, Clone, Copy)]
pub struct RestoreProgress {
    /// Partition.
    pub partition: i32,
    /// Records applied so far.
    pub records: u64,
    /// Current offset.
    pub offset: i64,
}

/// Replays changelog partition `partition` into `store`, from the local checkpoint or the start.
pub fn restore_partition(
    properties: &[(String, String)],
    changelog: &str,
    partition: i32,
    store: &dyn StateStore,
    rules: &Rules,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<RestoreSummary, RestoreError> {
    let kafka = |source| RestoreError::Kafka { topic: changelog.to_owned(), partition, source };
    let local = store.meta(partition)?;
    let start = match local.as_ref().and_then(|meta| meta.changelog_offset) {
        Some(offset) => offset,
        None => {
            // No checkpoint: whatever is there is not known to match the changelog, so start clean.
            store.drop_partition(partition)?;
            0
        }
    };
    let incremental = start > 0;
    let mut meta = local.unwrap_or_default();

    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
        .set("group.id", format!("{changelog}.restore"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // The restore reads to the end and stops: a fetch held for librdkafka's default 500 ms at the end
        // of every partition adds up over a rebalance that assigns many, all inside one poll interval.
        .set("fetch.wait.max.ms", RESTORE_FETCH_WAIT_MS)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer<EndIsNotAnError> = config.create_with_context(EndIsNotAnError).map_err(kafka)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(changelog, partition, Offset::Offset(start)).map_err(kafka)?;
    consumer.assign(&assignment).map_err(kafka)?;

    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    let mut summary = RestoreSummary { records: 0, next_offset: start };
    let mut batch = PartitionBatch::new(partition);
    let mut pending = 0usize;
    // The last timer of each contact in the current batch (a contact can appear more than once).
    let mut timers: HashMap<String, Option<i64>> = HashMap::new();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Some brokers never send the end-of-partition event after a producer died mid-request.
                // When reading has been idle a while and the position is at the reported end, that is the end.
                if last_progress.elapsed() > IDLE_CHECK
                    && let Ok((_, high)) = consumer.fetch_watermarks(changelog, partition, Duration::from_secs(5))
                    && summary.next_offset >= high
                {
                    warn!(partition, offset = summary.next_offset, "no end-of-partition event; at the high watermark");
                    break;
                }
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(RestoreError::Stalled {
                        topic: changelog.to_owned(),
                        partition,
                        offset: summary.next_offset,
                    });
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(err)) => return Err(kafka(err)),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let offset = message.offset();
                summary.next_offset = offset + 1;
                summary.records += 1;
                let key = message.key().unwrap_or_default();
                let corrupt =
                    |reason: String| RestoreError::Corrupt { topic: changelog.to_owned(), partition, offset, reason };
                if key == CHECKPOINT_KEY {
                    if let Some(payload) = message.payload() {
                        let checkpoint = PartitionMeta::decode(payload).map_err(|err| corrupt(err.to_string()))?;
                        meta.input_offsets = checkpoint.input_offsets;
                        meta.stream_time_ms = checkpoint.stream_time_ms;
                    }
                } else {
                    let contact = std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8".into()))?;
                    if timers.contains_key(contact) {
                        // One record per contact and write batch keeps puts and deletes unambiguous.
                        batch.meta = Some(PartitionMeta { changelog_offset: Some(offset), ..meta.clone() });
                        add_timers(&mut batch, &mut timers);
                        store.write(std::mem::replace(&mut batch, PartitionBatch::new(partition)))?;
                        pending = 0;
                    }
                    if incremental && let Some(old) = store.get(partition, contact)? {
                        let old =
                            StoredContact::decode(rules, contact, &old).map_err(|err| corrupt(err.to_string()))?;
                        if let Some(due) = old.state.and_then(|state| state.next_timer_ms) {
                            batch.timer_deletes.push((due, contact.to_owned()));
                        }
                    }
                    let due = match message.payload() {
                        None => {
                            batch.deletes.push(contact.to_owned());
                            None
                        }
                        Some(payload) => {
                            let stored = StoredContact::decode(rules, contact, payload)
                                .map_err(|err| corrupt(err.to_string()))?;
                            batch.puts.push((contact.to_owned(), payload.to_vec()));
                            stored.state.as_ref().and_then(|state| state.next_timer_ms)
                        }
                    };
                    timers.insert(contact.to_owned(), due);
                    pending += 1;
                }
                if pending >= RESTORE_BATCH {
                    meta.changelog_offset = Some(summary.next_offset);
                    batch.meta = Some(meta.clone());
                    add_timers(&mut batch, &mut timers);
                    store.write(std::mem::replace(&mut batch, PartitionBatch::new(partition)))?;
                    pending = 0;
                }
                if last_report.elapsed() >= Duration::from_secs(1) {
                    last_report = Instant::now();
                    progress(RestoreProgress { partition, records: summary.records, offset: offset + 1 });
                }
            }
        }
    }
    meta.changelog_offset = Some(summary.next_offset);
    batch.meta = Some(meta);
    add_timers(&mut batch, &mut timers);
    store.write(batch)?;
    let seconds = started.elapsed().as_secs_f64();
    info!(
        partition,
        records = summary.records,
        seconds,
        rate = summary.records as f64 / seconds.max(1e-3),
        "restored partition from the changelog"
    );
    Ok(summary)
}

fn add_timers(batch: &mut PartitionBatch, timers: &mut HashMap<String, Option<i64>>) {
    for (contact, due) in timers.drain() {
        if let Some(due) = due {
            batch.timer_puts.push((due, contact));
        }
    }
}
