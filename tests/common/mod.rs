//! Shared helpers of the integration tests: brokers (librdkafka's mock cluster in-process, or Apache
//! Kafka started by `scripts/kafka.sh`), random names, producing a stream, reading topics back, and the
//! offline model to compare against.

#![allow(dead_code)]

pub mod accounts;
pub mod merges;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadscore::event::{Event, json};
use leadscore::generator::{EventGenerator, SplitMix64};
use leadscore::hashing::partition_for_key;
use leadscore::offline::OfflineScorer;
use leadscore::rules::Rules;
use leadscore::runtime::record::StoredContact;
use leadscore::scoring::codec;
use leadscore::store::{RocksOptions, RocksStore, StateStore};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

pub const START_MS: i64 = 1_772_366_400_000;

pub fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn rules() -> Rules {
    Rules::load(&manifest("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"))
}

/// A test's temporary directory. A test that fails keeps it and prints its path, so that the logs and
/// state of the instances it ran can be read afterwards; a test that passes removes it.
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn new() -> TestDir {
        TestDir(Some(tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"))))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new("/nonexistent"), tempfile::TempDir::path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("the failed test's directory is kept: {}", dir.keep().display());
        }
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// An Apache Kafka node (KRaft, broker and controller in one process) started by `scripts/kafka.sh`,
/// stopped on drop.
pub struct Kafka {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl Kafka {
    pub fn start() -> Kafka {
        Self::start_with(&[])
    }

    /// A node with more of `scripts/kafka.sh`'s settings (`KAFKA_SECURITY=1`, users, ...).
    pub fn start_with(env: &[(&str, &str)]) -> Kafka {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let bootstrap = kafka_script("start", dir.path(), env);
        Kafka { dir, bootstrap }
    }

    /// Stops the node (SIGTERM); [`Kafka::restart`] brings it back on the same port and log dirs.
    pub fn stop(&self) {
        kafka_script("stop", self.dir.path(), &[]);
    }

    /// Starts the node again on the same port and log dirs.
    pub fn restart(&self) {
        kafka_script("start", self.dir.path(), &[]);
    }

    /// The port of a listener the node wrote into its directory (`ssl`, `sasl_ssl`).
    pub fn listener(&self, name: &str) -> String {
        let port = std::fs::read_to_string(self.dir.path().join(format!("{name}.port")))
            .unwrap_or_else(|err| panic!("no {name} listener: {err}"));
        format!("127.0.0.1:{}", port.trim())
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Command::new(manifest("scripts/kafka.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

/// One Kafka node for the tests of this test binary that neither stop nor reconfigure their broker: each
/// test has topics and a group of its own ([`Names::new`]), so they can share it, and the binary pays for
/// one start (about 6 s) instead of one per test.
pub fn shared_kafka() -> &'static Kafka {
    static SHARED: std::sync::OnceLock<Kafka> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| Kafka::start_until_exit(&[]))
}

impl Kafka {
    /// A node for a `static` (see [`shared_kafka`]). A static is never dropped, so a watcher process
    /// stops the node and removes its directory once this test binary has exited, however it exits.
    #[allow(clippy::zombie_processes, reason = "the watcher outlives this process by design; init reaps it")]
    pub fn start_until_exit(env: &[(&str, &str)]) -> Kafka {
        use std::os::unix::process::CommandExt;
        let kafka = Kafka::start_with(env);
        // Its own process group, so that a Ctrl-C to the test run does not take the watcher with it.
        Command::new("sh")
            .args(["-c", "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \"$2\" stop \"$3\"; rm -rf \"$3\""])
            .arg("kafka-watcher")
            .arg(std::process::id().to_string())
            .arg(manifest("scripts/kafka.sh"))
            .arg(kafka.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the Kafka watcher: {err}"));
        kafka
    }
}

/// Creates `topic` with `partitions` and topic configs of the test's choosing (a size limit, say), where
/// `leadscore` would create it with its own.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime.block_on(admin.create_topics([&new_topic], &options)).unwrap_or_else(|err| panic!("{err}"));
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// A cluster of Apache Kafka nodes started by `scripts/kafka.sh start-cluster`, stopped on drop.
pub struct KafkaCluster {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
    pub nodes: usize,
}

impl KafkaCluster {
    pub fn start(nodes: usize) -> KafkaCluster {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let output = Command::new(manifest("scripts/kafka.sh"))
            .arg("start-cluster")
            .arg(dir.path())
            .arg(nodes.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|err| panic!("cannot run scripts/kafka.sh: {err}"));
        assert!(output.status.success(), "the Kafka cluster did not start");
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        KafkaCluster { dir, bootstrap, nodes }
    }

    /// The directory of node `id` (1-based), for `kill`, `stop` and `start`.
    pub fn node(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// kill -9 node `id`.
    pub fn kill(&self, id: usize) {
        kafka_script("kill", &self.node(id), &[]);
    }

    /// Starts node `id` again on its port and log dirs.
    pub fn restart(&self, id: usize) {
        kafka_script("start", &self.node(id), &[]);
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let _ = Command::new(manifest("scripts/kafka.sh")).arg("stop-cluster").arg(self.dir.path()).status();
    }
}

/// Runs `scripts/kafka.sh COMMAND DIR`; returns what it printed (the bootstrap address for `start`).
fn kafka_script(command: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let output = Command::new(manifest("scripts/kafka.sh"))
        .arg(command)
        .arg(dir)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("cannot run scripts/kafka.sh: {err}"));
    assert!(output.status.success(), "scripts/kafka.sh {command} {} failed", dir.display());
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Topic and group names of one test.
#[derive(Debug, Clone)]
pub struct Names {
    pub input: String,
    pub score_changed: String,
    pub threshold_crossed: String,
    pub phase_changed: String,
    pub dlq: String,
    pub changelog: String,
    pub accounts: String,
    pub internal: String,
    pub internal_account: String,
    pub group: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
        let base = unique(test);
        Names {
            input: format!("{base}.events"),
            score_changed: format!("{base}.score"),
            threshold_crossed: format!("{base}.threshold"),
            phase_changed: format!("{base}.phase"),
            dlq: format!("{base}.dlq"),
            changelog: format!("{base}.changelog"),
            accounts: format!("{base}.accounts"),
            internal: format!("{base}.internal.merge"),
            internal_account: format!("{base}.internal.account"),
            group: format!("{base}.group"),
        }
    }

    /// Creates the topics on a mock cluster, which has no CreateTopics: inputs and changelog with
    /// `partitions`, outputs with 2.
    pub fn create_on_mock<C: rdkafka::ClientContext>(
        &self,
        cluster: &rdkafka::mocking::MockCluster<'_, C>,
        partitions: i32,
    ) {
        self.create_on_mock_with(cluster, partitions, 2);
    }

    /// As [`Names::create_on_mock`], with `outputs` partitions for the output and dead-letter topics.
    pub fn create_on_mock_with<C: rdkafka::ClientContext>(
        &self,
        cluster: &rdkafka::mocking::MockCluster<'_, C>,
        partitions: i32,
        outputs: i32,
    ) {
        for topic in [&self.input, &self.changelog, &self.internal, &self.internal_account] {
            cluster.create_topic(topic, partitions, 1).unwrap_or_else(|err| panic!("{err}"));
        }
        for topic in [&self.score_changed, &self.threshold_crossed, &self.phase_changed, &self.accounts, &self.dlq] {
            cluster.create_topic(topic, outputs, 1).unwrap_or_else(|err| panic!("{err}"));
        }
    }

    pub fn outputs(&self) -> Vec<&str> {
        vec![&self.score_changed, &self.threshold_crossed, &self.phase_changed]
    }

    /// A `leadscore run` configuration for these names.
    pub fn config_toml(&self, bootstrap: &str, state_dir: &Path, partitions: u32) -> String {
        format!(
            r#"
[kafka]
brokers = "{bootstrap}"
group_id = "{group}"
fetch_wait_max_ms = 10
batch_size = 500
session_timeout_ms = 6000

[kafka.librdkafka]
"heartbeat.interval.ms" = "500"
"session.timeout.ms" = "6000"
"max.poll.interval.ms" = "15000"
"partition.assignment.strategy" = "range"
"topic.metadata.refresh.interval.ms" = "1000"

[topics]
inputs = ["{input}"]
score_changed = "{score}"
threshold_crossed = "{threshold}"
phase_changed = "{phase}"
accounts = "{accounts}"
dlq = "{dlq}"
changelog = "{changelog}"
internal_merge = "{internal}"
internal_account = "{internal_account}"
partitions = {partitions}

[state]
dir = "{state}"

[timers]
clock = "stream"

[processing]
drain_timeout_ms = 10000

[http]
listen = "127.0.0.1:0"

[rules]
path = "{rules}"
"#,
            group = self.group,
            input = self.input,
            score = self.score_changed,
            threshold = self.threshold_crossed,
            phase = self.phase_changed,
            accounts = self.accounts,
            dlq = self.dlq,
            changelog = self.changelog,
            internal = self.internal,
            internal_account = self.internal_account,
            state = state_dir.display(),
            rules = manifest("examples/rules.toml").display(),
        )
    }
}

/// Creates the topics of a `leadscore run` configuration the way `leadscore run` would (on brokers with
/// CreateTopics, such as Apache Kafka), so that a test can produce to explicit partitions before it starts.
pub fn provision_topics(config: &Path) {
    let config = leadscore::config::Config::load(config).unwrap_or_else(|err| panic!("{err}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let provisioned = runtime
        .block_on(leadscore::kafka::topics::create_missing(
            &config.kafka.client_config(),
            &leadscore::app::topic_specs(&config),
            config.kafka.message_max_bytes(),
            Duration::from_secs(10),
        ))
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(provisioned.problems.is_empty(), "{:?}", provisioned.problems);
}

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("fetch.wait.max.ms", "10");
    config
}

/// A realistic stream with late events and duplicated ids.
pub fn stream(seed: u64, events: usize, contacts: u64) -> Vec<Event> {
    let mut generator = EventGenerator::new(seed, contacts, START_MS, 900_000);
    let mut random = SplitMix64::new(seed ^ 0x5eed);
    let mut out: Vec<Event> = Vec::with_capacity(events);
    while out.len() < events {
        let roll = random.below(100);
        if roll < 3 && !out.is_empty() {
            // A duplicate of a recent event, as an upstream retry would send.
            let index = out.len() - 1 - random.below(out.len().min(20) as u64) as usize;
            out.push(out[index].clone());
        } else {
            let mut event = generator.next_event();
            if roll < 8 {
                event.ts_ms -= 6 * 3_600_000; // late by six hours
            }
            out.push(event);
        }
    }
    out
}

/// Produces `part` on another thread while `during` runs on this one; returns the records per partition.
pub fn producing(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    part: &[Event],
    during: impl FnOnce(),
) -> BTreeMap<i32, i64> {
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(bootstrap, topic, partitions, part));
        during();
        producer.join().unwrap_or_else(|_| panic!("the producer thread failed"))
    })
}

/// Produces events as JSON to their model partitions; returns the record count per partition.
pub fn produce(bootstrap: &str, topic: &str, partitions: u32, events: &[Event]) -> BTreeMap<i32, i64> {
    produce_with(client(bootstrap), topic, partitions, events)
}

/// [`produce`] through a client of the caller's (a secured connection, for example).
pub fn produce_with(client: ClientConfig, topic: &str, partitions: u32, events: &[Event]) -> BTreeMap<i32, i64> {
    let payloads: Vec<(Vec<u8>, Vec<u8>)> =
        events.iter().map(|event| (event.contact.as_bytes().to_vec(), json::encode(event))).collect();
    produce_placed_with(client, topic, &placed_by_key(partitions, &payloads))
}

/// Produces (key, value) records to the partition of their key; returns the count per partition.
pub fn produce_raw(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    records: &[(Vec<u8>, Vec<u8>)],
) -> BTreeMap<i32, i64> {
    produce_placed(bootstrap, topic, &placed_by_key(partitions, records))
}

fn placed_by_key(partitions: u32, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<PlacedRecord> {
    records
        .iter()
        .map(|(key, value)| (partition_for_key(key, partitions) as i32, Some(key.clone()), Some(value.clone())))
        .collect()
}

/// A record with an explicit partition, and a key and value that may be null.
pub type PlacedRecord = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces records to their given partitions, in order; returns the count per partition.
pub fn produce_placed(bootstrap: &str, topic: &str, records: &[PlacedRecord]) -> BTreeMap<i32, i64> {
    produce_placed_with(client(bootstrap), topic, records)
}

/// [`produce_placed`] through a client of the caller's (a secured connection, for example).
pub fn produce_placed_with(mut client: ClientConfig, topic: &str, records: &[PlacedRecord]) -> BTreeMap<i32, i64> {
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap_or_else(|err| panic!("{err}"));
    let mut counts = BTreeMap::new();
    for (partition, key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(*partition);
        if let Some(key) = key {
            record = record.key(&key[..]);
        }
        if let Some(value) = value {
            record = record.payload(&value[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        *counts.entry(*partition).or_insert(0) += 1;
    }
    producer.flush(Duration::from_secs(60)).unwrap_or_else(|err| panic!("{err}"));
    counts
}

/// The group's committed offsets of `topic`, by partition (partitions without a commit left out).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: u32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        client(bootstrap).set("group.id", group).create().unwrap_or_else(|err| panic!("{err}"));
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap_or_else(|err| panic!("{err}"));
    committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// Waits until the group has committed `expected` records on every partition.
pub fn wait_committed(bootstrap: &str, group: &str, topic: &str, expected: &BTreeMap<i32, i64>, timeout: Duration) {
    wait_committed_with(client(bootstrap), group, topic, expected, timeout);
}

/// [`wait_committed`] through a client of the caller's.
pub fn wait_committed_with(
    client: ClientConfig,
    group: &str,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    wait_committed_until(client, group, topic, expected, timeout, |committed, count| committed == count);
}

/// Waits until the group has committed at least `expected` on every partition: with exactly_once, a
/// group reads past aborted records and transaction markers after the last committed record.
pub fn wait_committed_past(
    bootstrap: &str,
    group: &str,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    wait_committed_until(client(bootstrap), group, topic, expected, timeout, |committed, count| committed >= count);
}

fn wait_committed_until(
    mut client: ClientConfig,
    group: &str,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
    timeout: Duration,
    reached: impl Fn(i64, i64) -> bool,
) {
    let consumer: BaseConsumer = client.set("group.id", group).create().unwrap_or_else(|err| panic!("{err}"));
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        let mut list = TopicPartitionList::new();
        for partition in expected.keys() {
            list.add_partition(topic, *partition);
        }
        if let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(5)) {
            last = committed.elements().iter().map(|e| (e.partition(), e.offset())).collect();
            let done = expected.iter().all(|(partition, count)| {
                committed
                    .find_partition(topic, *partition)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|at| reached(at, *count))
            });
            if done {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("group {group} did not commit {expected:?} within {timeout:?}; last seen {last:?}");
}

/// A record read back: topic, key, value and headers.
pub type ReadRecord = (String, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

/// Reads every record of `topics` from the start until they are idle.
pub fn read_all(bootstrap: &str, topics: &[&str], idle: Duration) -> Vec<ReadRecord> {
    read_all_with(client(bootstrap), topics, idle)
}

/// [`read_all`] through a client of the caller's.
pub fn read_all_with(mut client: ClientConfig, topics: &[&str], idle: Duration) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = client
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|err| panic!("{err}"));
    consumer.subscribe(topics).unwrap_or_else(|err| panic!("{err}"));
    let mut records = Vec::new();
    let mut last = Instant::now();
    let started = Instant::now();
    while last.elapsed() < idle || (records.is_empty() && started.elapsed() < idle * 4) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                use rdkafka::message::Headers;
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default();
                records.push((
                    message.topic().to_owned(),
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                    headers,
                ));
                last = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(err)) => panic!("reading {topics:?}: {err}"),
        }
    }
    records
}

/// A mock cluster hosted by this test process (reachable over loopback), with the topics of `test` created.
pub fn mock_broker(
    test: &str,
    partitions: u32,
) -> (rdkafka::mocking::MockCluster<'static, DefaultProducerContext>, String, Names) {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap_or_else(|err| panic!("{err}"));
    let bootstrap = cluster.bootstrap_servers();
    let names = Names::new(test);
    names.create_on_mock(&cluster, partitions as i32);
    (cluster, bootstrap, names)
}

/// The mock cluster keeps at most 5 MB (and 100 000 produce batches) per partition and silently drops
/// the oldest records beyond that; Kafka deletes old segments by retention. Returns the partitions of
/// `topics` whose log no longer starts at 0, so a test can tell the broker's loss from leadscore's.
pub fn truncated_partitions(bootstrap: &str, topics: &[&str]) -> Vec<(String, i32, i64)> {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap_or_else(|err| panic!("{err}"));
    let mut truncated = Vec::new();
    for topic in metadata.topics().iter().filter(|topic| topics.contains(&topic.name())) {
        for partition in topic.partitions() {
            let (low, _) = consumer
                .fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10))
                .unwrap_or_else(|err| panic!("{err}"));
            if low > 0 {
                truncated.push((topic.name().to_owned(), partition.id(), low));
            }
        }
    }
    truncated
}

/// The model of a stream of events, as JSON lines.
pub fn model_of_events(rules: &Rules, partitions: u32, events: &[Event]) -> Model {
    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    model(rules, partitions, &lines)
}

/// What the offline model says for a stream: outputs by id (JSON) and encoded final states.
pub struct Model {
    pub outputs: BTreeMap<String, Vec<u8>>,
    pub states: BTreeMap<String, Vec<u8>>,
    /// Merged contacts, with the contact each was merged into.
    pub aliases: BTreeMap<String, String>,
    /// The rules the states are encoded under, to show a differing state in full.
    pub rules: Rules,
}

pub fn model(rules: &Rules, partitions: u32, lines: &[Vec<u8>]) -> Model {
    let mut scorer = OfflineScorer::new(rules, partitions);
    let mut outputs = BTreeMap::new();
    for line in lines {
        if let Ok(produced) = scorer.score_line(line) {
            for output in produced {
                let previous = outputs.insert(output.id.clone(), output.to_json());
                assert!(previous.is_none(), "the model produced {} twice", output.id);
            }
        }
    }
    let states = scorer
        .store()
        .contacts()
        .iter()
        .map(|(contact, state)| (contact.clone(), codec::encode(rules, state)))
        .collect();
    Model { outputs, states, aliases: scorer.store().aliases().clone(), rules: rules.clone() }
}

/// Encoded states of every contact in a state directory (erased records left out).
pub fn stored_states(rules: &Rules, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    stored_states_of(rules, dir, None)
}

/// Encoded states of the contacts of `only` partitions (all when `None`) in a state directory.
pub fn stored_states_of(rules: &Rules, dir: &Path, only: Option<&[i32]>) -> BTreeMap<String, Vec<u8>> {
    let mut states = BTreeMap::new();
    for_each_stored(dir, only, false, |contact, bytes| {
        let stored = StoredContact::decode(rules, contact, bytes).unwrap_or_else(|err| panic!("{err}"));
        if let Some(state) = stored.state {
            states.insert(contact.to_owned(), codec::encode(rules, &state));
        }
    });
    states
}

/// Every merged contact in a state directory, with the contact it was merged into.
pub fn stored_aliases(rules: &Rules, dir: &Path) -> BTreeMap<String, String> {
    stored_aliases_of(rules, dir, None)
}

/// The merged contacts of `only` partitions (all when `None`) in a state directory, with the contact each
/// was merged into.
pub fn stored_aliases_of(rules: &Rules, dir: &Path, only: Option<&[i32]>) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    for_each_stored(dir, only, false, |contact, bytes| {
        let stored = StoredContact::decode(rules, contact, bytes).unwrap_or_else(|err| panic!("{err}"));
        if let Some(survivor) = stored.merged_into {
            aliases.insert(contact.to_owned(), survivor);
        }
    });
    aliases
}

/// Calls `f` with the id and bytes of every record of the `only` partitions (all when `None`) in a state
/// directory: its contacts', or with `accounts` its accounts'.
pub fn for_each_stored(dir: &Path, only: Option<&[i32]>, accounts: bool, mut f: impl FnMut(&str, &[u8])) {
    let store = RocksStore::open(dir, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    let partitions = store.partitions().unwrap_or_else(|err| panic!("{err}"));
    for partition in partitions.into_iter().filter(|partition| only.is_none_or(|only| only.contains(partition))) {
        let mut visit = |id: &str, bytes: &[u8]| {
            f(id, bytes);
            true
        };
        let scanned = match accounts {
            true => store.for_each_account(partition, &mut visit),
            false => store.for_each_contact(partition, &mut visit),
        };
        scanned.unwrap_or_else(|err| panic!("{err}"));
    }
}

/// How published outputs differ from the model.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutputDiff {
    /// Expected output ids never published.
    pub missing: Vec<String>,
    /// Published ids the model never produced, or published with other content.
    pub wrong: Vec<String>,
    /// Copies published beyond the first of each id.
    pub duplicates: usize,
}

/// Compares published outputs with the model, by id and content.
pub fn diff_outputs(model: &Model, published: &[ReadRecord]) -> OutputDiff {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut diff = OutputDiff::default();
    for (topic, _, payload, _) in published {
        let payload = payload.as_deref().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|err| panic!("{topic}: {err}"));
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        if model.outputs.get(&id).is_none_or(|expected| expected[..] != payload[..]) {
            diff.wrong.push(id.clone());
        }
        *seen.entry(id).or_default() += 1;
    }
    diff.missing = model.outputs.keys().filter(|id| !seen.contains_key(*id)).cloned().collect();
    diff.duplicates = seen.values().map(|count| count - 1).sum();
    diff
}

/// Compares published outputs with the model: every expected id with the same value, none unexpected.
/// Returns the number of duplicate copies.
pub fn compare_outputs(model: &Model, published: &[ReadRecord]) -> usize {
    let diff = diff_outputs(model, published);
    if let Some(id) = diff.wrong.first() {
        let expected = model.outputs.get(id).map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let actual = published.iter().find(|(_, _, payload, _)| {
            payload.as_deref().is_some_and(|bytes| String::from_utf8_lossy(bytes).contains(&format!("\"id\":\"{id}\"")))
        });
        panic!(
            "{} outputs differ from the model or are unexpected, such as {id}: expected {expected:?}, published {:?}",
            diff.wrong.len(),
            actual.and_then(|(_, _, payload, _)| payload.as_deref().map(String::from_utf8_lossy))
        );
    }
    assert!(
        diff.missing.is_empty(),
        "{} expected outputs never published, such as {:?}",
        diff.missing.len(),
        &diff.missing[..diff.missing.len().min(5)]
    );
    diff.duplicates
}

/// How final states differ from the model: contacts missing, and contacts whose state differs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateDiff {
    /// Contacts the model has and the state does not.
    pub missing: Vec<String>,
    /// Contacts whose state differs, or that the model does not have.
    pub differing: Vec<String>,
}

pub fn diff_states(model: &Model, states: &BTreeMap<String, Vec<u8>>) -> StateDiff {
    let mut diff = StateDiff::default();
    for (contact, expected) in &model.states {
        match states.get(contact) {
            None => diff.missing.push(contact.clone()),
            Some(actual) if actual != expected => diff.differing.push(contact.clone()),
            Some(_) => {}
        }
    }
    diff.differing.extend(states.keys().filter(|contact| !model.states.contains_key(*contact)).cloned());
    diff
}

pub fn compare_states(model: &Model, states: &BTreeMap<String, Vec<u8>>) {
    let diff = diff_states(model, states);
    assert!(
        diff.missing.is_empty(),
        "contacts missing from the state: {:?}",
        &diff.missing[..diff.missing.len().min(5)]
    );
    if let Some(first) = diff.differing.first() {
        // Both states in full, so that a failure on a machine out of reach still says how they differ, then
        // a short message, which stays readable where only the end of the output is kept.
        let decoded = |bytes: Option<&Vec<u8>>| bytes.map(|bytes| codec::decode(&model.rules, first, bytes));
        let (expected, stored) = (decoded(model.states.get(first)), decoded(states.get(first)));
        eprintln!("{first} in the model: {expected:?}\n{first} stored: {stored:?}");
        let clock = |state: &Option<Result<leadscore::scoring::ContactState, _>>| match state {
            Some(Ok(state)) => format!("clock {} ms, {} history entries", state.clock_ms, state.history.len()),
            Some(Err(err)) => format!("undecodable: {err}"),
            None => "none".to_owned(),
        };
        panic!(
            "{} contacts differ from the model (lost or double-counted events), such as {:?}; {first} in the model: \
             {}; stored: {} (both in full above)",
            diff.differing.len(),
            &diff.differing[..diff.differing.len().min(5)],
            clock(&expected),
            clock(&stored)
        );
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(0)
}

/// The body of `GET path` on an instance's HTTP port, whatever the status; `None` if it does not answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_status(port, path).map(|(_, body)| body)
}

/// The status code and body of `GET path` on an instance's HTTP port.
pub fn http_get_status(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1)?.to_owned();
    Some((status, body))
}

/// The partitions an instance reports on `/readyz`, if it answers and is ready.
pub fn owned_partitions(port: u16) -> Option<Vec<i32>> {
    let (status, body) = http_get_status(port, "/readyz")?;
    if status != 200 {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(value["partitions"].as_array()?.iter().filter_map(serde_json::Value::as_i64).map(|p| p as i32).collect())
}

/// Runs an instance in this process until it owns and has restored every partition and the group has
/// committed `expected`; when `offsets_visible` is false (transactional offset commits, which the mock
/// cluster accepts but does not serve back), until every record was processed instead.
pub fn run_in_process(
    config: &leadscore::config::Config,
    bootstrap: &str,
    names: &Names,
    expected: &BTreeMap<i32, i64>,
    partitions: u32,
    offsets_visible: bool,
) {
    let instance = InProcess::start(config, partitions);
    if offsets_visible {
        wait_committed(bootstrap, &names.group, &names.input, expected, Duration::from_secs(120));
    } else {
        let total: i64 = expected.values().sum();
        instance.wait_events(total as u64, Duration::from_secs(120));
    }
    instance.stop();
}

/// A `leadscore run` instance in this test process, ready (every partition owned and restored) when
/// [`InProcess::start`] returns.
///
/// A test that fails while the instance runs drops it, which stops it first: dropping the runtime alone
/// would wait for processing threads that were never told to stop, and hang the test.
pub struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: tokio::runtime::Runtime,
    handle: tokio::task::JoinHandle<Result<leadscore::runtime::RunSummary, leadscore::app::AppError>>,
    pub status: std::sync::Arc<leadscore::runtime::status::Status>,
}

impl InProcess {
    pub fn start(config: &leadscore::config::Config, partitions: u32) -> InProcess {
        use std::sync::Arc;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let rules = Arc::new(leadscore::app::load_rules(config).unwrap_or_else(|err| panic!("{err}")));
        let store = leadscore::app::open_store(config).unwrap_or_else(|err| panic!("{err}"));
        let status = Arc::new(leadscore::runtime::status::Status::default());
        let instance =
            Arc::new(leadscore::app::Instance::new(rules, store, status.clone(), partitions, config.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = runtime.spawn(leadscore::app::run_instance(instance, async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        while !(status.ready() && status.owned().len() == partitions as usize) {
            assert!(started.elapsed() < Duration::from_secs(60), "not ready: {:?}", status.not_ready_reason());
            std::thread::sleep(Duration::from_millis(50));
        }
        InProcess { stop: Some(stop), runtime, handle, status }
    }

    /// Waits until the instance has consumed `events` records (replays included).
    pub fn wait_events(&self, events: u64, timeout: Duration) {
        let started = Instant::now();
        while self.status.events.load(std::sync::atomic::Ordering::Relaxed) < events {
            assert!(started.elapsed() < timeout, "records were not all processed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the instance (drain and commit) and fails the test if it had failed.
    pub fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let result = self.runtime.block_on(&mut self.handle).unwrap_or_else(|err| panic!("{err}"));
        result.unwrap_or_else(|err| panic!("leadscore run failed: {err}"));
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let handle = &mut self.handle;
            let _ = self.runtime.block_on(async move { tokio::time::timeout(Duration::from_secs(60), handle).await });
        }
    }
}

/// The model of a rules reload: `first` scores lines before `switch_at`, `second` the rest, with the
/// states carried over as the runtime carries them (stored under one version, read under the next).
pub fn model_switching(first: &Rules, second: &Rules, partitions: u32, lines: &[Vec<u8>], switch_at: usize) -> Model {
    let mut scorer = OfflineScorer::new(first, partitions);
    let mut outputs = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if index == switch_at {
            scorer.switch_rules(second);
        }
        if let Ok(produced) = scorer.score_line(line) {
            for output in produced {
                let previous = outputs.insert(output.id.clone(), output.to_json());
                assert!(previous.is_none(), "the model produced {} twice", output.id);
            }
        }
    }
    if switch_at >= lines.len() {
        scorer.switch_rules(second);
    }
    let states = scorer
        .store()
        .contacts()
        .iter()
        .map(|(contact, state)| (contact.clone(), codec::encode(second, state)))
        .collect();
    Model { outputs, states, aliases: scorer.store().aliases().clone(), rules: second.clone() }
}

/// Waits until the log file has a line containing `needle`, and returns that line.
pub fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> String {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("no log line with {needle:?} within {timeout:?}; the log ends with:\n{}", tail(&text, 20));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `leadscore run` process.
pub struct Instance {
    pub child: Child,
    pub log: PathBuf,
}

pub fn spawn_run(config: &Path, log: &Path) -> Instance {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap_or_else(|err| panic!("{err}"));
    let child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start leadscore: {err}"));
    Instance { child, log: log.to_owned() }
}

impl Instance {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        None
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wall clock in Unix nanoseconds, comparable with the timestamps of `leadscore run` logs.
pub fn unix_nanos() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos() as i128)
}

/// A stretch of time in which one `leadscore run` process owned an input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Which process (a name of the test's choosing).
    pub process: String,
    pub partition: i32,
    /// Unix nanoseconds: the "partitions assigned" line that gave it the partition.
    pub from: i128,
    /// Unix nanoseconds: the end of the revocation that took the partition ("revocation drained and
    /// committed"), the processor's end ("stopped cleanly", or a rebuild after a Kafka failure), or the
    /// `end` given to [`ownership`] for what the process still held when its log ends (when it was killed).
    pub to: i128,
}

/// When the process that wrote `log` owned which partitions, from its "partitions assigned" and
/// "partitions revoked" lines and their timestamps. Both ends are on the safe side: a partition is owned
/// from its assignment (before its restore), until its revocation has drained and committed.
pub fn ownership(process: &str, log: &Path, end: i128) -> Vec<Ownership> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|err| panic!("{}: {err}", log.display()));
    // Each processing thread is a group member of its own: its stretches are told apart as `a1/t0`, `a1/t1`.
    let mut open: BTreeMap<(String, i32), i128> = BTreeMap::new();
    let mut revoking: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut owned = Vec::new();
    let mut close = |member: &str, partition: i32, from: i128, to: i128| {
        owned.push(Ownership { process: format!("{process}/t{member}"), partition, from, to });
    };
    for line in text.lines() {
        let Some(at) = line
            .split_whitespace()
            .next()
            .and_then(|stamp| time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok())
            .map(time::OffsetDateTime::unix_timestamp_nanos)
        else {
            continue;
        };
        let thread = line.split("processor{thread=").nth(1).and_then(|rest| rest.split('}').next()).unwrap_or("0");
        if line.contains("partitions assigned partitions=[") {
            for partition in logged_partitions(line) {
                open.entry((thread.to_owned(), partition)).or_insert(at);
            }
        } else if line.contains("partitions revoked; draining and committing partitions=[") {
            revoking.insert(thread.to_owned(), logged_partitions(line));
        } else if line.contains("revocation drained and committed")
            || line.contains("could not finish the revoked partitions")
        {
            for partition in revoking.remove(thread).unwrap_or_default() {
                if let Some(from) = open.remove(&(thread.to_owned(), partition)) {
                    close(thread, partition, from, at);
                }
            }
        } else if line.contains("stopped cleanly") || line.contains("Kafka failed; rejoining") {
            let (stopped, kept) = std::mem::take(&mut open).into_iter().partition(|((member, _), _)| member == thread);
            open = kept;
            for ((member, partition), from) in stopped {
                close(&member, partition, from, at);
            }
        }
    }
    for ((member, partition), from) in open {
        close(&member, partition, from, end);
    }
    owned
}

/// The partitions of a `partitions=[("topic", 0), ("topic", 1)]` log field.
fn logged_partitions(line: &str) -> Vec<i32> {
    let list = line.split("partitions=[").nth(1).and_then(|rest| rest.split(']').next()).unwrap_or_default();
    list.split(')').filter_map(|entry| entry.rsplit(", ").next()?.trim().parse().ok()).collect()
}

/// Pairs of stretches in which two processes owned the same partition at the same time.
pub fn overlapping(owned: &[Ownership]) -> Vec<(&Ownership, &Ownership)> {
    let mut overlaps = Vec::new();
    for (index, first) in owned.iter().enumerate() {
        for second in &owned[index + 1..] {
            if first.partition == second.partition
                && first.process != second.process
                && first.from < second.to
                && second.from < first.to
            {
                overlaps.push((first, second));
            }
        }
    }
    overlaps
}

/// The config of `member` of a test's group: state in `dir/state-<member>`, the HTTP API on `port` (0:
/// any); returns its path, `dir/<member>.toml`.
pub fn member_config(bootstrap: &str, names: &Names, dir: &Path, member: &str, partitions: u32, port: u16) -> PathBuf {
    let path = dir.join(format!("{member}.toml"));
    let toml = names
        .config_toml(bootstrap, &dir.join(format!("state-{member}")), partitions)
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    path
}

/// One member of a test's consumer group: a `leadscore run` process that the test starts, kills and
/// stops again, on one config and state directory, with a log per run for the ownership check.
pub struct Member {
    pub name: &'static str,
    pub config: PathBuf,
    pub state: PathBuf,
    pub port: u16,
    pub process: Option<Instance>,
    /// The log of each run of the process, and when the test saw that run end (`None`: still running).
    pub runs: Vec<(PathBuf, Option<i128>)>,
}

impl Member {
    /// A member whose config ([`member_config`]) and state live in `dir`, on a free HTTP port; not started.
    pub fn new(bootstrap: &str, names: &Names, dir: &Path, name: &'static str, partitions: u32) -> Member {
        let port = free_port();
        let config = member_config(bootstrap, names, dir, name, partitions, port);
        let state = dir.join(format!("state-{name}"));
        Member { name, config, state, port, process: None, runs: Vec::new() }
    }

    /// Starts a run, logging to `dir/<name><run>.log`.
    pub fn start(&mut self, dir: &Path) {
        let log = dir.join(format!("{}{}.log", self.name, self.runs.len() + 1));
        self.process = Some(spawn_run(&self.config, &log));
        self.runs.push((log, None));
    }

    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
        self.ended();
    }

    /// SIGTERM; the exit status.
    pub fn terminate(&mut self) -> Option<i32> {
        let status = self.process.take().and_then(|mut process| process.terminate(Duration::from_secs(60)));
        self.ended();
        status
    }

    fn ended(&mut self) {
        if let Some(run) = self.runs.last_mut() {
            run.1.get_or_insert_with(unix_nanos);
        }
    }

    pub fn log_tail(&self) -> String {
        let text =
            self.runs.last().map(|(log, _)| std::fs::read_to_string(log).unwrap_or_default()).unwrap_or_default();
        text[text.len().saturating_sub(3000)..].to_owned()
    }

    /// When each run owned which partitions ([`ownership`]), the runs named `<name><run>`: a1, a2, ...
    pub fn ownership(&self) -> Vec<Ownership> {
        let runs = self.runs.iter().enumerate();
        runs.flat_map(|(run, (log, end))| {
            ownership(&format!("{}{}", self.name, run + 1), log, end.unwrap_or(i128::MAX))
        })
        .collect()
    }
}

/// Waits until the running `members` (indices) are ready and share every partition between them, each
/// partition claimed by exactly one of them; returns each one's partitions.
pub fn wait_settled(members: &[Member], running: &[usize], partitions: u32, timeout: Duration) -> Vec<Vec<i32>> {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        last = running.iter().map(|&index| owned_partitions(members[index].port)).collect::<Vec<_>>();
        let owned: Vec<Vec<i32>> = last.iter().flatten().cloned().collect();
        let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
        all.sort_unstable();
        if owned.len() == running.len()
            && owned.iter().all(|partitions| !partitions.is_empty())
            && all == (0..partitions as i32).collect::<Vec<_>>()
        {
            return owned;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tails: Vec<String> =
        running.iter().map(|&index| format!("{}:\n{}", members[index].name, members[index].log_tail())).collect();
    panic!(
        "members {running:?} never shared the partitions (last seen {last:?}); their logs end:\n{}",
        tails.join("\n")
    );
}

/// Stops every member at once with SIGTERM, so that none takes over another's partitions on the way
/// out, and fails the test unless each exits 0.
pub fn terminate_all(members: &mut [Member]) {
    let statuses: Vec<Option<i32>> = std::thread::scope(|scope| {
        let stopping: Vec<_> = members.iter_mut().map(|member| scope.spawn(move || member.terminate())).collect();
        stopping.into_iter().map(|handle| handle.join().unwrap_or_else(|_| panic!("terminate failed"))).collect()
    });
    let failed: Vec<String> = members
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| **status != Some(0))
        .map(|(member, status)| format!("{} exited with {status:?}; its log ends:\n{}", member.name, member.log_tail()))
        .collect();
    assert!(failed.is_empty(), "every member stops cleanly on SIGTERM:\n{}", failed.join("\n"));
}

/// Events the instances on `ports` consumed since they started, from their metrics (none from one that
/// does not answer).
pub fn events_consumed(ports: &[u16]) -> u64 {
    let consumed = |port: u16| -> u64 {
        http_get(port, "/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("leadscore_events_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    ports.iter().map(|port| consumed(*port)).sum()
}

/// Waits until the instances on `ports` have consumed `records` events more than `from`, so that what
/// the test does next lands while they work through a backlog, with records in flight (at most 60 s: a
/// stalled instance shows in the final checks); returns how many more they consumed.
pub fn wait_consumed(ports: &[u16], from: u64, records: u64) -> u64 {
    let started = Instant::now();
    loop {
        let consumed = events_consumed(ports).saturating_sub(from);
        if consumed >= records || started.elapsed() > Duration::from_secs(60) {
            return consumed;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
