//! One input partition's task: decode → score → one atomic RocksDB batch → records to publish.
//!
//! A task owns the partition's stream time, its decay-timer index and its applied offsets. It never
//! talks to Kafka itself: [`PartitionTask::process`] turns input records into a [`TaskBatch`] (what to
//! write, what to publish, what to commit once published), which the processor writes and sends.
//!
//! Exactly-once state: every contact record carries the last input offset applied to it, and the
//! partition's meta carries the next offset per input topic. An input record at or below either is a
//! replay: it changes nothing. A record reaches RocksDB and the changelog only after the outputs of its
//! input were acknowledged (the sink's waves), so a replayed input record has nothing to re-send.
//!
//! Every batch reads its contacts from the task's record cache before RocksDB. Until a batch is
//! acknowledged and written, its contact records are pending in the cache, which never evicts them.
//! Changed records are written when a batch flushes (see [`finish`]): a contact gets one record per
//! flush, however many of its events the batches since the last one held.

mod accounts;
mod finish;
mod gathered;
mod merging;
#[cfg(test)]
mod tests;

use accounts::{AccountBatch, timer_origin};
pub use accounts::{TaskAccounts, account_key, record_timer};
use gathered::{Gathered, Scoring, route};

use super::batch_store::{BatchStore, Standing};
use super::internal::{InternalRecord, Origin, Work};
use super::record::Route;
use super::record_cache::{CacheBudget, RecordCache};
use crate::event::framing::{self, Framed};
use crate::event::input::InputDecoder;
use crate::event::mapping::{Mapped, Position, SourceRecord};
use crate::event::{DecodeLimits, Event};
use crate::insights::{BatchInsight, UNKNOWN_CLASS, event_class};
use crate::rules::Rules;
use crate::schema_registry::{RegistryUnavailable, SchemaRegistry};
use crate::scoring::Outcome;
use crate::store::{PartitionBatch, StateStore, StoreError};
use crate::stream::{PartitionStream, TimerClock};

/// Wire format of events or outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// JSON objects.
    Json,
    /// `leadscore.v1` protobuf messages.
    Protobuf,
}

/// Changelog key of the per-batch checkpoint record; contact ids cannot start with NUL.
pub const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";

/// Indices in [`crate::insights::OUTCOMES`].
const SCORED: usize = 0;
const IGNORED: usize = 1;
const DUPLICATE: usize = 2;
const REPLAYED: usize = 3;
const DEAD_LETTERED: usize = 4;
const FORWARDED: usize = 5;

/// Bytes of an oversized record kept in its dead-letter copy.
const DEAD_LETTER_HEAD: usize = 64 * 1024;

/// What librdkafka counts per header besides its name and value.
const DEAD_LETTER_HEADER_OVERHEAD: usize = 16;

/// Settings a task needs from the configuration.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Input topics, in configuration order.
    pub inputs: Vec<String>,
    /// The decoder of each input topic, in the order of `inputs`.
    pub decoders: std::sync::Arc<[InputDecoder]>,
    /// Output wire format.
    pub output_format: WireFormat,
    /// Decoder limits.
    pub limits: DecodeLimits,
    /// The largest record the producer sends (`message.max.bytes`); a dead-letter copy is cut to fit.
    pub max_record_bytes: usize,
    /// When decay timers fire.
    pub clock: TimerClock,
    /// The instance's record cache budget, shared by its tasks.
    pub record_cache: CacheBudget,
    /// The schema registry that framed records' schema ids are checked against, if configured.
    pub registry: Option<std::sync::Arc<SchemaRegistry>>,
    /// Index in `inputs` of the internal merge topic, if the processor consumes one.
    pub internal: Option<usize>,
    /// Index in `inputs` of the internal account topic, if the processor consumes one.
    pub internal_account: Option<usize>,
    /// Partitions of every input topic, to key internal records onto the partition of their contact.
    pub partitions: u32,
}

impl TaskSettings {
    /// The input topics users produce events to: all but the internal topics, which come last.
    pub fn event_topics(&self) -> &[String] {
        &self.inputs[..self.internal.unwrap_or(self.inputs.len()).min(self.inputs.len())]
    }

    /// Stored key of an input topic.
    pub fn topic_key(topic: &str) -> u32 {
        crate::hashing::name_key(topic)
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct InputRecord {
    /// Index of the topic in [`TaskSettings::inputs`].
    pub topic: usize,
    /// Offset in its partition.
    pub offset: i64,
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Kafka value.
    pub payload: Option<Vec<u8>>,
    /// Kafka headers, kept for the dead-letter copy.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where a record is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// An output topic.
    Output(Route),
    /// A contact record of the changelog, to the task's own partition.
    Changelog,
    /// The partition's checkpoint record of the changelog, sent after its contact records.
    Checkpoint,
    /// The dead-letter topic.
    DeadLetter,
    /// An internal topic, to this partition: the one of the record's key.
    Internal(InternalTopic, i32),
}

/// The internal topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalTopic {
    /// Contact merges, keyed by contact.
    Merge,
    /// Contacts' changes to their accounts, keyed by account.
    Account,
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Topic.
    pub destination: Destination,
    /// Key (the contact id for outputs and the changelog).
    pub key: Vec<u8>,
    /// Value; `None` is a changelog tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What happened to the records of a batch, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchCounts {
    /// Events that changed a score.
    pub scored: u64,
    /// Events nothing listens to.
    pub ignored: u64,
    /// Events with an id the contact saw recently.
    pub duplicate: u64,
    /// Records already applied before a restart or rebalance.
    pub replayed: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Outputs published.
    pub outputs: u64,
}

/// The result of a batch: write `write` first, then publish `publish`, then commit `commit`.
#[derive(Debug)]
pub struct TaskBatch {
    /// One atomic write: contact records, timers and meta.
    pub write: PartitionBatch,
    /// Outputs, dead letters, changelog records and the checkpoint, in order.
    pub publish: Vec<Publish>,
    /// Next offset per input topic index, to commit once everything is acknowledged.
    pub commit: Vec<(usize, i64)>,
    /// The task's sequence number of this batch, for [`PartitionTask::written`].
    pub sequence: u64,
    /// Counts.
    pub counts: BatchCounts,
    /// Changed contacts, rule firings, phase entries and crossings, for the read models and metrics.
    pub insight: BatchInsight,
}

/// Why a batch could not be processed: internal errors, which stop the processor without committing.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored contact could not be read.
    #[error("partition {partition}: {source}")]
    Corrupt {
        /// The partition.
        partition: i32,
        /// The decoding error.
        source: crate::scoring::codec::CodecError,
    },
    /// The schema registry could not be asked about a record's schema id.
    #[error(transparent)]
    Registry(#[from] RegistryUnavailable),
}

/// The per-partition task.
#[derive(Debug)]
pub struct PartitionTask {
    partition: i32,
    stream: PartitionStream,
    /// Next offset to apply, per input topic index (everything below is in the state).
    next_offsets: Vec<Option<i64>>,
    /// Next offset committed, per input topic index.
    committed: Vec<Option<i64>>,
    /// Erased contacts whose records wait for their erasure to be committed: (contact, topic, offset).
    erased_waiting: Vec<(String, usize, i64)>,
    /// Next changelog offset whose effect is already in the local state.
    changelog_next: Option<i64>,
    /// Decoded contact records, among them every record of batches not yet written to RocksDB.
    cache: RecordCache,
    /// The partition's accounts: their timers, and their records not yet written to RocksDB.
    accounts: TaskAccounts,
    /// Sequence number of the last batch built.
    batches: u64,
    /// Contacts changed since the last flush, with the decay timer their record on disk has.
    unflushed: foldhash::HashMap<String, Option<i64>>,
    /// Next offset per input topic index of the batches since the last flush, committed with it.
    held: Vec<(usize, i64)>,
}

impl PartitionTask {
    /// Opens the task from the local state (after any restore), with the group's committed offsets.
    pub fn open(
        partition: i32,
        store: &dyn StateStore,
        settings: &TaskSettings,
        committed: Vec<Option<i64>>,
    ) -> Result<Self, TaskError> {
        let meta = store.meta(partition)?.unwrap_or_default();
        let mut stream = PartitionStream::new(settings.clock);
        if let Some(stream_time) = meta.stream_time_ms {
            stream.advance_stream_time(stream_time);
        }
        let mut accounts = TaskAccounts::new(settings.record_cache.clone());
        for (due, key) in store.timers(partition)? {
            if !accounts.track_due(due, &key) {
                stream.track_due(due, key);
            }
        }
        let next_offsets = settings
            .inputs
            .iter()
            .map(|topic| meta.input_offsets.iter().find(|(name, _)| name == topic).map(|(_, next)| *next))
            .collect();
        Ok(PartitionTask {
            partition,
            stream,
            next_offsets,
            committed,
            erased_waiting: Vec::new(),
            changelog_next: meta.changelog_offset,
            cache: RecordCache::new(settings.record_cache.clone()),
            accounts,
            batches: 0,
            unflushed: foldhash::HashMap::default(),
            held: Vec::new(),
        })
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Contacts and accounts with a pending decay timer.
    pub fn pending_timers(&self) -> usize {
        self.stream.pending_timers() + self.accounts.pending_timers()
    }

    /// Records that offsets up to `next` of input `topic` are committed.
    pub fn committed(&mut self, topic: usize, next: i64) {
        if let Some(slot) = self.committed.get_mut(topic) {
            *slot = Some(slot.map_or(next, |old| old.max(next)));
        }
    }

    /// Records that the changelog holds our records up to (excluding) `next`.
    pub fn changelog_delivered(&mut self, next: i64) {
        self.changelog_next = Some(self.changelog_next.map_or(next, |old| old.max(next)));
    }

    /// Records that the batches up to `sequence` are written to RocksDB, so the cache may evict their
    /// records.
    pub fn written(&mut self, sequence: u64) {
        self.cache.written(sequence);
        self.accounts.written(sequence);
    }

    /// Re-reads the cached records under rules that replace `old`.
    pub fn adopt_rules(&mut self, old: &Rules, new: &Rules) -> Result<(), TaskError> {
        let corrupt = |source| TaskError::Corrupt { partition: self.partition, source };
        self.cache.adopt_rules(old, new).map_err(corrupt)?;
        self.accounts.adopt_rules(old, new).map_err(corrupt)
    }

    /// Scores a batch of this partition's records, in offset order; with `flush`, the batch writes
    /// every record changed since the last flush (see [`finish`]).
    pub fn process(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        settings: &TaskSettings,
        records: &[InputRecord],
        flush: bool,
    ) -> Result<TaskBatch, TaskError> {
        // A task error drops the task, and with it the records this batch took out of the cache.
        let mut batch = BatchStore::new(rules, store, self.partition, &mut self.cache);
        let mut accounts = AccountBatch::new(rules, store, self.partition, &mut self.accounts);
        let mut out = Gathered::default();
        let mut scorer = Scorer { stream: &mut self.stream, partition: self.partition };
        let mut commit: Vec<(usize, i64)> = Vec::new();
        for record in records {
            let topic_key = TaskSettings::topic_key(&settings.inputs[record.topic]);
            advance(&mut commit, record.topic, record.offset + 1);
            if self.next_offsets[record.topic].is_some_and(|next| record.offset < next) {
                out.tally(REPLAYED, UNKNOWN_CLASS);
                continue;
            }
            let here = Origin { topic: topic_key, partition: self.partition, offset: record.offset };
            if settings.internal_account == Some(record.topic) {
                accounts.apply(settings, record, &mut out)?;
                continue;
            }
            if settings.internal == Some(record.topic) {
                scorer.process_internal(rules, settings, &mut batch, record, here, &mut out)?;
                out.report_cause(rules, settings, &mut batch, here);
                continue;
            }
            let event = match decode(settings, self.partition, record)? {
                Ok(Mapped::Event(event)) => event,
                Ok(Mapped::Skipped(_)) => {
                    out.tally(IGNORED, UNKNOWN_CLASS);
                    continue;
                }
                Err((kind, reason)) => {
                    out.dead_letter(settings, self.partition, record, kind, &reason);
                    continue;
                }
            };
            let scoring = Scoring { record, stamp: (topic_key, record.offset), here, hops: 0 };
            scorer.score_event(rules, settings, &mut batch, event, &scoring, &mut out)?;
            out.report_cause(rules, settings, &mut batch, here);
        }
        if settings.clock == TimerClock::StreamTime {
            accounts.fire_due(settings, accounts.stream_time(scorer.stream.stream_time_ms()), &mut out)?;
        }
        for (topic, next) in &commit {
            let slot = &mut self.next_offsets[*topic];
            *slot = Some(slot.map_or(*next, |old| old.max(*next)));
        }
        let changes = (batch.into_changes(), accounts.into_changes());
        let Gathered { publish, counts, insight, .. } = out;
        Ok(self.finish(rules, settings, changes, publish, commit, counts, insight, flush))
    }

    /// Fires decay timers due at wall-clock time `now_ms`; `flush` as for [`PartitionTask::process`].
    pub fn tick(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        settings: &TaskSettings,
        now_ms: i64,
        flush: bool,
    ) -> Result<TaskBatch, TaskError> {
        let mut batch = BatchStore::new(rules, store, self.partition, &mut self.cache);
        let mut accounts = AccountBatch::new(rules, store, self.partition, &mut self.accounts);
        let mut outputs = self.stream.fire_due(rules, &mut batch, now_ms);
        batch.check()?;
        let mut out = Gathered::default();
        let origin = timer_origin(self.partition, now_ms);
        out.erasures(rules, settings, &mut batch, origin, &mut outputs);
        out.insight.add_outputs(&outputs, None);
        out.counts.outputs = outputs.len() as u64;
        out.publish.extend(route(settings, outputs));
        if rules.accounts.is_some() {
            out.report_accounts(rules, settings, &mut batch, origin, &format!("timers:{now_ms}"), now_ms);
        }
        accounts.fire_due(settings, now_ms, &mut out)?;
        let changes = (batch.into_changes(), accounts.into_changes());
        let Gathered { publish, counts, insight, .. } = out;
        Ok(self.finish(rules, settings, changes, publish, Vec::new(), counts, insight, flush))
    }

    /// Whether an erased contact's erasure is committed and its tombstone not written yet.
    pub fn erasure_due(&self) -> bool {
        self.erased_waiting
            .iter()
            .any(|(_, topic, offset)| self.committed.get(*topic).copied().flatten().is_some_and(|next| *offset < next))
    }

    /// Whether records or offsets wait for a flush.
    pub fn unflushed(&self) -> bool {
        !self.unflushed.is_empty() || !self.held.is_empty()
    }

    /// A batch of nothing but a flush: the records and offsets earlier batches left, and the deletes and
    /// changelog tombstones of committed erasures (for a partition whose erase was its last record).
    pub fn flush(&mut self, rules: &Rules, settings: &TaskSettings) -> TaskBatch {
        let (nothing, counts, insight) = ((Vec::new(), Vec::new()), BatchCounts::default(), BatchInsight::default());
        self.finish(rules, settings, nothing, Vec::new(), Vec::new(), counts, insight, true)
    }
}

/// The task's parts a batch scores with, apart from its record cache, which the batch's store holds.
struct Scorer<'t> {
    stream: &'t mut PartitionStream,
    partition: i32,
}

impl Scorer<'_> {
    /// Scores one event on its contact, or forwards it to the contact its contact was merged into; a
    /// merge event also asks the merged contact's task for its state.
    fn score_event(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        event: Event,
        scoring: &Scoring,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let class = event_class(&event.kind);
        out.caused_by(rules, &event.id, event.ts_ms);
        match batch.standing(&event.contact, scoring.stamp)? {
            Standing::MergedInto(survivor) => {
                let forward = Work::Forward(Event { contact: survivor.clone(), ..event });
                out.follow(rules, settings, self.partition, scoring, &survivor, forward);
                out.tally(FORWARDED, class);
                return Ok(());
            }
            Standing::Applied => {
                out.tally(REPLAYED, class);
                return Ok(());
            }
            Standing::Open => {}
        }
        let processed = self.stream.process(rules, batch, &event);
        batch.check()?;
        let takes_effect = matches!(processed.outcome, Outcome::Scored | Outcome::Ignored);
        out.outcome(
            rules,
            settings,
            self.partition,
            batch,
            &event.contact,
            scoring,
            processed,
            Some(event.ts_ms),
            class,
        );
        if let Some(merged) = rules.merged_contact(&event).filter(|merged| takes_effect && *merged != event.contact) {
            let merged = merged.to_owned();
            let survivor_alias_bytes = batch.alias_bytes(&event.contact)?;
            // A survivor whose aliases and awaited contacts fill what it keeps asks for no more.
            if let Err(reason) = crate::scoring::merge_fits(survivor_alias_bytes, &merged, 0) {
                out.insight.count_dead_letter("merge");
                out.publish.push(gathered::dead_letter(settings, self.partition, scoring.record, &reason));
                return Ok(());
            }
            let survivor_alias_bytes = u32::try_from(survivor_alias_bytes).unwrap_or(u32::MAX);
            batch.await_answers(&event.contact, std::slice::from_ref(&merged))?;
            let work = Work::Request { event, survivor_alias_bytes };
            let record = InternalRecord { origin: scoring.here, hops: 0, work };
            out.internal(rules, settings, &merged, &record);
        }
        Ok(())
    }
}

/// Decodes a record; an error carries its metric label (a `DecodeError::kind` or `key`) and message.
fn decode(
    settings: &TaskSettings,
    partition: i32,
    record: &InputRecord,
) -> Result<Result<Mapped, (&'static str, String)>, TaskError> {
    let source = SourceRecord {
        payload: record.payload.as_deref().unwrap_or_default(),
        key: record.key.as_deref(),
        headers: &record.headers,
        position: Position::Kafka { topic: &settings.inputs[record.topic], partition, offset: record.offset },
    };
    let decoder = &settings.decoders[record.topic];
    if let Some(registry) = &settings.registry {
        let kind = decoder.payload();
        if let Ok(Framed { schema_id: Some(id), message_indexes, .. }) = framing::strip(source.payload, kind)
            && let Some(reason) = registry.check(id, &message_indexes, kind)?
        {
            return Ok(Err(("schema", reason)));
        }
    }
    Ok(decoder.decode(&source, &settings.limits))
}

/// Raises `topic`'s next offset in `offsets` (one entry per input topic) to at least `next`.
fn advance(offsets: &mut Vec<(usize, i64)>, topic: usize, next: i64) {
    match offsets.iter_mut().find(|(held, _)| *held == topic) {
        Some(entry) => entry.1 = entry.1.max(next),
        None => offsets.push((topic, next)),
    }
}
