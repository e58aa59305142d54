//! The command line: subcommands, their options and help text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use leadscore::replay::Position;
use leadscore::telemetry::LogFormat;

#[derive(Parser)]
#[command(name = "leadscore", version, about = "Kafka-native lead scoring with exact decay and exactly-once state")]
pub(crate) struct Cli {
    /// Log format on standard error: human-readable lines, or one JSON object per line. The level
    /// filter comes from RUST_LOG (default "info"); contact ids appear at debug level only.
    #[arg(long, global = true, value_enum, default_value = "human", env = "LEADSCORE_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Validate a rules file and print a summary; or, with --config and --sample, show what each record of
    /// a sample becomes under an input topic's format and mapping.
    Check {
        /// The rules file (TOML).
        #[arg(required_unless_present = "sample")]
        file: Option<PathBuf>,
        /// The config file whose input mapping maps the sample.
        #[arg(long, requires = "sample")]
        config: Option<PathBuf>,
        /// Source records, one per line (JSON, or Snowplow TSV).
        #[arg(long, requires = "config")]
        sample: Option<PathBuf>,
        /// The input topic whose mapping applies; needed when the config maps more than one.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Score a JSON-lines event export offline, writing outputs as JSON lines.
    Score {
        /// The rules file (TOML).
        #[arg(long)]
        rules: PathBuf,
        /// Read the export in the format and mapping of an input topic of this config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// That input topic; needed when the config has more than one.
        #[arg(long, requires = "config")]
        topic: Option<String>,
        /// Events, one JSON object per line ("-" for standard input).
        #[arg(long, default_value = "-")]
        input: String,
        /// Where outputs go ("-" for standard output).
        #[arg(long, default_value = "-")]
        output: String,
        /// Write the final state of every contact here instead of after the outputs.
        #[arg(long)]
        state_out: Option<PathBuf>,
        /// Model this many input partitions (decay timers follow each partition's stream time).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
    },
    /// Re-score history with new rules into shadow topics (or a JSON-lines export offline), and report
    /// how the scores would differ from the live ones.
    Replay {
        /// The new rules file (TOML).
        #[arg(long)]
        rules: PathBuf,
        /// The live instance's configuration: brokers, security, topics, formats and its rules.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The rules the live scores were computed with (default: the config's rules.path).
        #[arg(long)]
        baseline_rules: Option<PathBuf>,
        /// Bootstrap servers (overrides the config).
        #[arg(long)]
        brokers: Option<String>,
        /// Input topics, comma-separated (overrides the config).
        #[arg(long, value_delimiter = ',')]
        topics: Option<Vec<String>>,
        /// Start: earliest, an RFC 3339 time (record timestamps), or offsets such as 0:1200,1:300.
        #[arg(long, default_value = "earliest", value_parser = Position::parse)]
        from: Position,
        /// End (exclusive), in the same forms; default: the end of the log when the replay gets there.
        #[arg(long, value_parser = Position::parse)]
        to: Option<Position>,
        /// Prefix of the shadow output topics.
        #[arg(long, default_value = "shadow.")]
        output_prefix: String,
        /// State directory of the replay (default: a temporary directory).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The live changelog topic (default: the config's).
        #[arg(long)]
        changelog: Option<String>,
        /// Offline: replay this JSON-lines export instead of the topics ("-" for standard input).
        #[arg(long)]
        input: Option<String>,
        /// Offline: write the new rules' outputs here as JSON lines.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Offline: model this many input partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Contacts listed as top movers.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Run the stream processor against a Kafka cluster.
    Run {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print one contact from a stopped instance's state directory, as `GET /v1/contacts/{id}` shows it
    /// (JSON, with the partition that holds it); exits 1 when no partition knows the contact.
    Inspect {
        /// The configuration file (TOML), for the state directory and the rules.
        #[arg(long)]
        config: PathBuf,
        /// The contact id.
        contact: String,
        /// The time to decay the scores to, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Manage the Kafka topics a configuration needs.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce generated interaction events (JSON, keyed by contact) to a Kafka topic.
    Generate {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Input topic.
        #[arg(long, default_value = "leadscore.events")]
        topic: String,
        /// Events to produce.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Contacts in the generated population.
        #[arg(long, default_value_t = 10_000)]
        contacts: u64,
        /// Events per second (0: as fast as the broker takes them).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure throughput, latency and restore time end to end, next to a bare consume-produce pipe.
    Bench(BenchArgs),
    /// Copy the input topics of a config to another topic with leadscore's client settings and no
    /// scoring: the I/O ceiling `leadscore bench` compares against.
    Pipe {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The topic to copy to.
        #[arg(long)]
        to: String,
    },
    /// Run everything on an embedded Kafka broker with generated events, and show live scores.
    Demo {
        /// Stop after this long, such as "20s" or "5m" (default: until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Events generated per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        /// Contacts in the generated population.
        #[arg(long, default_value_t = 5_000)]
        contacts: u64,
        /// Address of the contact API and metrics.
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: SocketAddr,
        /// Require this bearer token on the API, as `http.token` does (the console asks for it once).
        #[arg(long, env = "LEADSCORE_DEMO_TOKEN")]
        http_token: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum TopicsAction {
    /// Create the missing input, output, dead-letter and changelog topics and check the existing ones:
    /// exits 1 when a topic has the wrong partition count or the changelog is not compacted.
    Create {
        /// The configuration file (TOML), as for `leadscore run`.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Bootstrap servers (default: an embedded mock cluster).
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Events pre-loaded for the throughput phases.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: u64,
    /// Contacts in the generated population (Zipf-distributed).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) contacts: u64,
    /// Input partitions.
    #[arg(long, default_value_t = 6)]
    pub(crate) partitions: u32,
    /// Processing threads of each measured process, the pipe's included (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) threads: Option<u32>,
    /// Offered load of the latency phase, events per second (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u32,
    /// Seconds of the latency phase's measured window.
    #[arg(long, default_value_t = 10)]
    pub(crate) latency_seconds: u64,
    /// Contacts in the restore phase's changelog (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) restore_contacts: u64,
    /// Wire format of events and outputs: json or protobuf.
    #[arg(long, default_value = "json", value_parser = ["json", "protobuf"])]
    pub(crate) format: String,
    /// Skip exactly-once mode (for brokers without transactions).
    #[arg(long)]
    pub(crate) no_exactly_once: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    leadscore::rules::parse_duration_ms(text).map(|ms| Duration::from_millis(ms as u64))
}
