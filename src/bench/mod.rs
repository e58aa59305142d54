//! `leadscore bench`: the end-to-end load harness. In one run, against one broker (the embedded mock
//! cluster unless `--brokers` is given), it
//!
//! 1. pre-loads N generated events (Zipf-distributed contacts) into an input topic with P partitions;
//! 2. measures the bare pipe ([`pipe`]: consume → produce with the same client settings, no scoring);
//! 3. measures `leadscore run` at-least-once, then exactly-once, each until every input is committed;
//! 4. measures latency from event production to score change at a fixed offered load;
//! 5. times the restore of a changelog of many contacts into an empty state directory.
//!
//! Each measured process runs as a child ([`child`]), so its CPU time and peak RSS are its own; the
//! harness reads its progress from the group's committed offsets.

mod child;
mod load;
pub mod pipe;
mod report;
mod restore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::app::topic_specs;
use crate::config::LIBRDKAFKA_MESSAGE_MAX_BYTES;
use crate::config::{Clock, Config, Format, Guarantee};
use crate::event::mapping::InputFormat;
use crate::kafka::topics::{self, TopicRole, TopicSpec};
use crate::rules::Rules;

pub use load::Latency;
pub use report::{BenchReport, ModeResult};
pub use restore::{Restore, write_changelog};

/// The scorecard the benchmark runs: the shipped example.
const BENCH_RULES: &str = include_str!("../../examples/rules.toml");

/// What to measure, from the command line.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Bootstrap servers; the embedded mock cluster when absent.
    pub brokers: Option<String>,
    /// Events pre-loaded for the throughput phases.
    pub events: u64,
    /// Contacts in the generated population.
    pub contacts: u64,
    /// Input partitions.
    pub partitions: u32,
    /// Processing threads of each measured process (`processing.threads`).
    pub threads: u32,
    /// Offered load of the latency phase, events per second (0 skips the phase).
    pub rate: u32,
    /// Length of the latency phase's measured window.
    pub latency_seconds: u64,
    /// Contacts in the restore phase's changelog (0 skips the phase).
    pub restore_contacts: u64,
    /// Wire format of events and outputs.
    pub format: Format,
    /// Whether to measure exactly-once mode.
    pub exactly_once: bool,
    /// Generator seed.
    pub seed: u64,
    /// The `leadscore` executable the measured processes run.
    pub executable: PathBuf,
    /// Show progress bars (on standard error).
    pub progress: bool,
}

/// Why the benchmark could not run. A mode that fails is reported in the table instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The broker or a client could not start.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The work directory could not be used.
    #[error("work directory: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded rules are invalid (a build problem).
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// A phase the others depend on failed.
    #[error("{phase}: {reason}")]
    Phase {
        /// The phase.
        phase: &'static str,
        /// Why.
        reason: String,
    },
}

fn phase(name: &'static str) -> impl Fn(String) -> BenchError {
    move |reason| BenchError::Phase { phase: name, reason }
}

/// The broker the run uses.
enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    External(String),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::External(brokers) => brokers.clone(),
        }
    }

    fn name(&self) -> String {
        match self {
            Broker::Mock(_) => "mock cluster (embedded)".to_owned(),
            Broker::External(brokers) => brokers.clone(),
        }
    }

    fn create(&self, specs: &[TopicSpec]) -> Result<(), BenchError> {
        match self {
            Broker::Mock(cluster) => {
                for spec in specs {
                    cluster.create_topic(&spec.name, spec.partitions, 1)?;
                }
                Ok(())
            }
            Broker::External(brokers) => {
                let properties = vec![("bootstrap.servers".to_owned(), brokers.clone())];
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let provisioned = runtime
                    .block_on(topics::create_missing(
                        &properties,
                        specs,
                        LIBRDKAFKA_MESSAGE_MAX_BYTES,
                        Duration::from_secs(30),
                    ))
                    .map_err(|err| BenchError::Phase { phase: "topics", reason: err.to_string() })?;
                match provisioned.problems.first() {
                    Some(problem) => Err(BenchError::Phase {
                        phase: "topics",
                        reason: format!("{}: {}", problem.topic, problem.problem),
                    }),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Runs every phase and returns the figures.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    // The processes' logs, configs and state stay in LEADSCORE_BENCH_DIR when it is set.
    let work = match std::env::var_os("LEADSCORE_BENCH_DIR") {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            tempfile::Builder::new().prefix("bench-").disable_cleanup(true).tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let rules_path = work.path().join("rules.toml");
    std::fs::write(&rules_path, BENCH_RULES)?;
    let rules = Rules::parse(BENCH_RULES, Path::new("examples/rules.toml"))?;
    let broker = match &options.brokers {
        Some(brokers) => Broker::External(brokers.clone()),
        None => Broker::Mock(MockCluster::new(1)?),
    };
    let bootstrap = broker.bootstrap();
    let run_id = format!("bench-{}-{:x}", std::process::id(), crate::runtime::now_ms() & 0xff_ffff);
    let input = format!("{run_id}.events");
    let spec = |name: &str, role| TopicSpec {
        name: name.to_owned(),
        role,
        partitions: options.partitions as i32,
        replication: 1,
    };
    broker.create(&[spec(&input, TopicRole::Input)])?;

    let bar = progress(options, "pre-load");
    let loaded = load::preload(
        &bootstrap,
        &input,
        options.partitions,
        options.events,
        options.contacts,
        options.format,
        options.seed,
        &bar,
    )
    .map_err(phase("pre-load"))?;
    bar.finish();

    let context = Context {
        options,
        broker: &broker,
        bootstrap: &bootstrap,
        work: work.path(),
        rules: &rules_path,
        run_id: &run_id,
    };
    let mut modes = vec![context.pipe(&input, &loaded)?];
    modes.push(context.processor("at_least_once", Guarantee::AtLeastOnce, &input, &loaded)?);
    if options.exactly_once {
        modes.push(context.processor("exactly_once", Guarantee::ExactlyOnce, &input, &loaded)?);
    }
    let pipe_rate = modes[0].events_per_second;
    for mode in &mut modes {
        mode.ratio_to_pipe = pipe_rate.zip(mode.events_per_second).map(|(pipe, rate)| rate / pipe);
    }
    let pipe_latency = if options.rate > 0 { Some(context.latency(LatencyOf::Pipe)) } else { None };
    let latency = if options.rate > 0 { Some(context.latency(LatencyOf::Processor)) } else { None };
    let restore = if options.restore_contacts > 0 { Some(context.restore(&rules)?) } else { None };
    Ok(BenchReport {
        broker: broker.name(),
        events: options.events,
        contacts: options.contacts,
        distinct_contacts: loaded.contacts,
        threads: options.threads,
        partitions: options.partitions,
        format: match options.format {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        },
        preload_events_per_second: loaded.events_per_second,
        modes,
        latency: latency.as_ref().and_then(|result| result.as_ref().ok().copied()),
        latency_error: latency.and_then(Result::err),
        pipe_latency: pipe_latency.as_ref().and_then(|result| result.as_ref().ok().copied()),
        pipe_latency_error: pipe_latency.and_then(Result::err),
        restore,
    })
}

fn progress(options: &BenchOptions, name: &str) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    bar
}

/// What a latency phase measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyOf {
    /// `leadscore run`: event to score change.
    Processor,
    /// `leadscore pipe`: event to its copy, with the same client settings.
    Pipe,
}

/// What every phase shares.
struct Context<'a> {
    options: &'a BenchOptions,
    broker: &'a Broker,
    bootstrap: &'a str,
    work: &'a Path,
    rules: &'a Path,
    run_id: &'a str,
}

impl Context<'_> {
    /// A `leadscore run` configuration of its own (group, topics, state) for `mode`, reading `input`.
    fn config(&self, mode: &str, input: &str, guarantee: Guarantee) -> Config {
        let prefix = format!("{}.{mode}", self.run_id);
        let mut config = Config::default();
        config.kafka.brokers = self.bootstrap.to_owned();
        config.kafka.group_id = format!("{prefix}.group");
        // Brokers that hold a fetch for its full wait when little data is there would otherwise add half a second.
        config.kafka.fetch_wait_max_ms = 10;
        config.topics.inputs = vec![input.to_owned()];
        config.topics.score_changed = format!("{prefix}.score");
        config.topics.threshold_crossed = format!("{prefix}.threshold");
        config.topics.phase_changed = format!("{prefix}.phase");
        config.topics.accounts = format!("{prefix}.accounts");
        config.topics.dlq = format!("{prefix}.dlq");
        config.topics.changelog = Some(format!("{prefix}.changelog"));
        config.topics.partitions = self.options.partitions;
        config.state.dir = self.work.join(mode).join("state");
        config.timers.clock = Clock::Wall;
        config.input.format = match self.options.format {
            Format::Json => InputFormat::Json,
            Format::Protobuf => InputFormat::Protobuf,
        };
        config.output.format = self.options.format;
        config.processing.guarantee = guarantee;
        config.processing.threads = Some(self.options.threads);
        config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.rules.path = self.rules.to_path_buf();
        if matches!(self.broker, Broker::Mock(_)) {
            config.kafka.for_mock_cluster();
        }
        config
    }

    fn write_config(&self, mode: &str, config: &Config) -> Result<PathBuf, BenchError> {
        let dir = self.work.join(mode);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("leadscore.toml");
        let text =
            toml::to_string(config).map_err(|err| BenchError::Phase { phase: "config", reason: err.to_string() })?;
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn pipe(&self, input: &str, loaded: &load::Loaded) -> Result<ModeResult, BenchError> {
        let config = self.config("pipe", input, Guarantee::AtLeastOnce);
        let output = format!("{}.pipe.copy", self.run_id);
        self.broker.create(&[TopicSpec {
            name: output.clone(),
            role: TopicRole::Output,
            partitions: self.options.partitions as i32,
            replication: 1,
        }])?;
        let path = self.write_config("pipe", &config)?;
        let args = ["pipe", "--config", &path.to_string_lossy(), "--to", &output].map(str::to_owned);
        Ok(self.measure("bare_pipe", &config, &args, input, loaded, false))
    }

    fn processor(
        &self,
        mode: &'static str,
        guarantee: Guarantee,
        input: &str,
        loaded: &load::Loaded,
    ) -> Result<ModeResult, BenchError> {
        let mut config = self.config(mode, input, guarantee);
        config.http.listen = child::free_address()?;
        // Every topic of the run but the event input, which is loaded already.
        let specs: Vec<TopicSpec> =
            topic_specs(&config).into_iter().filter(|spec| !config.topics.inputs.contains(&spec.name)).collect();
        self.broker.create(&specs)?;
        let path = self.write_config(mode, &config)?;
        let args = ["run".to_owned(), "--config".to_owned(), path.to_string_lossy().into_owned()];
        Ok(self.measure(mode, &config, &args, input, loaded, true))
    }

    fn measure(
        &self,
        mode: &str,
        config: &Config,
        args: &[String],
        input: &str,
        loaded: &load::Loaded,
        has_state: bool,
    ) -> ModeResult {
        let bar = progress(self.options, mode);
        let log = self.work.join(format!("{mode}.log"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let measured = child::Measured::start(&self.options.executable, &args, &log).and_then(|mut child| {
            let metrics = has_state.then_some(config.http.listen);
            let window = child.watch(self.bootstrap, &config.kafka.group_id, input, &loaded.ends, metrics, &bar)?;
            child.stop()?;
            Ok(window)
        });
        bar.finish();
        let per_contact = if has_state && measured.is_ok() {
            child::settled_bytes_per_contact(&config.state.dir, loaded.contacts)
                .inspect_err(|reason| tracing::warn!(mode, %reason, "state directory not measured"))
                .ok()
        } else {
            None
        };
        ModeResult::new(mode, measured, per_contact)
    }

    /// The latency phase of the processor, or of the bare pipe: the same offered load, read from what
    /// each writes (the processor's score changes, the pipe's copies), so that the pipe gives the floor the
    /// broker and the clients set on this machine.
    fn latency(&self, of: LatencyOf) -> Result<Latency, String> {
        let name = match of {
            LatencyOf::Processor => "latency",
            LatencyOf::Pipe => "pipe_latency",
        };
        let input = format!("{}.{name}.events", self.run_id);
        let mut config = self.config(name, &input, Guarantee::AtLeastOnce);
        // The settings for latency (README, "Latency and throughput"): outputs sent at once, fetches
        // answered within a millisecond.
        config.kafka.linger_ms = 0;
        config.kafka.fetch_wait_max_ms = 1;
        let mut topics = topic_specs(&config);
        let copy = format!("{}.{name}.copy", self.run_id);
        if of == LatencyOf::Pipe {
            topics.push(TopicSpec {
                name: copy.clone(),
                role: TopicRole::Output,
                partitions: self.options.partitions as i32,
                replication: 1,
            });
        }
        self.broker.create(&topics).map_err(|err| err.to_string())?;
        let path = self.write_config(name, &config).map_err(|err| err.to_string())?;
        let path = path.to_string_lossy().into_owned();
        let (args, read) = match of {
            LatencyOf::Processor => (vec!["run", "--config", &path], &config.topics.score_changed),
            LatencyOf::Pipe => (vec!["pipe", "--config", &path, "--to", &copy], &copy),
        };
        let log = self.work.join(format!("{name}.log"));
        let mut child = child::Measured::start(&self.options.executable, &args, &log)?;
        let bar = progress(self.options, name);
        let result = load::latency(
            self.bootstrap,
            &input,
            read,
            self.options.partitions,
            self.options.rate,
            self.options.latency_seconds,
            self.options.contacts,
            self.options.format,
            &bar,
            &mut || child.check_alive(),
        );
        bar.finish();
        child.stop()?;
        result
    }

    fn restore(&self, rules: &Rules) -> Result<Restore, BenchError> {
        let changelog = format!("{}.restore.changelog", self.run_id);
        self.broker.create(&[TopicSpec {
            name: changelog.clone(),
            role: TopicRole::Changelog,
            partitions: self.options.partitions as i32,
            replication: 1,
        }])?;
        let contacts = self.options.restore_contacts;
        let bar = progress(self.options, "changelog");
        restore::write_changelog(self.bootstrap, &changelog, self.options.partitions, contacts, rules, &bar)
            .map_err(phase("restore"))?;
        bar.finish();
        let bar = progress(self.options, "restore");
        let dir = self.work.join("restore").join("state");
        let result =
            restore::restore_all(self.bootstrap, &changelog, self.options.partitions, contacts, rules, &dir, &bar)
                .map_err(phase("restore"))?;
        bar.finish();
        Ok(result)
    }
}
