//! The processor: a consumer-group member that runs one [`task::PartitionTask`] per assigned input
//! partition, as Kafka Streams' stream thread runs its tasks.
//!
//! Each cycle polls up to a batch of records, scores each partition's share in its task, and hands the
//! records to publish to the [`Sink`] without waiting. Once every record of a batch (and of every batch
//! before it) is acknowledged, the batch's RocksDB writes are applied and its input offsets committed
//! ([`Processor::complete`], the one place that commits). Assignments restore state from the changelog
//! first; revocations drain and commit first.

pub mod account_update;
mod assignment;
pub mod batch_store;
mod cycle;
pub mod internal;
mod rebalance;
pub mod record;
pub mod record_cache;
mod recovery;
mod restore_job;
pub mod status;
pub mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use tracing::{info, warn};

use crate::insights::Insights;
use crate::kafka::restore::RestoreError;
use crate::kafka::sink::{PendingBatch, SharedSink, Sink, SinkError, SinkTopics, set_default};
use crate::leaderboard::LeaderboardError;
use crate::reload::ActiveRules;
use crate::rules::Rules;
use crate::store::{StateStore, StoreError};
use crate::telemetry;
pub use rebalance::Committer;
use rebalance::GroupHooks;
use status::Status;
use task::{InputRecord, PartitionTask, TaskBatch, TaskError, TaskSettings};

/// Everything the processor needs besides rules, store and status.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// librdkafka properties of the group consumer (group.id included).
    pub consumer: Vec<(String, String)>,
    /// librdkafka properties of the producer.
    pub producer: Vec<(String, String)>,
    /// librdkafka properties for the changelog reader (connection and security only).
    pub client: Vec<(String, String)>,
    /// Task settings.
    pub task: TaskSettings,
    /// Output, dead-letter and changelog topics.
    pub topics: SinkTopics,
    /// Most records per poll cycle.
    pub batch_size: usize,
    /// Ticker period for wall-clock decay timers.
    pub tick: Duration,
    /// Budget for draining on revocation and shutdown.
    pub drain_timeout: Duration,
    /// Most poll cycles whose records may be unacknowledged at once.
    pub max_in_flight: usize,
    /// Which of the instance's processing threads runs with these settings, from 0.
    pub thread: usize,
    /// Exactly-once mode: the transactional id of this thread's producer. Outputs, changelog and input
    /// offsets then commit in Kafka transactions, and RocksDB is written after the commit.
    pub transactional_id: Option<String>,
    /// Exactly-once mode: how long a transaction may stay open across poll cycles while input waits.
    /// At-least-once mode: the shortest time between two commits of input offsets, and the longest time
    /// changed records wait for a flush while input keeps coming.
    pub commit_interval: Duration,
}

impl ProcessorSettings {
    /// The settings of processing thread `thread`: the first keeps the instance's ids, so that a single
    /// thread reads exactly as an instance did before it had threads; the others get their number appended
    /// to the transactional id and to a static `group.instance.id`, which must be unique per member.
    pub fn for_thread(&self, thread: usize) -> ProcessorSettings {
        let mut settings = self.clone();
        settings.thread = thread;
        if thread > 0 {
            let numbered = |id: &str| format!("{id}-{thread}");
            settings.transactional_id = self.transactional_id.as_deref().map(numbered);
            for (key, value) in &mut settings.consumer {
                if key == "group.instance.id" {
                    *value = numbered(value);
                }
            }
        }
        settings
    }
}

/// Why the processor stopped without finishing cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Creating or using the consumer failed.
    #[error("Kafka consumer: {0}")]
    Consumer(#[from] KafkaError),
    /// Publishing failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// A task failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A restore failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A revocation could not be finished.
    #[error("revocation: {0}")]
    Revocation(String),
    /// The thread of a restore could not be started.
    #[error("could not start a restore thread: {0}")]
    RestoreThread(std::io::Error),
    /// A partition's leaderboard could not be built from the restored state.
    #[error(transparent)]
    Leaderboard(#[from] LeaderboardError),
}

/// Counts of a run, for logs and the demo.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunSummary {
    /// Records consumed.
    pub records: u64,
    /// Outputs published.
    pub outputs: u64,
}

/// Runs the processor on the calling thread until `shutdown` is set, then drains, commits and flushes.
/// It scores with the rules in force in `rules` at the top of each poll cycle. When Kafka refuses or
/// loses records, the processor is rebuilt from the changelog and rejoins the group ([`recovery`]);
/// other failures stop it with the reason in `status`.
pub fn run(
    settings: &ProcessorSettings,
    rules: &ActiveRules,
    store: &Arc<dyn StateStore>,
    status: &Arc<Status>,
    insights: &Arc<Insights>,
    shutdown: &AtomicBool,
) -> Result<RunSummary, ProcessorError> {
    // Every log line of the thread names it: `processor{thread=1}: …`.
    let _span = tracing::info_span!("processor", thread = settings.thread).entered();
    let mut total = RunSummary::default();
    // A processor rebuilt after a Kafka failure presumes the brokers down until a probe answers.
    let mut rebuilt = false;
    loop {
        let result = Processor::new(settings, rules, store, status, insights, rebuilt)
            .and_then(|mut processor| processor.run(shutdown));
        match result {
            Ok(summary) => {
                total.records += summary.records;
                total.outputs += summary.outputs;
                return Ok(total);
            }
            Err(err) if recovery::recoverable(&err) => {
                warn!(error = %err, "Kafka failed; rejoining after a pause, from the committed offsets");
                status.set_brokers_up(false);
                for partition in status.owned_by(settings.thread) {
                    status.restoring(partition, false);
                }
                status.set_owned(settings.thread, []);
                if !recovery::back_off(shutdown) {
                    return Ok(total);
                }
                rebuilt = true;
            }
            Err(err) => {
                status.set_fatal(err.to_string());
                return Err(err);
            }
        }
    }
}

struct Processor<'a> {
    settings: &'a ProcessorSettings,
    active_rules: &'a ActiveRules,
    /// The rules of the current cycle, and the generation of `active_rules` they came from.
    rules: Arc<Rules>,
    rules_generation: u64,
    store: &'a dyn StateStore,
    status: &'a Status,
    insights: &'a Insights,
    consumer: BaseConsumer<GroupHooks>,
    sink: SharedSink,
    tasks: BTreeMap<i32, PartitionTask>,
    assigned: BTreeSet<(String, i32)>,
    /// The restore running for partitions assigned without a task yet (shared with the revocation hook).
    restore: restore_job::RestoreSlot,
    /// Per (input topic index, partition) being restored: the first offset a poll returned and the
    /// processor had to drop, where the partition resumes once its task opens.
    skipped: BTreeMap<(usize, i32), i64>,
    summary: RunSummary,
    gauges: ThreadGauges,
    /// When the tasks last flushed.
    last_flush: Instant,
}

/// The gauges labelled with the processing thread, registered once.
struct ThreadGauges {
    pending_timers: metrics::Gauge,
    in_flight_records: metrics::Gauge,
    assigned_partitions: metrics::Gauge,
}

impl ThreadGauges {
    fn new(thread: usize) -> Self {
        let label = thread.to_string();
        ThreadGauges {
            pending_timers: gauge!(telemetry::PENDING_TIMERS, "thread" => label.clone()),
            in_flight_records: gauge!(telemetry::IN_FLIGHT_RECORDS, "thread" => label.clone()),
            assigned_partitions: gauge!(telemetry::ASSIGNED_PARTITIONS, "thread" => label),
        }
    }
}

impl<'a> Processor<'a> {
    fn new(
        settings: &'a ProcessorSettings,
        active_rules: &'a ActiveRules,
        store: &'a Arc<dyn StateStore>,
        status: &'a Arc<Status>,
        insights: &'a Arc<Insights>,
        presume_down: bool,
    ) -> Result<Self, ProcessorError> {
        let sink = Arc::new(Mutex::new(Sink::new(
            &settings.producer,
            settings.topics.clone(),
            settings.transactional_id.as_deref(),
            Some(status.clone()),
        )?));
        let restore = restore_job::RestoreSlot::default();
        let mut config = ClientConfig::new();
        for (key, value) in &settings.consumer {
            config.set(key, value);
        }
        // Several inputs must stay co-partitioned, which only the range assignor guarantees.
        let assignor = if settings.task.inputs.len() == 1 { "cooperative-sticky" } else { "range" };
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed");
        set_default(&mut config, "auto.offset.reset", "earliest");
        set_default(&mut config, "partition.assignment.strategy", assignor);
        // Consumer lag per partition comes from librdkafka's statistics (see `GroupHooks::stats`).
        set_default(&mut config, "statistics.interval.ms", "5000");
        let hooks = GroupHooks {
            restore: restore.clone(),
            sink: sink.clone(),
            inputs: settings.task.inputs.clone(),
            drain_timeout: settings.drain_timeout,
            events: Mutex::new(Vec::new()),
            store: store.clone(),
            status: status.clone(),
            insights: insights.clone(),
            committer: Mutex::new(Committer::new(settings.commit_interval)),
            cooperative: rebalance::incremental(&config),
        };
        let consumer: BaseConsumer<GroupHooks> = config.create_with_context(hooks)?;
        let inputs: Vec<&str> = settings.task.inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&inputs)?;
        status.set_brokers_up(!presume_down);
        status.set_subscribed();
        let rules_generation = active_rules.generation();
        let rules = active_rules.get();
        telemetry::set_rules_version(None, &rules.version);
        Ok(Processor {
            settings,
            active_rules,
            rules,
            rules_generation,
            store: store.as_ref(),
            status,
            insights,
            consumer,
            sink,
            tasks: BTreeMap::new(),
            assigned: BTreeSet::new(),
            restore,
            skipped: BTreeMap::new(),
            gauges: ThreadGauges::new(settings.thread),
            summary: RunSummary::default(),
            last_flush: Instant::now(),
        })
    }

    fn run(&mut self, shutdown: &AtomicBool) -> Result<RunSummary, ProcessorError> {
        let mut last_tick = Instant::now();
        let mut last_probe = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            self.adopt_rules()?;
            let records = self.poll_batch()?;
            let started = Instant::now();
            let count: usize = records.values().map(Vec::len).sum();
            // A poll that did not fill the batch found the input caught up: what was scored is written and
            // committed now rather than held for the rest of the interval.
            let caught_up = count < self.settings.batch_size;
            let flush = self.flush_due(caught_up);
            if count > 0 {
                self.begin()?;
                for (partition, records) in records {
                    let Some(task) = self.tasks.get_mut(&partition) else {
                        continue;
                    };
                    let batch = task.process(&self.rules, self.store, &self.settings.task, &records, flush)?;
                    self.publish(partition, batch)?;
                }
            }
            if count > 0 {
                counter!(telemetry::BATCHES_TOTAL).increment(1);
                histogram!(telemetry::BATCH_RECORDS).record(count as f64);
                histogram!(telemetry::BATCH_SECONDS).record(started.elapsed().as_secs_f64());
                let pending: usize = self.tasks.values().map(PartitionTask::pending_timers).sum();
                self.gauges.pending_timers.set(pending as f64);
                gauge!(telemetry::RECORD_CACHE_BYTES).set(self.settings.task.record_cache.used() as f64);
                self.summary.records += count as u64;
                self.status.events.fetch_add(count as u64, Ordering::Relaxed);
            }
            if self.settings.task.clock == crate::stream::TimerClock::WallClock
                && last_tick.elapsed() >= self.settings.tick
            {
                last_tick = Instant::now();
                self.begin()?;
                self.tick(flush)?;
            }
            let done = {
                let mut sink = self.lock_sink()?;
                sink.close();
                let wait = if sink.batches_in_flight() > self.settings.max_in_flight {
                    Duration::from_millis(50)
                } else {
                    Duration::ZERO
                };
                let done = sink.collect(wait)?;
                self.gauges.in_flight_records.set(sink.outstanding() as f64);
                done
            };
            self.complete(done, CommitMode::Async)?;
            if let Ok(mut committer) = self.consumer.context().committer.lock() {
                committer.recommit_when_quiet(&self.consumer, &self.settings.task.inputs);
            }
            self.flush_tasks(flush)?;
            self.commit_when_due(caught_up)?;
            if !self.status.brokers_up() && last_probe.elapsed() > Duration::from_secs(2) {
                last_probe = Instant::now();
                self.probe_brokers();
            }
        }
        info!("shutting down: draining in-flight records");
        self.flush_tasks(true)?;
        self.commit_when_due(true)?;
        let drained = self.lock_sink()?.drain(self.settings.drain_timeout)?;
        self.complete(drained, CommitMode::Sync)?;
        self.store.flush()?;
        info!(records = self.summary.records, outputs = self.summary.outputs, "stopped cleanly");
        self.status.stopped_cleanly(self.summary);
        Ok(self.summary)
    }

    /// Switches to rules reloaded since the last cycle. Called between cycles only, so every record of a
    /// batch, its RocksDB write and its outputs belong to one rules version. Cached records are re-read
    /// under the new rules.
    fn adopt_rules(&mut self) -> Result<(), ProcessorError> {
        let generation = self.active_rules.generation();
        if generation == self.rules_generation {
            return Ok(());
        }
        let rules = self.active_rules.get();
        self.rules_generation = generation;
        if rules.version == self.rules.version {
            return Ok(());
        }
        for task in self.tasks.values_mut() {
            task.adopt_rules(&self.rules, &rules)?;
        }
        info!(from = %self.rules.version, to = %rules.version, "rules applied");
        counter!(telemetry::RULES_RELOADS_TOTAL, "outcome" => "applied").increment(1);
        telemetry::set_rules_version(Some(&self.rules.version), &rules.version);
        self.rules = rules;
        Ok(())
    }

    fn abort_transaction(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            sink.abort_transaction();
        }
    }

    fn lock_committer(&self) -> Result<std::sync::MutexGuard<'_, Committer>, ProcessorError> {
        let committer = self.consumer.context().committer.lock();
        committer.map_err(|_| ProcessorError::Revocation("the offset committer is poisoned".into()))
    }

    fn lock_sink(&self) -> Result<std::sync::MutexGuard<'_, Sink>, ProcessorError> {
        self.sink.lock().map_err(|_| ProcessorError::Revocation("the publishing pipeline is poisoned".into()))
    }

    /// Polls up to a batch of records, handling rebalances as they come.
    fn poll_batch(&mut self) -> Result<BTreeMap<i32, Vec<InputRecord>>, ProcessorError> {
        let mut records: BTreeMap<i32, Vec<InputRecord>> = BTreeMap::new();
        let mut count = 0;
        let mut wait = Duration::from_millis(50);
        while count < self.settings.batch_size {
            let polled = self.consumer.poll(wait);
            wait = Duration::ZERO;
            let message = match polled {
                None => None,
                Some(Err(err)) => {
                    warn!(error = %err, "poll error");
                    if matches!(err, KafkaError::MessageConsumptionFatal(_)) {
                        return Err(err.into());
                    }
                    None
                }
                Some(Ok(message)) => Some(InputRecord {
                    topic: self.settings.task.inputs.iter().position(|topic| topic == message.topic()).unwrap_or(0),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|header| (header.key.to_owned(), header.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .map(|record| (message.partition(), record)),
            };
            self.handle_group_events(&mut records)?;
            let Some((partition, record)) = message else { break };
            if self.tasks.contains_key(&partition) {
                records.entry(partition).or_default().push(record);
                count += 1;
            } else if self.owns(partition) {
                // Fetched before the pause took hold: read again once the task is open.
                self.skipped.entry((record.topic, partition)).or_insert(record.offset);
            }
        }
        // Tasks open once the batch's records are placed: one opened first would take a record fetched
        // before the rewind to its first skipped record, and so score it out of order and again.
        self.advance_restore()?;
        self.gauges.assigned_partitions.set(self.tasks.len() as f64);
        Ok(records)
    }

    /// Opens a publishing batch. In exactly-once mode the batch joins the open transaction, or begins one.
    fn begin(&mut self) -> Result<(), ProcessorError> {
        let mut sink = self.lock_sink()?;
        sink.open();
        if self.settings.transactional_id.is_some() && sink.transaction_age().is_none() {
            sink.begin_transaction()?;
        }
        Ok(())
    }

    /// In exactly-once mode, commits the open transaction with the input offsets of its batches once
    /// `caught_up` or once it has been open for `commit_interval`; only then are its RocksDB writes
    /// applied. A transaction spans poll cycles while input waits, because each commit waits for the
    /// broker to finish the previous transaction.
    fn commit_when_due(&mut self, caught_up: bool) -> Result<(), ProcessorError> {
        let done = {
            let mut sink = self.lock_sink()?;
            match sink.transaction_age() {
                Some(age) if caught_up || age >= self.settings.commit_interval => {}
                _ => return Ok(()),
            }
            rebalance::commit_transaction(
                &mut sink,
                &self.settings.task.inputs,
                self.consumer.group_metadata().as_ref(),
            )?;
            sink.drain(self.settings.drain_timeout)?
        };
        self.complete(done, CommitMode::Async)
    }

    /// Sends a task batch's outputs, then stages its changes for the leaderboard and the rule statistics:
    /// the outputs go out first.
    fn publish(&mut self, partition: i32, batch: TaskBatch) -> Result<(), ProcessorError> {
        self.summary.outputs += batch.counts.outputs;
        {
            let mut sink = self.lock_sink()?;
            sink.send(partition, batch.publish)?;
            sink.commit_after(batch.commit.into_iter().map(|(topic, next)| (topic, partition, next)));
            sink.write_after(batch.sequence, batch.write);
        }
        self.insights.apply(partition, &self.rules, batch.insight, now_ms())?;
        Ok(())
    }

    fn probe_brokers(&self) {
        if self.consumer.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
            self.status.set_brokers_up(true);
            info!("brokers reachable again");
        } else {
            self.status.set_brokers_up(false);
        }
    }
}

impl Drop for Processor<'_> {
    /// A restore still running stops before the consumer leaves the group, so that it never writes into
    /// a partition the group has moved on. A transaction a failure left open (exactly-once mode) is
    /// aborted, so that the rebuilt producer and every `read_committed` reader go on at once instead of
    /// waiting for the broker to time it out.
    fn drop(&mut self) {
        let job = self.restore.lock().ok().and_then(|mut slot| slot.take());
        if let Some(job) = job {
            job.stop();
        }
        self.abort_transaction();
    }
}

/// Wall-clock time in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}
