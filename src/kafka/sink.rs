//! Publishing: one idempotent producer for outputs, dead letters and the changelog, with delivery reports
//! collected per batch so that input offsets are committed only once every record of their batch is
//! acknowledged. Sends are never awaited one by one.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::runtime::record::Route;
use crate::runtime::task::{Destination, Publish};

/// How long a transaction step may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Topic names the sink publishes to.
#[derive(Debug, Clone)]
pub struct SinkTopics {
    /// Score changes and erasures.
    pub score_changed: String,
    /// Threshold crossings.
    pub threshold_crossed: String,
    /// Phase changes.
    pub phase_changed: String,
    /// Dead letters.
    pub dlq: String,
    /// The state changelog.
    pub changelog: String,
}

impl SinkTopics {
    fn topic(&self, destination: Destination) -> &str {
        match destination {
            Destination::Output(Route::ScoreChanged) => &self.score_changed,
            Destination::Output(Route::ThresholdCrossed) => &self.threshold_crossed,
            Destination::Output(Route::PhaseChanged) => &self.phase_changed,
            Destination::DeadLetter => &self.dlq,
            Destination::Changelog => &self.changelog,
        }
    }
}

/// Why publishing failed. Every variant is fatal for at-least-once delivery: stop, commit nothing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created.
    #[error("cannot create the Kafka producer: {0}")]
    Create(KafkaError),
    /// A record was refused or never acknowledged.
    #[error("publishing to {topic} failed: {reason}")]
    Delivery {
        /// The topic.
        topic: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// A transaction could not be started, given offsets or committed (exactly-once mode).
    #[error("Kafka transaction failed (exactly_once needs Apache Kafka 2.5 or a compatible broker): {0}")]
    Transaction(KafkaError),
    /// Acknowledgements did not arrive within the drain budget.
    #[error("{0} records were still unacknowledged after the drain budget")]
    Timeout(usize),
}

/// Identifies a sent record in its delivery report.
pub struct Ticket {
    batch: u64,
    changelog_partition: Option<i32>,
}

struct Report {
    batch: u64,
    changelog_partition: Option<i32>,
    result: Result<i64, String>,
    topic: String,
}

/// Sends delivery reports from librdkafka's thread to the processor.
pub struct DeliveryReports {
    reports: Mutex<Sender<Report>>,
}

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let (result, topic) = match result {
            Ok(message) => (Ok(message.offset()), message.topic().to_owned()),
            Err((err, message)) => (Err(err.to_string()), message.topic().to_owned()),
        };
        let report = Report { batch: ticket.batch, changelog_partition: ticket.changelog_partition, result, topic };
        if let Ok(reports) = self.reports.lock() {
            // The processor may be gone during shutdown; a lost report then changes nothing.
            let _ = reports.send(report);
        }
    }
}

/// A batch whose records are on their way.
#[derive(Debug, Default)]
pub struct PendingBatch {
    /// Records sent and not yet acknowledged.
    outstanding: usize,
    /// No more records will be added.
    closed: bool,
    /// (input topic index, partition, next offset) to commit once acknowledged.
    pub commits: Vec<(usize, i32, i64)>,
    /// Highest changelog offset acknowledged, per partition.
    pub changelog: HashMap<i32, i64>,
}

/// The producer and the batches in flight.
pub struct Sink {
    producer: ThreadedProducer<DeliveryReports>,
    topics: SinkTopics,
    reports: Receiver<Report>,
    in_flight: VecDeque<(u64, PendingBatch)>,
    next_batch: u64,
}

impl Sink {
    /// An idempotent producer (acks=all) with the given librdkafka properties; transactional when
    /// `transactional_id` is given (exactly-once mode).
    pub fn new(
        properties: &[(String, String)],
        topics: SinkTopics,
        transactional_id: Option<&str>,
    ) -> Result<Sink, SinkError> {
        let mut config = ClientConfig::new();
        for (key, value) in properties {
            config.set(key, value);
        }
        config.set("enable.idempotence", "true").set("acks", "all");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        set_default(&mut config, "partitioner", "murmur2_random");
        set_default(&mut config, "compression.type", "lz4");
        let (sender, reports) = channel();
        let context = DeliveryReports { reports: Mutex::new(sender) };
        let producer: ThreadedProducer<DeliveryReports> =
            config.create_with_context(context).map_err(SinkError::Create)?;
        if transactional_id.is_some() {
            producer.init_transactions(TRANSACTION_TIMEOUT).map_err(SinkError::Transaction)?;
        }
        Ok(Sink { producer, topics, reports, in_flight: VecDeque::new(), next_batch: 0 })
    }

    /// Opens a new batch (closing the previous one); records sent until the next `open` belong to it.
    pub fn open(&mut self) -> u64 {
        self.close();
        self.next_batch += 1;
        self.in_flight.push_back((self.next_batch, PendingBatch::default()));
        self.next_batch
    }

    /// Adds offsets to commit once the current batch is acknowledged.
    pub fn commit_after(&mut self, commits: impl IntoIterator<Item = (usize, i32, i64)>) {
        if let Some((_, batch)) = self.in_flight.back_mut() {
            batch.commits.extend(commits);
        }
    }

    /// Sends records of the current batch; the changelog goes to `partition`, everything else by key.
    pub fn send(&mut self, partition: i32, records: Vec<Publish>) -> Result<(), SinkError> {
        if self.in_flight.back().is_none_or(|(_, batch)| batch.closed) {
            self.open();
        }
        let batch_id = self.next_batch;
        for record in records {
            let topic = self.topics.topic(record.destination).to_owned();
            let changelog_partition = (record.destination == Destination::Changelog).then_some(partition);
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header { key: name, value: Some(value) });
            }
            let mut pending =
                BaseRecord::with_opaque_to(&topic, Box::new(Ticket { batch: batch_id, changelog_partition }))
                    .key(&record.key[..])
                    .headers(headers);
            if let Some(payload) = &record.payload {
                pending = pending.payload(&payload[..]);
            }
            if let Some(partition) = changelog_partition {
                pending = pending.partition(partition);
            }
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        pending = back;
                        // The queue drains as acknowledgements arrive; take them in meanwhile.
                        self.collect(Duration::from_millis(5))?;
                    }
                    Err((err, _)) => return Err(SinkError::Delivery { topic, reason: err.to_string() }),
                }
            }
            if let Some((_, batch)) = self.in_flight.iter_mut().find(|(id, _)| *id == batch_id) {
                batch.outstanding += 1;
            }
        }
        Ok(())
    }

    /// Takes in delivery reports for up to `wait`, then returns the closed batches now fully acknowledged,
    /// oldest first (a batch is only returned once every older batch is too).
    pub fn collect(&mut self, wait: Duration) -> Result<Vec<PendingBatch>, SinkError> {
        match self.reports.recv_timeout(wait) {
            Ok(report) => self.record(report)?,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        while let Ok(report) = self.reports.try_recv() {
            self.record(report)?;
        }
        let mut done = Vec::new();
        while self.in_flight.front().is_some_and(|(_, batch)| batch.closed && batch.outstanding == 0) {
            if let Some((_, batch)) = self.in_flight.pop_front() {
                done.push(batch);
            }
        }
        Ok(done)
    }

    /// Closes the current batch: once its records are acknowledged, `collect` returns it.
    pub fn close(&mut self) {
        if let Some((_, batch)) = self.in_flight.back_mut() {
            batch.closed = true;
        }
    }

    fn record(&mut self, report: Report) -> Result<(), SinkError> {
        let offset = report.result.map_err(|reason| SinkError::Delivery { topic: report.topic, reason })?;
        if let Some((_, batch)) = self.in_flight.iter_mut().find(|(id, _)| *id == report.batch) {
            batch.outstanding = batch.outstanding.saturating_sub(1);
            if let Some(partition) = report.changelog_partition {
                let entry = batch.changelog.entry(partition).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
        Ok(())
    }

    /// The offsets waiting on every batch in flight (exactly-once mode commits them with the transaction).
    pub fn pending_commits(&self) -> Vec<(usize, i32, i64)> {
        self.in_flight.iter().flat_map(|(_, batch)| batch.commits.iter().copied()).collect()
    }

    /// Records sent and not yet acknowledged, over all batches.
    pub fn outstanding(&self) -> usize {
        self.in_flight.iter().map(|(_, batch)| batch.outstanding).sum()
    }

    /// Number of batches waiting for acknowledgements.
    pub fn batches_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Closes the current batch and waits until every batch is acknowledged or `budget` runs out.
    pub fn drain(&mut self, budget: Duration) -> Result<Vec<PendingBatch>, SinkError> {
        self.close();
        let deadline = Instant::now() + budget;
        let mut done = Vec::new();
        while !self.in_flight.is_empty() {
            if Instant::now() >= deadline {
                return Err(SinkError::Timeout(self.outstanding()));
            }
            done.extend(self.collect(Duration::from_millis(20))?);
        }
        Ok(done)
    }

    /// Starts a transaction (exactly-once mode).
    pub fn begin_transaction(&self) -> Result<(), SinkError> {
        self.producer.begin_transaction().map_err(SinkError::Transaction)
    }

    /// Adds the consumer offsets to the open transaction and commits it: outputs, changelog and offsets
    /// become visible together, or not at all.
    pub fn commit_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    ) -> Result<(), SinkError> {
        if let (Some(group), true) = (group, offsets.count() > 0) {
            self.producer
                .send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT)
                .map_err(SinkError::Transaction)?;
        }
        self.producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(SinkError::Transaction)
    }
}

/// Sets a librdkafka property unless the configuration (or its pass-through map) already did.
pub fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// Keeps the sink shareable with the rebalance callback, which must drain it before partitions go.
pub type SharedSink = Arc<Mutex<Sink>>;
