//! Publishing: one idempotent producer for outputs, dead letters and the changelog, with delivery reports
//! collected per batch so that input offsets are committed only once every record of their batch is
//! acknowledged. Sends are never awaited one by one.
//!
//! # Waves
//!
//! A batch's records go out in three waves, each sent once the one before it is acknowledged:
//!
//! 1. outputs and dead letters, sent as the batch is scored;
//! 2. the contact records of the changelog;
//! 3. the partition checkpoint (input offsets and stream time) of the changelog.
//!
//! Then the batch is done: its RocksDB writes are applied and its input offsets committed. So a contact
//! record never reaches the changelog before the outputs of the input it reflects, and a checkpoint never
//! claims input whose contact records are missing. A producer that fails one record and delivers the next
//! (idempotence allows that gap) cannot make a restore skip input it never saw, and an instance that
//! restores a contact which skips input as already applied knows that input's outputs were delivered.
//! Changelog waves go out in batch order, so a later record of a contact never lands before an older one.
//!
//! The first failed record poisons the sink: no wave is sent and no batch is done after it, so no offset
//! moves past it. In exactly-once mode the transaction makes a batch atomic, and every wave is sent at once.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};

use crate::runtime::record::Route;
use crate::runtime::status::Status;
use crate::runtime::task::{Destination, InternalTopic, Publish};
use crate::store::PartitionBatch;

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
    /// Account score changes and account threshold crossings.
    pub accounts: String,
    /// Dead letters.
    pub dlq: String,
    /// The state changelog.
    pub changelog: String,
    /// The internal merge topic.
    pub internal: String,
    /// The internal account topic.
    pub internal_account: String,
}

impl SinkTopics {
    fn topic(&self, destination: Destination) -> &str {
        match destination {
            Destination::Output(Route::ScoreChanged) => &self.score_changed,
            Destination::Output(Route::ThresholdCrossed) => &self.threshold_crossed,
            Destination::Output(Route::PhaseChanged) => &self.phase_changed,
            Destination::Output(Route::Account) => &self.accounts,
            Destination::DeadLetter => &self.dlq,
            Destination::Changelog | Destination::Checkpoint => &self.changelog,
            Destination::Internal(InternalTopic::Merge, _) => &self.internal,
            Destination::Internal(InternalTopic::Account, _) => &self.internal_account,
        }
    }
}

/// Why publishing failed. Every variant is fatal for at-least-once delivery: stop, commit nothing.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A drain was asked for while a transaction is open: its batches are finished only by committing it.
    #[error("the open transaction must be committed or aborted before its batches are finished")]
    TransactionOpen,
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

/// Sends delivery reports from librdkafka's thread to the processor, and tells the instance's status when
/// every broker is down: that thread serves the producer's errors even while the processor waits in a
/// transaction step (up to 30 s), so `/readyz` follows an outage at once.
pub struct DeliveryReports {
    reports: Mutex<Sender<Report>>,
    status: Option<Arc<Status>>,
}

impl ClientContext for DeliveryReports {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(status) = &self.status
            && error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown)
        {
            status.set_brokers_up(false);
        }
        tracing::warn!(error = %error, reason, "Kafka producer error");
    }
}

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
    /// Records of the wave in flight sent and not yet acknowledged.
    outstanding: usize,
    /// No more records will be added.
    closed: bool,
    /// Waves sent so far (1 to 3); the held records of later waves wait in `later`.
    waves_sent: usize,
    /// Records of waves 2 and 3, with the partition they belong to.
    later: [Vec<(i32, Publish)>; 2],
    /// (input topic index, partition, next offset) to commit once acknowledged.
    pub commits: Vec<(usize, i32, i64)>,
    /// Highest changelog offset acknowledged, per partition.
    pub changelog: HashMap<i32, i64>,
    /// Partitions this batch has sent changelog records to.
    changelog_sent: Vec<i32>,
    /// RocksDB writes to apply once every wave is acknowledged, with their task's batch sequence number.
    pub writes: Vec<(u64, PartitionBatch)>,
}

impl PendingBatch {
    fn done(&self) -> bool {
        self.closed && self.outstanding == 0 && self.later.iter().all(Vec::is_empty)
    }
}

/// The producer and the batches in flight.
pub struct Sink {
    producer: ThreadedProducer<DeliveryReports>,
    topics: SinkTopics,
    reports: Receiver<Report>,
    in_flight: VecDeque<(u64, PendingBatch)>,
    next_batch: u64,
    /// Exactly-once mode sends every wave at once: the transaction makes the batch atomic.
    staged: bool,
    /// The first delivery failure; once set nothing more is sent and no batch completes.
    failed: Option<SinkError>,
    /// When the open transaction began (exactly-once mode); `None` between transactions.
    transaction_began: Option<Instant>,
}

impl Sink {
    /// An idempotent producer (acks=all) with the given librdkafka properties; transactional when
    /// `transactional_id` is given (exactly-once mode). A processor's sink reports brokers that are all
    /// down to its `status`.
    pub fn new(
        properties: &[(String, String)],
        topics: SinkTopics,
        transactional_id: Option<&str>,
        status: Option<Arc<Status>>,
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
        let context = DeliveryReports { reports: Mutex::new(sender), status };
        let producer: ThreadedProducer<DeliveryReports> =
            config.create_with_context(context).map_err(SinkError::Create)?;
        if transactional_id.is_some() {
            producer.init_transactions(TRANSACTION_TIMEOUT).map_err(SinkError::Transaction)?;
        }
        Ok(Sink {
            producer,
            topics,
            reports,
            in_flight: VecDeque::new(),
            next_batch: 0,
            staged: transactional_id.is_none(),
            failed: None,
            transaction_began: None,
        })
    }

    /// Opens a new batch (closing the previous one); records sent until the next `open` belong to it.
    pub fn open(&mut self) -> u64 {
        self.close();
        self.next_batch += 1;
        self.in_flight.push_back((self.next_batch, PendingBatch { waves_sent: 1, ..PendingBatch::default() }));
        self.next_batch
    }

    /// Adds offsets to commit once the current batch is acknowledged.
    pub fn commit_after(&mut self, commits: impl IntoIterator<Item = (usize, i32, i64)>) {
        if let Some((_, batch)) = self.in_flight.back_mut() {
            batch.commits.extend(commits);
        }
    }

    /// Adds a task's RocksDB write (with the task's batch sequence number) to apply once the current batch
    /// is acknowledged, before its offsets are committed.
    pub fn write_after(&mut self, sequence: u64, write: PartitionBatch) {
        if let Some((_, batch)) = self.in_flight.back_mut() {
            batch.writes.push((sequence, write));
        }
    }

    /// Adds records of `partition` to the current batch: outputs and dead letters are sent now, changelog
    /// records in their wave (see the module docs).
    pub fn send(&mut self, partition: i32, records: Vec<Publish>) -> Result<(), SinkError> {
        if self.in_flight.back().is_none_or(|(_, batch)| batch.closed) {
            self.open();
        }
        let batch_id = self.next_batch;
        let mut now = Vec::with_capacity(records.len());
        for record in records {
            let wave = match record.destination {
                _ if !self.staged => 0,
                Destination::Output(_) | Destination::DeadLetter | Destination::Internal(..) => 0,
                Destination::Changelog => 1,
                Destination::Checkpoint => 2,
            };
            match (wave, self.in_flight.back_mut()) {
                (1 | 2, Some((_, batch))) => batch.later[wave - 1].push((partition, record)),
                _ => now.push((partition, record)),
            }
        }
        self.produce(batch_id, now)
    }

    /// Sends records of batch `batch_id` right away.
    fn produce(&mut self, batch_id: u64, records: Vec<(i32, Publish)>) -> Result<(), SinkError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        for (partition, record) in records {
            let topic = self.topics.topic(record.destination).to_owned();
            let changelog_partition =
                matches!(record.destination, Destination::Changelog | Destination::Checkpoint).then_some(partition);
            let to_partition = match record.destination {
                Destination::Internal(_, partition) => Some(partition),
                _ => changelog_partition,
            };
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
            if let Some(partition) = to_partition {
                pending = pending.partition(partition);
            }
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        pending = back;
                        // The queue drains as acknowledgements arrive; take them in meanwhile.
                        self.take_reports(Duration::from_millis(5))?;
                    }
                    Err((err, _)) => {
                        return Err(self.fail(SinkError::Delivery { topic, reason: err.to_string() }));
                    }
                }
            }
            if let Some((_, batch)) = self.in_flight.iter_mut().find(|(id, _)| *id == batch_id) {
                batch.outstanding += 1;
                if let Some(partition) = changelog_partition.filter(|p| !batch.changelog_sent.contains(p)) {
                    batch.changelog_sent.push(partition);
                }
            }
        }
        Ok(())
    }

    /// Poisons the sink with its first failure and returns it.
    fn fail(&mut self, err: SinkError) -> SinkError {
        self.failed.get_or_insert(err).clone()
    }

    /// Takes in delivery reports for up to `wait`, sends the waves that became due, then returns the
    /// closed batches now fully acknowledged, oldest first (a batch is only returned once every older
    /// batch is too). The batches of an open transaction stay in flight until it commits, however many
    /// of their records are acknowledged. Nothing is waited for when no record is outstanding.
    pub fn collect(&mut self, wait: Duration) -> Result<Vec<PendingBatch>, SinkError> {
        self.take_reports(if self.outstanding() == 0 { Duration::ZERO } else { wait })?;
        self.send_due_waves()?;
        if self.transaction_began.is_some() {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        while self.in_flight.front().is_some_and(|(_, batch)| batch.done()) {
            if let Some((_, batch)) = self.in_flight.pop_front() {
                done.push(batch);
            }
        }
        settle_checkpoints(&mut done, self.in_flight.iter().map(|(_, batch)| batch));
        Ok(done)
    }

    /// Records the delivery reports that arrive within `wait`.
    fn take_reports(&mut self, wait: Duration) -> Result<(), SinkError> {
        match self.reports.recv_timeout(wait) {
            Ok(report) => self.record(report)?,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        while let Ok(report) = self.reports.try_recv() {
            self.record(report)?;
        }
        match &self.failed {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Sends the next wave of every closed batch whose current wave is acknowledged, in batch order: a
    /// batch may send wave n only once every older batch has sent it.
    fn send_due_waves(&mut self) -> Result<(), SinkError> {
        let mut older_waves = usize::MAX;
        for index in 0..self.in_flight.len() {
            loop {
                let (id, batch) = &mut self.in_flight[index];
                let due = batch.closed && batch.outstanding == 0 && batch.waves_sent < 3;
                if !due || older_waves <= batch.waves_sent {
                    break;
                }
                let records = std::mem::take(&mut batch.later[batch.waves_sent - 1]);
                batch.waves_sent += 1;
                let id = *id;
                if !records.is_empty() {
                    self.produce(id, records)?;
                }
            }
            older_waves = self.in_flight[index].1.waves_sent;
        }
        Ok(())
    }

    /// Closes the current batch: once its records are acknowledged, `collect` returns it.
    pub fn close(&mut self) {
        if let Some((_, batch)) = self.in_flight.back_mut() {
            batch.closed = true;
        }
    }

    fn record(&mut self, report: Report) -> Result<(), SinkError> {
        // A report of a batch no longer in flight is of an aborted transaction's record (purged).
        if !self.in_flight.iter().any(|(id, _)| *id == report.batch) {
            return Ok(());
        }
        let offset = match report.result {
            Ok(offset) => offset,
            Err(reason) => return Err(self.fail(SinkError::Delivery { topic: report.topic, reason })),
        };
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

    /// Whether the sink publishes in transactions (exactly-once mode), which commit the input offsets.
    pub fn is_transactional(&self) -> bool {
        !self.staged
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
        if self.transaction_began.is_some() {
            return Err(SinkError::TransactionOpen);
        }
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

    /// Gives up every batch in flight, for a member whose partitions go before their records are all
    /// acknowledged (a lost assignment, or a revocation whose drain failed): their RocksDB writes are
    /// never applied and their offsets never committed (an open transaction is aborted). What they
    /// published is the partitions' next owner's to restore or to score again.
    ///
    /// What the producer still holds is purged: queued records, and records waiting for a retry, such as
    /// the ones the idempotent producer sends again after a refused record bumps its epoch. Sent later,
    /// a contact record could land after the records of the partition's next owner, and a restore would
    /// then take the older state for the newer one.
    pub fn abandon(&mut self) {
        if self.transaction_began.is_some() {
            self.abort_transaction();
            return;
        }
        if !self.in_flight.is_empty() {
            tracing::info!(batches = self.in_flight.len(), "abandoning the batches in flight");
            self.in_flight.clear();
        }
        self.producer.purge(PurgeConfig::default().queue().inflight());
    }

    /// Aborts the open transaction, if there is one (exactly-once mode, after a failure): its records are
    /// dropped, and `read_committed` readers go on at once instead of waiting for the broker to time it out.
    pub fn abort_transaction(&mut self) {
        if self.transaction_began.take().is_none() {
            return;
        }
        // The batches in flight are the transaction's: their RocksDB writes must never be applied.
        let dropped = self.in_flight.len();
        self.in_flight.clear();
        tracing::info!(batches = dropped, "aborting the open transaction; its input is read again");
        match self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
            Ok(()) => {}
            // A fenced producer cannot abort: the instance that fenced it aborted the transaction as it
            // started. Any other fatal error leaves it to the broker's timeout.
            Err(KafkaError::Transaction(err)) if err.is_fatal() => {
                tracing::info!(error = %err, "the producer cannot abort after a fatal error; the broker aborts its transaction");
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not abort the open transaction; the broker aborts it when it times out");
            }
        }
    }

    /// Starts a transaction (exactly-once mode).
    pub fn begin_transaction(&mut self) -> Result<(), SinkError> {
        self.producer.begin_transaction().map_err(SinkError::Transaction)?;
        self.transaction_began = Some(Instant::now());
        Ok(())
    }

    /// How long the open transaction has been open; `None` when there is none.
    pub fn transaction_age(&self) -> Option<Duration> {
        self.transaction_began.map(|began| began.elapsed())
    }

    /// Adds the consumer offsets to the open transaction and commits it: outputs, changelog and offsets
    /// become visible together, or not at all.
    pub fn commit_transaction(
        &mut self,
        offsets: &rdkafka::TopicPartitionList,
        group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    ) -> Result<(), SinkError> {
        if let (Some(group), true) = (group, offsets.count() > 0) {
            self.producer
                .send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT)
                .map_err(SinkError::Transaction)?;
        }
        self.producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(SinkError::Transaction)?;
        self.transaction_began = None;
        Ok(())
    }
}

/// Moves the RocksDB checkpoint of each finished batch past its own changelog records where that is safe.
///
/// A batch is built with the changelog offset acknowledged before it, because batches in flight interleave
/// their changelog records: a later batch's records can sit below this one's last, and should that batch
/// never reach RocksDB, a restore from past them would pass over them. But for a partition to which no
/// later batch (finished with this one, or still in flight) has sent a changelog record, every record of
/// the partition up to this batch's last is in RocksDB once the batch is written: the ones before it were
/// written before it, in order, and the ones of earlier owners were restored. There the checkpoint moves
/// past the batch's records, so that a restore after a drained revocation or a shutdown reads nothing again,
/// and a restore stopped half-way never rewrites a contact with one of its older records.
fn settle_checkpoints<'a>(done: &mut [PendingBatch], in_flight: impl Iterator<Item = &'a PendingBatch> + Clone) {
    for index in 0..done.len() {
        let (finished, later) = done.split_at_mut(index + 1);
        let Some(PendingBatch { writes, changelog, .. }) = finished.last_mut() else { continue };
        let sent_later = |partition: i32| {
            let sent = |batch: &PendingBatch| batch.changelog_sent.contains(&partition);
            later.iter().any(sent) || in_flight.clone().any(sent)
        };
        for (_, write) in writes.iter_mut() {
            let (Some(meta), Some(last)) = (write.meta.as_mut(), changelog.get(&write.partition)) else { continue };
            if !sent_later(write.partition) {
                meta.changelog_offset = Some(meta.changelog_offset.map_or(last + 1, |built| built.max(last + 1)));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::{PendingBatch, settle_checkpoints};
    use crate::store::{PartitionBatch, PartitionMeta};

    /// A finished batch of `partition`, built with checkpoint `built`, whose changelog records were
    /// acknowledged up to `last`.
    fn finished(partition: i32, built: i64, last: i64) -> PendingBatch {
        let mut write = PartitionBatch::new(partition);
        write.meta = Some(PartitionMeta { changelog_offset: Some(built), ..PartitionMeta::default() });
        let mut batch = PendingBatch { changelog_sent: vec![partition], ..PendingBatch::default() };
        batch.changelog.insert(partition, last);
        batch.writes.push((1, write));
        batch
    }

    fn checkpoint(batch: &PendingBatch) -> Option<i64> {
        batch.writes[0].1.meta.as_ref().and_then(|meta| meta.changelog_offset)
    }

    #[test]
    fn a_checkpoint_passes_its_batch_only_where_no_later_batch_sent_changelog_records() {
        // Partition 0: batches 1 and 2 finish together; partition 1: batch 3, with batch 4 still in flight.
        let mut done = vec![finished(0, 10, 20), finished(0, 12, 30), finished(1, 5, 8)];
        let in_flight: VecDeque<PendingBatch> = VecDeque::from([finished(1, 5, 0)]);
        settle_checkpoints(&mut done, in_flight.iter());
        assert_eq!(checkpoint(&done[0]), Some(10), "batch 2 sent records of partition 0 after batch 1's");
        assert_eq!(checkpoint(&done[1]), Some(31), "nothing of partition 0 is sent after batch 2's records");
        assert_eq!(checkpoint(&done[2]), Some(5), "batch 4 in flight sent records of partition 1");

        // A batch in flight that sent nothing to the partition yet keeps nothing back.
        let mut done = vec![finished(1, 5, 8)];
        let waiting = PendingBatch::default();
        settle_checkpoints(&mut done, std::iter::once(&waiting));
        assert_eq!(checkpoint(&done[0]), Some(9));
    }
}
