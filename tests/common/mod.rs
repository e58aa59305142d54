//! Shared helpers of the integration tests: brokers (librdkafka's mock cluster in-process, or tansu
//! started by the project's script), random names, producing a stream, reading topics back, and the
//! offline model to compare against.

#![allow(dead_code)]

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

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// A tansu broker started by `scripts/tansu.sh`, stopped on drop.
pub struct Tansu {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Tansu {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let output = Command::new(manifest("scripts/tansu.sh"))
            .arg("start")
            .arg(dir.path())
            .envs(env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|err| panic!("cannot run scripts/tansu.sh: {err}"));
        assert!(output.status.success(), "tansu did not start");
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Tansu { dir, bootstrap }
    }

    pub fn stop(&self) {
        let _ = Command::new(manifest("scripts/tansu.sh")).arg("stop").arg(self.dir.path()).status();
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&self) {
        self.restart_with(&[]);
    }

    /// [`restart`](Self::restart) with more of `scripts/tansu.sh`'s settings.
    pub fn restart_with(&self, env: &[(&str, &str)]) {
        let port = self.bootstrap.rsplit(':').next().unwrap_or_default().to_owned();
        let status = Command::new(manifest("scripts/tansu.sh"))
            .arg("start")
            .arg(self.dir.path())
            .env("TANSU_PORT", port)
            .env("TANSU_STORAGE", "sqlite")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(status.success(), "tansu did not restart");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
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
        for topic in [&self.input, &self.changelog] {
            cluster.create_topic(topic, partitions, 1).unwrap_or_else(|err| panic!("{err}"));
        }
        for topic in [&self.score_changed, &self.threshold_crossed, &self.phase_changed, &self.dlq] {
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
dlq = "{dlq}"
changelog = "{changelog}"
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
            dlq = self.dlq,
            changelog = self.changelog,
            state = state_dir.display(),
            rules = manifest("examples/rules.toml").display(),
        )
    }
}

/// Creates the topics of a `leadscore run` configuration the way `leadscore run` would (for brokers with
/// CreateTopics, such as tansu), so that a test can produce to explicit partitions before it starts.
pub fn provision_topics(config: &Path) {
    let config = leadscore::config::Config::load(config).unwrap_or_else(|err| panic!("{err}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let provisioned = runtime
        .block_on(leadscore::kafka::topics::create_missing(
            &config.kafka.client_config(),
            &leadscore::app::topic_specs(&config),
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
    mut client: ClientConfig,
    group: &str,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
    timeout: Duration,
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
                committed.find_partition(topic, *partition).is_some_and(|e| e.offset() == Offset::Offset(*count))
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
/// the oldest records beyond that. Returns the partitions of `topics` whose log no longer starts at 0,
/// so a test can tell the broker's loss from leadscore's.
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
    Model { outputs, states }
}

/// Encoded states of every contact in a state directory (erased records left out).
pub fn stored_states(rules: &Rules, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    stored_states_of(rules, dir, None)
}

/// Encoded states of the contacts of `only` partitions (all when `None`) in a state directory.
pub fn stored_states_of(rules: &Rules, dir: &Path, only: Option<&[i32]>) -> BTreeMap<String, Vec<u8>> {
    let store = RocksStore::open(dir, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    let mut states = BTreeMap::new();
    let partitions = store.partitions().unwrap_or_else(|err| panic!("{err}"));
    for partition in partitions.into_iter().filter(|partition| only.is_none_or(|only| only.contains(partition))) {
        store
            .for_each_contact(partition, &mut |contact, bytes| {
                let stored = StoredContact::decode(rules, contact, bytes).unwrap_or_else(|err| panic!("{err}"));
                if let Some(state) = stored.state {
                    states.insert(contact.to_owned(), codec::encode(rules, &state));
                }
                true
            })
            .unwrap_or_else(|err| panic!("{err}"));
    }
    states
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
    assert!(
        diff.differing.is_empty(),
        "{} contacts differ from the model (lost or double-counted events), such as {:?}",
        diff.differing.len(),
        &diff.differing[..diff.differing.len().min(5)]
    );
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
    use std::sync::Arc;
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = Arc::new(leadscore::app::load_rules(config).unwrap_or_else(|err| panic!("{err}")));
    let store = leadscore::app::open_store(config).unwrap_or_else(|err| panic!("{err}"));
    let status = Arc::new(leadscore::runtime::status::Status::default());
    let instance = Arc::new(leadscore::app::Instance::new(rules, store, status.clone(), partitions, config.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(leadscore::app::run_instance(instance, async {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while !(status.ready() && status.owned().len() == partitions as usize) {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready: {:?}", status.not_ready_reason());
        std::thread::sleep(Duration::from_millis(50));
    }
    if offsets_visible {
        wait_committed(bootstrap, &names.group, &names.input, expected, Duration::from_secs(120));
    } else {
        let total: i64 = expected.values().sum();
        while (status.events.load(std::sync::atomic::Ordering::Relaxed) as i64) < total {
            assert!(started.elapsed() < Duration::from_secs(120), "records were not all processed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = stop.send(());
    let result = runtime.block_on(handle).unwrap_or_else(|err| panic!("{err}"));
    result.unwrap_or_else(|err| panic!("leadscore run failed: {err}"));
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
    Model { outputs, states }
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
