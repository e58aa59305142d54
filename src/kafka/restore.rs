//! Restoring partitions' state from the changelog.
//!
//! The changelog is compacted and keyed by contact; partition p holds the contacts of input partition p,
//! plus checkpoint records with the partition's applied offsets and stream time. A restore replays it
//! from the locally checkpointed offset (or from the start for an empty state directory) into RocksDB.
//! Its end is detected by the partition-EOF event of fetching, never by a watermark query alone: some
//! brokers report a low high watermark through ListOffsets.
//!
//! Reading committed records, a partition's end is its last stable offset, where the oldest transaction
//! still open begins. A member killed mid-transaction (exactly-once mode) leaves one open until the broker
//! aborts it, and the records that the partition's next owners committed after it stay hidden until
//! then. A restore that ended there would miss them and score on from stale contacts, so it ends only
//! once its position has also reached the high watermark: it waits for the open transaction to end.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::EndIsNotAnError;
use crate::rules::Rules;
use crate::runtime::task::{CHECKPOINT_KEY, record_timer};
use crate::store::{PartitionBatch, PartitionMeta, StateStore, StoreError};

/// Records written to RocksDB per batch while restoring.
const RESTORE_BATCH: usize = 5_000;
/// How long a changelog fetch may wait for more data, in ms.
const RESTORE_FETCH_WAIT_MS: &str = "10";
/// Most changelog data a restore consumer fetches ahead of its writes, half librdkafka's default: 16 MiB
/// made a restore of 10M contacts on Apache Kafka take 81 s instead of 48 s.
const RESTORE_PREFETCH_KBYTES: &str = "32768";
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

/// Progress callback data.
#[derive(Debug, Clone, Copy)]
pub struct RestoreProgress {
    /// Records applied so far, over every partition of the restore.
    pub records: u64,
    /// Partitions not yet at their end.
    pub partitions_left: usize,
}

/// Replays changelog partitions `partitions` into `store`, each from its local checkpoint or the start.
/// One consumer reads them all at once, so a rebalance that assigns many partitions pays for one client
/// and one round of fetches rather than one per partition. Setting `cancel` stops it within one poll;
/// the partitions not yet at their end are then missing from the result, and their checkpoints say how
/// far they got.
pub fn restore_partitions(
    properties: &[(String, String)],
    changelog: &str,
    partitions: &[i32],
    store: &dyn StateStore,
    rules: &Rules,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<BTreeMap<i32, RestoreSummary>, RestoreError> {
    let started = Instant::now();
    // Partitions still being read, and those at their end.
    let mut reading = BTreeMap::new();
    for &partition in partitions {
        reading.insert(partition, PartitionRestore::start(changelog, partition, store)?);
    }
    let mut restored = BTreeMap::new();
    let Some(&first) = partitions.first() else {
        return Ok(restored);
    };
    let consumer = restore_consumer(properties, changelog, "read_committed")
        .map_err(|source| kafka_error(changelog, first, source))?;
    // Asked for high watermarks only: reading committed records, a client is told the last stable offset.
    let watermarks = restore_consumer(properties, changelog, "read_uncommitted")
        .map_err(|source| kafka_error(changelog, first, source))?;
    let mut assignment = TopicPartitionList::new();
    for restore in reading.values() {
        assignment
            .add_partition_offset(changelog, restore.partition, Offset::Offset(restore.summary.next_offset))
            .map_err(|source| restore.kafka(source))?;
    }
    consumer.assign(&assignment).map_err(|source| kafka_error(changelog, first, source))?;

    let mut records = 0u64;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    while let Some(&first_left) = reading.keys().next() {
        if cancel.load(Ordering::Relaxed) {
            info!(partitions = ?reading.keys().collect::<Vec<_>>(), records, "changelog restore stopped");
            return Ok(restored);
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Some brokers never send the end-of-partition event after a producer died mid-request.
                // When reading has been idle a while and a position is at the reported end, that is its end.
                if last_progress.elapsed() > IDLE_CHECK {
                    let at_end: Vec<i32> = reading
                        .values()
                        .filter(|restore| {
                            let read_to =
                                restore.summary.next_offset.max(position(&consumer, changelog, restore.partition));
                            reached_end(read_to, high_watermark(&watermarks, changelog, restore.partition))
                        })
                        .map(|restore| restore.partition)
                        .collect();
                    // Waiting for a transaction left open by a member that died is not a stall.
                    if reading.values().any(|restore| restore.behind_open_transaction) {
                        last_progress = Instant::now();
                    }
                    for partition in at_end {
                        if let Some(restore) = reading.remove(&partition) {
                            let offset = restore.summary.next_offset;
                            warn!(partition, offset, "no end-of-partition event; at the high watermark");
                            restored.insert(partition, restore.finish(store, rules, &consumer)?);
                        }
                    }
                }
                if last_progress.elapsed() > STALL_TIMEOUT
                    && let Some(restore) = reading.get(&first_left)
                {
                    let offset = restore.summary.next_offset;
                    return Err(RestoreError::Stalled { topic: changelog.to_owned(), partition: first_left, offset });
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let Some(restore) = reading.get_mut(&partition) else {
                    continue;
                };
                let high = high_watermark(&watermarks, changelog, partition);
                if !reached_end(restore.summary.next_offset.max(position(&consumer, changelog, partition)), high) {
                    // Short of a known high watermark, a transaction is open; without one, the idle check
                    // asks again.
                    if let Some(high) = high
                        && !std::mem::replace(&mut restore.behind_open_transaction, true)
                    {
                        info!(
                            partition,
                            offset = restore.summary.next_offset,
                            high,
                            "the changelog has a transaction open; waiting for it to end"
                        );
                    }
                    continue;
                }
                if let Some(restore) = reading.remove(&partition) {
                    restored.insert(partition, restore.finish(store, rules, &consumer)?);
                }
            }
            Some(Err(err)) => return Err(kafka_error(changelog, first_left, err)),
            Some(Ok(message)) => {
                let Some(restore) = reading.get_mut(&message.partition()) else {
                    continue;
                };
                last_progress = Instant::now();
                records += 1;
                restore.apply(&message, store, rules)?;
                if last_report.elapsed() >= Duration::from_secs(1) {
                    last_report = Instant::now();
                    progress(RestoreProgress { records, partitions_left: reading.len() });
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(
        partitions = restored.len(),
        records,
        seconds,
        rate = records as f64 / seconds.max(1e-3),
        "changelog restore finished"
    );
    Ok(restored)
}

/// Whether a restore that has read up to `read_to` is at the partition's end, given its high watermark
/// (`None` when the broker did not say, which is never the end).
fn reached_end(read_to: i64, high: Option<i64>) -> bool {
    high.is_some_and(|high| read_to >= high)
}

/// The partition's high watermark; `None` when the broker does not answer (a broker just restarted may
/// have no leader for it yet), which never counts as the end: the restore asks again when idle.
fn high_watermark(consumer: &BaseConsumer<EndIsNotAnError>, changelog: &str, partition: i32) -> Option<i64> {
    consumer.fetch_watermarks(changelog, partition, Duration::from_secs(5)).ok().map(|(_, high)| high)
}

/// Where the consumer reads the partition next: past aborted records and transaction markers, which
/// deliver no message.
fn position(consumer: &BaseConsumer<EndIsNotAnError>, changelog: &str, partition: i32) -> i64 {
    let positions = consumer.position().ok();
    match positions.as_ref().and_then(|list| list.find_partition(changelog, partition)).map(|entry| entry.offset()) {
        Some(Offset::Offset(offset)) => offset,
        _ => 0,
    }
}

fn kafka_error(changelog: &str, partition: i32, source: KafkaError) -> RestoreError {
    RestoreError::Kafka { topic: changelog.to_owned(), partition, source }
}

/// A changelog reader; `isolation` is librdkafka's `isolation.level`.
fn restore_consumer(
    properties: &[(String, String)],
    changelog: &str,
    isolation: &str,
) -> Result<BaseConsumer<EndIsNotAnError>, KafkaError> {
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
        // of a partition only delays noticing that end.
        .set("fetch.wait.max.ms", RESTORE_FETCH_WAIT_MS)
        // librdkafka prefetches up to 64 MiB per consumer by default; a restore writes more slowly than the
        // broker sends, so that buffer stays full and is most of what a restore adds to memory.
        .set("queued.max.messages.kbytes", RESTORE_PREFETCH_KBYTES)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation);
    config.create_with_context(EndIsNotAnError)
}

/// One partition's share of a restore: what it has read and the RocksDB batch it is filling.
struct PartitionRestore {
    changelog: String,
    partition: i32,
    /// Whether the restore continues from a local checkpoint, so that older state exists.
    incremental: bool,
    meta: PartitionMeta,
    summary: RestoreSummary,
    batch: PartitionBatch,
    pending: usize,
    /// The last timer of each contact in the current batch (a contact can appear more than once).
    timers: HashMap<String, Option<i64>>,
    /// At the last stable offset, short of the high watermark: a transaction is open there.
    behind_open_transaction: bool,
}

impl PartitionRestore {
    fn start(changelog: &str, partition: i32, store: &dyn StateStore) -> Result<PartitionRestore, RestoreError> {
        let local = store.meta(partition)?;
        let checkpoint = local.as_ref().and_then(|meta| meta.changelog_offset);
        let start = match checkpoint {
            Some(offset) => offset,
            None => {
                // No checkpoint: whatever is there is not known to match the changelog, so start clean.
                store.drop_partition(partition)?;
                0
            }
        };
        Ok(PartitionRestore {
            changelog: changelog.to_owned(),
            partition,
            // A checkpoint at 0 is one too: scored batches name the changelog offset delivered before
            // them, so the records of a partition's first transactions are stored under it.
            incremental: checkpoint.is_some(),
            meta: local.unwrap_or_default(),
            summary: RestoreSummary { records: 0, next_offset: start },
            batch: PartitionBatch::new(partition),
            pending: 0,
            behind_open_transaction: false,
            timers: HashMap::new(),
        })
    }

    fn corrupt(&self, offset: i64, reason: String) -> RestoreError {
        RestoreError::Corrupt { topic: self.changelog.clone(), partition: self.partition, offset, reason }
    }

    fn kafka(&self, source: KafkaError) -> RestoreError {
        kafka_error(&self.changelog, self.partition, source)
    }

    fn apply(
        &mut self,
        message: &BorrowedMessage<'_>,
        store: &dyn StateStore,
        rules: &Rules,
    ) -> Result<(), RestoreError> {
        let offset = message.offset();
        self.summary.next_offset = offset + 1;
        self.summary.records += 1;
        let key = message.key().unwrap_or_default();
        if key == CHECKPOINT_KEY {
            if let Some(payload) = message.payload() {
                let checkpoint = PartitionMeta::decode(payload).map_err(|err| self.corrupt(offset, err.to_string()))?;
                self.meta.input_offsets = checkpoint.input_offsets;
                self.meta.stream_time_ms = checkpoint.stream_time_ms;
            }
        } else {
            let contact = std::str::from_utf8(key).map_err(|_| self.corrupt(offset, "key is not UTF-8".into()))?;
            if self.timers.contains_key(contact) {
                // One record per contact and write batch keeps puts and deletes unambiguous.
                self.write(store, rules, offset)?;
            }
            let due = match message.payload() {
                None => {
                    self.batch.deletes.push(contact.to_owned());
                    None
                }
                Some(payload) => {
                    let due = record_timer(rules, contact, payload).map_err(|err| self.corrupt(offset, err))?;
                    self.batch.puts.push((contact.to_owned(), payload.to_vec()));
                    due
                }
            };
            self.timers.insert(contact.to_owned(), due);
            self.pending += 1;
        }
        if self.pending >= RESTORE_BATCH {
            self.write(store, rules, self.summary.next_offset)?;
        }
        Ok(())
    }

    /// Writes the batch so far, checkpointed at changelog offset `next`. In an incremental restore the
    /// older records of the batch's contacts are read first, in one lookup for the whole batch, and
    /// their timers go.
    fn write(&mut self, store: &dyn StateStore, rules: &Rules, next: i64) -> Result<(), RestoreError> {
        let mut batch = std::mem::replace(&mut self.batch, PartitionBatch::new(self.partition));
        if self.incremental && !self.timers.is_empty() {
            let contacts: Vec<&str> = self.timers.keys().map(String::as_str).collect();
            for (contact, old) in contacts.iter().zip(store.multi_get(self.partition, &contacts)?) {
                let Some(old) = old else { continue };
                let reason = |err| format!("the stored record before offset {next} cannot be read: {err}");
                if let Some(due) = record_timer(rules, contact, &old).map_err(|err| self.corrupt(next, reason(err)))? {
                    batch.timer_deletes.push((due, (*contact).to_owned()));
                }
            }
        }
        batch.meta = Some(PartitionMeta { changelog_offset: Some(next), ..self.meta.clone() });
        for (contact, due) in self.timers.drain() {
            if let Some(due) = due {
                batch.timer_puts.push((due, contact));
            }
        }
        store.write(batch)?;
        self.pending = 0;
        Ok(())
    }

    /// Writes the rest, checkpointed at the end reached, and stops reading the partition: nothing after
    /// its end belongs to this restore.
    fn finish(
        mut self,
        store: &dyn StateStore,
        rules: &Rules,
        consumer: &BaseConsumer<EndIsNotAnError>,
    ) -> Result<RestoreSummary, RestoreError> {
        self.write(store, rules, self.summary.next_offset)?;
        let mut done = TopicPartitionList::new();
        done.add_partition(&self.changelog, self.partition);
        consumer.pause(&done).map_err(|source| self.kafka(source))?;
        info!(
            partition = self.partition,
            records = self.summary.records,
            next_offset = self.summary.next_offset,
            "restored partition from the changelog"
        );
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::{reached_end, restore_partitions};
    use crate::rules::Rules;
    use crate::runtime::record::StoredContact;
    use crate::scoring::ContactState;
    use crate::store::{MemoryStore, PartitionBatch, PartitionMeta, StateStore};

    /// A stored contact whose earliest timer is due at `due_ms`.
    fn record(rules: &Rules, due_ms: i64) -> Vec<u8> {
        let mut state = ContactState::new(rules, "contact-1", 1_000);
        state.next_timer_ms = Some(due_ms);
        StoredContact::fresh(Some(state)).encode(rules)
    }

    /// A partition whose checkpoint is 0 (the records of its first transactions are stored under it)
    /// already holds the contact: the restore replays the changelog over it and replaces its timer.
    #[test]
    fn a_restore_from_a_checkpoint_at_0_replaces_the_timers_of_the_contacts_it_rewrites() {
        let rules = Rules::parse(include_str!("../../examples/rules.toml"), std::path::Path::new("rules.toml"))
            .unwrap_or_else(|err| panic!("{err}"));
        let cluster = MockCluster::new(1).unwrap_or_else(|err| panic!("{err}"));
        cluster.create_topic("changelog", 1, 1).unwrap_or_else(|err| panic!("{err}"));
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap_or_else(|err| panic!("{err}"));
        // Twice: the second record of a contact starts a new write batch, which must find the first.
        let (newer, newest) = (record(&rules, 9_000), record(&rules, 12_000));
        for payload in [&newer, &newest] {
            producer
                .send(BaseRecord::to("changelog").partition(0).key("contact-1").payload(payload))
                .unwrap_or_else(|(err, _)| panic!("{err}"));
        }
        producer.flush(Duration::from_secs(10)).unwrap_or_else(|err| panic!("{err}"));

        let store = MemoryStore::new();
        let mut stored = PartitionBatch::new(0);
        stored.puts.push(("contact-1".into(), record(&rules, 5_000)));
        stored.timer_puts.push((5_000, "contact-1".into()));
        stored.meta = Some(PartitionMeta { changelog_offset: Some(0), ..PartitionMeta::default() });
        store.write(stored).unwrap_or_else(|err| panic!("{err}"));

        let properties = vec![("bootstrap.servers".to_owned(), cluster.bootstrap_servers())];
        let restored =
            restore_partitions(&properties, "changelog", &[0], &store, &rules, &AtomicBool::new(false), &mut |_| {})
                .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(restored.get(&0).map(|summary| summary.next_offset), Some(2));
        assert_eq!(store.get(0, "contact-1").ok().flatten(), Some(newest));
        assert_eq!(store.timers(0).ok(), Some(vec![(12_000, "contact-1".to_owned())]), "the old timers are gone");
    }

    #[test]
    fn a_restore_ends_at_the_high_watermark_and_never_where_the_broker_did_not_answer() {
        assert!(reached_end(120, Some(120)));
        assert!(reached_end(121, Some(120)), "past it: transaction markers deliver no message");
        assert!(!reached_end(100, Some(120)), "short of it a transaction is open");
        assert!(!reached_end(100, None), "an unanswered query is no end, however far the restore read");
        assert!(!reached_end(0, None));
    }
}
