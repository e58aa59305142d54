//! The Kafka replay: re-scores a range of the input topics' retained history with other rules, through
//! the runtime's own [`PartitionTask`] on stream time, into shadow output topics and a throw-away state
//! directory.
//!
//! It never touches the live instance: partitions are assigned (no group membership), offsets are never
//! committed, state lives in its own RocksDB, and nothing is written to the live output topics or the
//! changelog (the shadow run keeps no changelog). Memory stays bounded whatever the history length: one
//! poll batch in memory, contact states in RocksDB, and at most [`MAX_IN_FLIGHT`] batches of outputs
//! waiting for acknowledgements.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use super::ReplayError;
use super::position::{self, Position, Range};
use super::progress::Progress;
use crate::kafka::EndIsNotAnError;
use crate::kafka::sink::{Sink, SinkTopics};
use crate::rules::Rules;
use crate::runtime::task::{Destination, InputRecord, InternalTopic, PartitionTask, TaskSettings};
use crate::store::StateStore;

/// Batches of outputs that may wait for acknowledgements at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// Time allowed for metadata and offset look-ups.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time after which a partition at its cached high watermark counts as finished even without an
/// end-of-partition event.
const IDLE_END: Duration = Duration::from_secs(3);
/// Time allowed for the last acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What to replay and where to.
#[derive(Debug, Clone)]
pub struct KafkaReplay {
    /// librdkafka properties for connecting (bootstrap servers, security).
    pub client: Vec<(String, String)>,
    /// librdkafka properties of the producer.
    pub producer: Vec<(String, String)>,
    /// Task settings: input topics, formats and limits (the clock is always stream time).
    pub task: TaskSettings,
    /// Shadow topics the outputs and dead letters go to.
    pub shadow: SinkTopics,
    /// Where the replay starts.
    pub from: Position,
    /// Where it ends (exclusive); `None`: the end of the log when the replay gets there.
    pub to: Option<Position>,
    /// Most records per poll batch.
    pub batch_size: usize,
    /// Draw a progress bar (otherwise progress is logged).
    pub progress_bar: bool,
}

/// What a Kafka replay did.
#[derive(Debug, Clone, Default)]
pub struct KafkaReplaySummary {
    /// Input records replayed.
    pub records: u64,
    /// Outputs published to the shadow topics.
    pub outputs: u64,
    /// Records dead-lettered to the shadow dead-letter topic.
    pub dead_lettered: u64,
    /// Offsets in range with no record: compaction, transaction markers, or a broker that answers a fetch
    /// from inside a record batch with the next batch.
    pub skipped: u64,
    /// Input partitions per topic.
    pub partitions: i32,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Replays into `store` (empty) with `rules`.
pub fn replay(options: &KafkaReplay, rules: &Rules, store: &dyn StateStore) -> Result<KafkaReplaySummary, ReplayError> {
    let started = Instant::now();
    let kafka = |err: KafkaError| ReplayError::Kafka(err.to_string());
    let inputs = options.task.event_topics();
    let partitions = input_partitions(&options.client, inputs)?;
    let mut config = ClientConfig::new();
    for (key, value) in &options.client {
        config.set(key, value);
    }
    // A group id of its own that nothing ever commits to: the replay assigns partitions itself.
    let group = format!("leadscore-replay-{}-{}", std::process::id(), crate::runtime::now_ms());
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    // One consumer per input topic: the end-of-partition event names only the partition.
    let mut consumers = Vec::with_capacity(inputs.len());
    for _ in inputs {
        consumers.push(config.create_with_context::<_, BaseConsumer<EndIsNotAnError>>(EndIsNotAnError).map_err(kafka)?);
    }
    let ranges =
        position::resolve(&consumers[0], inputs, partitions, &options.from, options.to.as_ref(), LOOKUP_TIMEOUT)?;

    let mut reading = Reading::new(inputs, &ranges);
    let mut total = 0u64;
    for (index, topic) in inputs.iter().enumerate() {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let key = (index, partition);
            let Some(range) = reading.ranges.get(&key).copied().filter(|_| !reading.done.contains(&key)) else {
                continue;
            };
            assignment.add_partition_offset(topic, partition, Offset::Offset(range.start)).map_err(kafka)?;
            let (_, high) = consumers[index].fetch_watermarks(topic, partition, LOOKUP_TIMEOUT).map_err(kafka)?;
            total += (range.end.unwrap_or(high).min(high.max(range.start)) - range.start).max(0) as u64;
        }
        consumers[index].assign(&assignment).map_err(kafka)?;
    }
    info!(partitions, records = total, "replaying");

    let settings = TaskSettings {
        clock: crate::stream::TimerClock::StreamTime,
        partitions: partitions as u32,
        ..options.task.clone()
    };
    let mut tasks = BTreeMap::new();
    for partition in 0..partitions {
        tasks.insert(partition, PartitionTask::open(partition, store, &settings, vec![None; settings.inputs.len()])?);
    }
    // Internal merge records go straight back to the task of their partition, as the next batch's input.
    let mut looped = LoopBack::default();
    let mut sink = Sink::new(&options.producer, options.shadow.clone(), None, None)?;
    let mut progress = Progress::new("replay", "events", total, options.progress_bar);
    let mut summary = KafkaReplaySummary { partitions, ..KafkaReplaySummary::default() };
    let mut last_record = Instant::now();
    while !reading.finished() || !looped.is_empty() {
        let mut batch: BTreeMap<i32, Vec<InputRecord>> = looped.take();
        let mut count = 0;
        let mut wait = Duration::ZERO;
        'poll: while count < options.batch_size && !reading.finished() {
            let mut polled = false;
            for (index, consumer) in consumers.iter().enumerate() {
                if reading.topic_finished(index) {
                    continue;
                }
                match consumer.poll(wait) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        tracing::debug!(topic = index, partition, next = ?reading.next.get(&(index, partition)), "end of partition");
                        reading.done.insert((index, partition));
                        polled = true;
                    }
                    Some(Err(err)) => return Err(kafka(err)),
                    Some(Ok(message)) => {
                        polled = true;
                        if reading.take((index, message.partition()), message.offset()) {
                            batch.entry(message.partition()).or_default().push(input_record(index, &message));
                            count += 1;
                        }
                    }
                }
                if count >= options.batch_size {
                    break 'poll;
                }
            }
            if !polled {
                if count > 0 || !wait.is_zero() || reading.finished() {
                    break;
                }
                wait = Duration::from_millis(100);
            }
        }
        if count == 0 {
            if last_record.elapsed() > IDLE_END {
                reading.idle(&consumers[0], inputs);
            }
        } else {
            last_record = Instant::now();
        }
        sink.open();
        for (partition, records) in batch {
            let Some(task) = tasks.get_mut(&partition) else {
                continue;
            };
            let result = task.process(rules, store, &settings, &records, true)?;
            summary.outputs += result.counts.outputs;
            summary.dead_lettered += result.counts.dead_lettered;
            if !result.write.is_empty() {
                store.write(result.write)?;
            }
            task.written(result.sequence);
            let mut publish = Vec::with_capacity(result.publish.len());
            for record in result.publish {
                match record.destination {
                    Destination::Changelog | Destination::Checkpoint => {}
                    Destination::Internal(topic, target) => looped.push(&settings, topic, target, record),
                    _ => publish.push(record),
                }
            }
            sink.send(partition, publish)?;
            // Shadow topics are scored once from the start: the offsets only mark what is applied.
            for (topic, next) in result.commit {
                task.committed(topic, next);
            }
        }
        sink.close();
        sink.collect(Duration::ZERO)?;
        while sink.batches_in_flight() > MAX_IN_FLIGHT {
            sink.collect(Duration::from_millis(20))?;
        }
        summary.records += count as u64;
        progress.advance(count as u64);
        progress.grow_to(progress.position());
    }
    summary.skipped = reading.skipped;
    sink.drain(DRAIN_TIMEOUT)?;
    store.flush()?;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The partition count of the input topics, which must exist and agree.
pub fn input_partitions(client: &[(String, String)], inputs: &[String]) -> Result<i32, ReplayError> {
    let counts = crate::kafka::topics::partition_counts(client, LOOKUP_TIMEOUT)
        .map_err(|err| ReplayError::Kafka(format!("reading cluster metadata: {err}")))?;
    let mut partitions = None;
    for topic in inputs {
        let count =
            *counts.get(topic).ok_or_else(|| ReplayError::Usage(format!("input topic {topic} does not exist")))?;
        if partitions.is_some_and(|partitions| partitions != count) {
            return Err(ReplayError::Usage(format!("input topics {inputs:?} have different partition counts")));
        }
        partitions = Some(count);
    }
    partitions.ok_or_else(|| ReplayError::Usage("no input topics".into()))
}

/// Internal merge records waiting for their partition's next batch, with the offsets they get there.
#[derive(Default)]
struct LoopBack {
    waiting: BTreeMap<i32, Vec<InputRecord>>,
    next_offset: BTreeMap<(Option<usize>, i32), i64>,
}

impl LoopBack {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn push(
        &mut self,
        settings: &TaskSettings,
        topic: InternalTopic,
        partition: i32,
        record: crate::runtime::task::Publish,
    ) {
        let topic = match topic {
            InternalTopic::Merge => settings.internal,
            InternalTopic::Account => settings.internal_account,
        };
        let offset = self.next_offset.entry((topic, partition)).or_default();
        self.waiting.entry(partition).or_default().push(InputRecord {
            topic: topic.unwrap_or_default(),
            offset: *offset,
            key: Some(record.key),
            payload: record.payload,
            headers: record.headers,
        });
        *offset += 1;
    }

    fn take(&mut self) -> BTreeMap<i32, Vec<InputRecord>> {
        std::mem::take(&mut self.waiting)
    }
}

fn input_record(topic: usize, message: &rdkafka::message::BorrowedMessage<'_>) -> InputRecord {
    InputRecord {
        topic,
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default(),
    }
}

/// Which partitions are still being read, and how far, by (input topic index, partition).
struct Reading {
    ranges: BTreeMap<(usize, i32), Range>,
    /// Next offset to read.
    next: BTreeMap<(usize, i32), i64>,
    done: BTreeSet<(usize, i32)>,
    /// Offsets in range that the broker returned no record for.
    skipped: u64,
}

impl Reading {
    fn new(inputs: &[String], ranges: &BTreeMap<(String, i32), Range>) -> Reading {
        let ranges: BTreeMap<(usize, i32), Range> = ranges
            .iter()
            .filter_map(|((topic, partition), range)| {
                inputs.iter().position(|input| input == topic).map(|index| ((index, *partition), *range))
            })
            .collect();
        let done = ranges
            .iter()
            .filter(|(_, range)| range.start == i64::MAX || range.end.is_some_and(|end| end <= range.start))
            .map(|(key, _)| *key)
            .collect();
        let next = ranges.iter().map(|(key, range)| (*key, range.start)).collect();
        Reading { ranges, next, done, skipped: 0 }
    }

    fn finished(&self) -> bool {
        self.done.len() == self.ranges.len()
    }

    fn topic_finished(&self, topic: usize) -> bool {
        self.ranges.keys().filter(|(index, _)| *index == topic).all(|key| self.done.contains(key))
    }

    /// Whether the record at `offset` is in range; notes the partition's progress.
    fn take(&mut self, key: (usize, i32), offset: i64) -> bool {
        if self.done.contains(&key) {
            return false;
        }
        let end = self.ranges.get(&key).and_then(|range| range.end);
        if end.is_some_and(|end| offset >= end) {
            self.done.insert(key);
            return false;
        }
        let expected = self.next.get(&key).copied().unwrap_or(offset);
        if offset > expected {
            // Compaction or transaction markers leave gaps; so do brokers that fetch from the batch after
            // the one holding the requested offset.
            tracing::debug!(topic = key.0, partition = key.1, expected, offset, "offsets skipped");
            self.skipped += (offset - expected) as u64;
        }
        self.next.insert(key, offset + 1);
        if end.is_some_and(|end| offset + 1 >= end) {
            self.done.insert(key);
        }
        true
    }

    /// Reading has been idle and no end-of-partition event came: partitions at the high watermark the
    /// broker reports are finished.
    fn idle(&mut self, consumer: &BaseConsumer<EndIsNotAnError>, inputs: &[String]) {
        let open: Vec<(usize, i32)> = self.ranges.keys().filter(|key| !self.done.contains(key)).copied().collect();
        for key in open {
            if let Ok((_, high)) = consumer.fetch_watermarks(&inputs[key.0], key.1, LOOKUP_TIMEOUT)
                && self.next.get(&key).is_some_and(|next| *next >= high)
            {
                tracing::debug!(topic = key.0, partition = key.1, high, "idle at the high watermark");
                self.done.insert(key);
            }
        }
    }
}
