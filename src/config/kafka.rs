//! The `[kafka]` section and the librdkafka properties it turns into.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Kafka client settings: typed fields for what leadscore reasons about, and a pass-through map for every
/// other librdkafka property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port` separated by commas; the client discovers the other brokers.
    pub brokers: String,
    /// The consumer group owns the partitions and their committed offsets, and names the default changelog.
    pub group_id: String,
    /// Shown in broker logs and used for quotas, so operators can tell leadscore apart.
    pub client_id: String,
    /// Whether the connection uses TLS and/or SASL.
    pub security_protocol: SecurityProtocol,
    /// Required by the `sasl_*` protocols.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name; a secret because it is half of a credential.
    pub sasl_username: Option<Secret>,
    /// SASL password.
    pub sasl_password: Option<Secret>,
    /// CA certificate to verify brokers with, when the system store does not know their CA.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// Private key of the client certificate.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of an encrypted private key.
    pub ssl_key_password: Option<Secret>,
    /// How long the group waits for a silent member before moving its partitions away.
    pub session_timeout_ms: u32,
    /// How long a fetch waits for data; lower it for latency on brokers that hold every fetch this long.
    pub fetch_wait_max_ms: u32,
    /// Most records scored per poll batch: a batch is one RocksDB write and one commit.
    pub batch_size: u32,
    /// How long the producer waits to fill a batch of outputs.
    pub linger_ms: u32,
    /// Any other librdkafka property, applied last so it can override a typed field.
    pub librdkafka: BTreeMap<String, String>,
}

/// librdkafka has no default for `bootstrap.servers`; a broker on this machine is the least surprising one.
const fn default_brokers() -> &'static str {
    "127.0.0.1:9092"
}

/// The group and client id a single deployment can use as they are.
const fn default_group_id() -> &'static str {
    "leadscore"
}

/// librdkafka's default `session.timeout.ms` (45 s since 2.0, after KIP-735).
const fn default_session_timeout_ms() -> u32 {
    45_000
}

/// librdkafka's default `message.max.bytes`: the largest record (key, value and headers) it produces.
pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// librdkafka's consumer-only properties (its CONFIGURATION.md marks them `C`), global and topic-level.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.commit.enable",
    "auto.offset.reset",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "consume.callback.max.messages",
];

/// librdkafka's producer-only properties (marked `P`), global and topic-level.
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
    "compression.level",
];

/// librdkafka's default `fetch.wait.max.ms`.
const fn default_fetch_wait_max_ms() -> u32 {
    500
}

/// Large enough to amortise a RocksDB write, an offset commit and, in exactly-once mode, a transaction
/// (`leadscore bench`: 8k → 23k events/s exactly-once on the mock cluster going from 1000 to 5000); a
/// batch only fills when input is waiting, so it adds no latency when the processor keeps up.
const fn default_batch_size() -> u32 {
    5_000
}

/// librdkafka's default `linger.ms` (`queue.buffering.max.ms`) since 1.5.
const fn default_linger_ms() -> u32 {
    5
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers().to_owned(),
            group_id: default_group_id().to_owned(),
            client_id: default_group_id().to_owned(),
            security_protocol: SecurityProtocol::default(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            session_timeout_ms: default_session_timeout_ms(),
            fetch_wait_max_ms: default_fetch_wait_max_ms(),
            batch_size: default_batch_size(),
            linger_ms: default_linger_ms(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Group timings for librdkafka's embedded mock cluster, which `leadscore demo` and `leadscore bench`
    /// (without `--brokers`) run on. Once its group is up, the mock holds every rebalance for the session
    /// timeout less a second, and it refuses a member's SyncGroup that reaches it after the leader's, so that
    /// member rejoins: two processing threads joining together then wait 44 s for some partitions with the
    /// 45 s default. A 6 s session, with heartbeats every 500 ms, bounds that wait at 5 s.
    pub fn for_mock_cluster(&mut self) {
        self.session_timeout_ms = 6_000;
        self.librdkafka.insert("heartbeat.interval.ms".to_owned(), "500".to_owned());
    }

    /// librdkafka properties every client needs (connection and security), then the pass-through map, so
    /// that a property set there wins. The values include secrets in clear: never log them.
    pub fn client_config(&self) -> Vec<(String, String)> {
        self.properties(Vec::new(), &[])
    }

    /// [`client_config`](Self::client_config) plus the consumer's typed settings, still before the
    /// pass-through map so that it can override them too. Producer-only properties of the map are left
    /// out, which librdkafka would otherwise warn about at every start.
    pub fn consumer_config(&self) -> Vec<(String, String)> {
        let typed = vec![
            ("group.id", self.group_id.clone()),
            ("session.timeout.ms", self.session_timeout_ms.to_string()),
            ("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string()),
        ];
        self.properties(typed, &[PRODUCER_ONLY])
    }

    /// [`client_config`](Self::client_config) plus the producer's typed settings, still before the
    /// pass-through map so that it can override them too. Consumer-only properties of the map are left
    /// out.
    pub fn producer_config(&self) -> Vec<(String, String)> {
        self.properties(vec![("linger.ms", self.linger_ms.to_string())], &[CONSUMER_ONLY])
    }

    /// The largest record the producer sends: `message.max.bytes` from the pass-through map, or
    /// librdkafka's default.
    pub fn message_max_bytes(&self) -> usize {
        self.librdkafka
            .get("message.max.bytes")
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
    }

    /// Connection and security, then `role`'s typed settings, then the pass-through map without the
    /// properties in `skip`.
    fn properties(&self, role: Vec<(&'static str, String)>, skip: &[&[&str]]) -> Vec<(String, String)> {
        let mut typed = vec![
            ("bootstrap.servers", self.brokers.clone()),
            ("client.id", self.client_id.clone()),
            ("security.protocol", self.security_protocol.as_str().to_owned()),
        ];
        if let Some(mechanism) = self.sasl_mechanism {
            typed.push(("sasl.mechanisms", mechanism.as_str().to_owned()));
        }
        let secrets = [
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.key.password", &self.ssl_key_password),
        ];
        for (key, secret) in secrets {
            if let Some(secret) = secret {
                typed.push((key, secret.expose().to_owned()));
            }
        }
        let paths = [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                typed.push((key, path.display().to_string()));
            }
        }
        typed.extend(role);
        let pass_through = self
            .librdkafka
            .iter()
            .filter(|(key, _)| !skip.iter().any(|list| list.contains(&key.as_str())))
            .map(|(key, value)| (key.clone(), value.clone()));
        typed.into_iter().map(|(key, value)| (key.to_owned(), value)).chain(pass_through).collect()
    }
}

/// How the client talks to brokers; the values are librdkafka's `security.protocol` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS and no authentication: librdkafka's default, for local and trusted networks.
    #[default]
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS: what managed Kafka services usually ask for.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub(super) const fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// The SASL mechanisms that work with a user name and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    /// The password travels as is, so use it over TLS only.
    #[serde(rename = "plain")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka spelling of `sasl.mechanisms`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}
