//! `leadscore run`: wires configuration, rules, the RocksDB store, topic provisioning, the HTTP server
//! and the processor together, and owns shutdown. The processor runs on its own thread, because its
//! RocksDB work and Kafka polling block; `shutdown` is a future, so tests can pass their own.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{Clock, Config, Format, Guarantee};
use crate::event::DecodeLimits;
use crate::insights::Insights;
use crate::kafka::sink::SinkTopics;
use crate::kafka::topics::{self, Provisioned, TopicRole, TopicSpec};
use crate::reload::{ActiveRules, RulesSource};
use crate::rules::{Rules, RulesError};
use crate::runtime::record_cache::CacheBudget;
use crate::runtime::status::Status;
use crate::runtime::task::{TaskSettings, WireFormat};
use crate::runtime::{self, ProcessorError, ProcessorSettings, RunSummary};
use crate::schema_registry::SchemaRegistry;
use crate::store::{RocksOptions, RocksStore, StateStore, StoreError};
use crate::stream::TimerClock;

/// How long topic provisioning waits for the brokers' metadata and admin answers.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `leadscore run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The rules file is invalid.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The state directory cannot be used.
    #[error("state directory: {0}")]
    Store(#[from] StoreError),
    /// An input topic's mapping is invalid.
    #[error("{0}")]
    Input(String),
    /// The topics are missing or mis-partitioned.
    #[error("topics: {0}")]
    Topics(String),
    /// The rules allow records larger than the producer may send.
    #[error("record size: {0}")]
    RecordSize(String),
    /// The HTTP server could not start.
    #[error("HTTP server on {address}: {reason}")]
    Http {
        /// Listen address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The processor failed; nothing after the failure was committed.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// The processor thread ended abnormally.
    #[error("the processor thread ended abnormally")]
    Crashed,
}

/// Everything a running instance shares with its HTTP server and with the demo's live view.
pub struct Instance {
    /// The rules in force; a reload replaces them while the instance runs.
    pub rules: Arc<ActiveRules>,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// Processor status.
    pub status: Arc<Status>,
    /// Input partition count (for routing API lookups to partitions).
    pub partitions: u32,
    /// Configuration.
    pub config: Config,
    /// The leaderboard index and rule statistics the runtime keeps for the API.
    pub insights: Arc<Insights>,
}

impl Instance {
    /// An instance with empty read models.
    pub fn new(
        rules: Arc<Rules>,
        store: Arc<dyn StateStore>,
        status: Arc<Status>,
        partitions: u32,
        config: Config,
    ) -> Self {
        let rules = Arc::new(ActiveRules::new(rules));
        Instance { insights: Arc::new(Insights::new(store.clone())), rules, store, status, partitions, config }
    }
}

/// Loads the rules named by the config, with the config's history override.
pub fn load_rules(config: &Config) -> Result<Rules, RulesError> {
    let mut rules = Rules::load(&config.rules.path)?;
    if let Some(history) = config.state.history {
        rules.history_limit = history as usize;
    }
    Ok(rules)
}

/// Where a reload reads the rules of a config from.
pub fn rules_source(config: &Config) -> RulesSource {
    RulesSource { path: config.rules.path.clone(), history: config.state.history }
}

/// The processor settings a config gives; the error names an input mapping that does not compile.
pub fn processor_settings(config: &Config) -> Result<ProcessorSettings, AppError> {
    let wire = |format: Format| match format {
        Format::Json => WireFormat::Json,
        Format::Protobuf => WireFormat::Protobuf,
    };
    let topics = &config.topics;
    Ok(ProcessorSettings {
        consumer: config.kafka.consumer_config(),
        producer: config.kafka.producer_config(),
        client: config.kafka.client_config(),
        task: TaskSettings {
            // The internal topics are read as two more inputs, co-partitioned with the others.
            inputs: topics
                .inputs
                .iter()
                .cloned()
                .chain([
                    topics.internal_merge_topic(&config.kafka.group_id),
                    topics.internal_account_topic(&config.kafka.group_id),
                ])
                .collect(),
            decoders: config.input.decoders(&topics.inputs).map_err(AppError::Input)?.into(),
            output_format: wire(config.output.format),
            limits: DecodeLimits { max_bytes: config.input.max_bytes as usize, ..DecodeLimits::default() },
            max_record_bytes: config.kafka.message_max_bytes(),
            clock: match config.timers.clock {
                Clock::Wall => TimerClock::WallClock,
                Clock::Stream => TimerClock::StreamTime,
            },
            record_cache: CacheBudget::new((config.state.record_cache_mb as usize) << 20),
            registry: config.input.schema_registry.as_deref().map(|url| Arc::new(SchemaRegistry::new(url))),
            internal: Some(topics.inputs.len()),
            internal_account: Some(topics.inputs.len() + 1),
            partitions: topics.partitions,
        },
        topics: SinkTopics {
            score_changed: topics.score_changed.clone(),
            threshold_crossed: topics.threshold_crossed.clone(),
            phase_changed: topics.phase_changed.clone(),
            accounts: topics.accounts.clone(),
            dlq: topics.dlq.clone(),
            changelog: topics.changelog_topic(&config.kafka.group_id),
            internal: topics.internal_merge_topic(&config.kafka.group_id),
            internal_account: topics.internal_account_topic(&config.kafka.group_id),
        },
        batch_size: config.kafka.batch_size as usize,
        tick: Duration::from_millis(config.timers.tick_ms),
        drain_timeout: Duration::from_millis(config.processing.drain_timeout_ms),
        commit_interval: Duration::from_millis(config.processing.commit_interval_ms),
        max_in_flight: 4,
        thread: 0,
        transactional_id: match config.processing.guarantee {
            Guarantee::AtLeastOnce => None,
            // One transactional id per instance, stable across its restarts so that a restart fences
            // its previous incarnation: the client id tells apart the pods of a StatefulSet (whose state
            // directories share one path), the state directory the instances on one machine.
            Guarantee::ExactlyOnce => Some(format!(
                "{}-{:08x}",
                config.kafka.group_id,
                crate::hashing::name_key(&format!("{}\n{}", config.kafka.client_id, config.state.dir.display()))
            )),
        },
    })
}

/// The topics a config needs, with their roles.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    let topics = &config.topics;
    let spec = |name: &str, role| TopicSpec {
        name: name.to_owned(),
        role,
        partitions: topics.partitions as i32,
        replication: topics.replication as i32,
    };
    let mut specs: Vec<TopicSpec> = topics.inputs.iter().map(|name| spec(name, TopicRole::Input)).collect();
    for name in [&topics.score_changed, &topics.threshold_crossed, &topics.phase_changed, &topics.accounts, &topics.dlq]
    {
        specs.push(spec(name, TopicRole::Output));
    }
    specs.push(spec(&topics.internal_merge_topic(&config.kafka.group_id), TopicRole::Input));
    specs.push(spec(&topics.internal_account_topic(&config.kafka.group_id), TopicRole::Input));
    specs.push(spec(&topics.changelog_topic(&config.kafka.group_id), TopicRole::Changelog));
    specs
}

/// Creates the config's missing topics and checks the existing ones: `leadscore topics create`, and the
/// first step of `leadscore run`, which refuses to start on any problem found.
pub async fn provision_topics(config: &Config) -> Result<Provisioned, AppError> {
    let max_record_bytes = config.kafka.message_max_bytes();
    topics::create_missing(&config.kafka.client_config(), &topic_specs(config), max_record_bytes, TOPIC_TIMEOUT)
        .await
        .map_err(|err| AppError::Topics(format!("cannot read cluster metadata: {err}")))
}

/// Opens the state store of a config.
pub fn open_store(config: &Config) -> Result<Arc<dyn StateStore>, StoreError> {
    let options = RocksOptions { cache_mb: config.state.cache_mb as usize, ..RocksOptions::default() };
    Ok(Arc::new(RocksStore::open(&config.state.dir, &options)?))
}

/// Runs an instance until `shutdown` resolves, then drains, commits and stops.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<RunSummary, AppError> {
    let rules = Arc::new(load_rules(&config)?);
    info!(version = %rules.version, "rules loaded");
    check_record_sizes(&config, &rules)?;
    let store = open_store(&config)?;
    let specs = topic_specs(&config);
    let provisioned = provision_topics(&config).await?;
    for unverified in &provisioned.unverified {
        warn!(topic = %unverified.topic, reason = %unverified.problem, "topic setting not checked");
    }
    if !provisioned.problems.is_empty() {
        let problems: Vec<String> =
            provisioned.problems.iter().map(|problem| format!("{}: {}", problem.topic, problem.problem)).collect();
        return Err(AppError::Topics(problems.join("; ")));
    }
    let partitions = provisioned.input_partitions(&specs).unwrap_or(config.topics.partitions as i32) as u32;
    let status = Arc::new(Status::default());
    let watch = Duration::from_millis(config.rules.watch_ms);
    let source = rules_source(&config);
    let instance = Arc::new(Instance::new(rules, store, status, partitions, config));
    let reloads = tokio::spawn(crate::reload::watch(source, watch, instance.rules.clone()));
    let result = run_instance(instance, shutdown).await;
    reloads.abort();
    result
}

/// How long the Kafka clients may take to close (the consumer leaving the group, the producer ending) once
/// every processing thread has stopped cleanly, its state flushed and its offsets committed.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How the processing threads ended.
enum Joined<T> {
    /// Every thread ended, with its result.
    All(T),
    /// Every thread stopped cleanly, with what they did, but a Kafka client had not closed within
    /// [`CLIENT_CLOSE_GRACE`].
    CleanBeforeClose(RunSummary),
}

/// Waits for the processing threads behind `watcher`. Once all `threads` have stopped cleanly, what is
/// left is closing their Kafka clients, and nothing is lost without it: a client that has not closed within
/// `grace` ([`CLIENT_CLOSE_GRACE`]) is left behind, as a kill would leave it, rather than keep the process from
/// ending (an orchestrator kills it soon after anyway: Kubernetes after 30 s by default).
async fn processors_joined<T>(
    mut watcher: tokio::task::JoinHandle<T>,
    status: &Status,
    threads: usize,
    grace: Duration,
) -> Joined<Result<T, tokio::task::JoinError>> {
    let mut clean_since = None;
    loop {
        tokio::select! {
            joined = &mut watcher => return Joined::All(joined),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let Some(summary) = status.clean_stop(threads) else { continue };
        let since = *clean_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= grace {
            warn!(
                grace_s = grace.as_secs(),
                "the Kafka clients did not close within the grace after a clean stop; exiting without them (the \
                 group reassigns this member's partitions once its session times out)"
            );
            return Joined::CleanBeforeClose(summary);
        }
    }
}

/// Refuses rules whose largest contact record or output would not fit the producer's
/// `message.max.bytes`: such a record could never be written, and would stop its partition for good.
pub fn check_record_sizes(config: &Config, rules: &Rules) -> Result<(), AppError> {
    let limit = config.kafka.message_max_bytes();
    // The key (the contact id) travels with every record.
    let key = crate::event::MAX_FIELD_BYTES;
    let output = key + crate::runtime::record::output_size_bound(rules, config.output.format == Format::Json);
    if output > limit {
        return Err(AppError::RecordSize(format!(
            "an output may take {output} bytes, more than kafka message.max.bytes = {limit}: raise \
             kafka.librdkafka.\"message.max.bytes\" (and the output topics' max.message.bytes)"
        )));
    }
    let record = crate::runtime::record::record_size_bound(rules, config.topics.inputs.len()) + key;
    if record > limit {
        return Err(AppError::RecordSize(format!(
            "with history = {} a contact record may take {record} bytes, more than kafka message.max.bytes = \
             {limit}: lower history in the rules file or raise kafka.librdkafka.\"message.max.bytes\" (and the \
             changelog's max.message.bytes)",
            rules.history_limit
        )));
    }
    info!(bytes = record, limit, "largest contact record the rules allow");
    Ok(())
}

/// Runs the processor (and the HTTP server) of an already set-up instance.
pub async fn run_instance(instance: Arc<Instance>, shutdown: impl Future<Output = ()>) -> Result<RunSummary, AppError> {
    let http = crate::http::serve(instance.clone())
        .await
        .map_err(|reason| AppError::Http { address: instance.config.http.listen.to_string(), reason })?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut settings = processor_settings(&instance.config)?;
    settings.task.partitions = instance.partitions;
    let threads = instance.config.processing.thread_count();
    info!(threads, "starting the processing threads");
    let mut processors = Vec::with_capacity(threads);
    for thread in 0..threads {
        let settings = settings.for_thread(thread);
        let instance = instance.clone();
        let stop = stop.clone();
        let processor = std::thread::Builder::new().name(format!("processor-{thread}")).spawn(move || {
            let result =
                runtime::run(&settings, &instance.rules, &instance.store, &instance.status, &instance.insights, &stop);
            // A thread that stopped on an error stops the others: the instance leaves the group as a whole.
            stop.store(true, Ordering::Relaxed);
            result
        });
        processors.push(processor.map_err(|_| AppError::Crashed)?);
    }
    let (done_sender, done) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::task::spawn_blocking(move || {
        let mut total: Result<RunSummary, runtime::ProcessorError> = Ok(RunSummary::default());
        let mut crashed = false;
        for processor in processors {
            match (processor.join(), &mut total) {
                (Err(_), _) => crashed = true,
                (Ok(Ok(summary)), Ok(total)) => {
                    total.records += summary.records;
                    total.outputs += summary.outputs;
                }
                (Ok(Err(err)), Ok(_)) => total = Err(err),
                (Ok(_), Err(_)) => {}
            }
        }
        let _ = done_sender.send(());
        if crashed { Err(()) } else { Ok(total) }
    });
    tokio::select! {
        _ = shutdown => {
            info!("shutdown requested");
            stop.store(true, Ordering::Relaxed);
        }
        _ = done => {}
    }
    let joined = processors_joined(watcher, &instance.status, threads, CLIENT_CLOSE_GRACE).await;
    http.abort();
    // The processing threads are done: nothing is staged for the leaderboard any more, and its writer must
    // not write while the process ends.
    instance.insights.leaderboard.stop_writer();
    let result = match joined {
        Joined::All(joined) => joined.map_err(|_| AppError::Crashed)?.map_err(|_| AppError::Crashed)?,
        Joined::CleanBeforeClose(summary) => Ok(summary),
    };
    match result {
        Ok(summary) => Ok(summary),
        Err(err) => {
            error!(error = %err, "processor stopped");
            Err(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    const GRACE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_client_still_closing_after_every_thread_stopped_cleanly_is_left_behind() {
        let status = Status::default();
        status.stopped_cleanly(RunSummary { records: 5, outputs: 7 });
        status.stopped_cleanly(RunSummary { records: 1, outputs: 2 });
        // A processing thread stuck closing its consumer.
        let (release, stuck) = mpsc::channel::<()>();
        let watcher = tokio::task::spawn_blocking(move || stuck.recv().is_ok());
        let joined = tokio::time::timeout(GRACE * 10, processors_joined(watcher, &status, 2, GRACE)).await;
        match joined {
            Ok(Joined::CleanBeforeClose(summary)) => assert_eq!((summary.records, summary.outputs), (6, 9)),
            Ok(Joined::All(_)) => panic!("the stuck thread ended"),
            Err(_) => panic!("still waiting for the stuck thread long after the grace"),
        }
        drop(release);
    }

    #[tokio::test]
    async fn threads_not_all_stopped_cleanly_are_waited_for() {
        let status = Status::default();
        status.stopped_cleanly(RunSummary { records: 5, outputs: 7 });
        // The other thread is still draining, for longer than the grace.
        let watcher = tokio::task::spawn_blocking(|| std::thread::sleep(GRACE * 3));
        assert!(matches!(processors_joined(watcher, &status, 2, GRACE).await, Joined::All(Ok(()))));
    }
}
