//! The `leadscore run` configuration: one TOML file with the Kafka settings, topics, state directory,
//! timers, formats, processing guarantee, HTTP address and rules file.
//!
//! [`Config::load`] reads the file, applies `LEADSCORE_<SECTION>__<KEY>` environment overrides, resolves
//! secrets and relative paths and checks the cross-field rules, so the rest of the program starts from a
//! configuration it can trust. Every section and key is optional; [`FIELDS`] lists them with their
//! defaults for the README's reference.
//!
//! - `kafka`: the Kafka section and the librdkafka properties it turns into.
//! - `load`: reading, environment overrides, path and secret resolution, and [`ConfigError`].
//! - `validate`: the cross-field rules.
//! - `secret`: [`Secret`], a credential that never prints.

mod kafka;
mod load;
mod secret;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::input::InputDecoder;
use crate::event::mapping::{InputFormat, TopicInput};

pub use kafka::{KafkaConfig, LIBRDKAFKA_MESSAGE_MAX_BYTES, SaslMechanism, SecurityProtocol};
pub use load::ConfigError;
pub use secret::Secret;
pub use validate::InvalidConfig;

/// Everything `leadscore run` needs besides the rules themselves; a missing section takes its defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach the cluster.
    pub kafka: KafkaConfig,
    /// Where events come from and outputs go.
    pub topics: TopicsConfig,
    /// The local RocksDB state.
    pub state: StateConfig,
    /// What time makes decay timers fire.
    pub timers: TimersConfig,
    /// How input records are decoded.
    pub input: InputConfig,
    /// How outputs are encoded.
    pub output: OutputConfig,
    /// Delivery guarantee and shutdown budget.
    pub processing: ProcessingConfig,
    /// The API and metrics endpoint.
    pub http: HttpConfig,
    /// The scorecard.
    pub rules: RulesConfig,
}

impl Config {
    /// The effective configuration as TOML, the derived changelog topic included and every secret shown as
    /// `***`: what an operator needs to see in a start-up log or a support ticket, and nothing an attacker
    /// could use.
    pub fn redacted(&self) -> String {
        let mut effective = self.clone();
        effective.topics.changelog = Some(self.topics.changelog_topic(&self.kafka.group_id));
        effective.topics.internal_merge = Some(self.topics.internal_merge_topic(&self.kafka.group_id));
        effective.topics.internal_account = Some(self.topics.internal_account_topic(&self.kafka.group_id));
        toml::to_string(&effective)
            .unwrap_or_else(|err| format!("# the configuration cannot be shown as TOML: {err}\n"))
    }
}

/// Topic names; each role needs its own topic, so that consumers never mistake one kind of record for another.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Event topics, keyed by contact and sharing one partition count.
    pub inputs: Vec<String>,
    /// Where score changes go.
    pub score_changed: String,
    /// Where threshold crossings go.
    pub threshold_crossed: String,
    /// Where phase changes go.
    pub phase_changed: String,
    /// Where account score changes and account threshold crossings go.
    pub accounts: String,
    /// Where undecodable or invalid events go, with the reason in a header.
    pub dlq: String,
    /// The compacted state changelog; see [`TopicsConfig::changelog_topic`] when unset.
    pub changelog: Option<String>,
    /// The internal topic of contact merges; see [`TopicsConfig::internal_merge_topic`] when unset.
    pub internal_merge: Option<String>,
    /// The internal topic of contacts' changes to their accounts; see
    /// [`TopicsConfig::internal_account_topic`] when unset.
    pub internal_account: Option<String>,
    /// Partition count of the topics leadscore creates.
    pub partitions: u32,
    /// Replication factor of the topics leadscore creates.
    pub replication: u32,
}

/// The input topic the demo and the examples produce to.
const fn default_inputs() -> &'static [&'static str] {
    &["leadscore.events"]
}

/// Enough partitions to spread a group over a few instances, few enough for a laptop broker.
const fn default_partitions() -> u32 {
    6
}

/// A single broker, as in development; production clusters set 3.
const fn default_replication() -> u32 {
    1
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            inputs: default_inputs().iter().map(|&topic| topic.to_owned()).collect(),
            score_changed: "leadscore.score-changed".to_owned(),
            threshold_crossed: "leadscore.threshold-crossed".to_owned(),
            phase_changed: "leadscore.phase-changed".to_owned(),
            accounts: "leadscore.accounts".to_owned(),
            dlq: "leadscore.dlq".to_owned(),
            changelog: None,
            internal_merge: None,
            internal_account: None,
            partitions: default_partitions(),
            replication: default_replication(),
        }
    }
}

impl TopicsConfig {
    /// The changelog topic. By default it is named after the consumer group, so that two deployments on
    /// one cluster never restore each other's state.
    pub fn changelog_topic(&self, group_id: &str) -> String {
        self.changelog.clone().unwrap_or_else(|| format!("{group_id}.state-changelog"))
    }

    /// The internal topic through which contact merges cross partitions: events of a merged contact
    /// forwarded to the one it was merged into, merge requests and merged states. Named after the consumer
    /// group by default, as the changelog is.
    pub fn internal_merge_topic(&self, group_id: &str) -> String {
        self.internal_merge.clone().unwrap_or_else(|| format!("{group_id}.internal.merge"))
    }

    /// The internal topic through which contacts' changes reach their accounts' partitions, keyed by
    /// account. Named after the consumer group by default, as the changelog is.
    pub fn internal_account_topic(&self, group_id: &str) -> String {
        self.internal_account.clone().unwrap_or_else(|| format!("{group_id}.internal.account"))
    }
}

/// The local state store, a cache of the changelog that makes restarts fast.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// RocksDB directory; keep it on a persistent volume to avoid a full restore after a restart.
    pub dir: PathBuf,
    /// History entries per contact, overriding the rules file's `settings.history` (1..=10000).
    pub history: Option<u32>,
    /// RocksDB block cache in MiB.
    pub cache_mb: u32,
    /// Decoded contact records kept in memory, in MiB for the whole instance (its tasks share it).
    pub record_cache_mb: u32,
}

/// Twice RocksDB's own 32 MiB default cache, because every event reads its contact's state.
const fn default_cache_mb() -> u32 {
    64
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("./leadscore-state"),
            history: None,
            cache_mb: default_cache_mb(),
            record_cache_mb: (crate::runtime::record_cache::DEFAULT_BYTES >> 20) as u32,
        }
    }
}

/// The decay timers, which fire between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimersConfig {
    /// Which clock decides when a timer is due.
    pub clock: Clock,
    /// How often due timers are looked for.
    pub tick_ms: u64,
}

/// Once a second: decay crossings carry their exact time anyway, so ticking faster only costs scans.
const fn default_tick_ms() -> u64 {
    1_000
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig { clock: Clock::default(), tick_ms: default_tick_ms() }
    }
}

/// What time decides that a decay timer is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// The machine's clock: a score decays even when no events arrive (live mode).
    #[default]
    Wall,
    /// The partition's event time: replays and tests give the same outputs on every run.
    Stream,
}

/// Encodings of records on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON, readable with any tool.
    #[default]
    Json,
    /// The `leadscore.v1` protobuf messages in `proto/`, smaller and typed.
    Protobuf,
}

/// How input records are decoded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// The format of every input topic that `topics` does not name.
    pub format: InputFormat,
    /// Larger records go to the dead-letter topic instead of being decoded.
    pub max_bytes: u32,
    /// A Confluent-compatible Schema Registry (its base URL) that the schema ids of framed records are
    /// checked against; without it, framing is taken off and the id is not checked.
    pub schema_registry: Option<String>,
    /// Per input topic: its format, and the mapping fields that override the format's preset.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, TopicInput>,
}

/// 1 MiB, about Kafka's default largest record (`message.max.bytes` = 1048588).
const fn default_max_bytes() -> u32 {
    1_048_576
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: InputFormat::default(),
            max_bytes: default_max_bytes(),
            schema_registry: None,
            topics: BTreeMap::new(),
        }
    }
}

impl InputConfig {
    /// The format and mapping of `topic`.
    pub fn topic(&self, topic: &str) -> TopicInput {
        self.topics.get(topic).cloned().unwrap_or_else(|| TopicInput { format: self.format, ..TopicInput::default() })
    }

    /// The decoder of each of `topics`, in order; the error names the mapping at fault.
    pub fn decoders(&self, topics: &[String]) -> Result<Vec<InputDecoder>, String> {
        topics
            .iter()
            .map(|topic| {
                InputDecoder::for_topic(&self.topic(topic)).map_err(|err| format!("input.topics.{topic:?}: {err}"))
            })
            .collect()
    }
}

/// How outputs are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// The encoding of score, threshold and phase events.
    pub format: Format,
}

/// The delivery guarantee, the processing threads and how long a shutdown may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    /// How outputs are delivered.
    pub guarantee: Guarantee,
    /// How many processing threads score the instance's partitions, each a member of the consumer group
    /// with its own partitions, consumer and producer; unset, one per core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// How long a shutdown or revocation may spend finishing the batch and waiting for acks.
    pub drain_timeout_ms: u64,
    /// With `exactly_once`: how long a transaction may stay open across poll cycles while input waits.
    /// With `at_least_once`: the shortest time between two commits of input offsets, and the longest
    /// time changed contact records wait to be written while input keeps coming.
    pub commit_interval_ms: u64,
}

impl ProcessingConfig {
    /// The processing threads to run: `threads`, or one per core.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            Some(threads) => threads as usize,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Ten seconds: long enough for outstanding acks, short of Kubernetes' 30 s grace period.
const fn default_drain_timeout_ms() -> u64 {
    10_000
}

/// Each commit waits for the broker to finish writing the previous transaction's markers, about 100 ms
/// on Apache Kafka here; a transaction that gathers input for half a second spends most of its time
/// scoring. Input that is caught up commits at once, so this only delays outputs already behind.
const fn default_commit_interval_ms() -> u64 {
    500
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            guarantee: Guarantee::default(),
            threads: None,
            drain_timeout_ms: default_drain_timeout_ms(),
            commit_interval_ms: default_commit_interval_ms(),
        }
    }
}

/// How outputs are delivered; state is exactly-once either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs may repeat after a crash, with stable ids to deduplicate; works on every broker.
    #[default]
    AtLeastOnce,
    /// Kafka transactions (Apache Kafka 2.5 or later): outputs, changelog and offsets commit together.
    ExactlyOnce,
}

/// The HTTP endpoint for the contact API, health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; the loopback default keeps the API private until it is exposed on purpose.
    pub listen: SocketAddr,
    /// Bearer token required by `/v1/*`; health checks and metrics stay open for probes and scrapers.
    pub token: Option<Secret>,
}

/// Loopback, on a port next to the Prometheus exporters' range (9100-9464 and up).
const fn default_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464)
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: default_listen(), token: None }
    }
}

/// Where the scorecard is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// The rules file, relative to the config file unless absolute.
    pub path: PathBuf,
    /// How often `leadscore run` looks for a changed rules file, in ms; 0 reloads on SIGHUP only.
    pub watch_ms: u64,
}

/// Often enough that an edit is live within seconds, rarely enough that a stat call costs nothing.
const fn default_watch_ms() -> u64 {
    2_000
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig { path: PathBuf::from("rules.toml"), watch_ms: default_watch_ms() }
    }
}

/// Every configuration key as (key path, default, description), the source of the README's reference. An
/// empty default means the key is unset unless given.
pub const FIELDS: &[(&str, &str, &str)] = &[
    ("kafka.brokers", "127.0.0.1:9092", "bootstrap servers, host:port separated by commas"),
    ("kafka.group_id", "leadscore", "consumer group; also names the default changelog topic"),
    ("kafka.client_id", "leadscore", "client id in broker logs and quotas; one per instance with exactly_once"),
    ("kafka.security_protocol", "plaintext", "plaintext, ssl, sasl_plaintext or sasl_ssl"),
    ("kafka.sasl_mechanism", "", "plain, scram-sha-256 or scram-sha-512; required by the sasl_* protocols"),
    ("kafka.sasl_username", "", "SASL user name (secret)"),
    ("kafka.sasl_password", "", "SASL password (secret)"),
    ("kafka.ssl_ca_location", "", "CA certificate file that verifies the brokers"),
    ("kafka.ssl_certificate_location", "", "client certificate file for mutual TLS"),
    ("kafka.ssl_key_location", "", "private key file of the client certificate"),
    ("kafka.ssl_key_password", "", "password of the private key (secret)"),
    ("kafka.session_timeout_ms", "45000", "consumer group session timeout"),
    ("kafka.fetch_wait_max_ms", "500", "longest a fetch waits for data"),
    ("kafka.batch_size", "5000", "most records scored per poll batch (1..=100000)"),
    ("kafka.linger_ms", "5", "how long the producer waits to fill a batch"),
    (
        "kafka.librdkafka",
        "{}",
        "other librdkafka properties, applied last (consumer-only ones to the consumers, producer-only ones to the producers)",
    ),
    ("topics.inputs", "leadscore.events", "input topics (comma-separated in the environment)"),
    ("topics.score_changed", "leadscore.score-changed", "score change outputs"),
    ("topics.threshold_crossed", "leadscore.threshold-crossed", "threshold crossing outputs"),
    ("topics.phase_changed", "leadscore.phase-changed", "phase change outputs"),
    ("topics.accounts", "leadscore.accounts", "account score changes and account threshold crossings"),
    ("topics.dlq", "leadscore.dlq", "dead-letter topic for events that cannot be scored"),
    ("topics.changelog", "<group_id>.state-changelog", "compacted state changelog topic"),
    ("topics.internal_merge", "<group_id>.internal.merge", "internal topic of contact merges across partitions"),
    ("topics.internal_account", "<group_id>.internal.account", "internal topic of contacts' changes to their accounts"),
    ("topics.partitions", "6", "partition count of the topics leadscore creates"),
    ("topics.replication", "1", "replication factor of the topics leadscore creates"),
    ("state.dir", "./leadscore-state", "RocksDB state directory"),
    ("state.history", "settings.history of the rules", "history entries kept per contact (1..=10000)"),
    ("state.cache_mb", "64", "RocksDB block cache in MiB"),
    ("state.record_cache_mb", "64", "decoded contact and account records kept in memory, in MiB per instance"),
    ("timers.clock", "wall", "what makes decay timers due: wall or stream time"),
    ("timers.tick_ms", "1000", "how often due timers are looked for (at least 10)"),
    ("input.format", "json", "event format: json, protobuf, segment, cloudevents, snowplow, debezium"),
    ("input.max_bytes", "1048576", "larger events go to the dead-letter topic"),
    ("input.schema_registry", "", "Schema Registry URL that framed records' schema ids are checked against"),
    ("output.format", "json", "output encoding: json or protobuf"),
    ("processing.guarantee", "at_least_once", "at_least_once or exactly_once (Kafka transactions)"),
    ("processing.threads", "the number of cores", "processing threads, each with its own partitions (1..=64)"),
    ("processing.drain_timeout_ms", "10000", "time budget to finish a batch on shutdown or revocation"),
    (
        "processing.commit_interval_ms",
        "500",
        "exactly_once: longest a transaction stays open while input waits; at_least_once: shortest time between two offset commits, and longest changed records wait to be written under load",
    ),
    ("http.listen", "127.0.0.1:9464", "address of the API, health checks and metrics"),
    ("http.token", "", "bearer token required by /v1/* (secret)"),
    ("rules.path", "rules.toml", "the rules file"),
    ("rules.watch_ms", "2000", "how often a changed rules file is looked for (0: reload on SIGHUP only)"),
];
