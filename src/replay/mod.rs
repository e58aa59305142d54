//! `leadscore replay`: what-if rescoring. It re-scores the retained history of the input topics with new
//! rules into shadow topics and a state directory of its own, then compares the result with the live
//! scores; or it does the same offline over a JSON-lines export, against baseline rules.
//!
//! - [`position`]: `--from`/`--to` (earliest, a time, offsets) resolved to offset ranges.
//! - [`kafka`]: the replay loop over assigned partitions, through the runtime's task.
//! - [`live`]: the live scores, read from the changelog, and the store-to-store comparison.
//! - [`diff`]: the report: phase and threshold differences, a histogram of changes, top movers.
//! - [`offline`]: the same over a JSON-lines export.
//! - [`progress`]: the progress bar.

pub mod diff;
pub mod kafka;
pub mod live;
pub mod offline;
pub mod position;
pub mod progress;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::LIBRDKAFKA_MESSAGE_MAX_BYTES;
use crate::config::{Config, ConfigError};
use crate::kafka::restore::RestoreError;
use crate::kafka::sink::{SinkError, SinkTopics};
use crate::kafka::topics::{self, TopicRole, TopicSpec};
use crate::reload::RulesSource;
use crate::rules::{Rules, RulesError};
use crate::runtime::task::TaskError;
use crate::store::{RocksOptions, RocksStore, StoreError};

pub use diff::DiffReport;
pub use position::Position;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A rules file is invalid.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The arguments do not make a replay.
    #[error("{0}")]
    Usage(String),
    /// The cluster could not be read or written.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// Publishing to the shadow topics failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Reading the live changelog failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A state directory failed.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// Scoring a batch failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A stored live state cannot be read.
    #[error("live state: {0}")]
    Corrupt(String),
    /// Reading the export or writing the outputs failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ReplayError {
    /// Whether the fault is in the files or arguments given (exit status 2), not in the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ReplayError::Rules(_) | ReplayError::Config(_) | ReplayError::Usage(_))
    }
}

/// Everything `leadscore replay` is asked to do.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The new rules.
    pub rules: PathBuf,
    /// The rules the live scores were computed with (default: `rules.path` of the config).
    pub baseline_rules: Option<PathBuf>,
    /// The live instance's configuration: brokers, security, topics, formats, changelog.
    pub config: Option<PathBuf>,
    /// Bootstrap servers, overriding the config's.
    pub brokers: Option<String>,
    /// Input topics, overriding the config's.
    pub topics: Option<Vec<String>>,
    /// Where the replay starts.
    pub from: Position,
    /// Where it ends (exclusive).
    pub to: Option<Position>,
    /// Prefix of the shadow topics; must not be empty.
    pub output_prefix: String,
    /// State directory of the replay (default: a temporary directory, removed at the end).
    pub state_dir: Option<PathBuf>,
    /// The live changelog topic, overriding the config's.
    pub changelog: Option<String>,
    /// Offline mode: a JSON-lines export to replay instead of the topics ("-" for standard input).
    pub input: Option<String>,
    /// Offline mode: where the new rules' outputs go.
    pub output: Option<PathBuf>,
    /// Offline mode: partitions to model.
    pub partitions: u32,
    /// Top movers listed.
    pub top: usize,
    /// Draw progress bars (otherwise progress is logged).
    pub progress_bar: bool,
}

/// Runs a replay and writes its summary and diff report to `out`.
pub fn run(request: &ReplayRequest, out: &mut dyn Write) -> Result<(), ReplayError> {
    let config = match &request.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let history = config.as_ref().and_then(|config| config.state.history);
    let load = |path: &Path| -> Result<Rules, ReplayError> {
        let text = std::fs::read_to_string(path).map_err(|err| RulesError {
            file: path.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read the rules file: {err}"),
        })?;
        Ok(RulesSource { path: path.to_owned(), history }.compile(&text)?)
    };
    let new_rules = load(&request.rules)?;
    let baseline_path = request.baseline_rules.clone().or_else(|| config.as_ref().map(|c| c.rules.path.clone()));
    let baseline_rules = baseline_path.as_deref().map(load).transpose()?;
    match &request.input {
        Some(input) => {
            let baseline = baseline_rules.ok_or_else(|| {
                ReplayError::Usage("an offline replay compares with --baseline-rules (or the --config's rules)".into())
            })?;
            run_offline(request, input, &new_rules, &baseline, out)
        }
        None => run_kafka(request, config.unwrap_or_default(), &new_rules, baseline_rules.as_ref(), out),
    }
}

fn run_offline(
    request: &ReplayRequest,
    input: &str,
    new_rules: &Rules,
    baseline: &Rules,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(input).map_err(|err| ReplayError::Usage(format!("cannot open {input}: {err}")))?)
    };
    let mut outputs: Box<dyn Write> = match &request.output {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::sink()),
    };
    let started = std::time::Instant::now();
    let replay = offline::replay_lines(
        BufReader::new(reader),
        new_rules,
        baseline,
        request.partitions,
        &mut outputs,
        request.top,
    )?;
    outputs.flush()?;
    let summary = replay.summary;
    writeln!(
        out,
        "replayed {} lines in {:.1}s: {} scored, {} ignored, {} duplicates, {} malformed; {} outputs",
        summary.lines,
        started.elapsed().as_secs_f64(),
        summary.scored,
        summary.ignored,
        summary.duplicates,
        summary.malformed,
        summary.outputs
    )?;
    write!(out, "{}", replay.report)?;
    Ok(())
}

fn run_kafka(
    request: &ReplayRequest,
    mut config: Config,
    new_rules: &Rules,
    baseline: Option<&Rules>,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    if let Some(brokers) = &request.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(topics) = &request.topics {
        config.topics.inputs = topics.clone();
    }
    if let (Position::Time(from), Some(Position::Time(to))) = (&request.from, &request.to)
        && to <= from
    {
        return Err(ReplayError::Usage("--to must be later than --from".into()));
    }
    let prefix = request.output_prefix.trim();
    if prefix.is_empty() {
        return Err(ReplayError::Usage("--output-prefix must not be empty: a replay never writes live topics".into()));
    }
    let topics = &config.topics;
    let shadow = SinkTopics {
        score_changed: format!("{prefix}{}", topics.score_changed),
        threshold_crossed: format!("{prefix}{}", topics.threshold_crossed),
        phase_changed: format!("{prefix}{}", topics.phase_changed),
        accounts: format!("{prefix}{}", topics.accounts),
        dlq: format!("{prefix}{}", topics.dlq),
        changelog: format!("{prefix}{}", topics.changelog_topic(&config.kafka.group_id)),
        internal: format!("{prefix}{}", topics.internal_merge_topic(&config.kafka.group_id)),
        internal_account: format!("{prefix}{}", topics.internal_account_topic(&config.kafka.group_id)),
    };
    let changelog = request.changelog.clone().unwrap_or_else(|| topics.changelog_topic(&config.kafka.group_id));
    let client = config.kafka.client_config();
    let partitions = kafka::input_partitions(&client, &topics.inputs)?;
    create_shadow_topics(&client, &shadow, partitions, topics.replication as i32)?;

    let temp = tempfile::tempdir()?;
    let state_dir = request.state_dir.clone().unwrap_or_else(|| temp.path().join("replay"));
    if std::fs::read_dir(&state_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ReplayError::Usage(format!(
            "state directory {} is not empty; a replay starts from empty state",
            state_dir.display()
        )));
    }
    let throwaway = RocksOptions { cache_mb: config.state.cache_mb as usize, disable_wal: true };
    let store = RocksStore::open(&state_dir, &throwaway)?;
    let options = kafka::KafkaReplay {
        client: client.clone(),
        producer: config.kafka.producer_config(),
        task: crate::app::processor_settings(&config).map_err(|err| ReplayError::Usage(err.to_string()))?.task,
        shadow: shadow.clone(),
        from: request.from.clone(),
        to: request.to.clone(),
        batch_size: config.kafka.batch_size as usize,
        progress_bar: request.progress_bar,
    };
    let summary = kafka::replay(&options, new_rules, &store)?;
    writeln!(
        out,
        "replayed {} records of {} in {:.1}s ({:.0} records/s): {} outputs to {}*, {} dead letters; state in {}",
        summary.records,
        topics.inputs.join(", "),
        summary.seconds,
        summary.records as f64 / summary.seconds.max(1e-3),
        summary.outputs,
        prefix,
        summary.dead_lettered,
        if request.state_dir.is_some() { state_dir.display().to_string() } else { "a temporary directory".into() }
    )?;
    if summary.skipped > 0 {
        writeln!(
            out,
            "warning: {} offsets in the range had no record (compaction, transaction markers, or a broker that \
             fetches from the next record batch when asked to start inside one)",
            summary.skipped
        )?;
    }
    let Some(baseline) = baseline else {
        writeln!(out, "no diff report: give --baseline-rules (or --config) with the rules the live scores use")?;
        return Ok(());
    };
    let live = RocksStore::open(&temp.path().join("live"), &throwaway)?;
    let records = live::load_changelog(&client, &changelog, partitions, baseline, &live, request.progress_bar)?;
    writeln!(out, "live scores: {records} records of {changelog}")?;
    let report = live::diff_stores(&live, baseline, &store, new_rules, partitions, request.top)?;
    write!(out, "{report}")?;
    Ok(())
}

/// Creates the shadow topics that are missing, as the live instance creates its output topics.
fn create_shadow_topics(
    client: &[(String, String)],
    shadow: &SinkTopics,
    partitions: i32,
    replication: i32,
) -> Result<(), ReplayError> {
    let specs: Vec<TopicSpec> = [&shadow.score_changed, &shadow.threshold_crossed, &shadow.phase_changed, &shadow.dlq]
        .into_iter()
        .map(|name| TopicSpec { name: name.clone(), role: TopicRole::Output, partitions, replication })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| ReplayError::Kafka(format!("cannot start the admin client runtime: {err}")))?;
    let provisioned = runtime
        .block_on(topics::create_missing(client, &specs, LIBRDKAFKA_MESSAGE_MAX_BYTES, Duration::from_secs(10)))
        .map_err(|err| ReplayError::Kafka(format!("creating shadow topics: {err}")))?;
    for problem in provisioned.problems {
        tracing::warn!(topic = %problem.topic, problem = %problem.problem, "shadow topic");
    }
    Ok(())
}
