//! Replication and a broker failure: a cluster of three Apache Kafka nodes, every topic of leadscore
//! (inputs, outputs, dead letters, changelog) created by leadscore with replication factor 3 and checked
//! to have min.insync.replicas=2. While one `leadscore run` process (at-least-once) works through a
//! stream that keeps arriving, the broker leading most of its input and changelog partitions is killed
//! with SIGKILL and started again 10 s later. leadscore must carry on by itself, and lose nothing: the
//! final state equals the offline model and every expected output is published (copies allowed, and
//! counted). The test measures how long the group's committed offsets stood still while input waited.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: u32 = 4;
/// Events in the stream, and how many of them are in the input before leadscore starts.
const EVENTS: usize = 24_000;
const UPFRONT: usize = 8_000;
/// How long the killed broker stays down.
const DOWN: Duration = Duration::from_secs(10);

#[test]
fn a_broker_killed_mid_stream_costs_a_stall_and_loses_nothing() {
    let cluster = KafkaCluster::start(3);
    let bootstrap = cluster.bootstrap.as_str();
    let names = Names::new("failover");
    let dir = TestDir::new();
    let port = free_port();
    let config = dir.path().join("a.toml");
    let toml = names
        .config_toml(bootstrap, &dir.path().join("state"), PARTITIONS)
        .replace(&format!("partitions = {PARTITIONS}\n"), &format!("partitions = {PARTITIONS}\nreplication = 3\n"))
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    assert!(toml.contains("replication = 3"), "{toml}");
    std::fs::write(&config, toml).unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&config);
    let topics = [
        names.input.as_str(),
        &names.score_changed,
        &names.threshold_crossed,
        &names.phase_changed,
        &names.dlq,
        &names.changelog,
    ];
    check_replication(bootstrap, &topics);

    let events = stream(77, EVENTS, 2_400);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let (upfront, rest) = events.split_at(UPFRONT);
    let expected = Mutex::new(produce(bootstrap, &names.input, PARTITIONS, upfront));
    let produced = AtomicI64::new(UPFRONT as i64);
    let log = dir.path().join("a.log");
    let mut instance = spawn_run(&config, &log);
    let started = Instant::now();
    let sampling = AtomicBool::new(true);

    let (samples, victim, killed_at, restarted_at) = std::thread::scope(|scope| {
        // Stops the sampler however this closure ends, so that a failing assertion is not a hang.
        let _stop_sampling = StopOnDrop(&sampling);
        let sampler = scope.spawn(|| sample_progress(bootstrap, &names, port, &produced, &sampling, started));
        // The rest of the stream arrives in slices of 500 every 300 ms, before, during and after the
        // failure, so that leadscore has input waiting throughout.
        let producer = scope.spawn(|| {
            for slice in rest.chunks(500) {
                let counts = produce(bootstrap, &names.input, PARTITIONS, slice);
                let mut expected = expected.lock().unwrap_or_else(|err| panic!("{err}"));
                for (partition, count) in counts {
                    *expected.entry(partition).or_insert(0) += count;
                }
                produced.fetch_add(slice.len() as i64, Ordering::Relaxed);
                drop(expected);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        // Mid-stream: once leadscore has committed part of the backlog.
        let mid = UPFRONT as i64 + 2_000;
        let watcher: BaseConsumer =
            client(bootstrap).set("group.id", &names.group).create().unwrap_or_else(|err| panic!("{err}"));
        wait_until(Duration::from_secs(120), "leadscore commits part of the stream", || {
            committed_sum(&watcher, &names.input).is_some_and(|committed| committed >= mid)
        });
        let leaders = leaders(bootstrap, &[&names.input, &names.changelog]);
        let coordinator = group_coordinator(bootstrap, &names.group);
        // The node leading the most input and changelog partitions; on a tie, the group's coordinator.
        let victim = (1..=3)
            .max_by_key(|node| (leaders.get(node).copied().unwrap_or(0), Some(*node) == coordinator))
            .unwrap_or(1);
        eprintln!(
            "leaders of the input and changelog partitions by node: {leaders:?}; group coordinator: node \
             {coordinator:?}; killing node {victim}"
        );
        let killed_at = started.elapsed();
        cluster.kill(victim as usize);
        std::thread::sleep(DOWN);
        let restarting = started.elapsed();
        cluster.restart(victim as usize);
        eprintln!(
            "node {victim} killed at {:.1} s, started again at {:.1} s (up at {:.1} s)",
            killed_at.as_secs_f64(),
            restarting.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        producer.join().unwrap_or_else(|_| panic!("the producer thread failed"));
        let expected = expected.lock().unwrap_or_else(|err| panic!("{err}")).clone();
        wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(180));
        sampling.store(false, Ordering::Relaxed);
        let samples = sampler.join().unwrap_or_else(|_| panic!("the sampler thread failed"));
        (samples, victim, killed_at, restarting)
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0; log:\n{}", log_tail(&log));

    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &dir.path().join("state")));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let rejoins = text.matches("Kafka failed; rejoining").count();
    let problems: Vec<&str> = text
        .lines()
        .filter(|line| (line.contains(" WARN ") || line.contains(" ERROR ")) && !line.contains("CONFWARN"))
        .collect();
    eprintln!(
        "leadscore's warnings and errors ({}), the first 20:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    let describe = |stall: Option<(Duration, Duration)>| match stall {
        Some((stopped, resumed)) => format!(
            "{:.1} s (from {:.1} s to {:.1} s)",
            (resumed - stopped).as_secs_f64(),
            stopped.as_secs_f64(),
            resumed.as_secs_f64()
        ),
        None => "not measured".to_owned(),
    };
    let commits = describe(stall_around(&samples, killed_at, |sample| sample.committed));
    let consumption = describe(stall_around(&samples, killed_at, |sample| sample.consumed));
    let unanswered = samples.iter().filter(|sample| sample.committed.is_none()).count();
    let waiting = samples.iter().filter(|sample| sample.committed.is_some_and(|c| c < sample.produced)).count();
    eprintln!(
        "failover on 3 Apache Kafka nodes: {} events in {elapsed:.1} s; node {victim} killed at {:.1} s and started \
         again at {:.1} s; the group's committed offsets stood still for {commits}, consumption for {consumption} \
         ({} samples every 200 ms, {unanswered} without an answer from the group coordinator, {waiting} with input \
         waiting); {rejoins} rejoins after a Kafka failure; lost 0, double-counted 0, {} outputs, duplicate \
         outputs {duplicates}",
        events.len(),
        killed_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        samples.len(),
        published.len()
    );
    check_replication(bootstrap, &topics);
    wait_until(Duration::from_secs(120), "every replica is back in sync", || in_sync(bootstrap, &topics));
}

/// Every topic has 3 replicas per partition, and min.insync.replicas=2 (DescribeConfigs).
fn check_replication(bootstrap: &str, topics: &[&str]) {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30)).unwrap_or_else(|err| panic!("{err}"));
    for name in topics {
        let topic = metadata.topics().iter().find(|topic| topic.name() == *name);
        let topic = topic.unwrap_or_else(|| panic!("no topic {name}"));
        assert_eq!(topic.partitions().len(), PARTITIONS as usize, "{name}");
        for partition in topic.partitions() {
            assert_eq!(partition.replicas().len(), 3, "{name}/{}: replicas {:?}", partition.id(), partition.replicas());
        }
    }
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let specifiers: Vec<ResourceSpecifier> = topics.iter().map(|name| ResourceSpecifier::Topic(name)).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let described =
        runtime.block_on(admin.describe_configs(&specifiers, &options)).unwrap_or_else(|err| panic!("{err}"));
    for (name, result) in topics.iter().zip(described) {
        let resource = result.unwrap_or_else(|code| panic!("describing {name}: {code}"));
        let value = resource.get("min.insync.replicas").and_then(|entry| entry.value.clone());
        assert_eq!(value.as_deref(), Some("2"), "min.insync.replicas of {name}");
    }
}

/// Whether every partition of `topics` has its 3 replicas in sync.
fn in_sync(bootstrap: &str, topics: &[&str]) -> bool {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(10)) else {
        return false;
    };
    metadata
        .topics()
        .iter()
        .filter(|topic| topics.contains(&topic.name()))
        .flat_map(|topic| topic.partitions())
        .all(|partition| partition.isr().len() == 3)
}

/// How many partitions of `topics` each node leads.
fn leaders(bootstrap: &str, topics: &[&str]) -> BTreeMap<i32, usize> {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30)).unwrap_or_else(|err| panic!("{err}"));
    let mut leaders = BTreeMap::new();
    for topic in metadata.topics().iter().filter(|topic| topics.contains(&topic.name())) {
        for partition in topic.partitions() {
            *leaders.entry(partition.leader()).or_insert(0) += 1;
        }
    }
    leaders
}

/// The node leading the `__consumer_offsets` partition of `group`, which Kafka picks as
/// `abs(group.hashCode()) % partitions` with Java's `String.hashCode`.
fn group_coordinator(bootstrap: &str, group: &str) -> Option<i32> {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let metadata = consumer.fetch_metadata(Some("__consumer_offsets"), Duration::from_secs(30)).ok()?;
    let partitions = metadata.topics().first()?.partitions();
    if partitions.is_empty() {
        return None;
    }
    let hash = group.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let index = if hash == i32::MIN { 0 } else { hash.abs() } % partitions.len() as i32;
    partitions.iter().find(|partition| partition.id() == index).map(|partition| partition.leader())
}

/// One look at leadscore's progress, `at` since it was started: the group's committed offsets summed
/// over the input partitions (`None` when no coordinator answered), the events the instance consumed by
/// its metrics (`None` when it did not answer), and the records produced (acknowledged) by then.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    committed: Option<i64>,
    consumed: Option<i64>,
    produced: i64,
}

/// Looks at leadscore's progress every 200 ms until `sampling` is cleared.
fn sample_progress(
    bootstrap: &str,
    names: &Names,
    port: u16,
    produced: &AtomicI64,
    sampling: &AtomicBool,
    started: Instant,
) -> Vec<Sample> {
    let consumer: BaseConsumer =
        client(bootstrap).set("group.id", &names.group).create().unwrap_or_else(|err| panic!("{err}"));
    let mut samples = Vec::new();
    while sampling.load(Ordering::Relaxed) {
        let produced = produced.load(Ordering::Relaxed);
        let consumed = events_consumed(port);
        let committed = committed_sum(&consumer, &names.input);
        samples.push(Sample { at: started.elapsed(), committed, consumed, produced });
        std::thread::sleep(Duration::from_millis(200));
    }
    samples
}

fn committed_sum(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS as i32 {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(2)).ok()?;
    Some(
        committed
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            })
            .sum(),
    )
}

/// Events the instance on `port` consumed since it started, from its metrics.
fn events_consumed(port: u16) -> Option<i64> {
    let metrics = http_get(port, "/metrics")?;
    let events = metrics
        .lines()
        .filter(|line| line.starts_with("leadscore_events_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(events as i64)
}

/// How long a measure of progress stood still around `moment`: from the first sample that showed the
/// level it had at `moment`, to the first later sample that showed it higher (`None`: not seen to move
/// again, or not seen before `moment`).
fn stall_around(
    samples: &[Sample],
    moment: Duration,
    measure: impl Fn(&Sample) -> Option<i64>,
) -> Option<(Duration, Duration)> {
    let before: Vec<(Duration, i64)> =
        samples.iter().filter(|sample| sample.at <= moment).filter_map(|s| Some((s.at, measure(s)?))).collect();
    let &(_, level) = before.last()?;
    let stopped = before.iter().find(|(_, value)| *value == level)?.0;
    let resumed = samples.iter().find(|s| s.at > moment && measure(s).is_some_and(|value| value > level))?.at;
    Some((stopped, resumed))
}

/// Clears its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}
