//! End-to-end tests with `leadscore run` processes against real Kafka-protocol brokers: Apache Kafka
//! started by `scripts/kafka.sh` (one node shared by the tests of this file, each with topics and a group
//! of its own), and librdkafka's mock cluster hosted in the test process. kill -9 at random points, a
//! rebalance after one of two members dies, three members joining and leaving mid-stream, a clean
//! SIGTERM, dead letters, decay timers and a lost state directory: after each, the final state equals the
//! offline model (nothing lost, nothing double-counted) and every expected output was published, with no
//! unexpected one. And a restore longer than the poll interval, which must keep the member in its group.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use leadscore::generator::SplitMix64;

const PARTITIONS: u32 = 4;

struct Setup {
    kafka: &'static Kafka,
    names: Names,
    dir: TestDir,
    model: Model,
    events: Vec<leadscore::event::Event>,
    expected: BTreeMap<i32, i64>,
}

fn setup(test: &str, events: usize, contacts: u64) -> Setup {
    let kafka = shared_kafka();
    let names = Names::new(test);
    let dir = TestDir::new();
    provision_topics(&write_config(&kafka.bootstrap, &names, dir.path(), "a"));
    let events = stream(test.len() as u64, events, contacts);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let mut expected = BTreeMap::new();
    for event in &events {
        let partition = leadscore::hashing::partition_for_key(event.contact.as_bytes(), PARTITIONS) as i32;
        *expected.entry(partition).or_insert(0) += 1;
    }
    Setup { kafka, names, dir, model, events, expected }
}

fn write_config(bootstrap: &str, names: &Names, dir: &Path, member: &str) -> PathBuf {
    member_config(bootstrap, names, dir, member, PARTITIONS, 0)
}

fn finish(setup: &Setup, state_dir: &Path, published_from: &str) -> usize {
    let published = read_all(&setup.kafka.bootstrap, &setup.names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&setup.model, &published);
    compare_states(&setup.model, &stored_states(&rules(), state_dir));
    eprintln!("{published_from}: {} outputs, {duplicates} duplicate copies", published.len());
    duplicates
}

/// Runs against librdkafka's mock cluster, hosted in this test process and reached over loopback by the
/// `leadscore run` processes.
#[test]
fn kill_9_at_random_points_loses_and_double_counts_nothing() {
    let (_cluster, bootstrap, names) = mock_broker("kill9", PARTITIONS);
    let dir = TestDir::new();
    kill_9_loop(&bootstrap, &names, dir.path(), "mock cluster");
}

/// The same loop on Apache Kafka, where a restarted member waits for the killed one's session to expire.
#[test]
fn kill_9_on_kafka_loses_and_double_counts_nothing() {
    let kafka = shared_kafka();
    let names = Names::new("kill9kafka");
    let dir = TestDir::new();
    provision_topics(&write_config(&kafka.bootstrap, &names, dir.path(), "a"));
    kill_9_loop(&kafka.bootstrap, &names, dir.path(), "Apache Kafka");
}

/// Kills one `leadscore run` process 5 times at random points while a 20,000-event stream arrives,
/// restarting it each time; then the final state must equal the model and every expected output must be published.
fn kill_9_loop(bootstrap: &str, names: &Names, dir: &Path, broker: &str) {
    let events = stream(9, 20_000, 2_000);
    let mut kills = Vec::new();
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let port = free_port();
    let config = member_config(bootstrap, names, dir, "a", PARTITIONS, port);
    let log = dir.join("a.log");
    let mut random = SplitMix64::new(9);
    let started = std::time::Instant::now();
    // The stream arrives in six parts. Each finds the process restored and caught up with the parts
    // before it, and the process is killed during each but the last, once it has consumed a random share
    // (10 to 70%) of the part, so that every kill lands while records are being scored, published and
    // committed.
    let mut parts = events.chunks(events.len() / 6 + 1);
    let mut expected = BTreeMap::new();
    let restores = || std::fs::read_to_string(&log).unwrap_or_default().matches("restored partition").count();
    let mut instance = spawn_run(&config, &log);
    let mut restored = 0;
    while let Some(part) = parts.next() {
        // Wait until this process has restored its partitions (a killed member's session expires first)
        // and scored again what its predecessor left uncommitted.
        wait_for(Duration::from_secs(60), || restores() >= restored + PARTITIONS as usize);
        wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(120));
        let last = parts.len() == 0;
        let consumed = events_consumed(&[port]);
        let before: i64 = expected.values().sum();
        let produced = std::thread::scope(|scope| {
            let producer = scope.spawn(|| produce(bootstrap, &names.input, PARTITIONS, part));
            if !last {
                let consumed = wait_consumed(&[port], consumed, random_share(&mut random, part.len()));
                instance.kill9();
                let committed: i64 =
                    committed_offsets(bootstrap, &names.group, &names.input, PARTITIONS).values().sum();
                kills.push(format!(
                    "{consumed} of the part's {} consumed, {committed} of {} committed",
                    part.len(),
                    before + part.len() as i64
                ));
            }
            producer.join().unwrap_or_else(|_| panic!("the producer thread failed"))
        });
        for (partition, count) in produced {
            *expected.entry(partition).or_insert(0) += count;
        }
        if last {
            break;
        }
        restored = restores();
        instance = spawn_run(&config, &log);
    }
    wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &dir.join("state-a")));
    assert!(kills.len() >= 5, "{} kills", kills.len());
    eprintln!(
        "kill -9 test on {broker}: {} events in {elapsed:.1} s with {} kills ({kills:?}), lost 0, double-counted \
         0, {} outputs, duplicate outputs {duplicates}",
        events.len(),
        kills.len(),
        published.len()
    );
}

/// Runs against librdkafka's mock cluster, hosted in this test process and reached over loopback by
/// both `leadscore run` processes.
#[test]
fn a_surviving_member_restores_the_dead_members_partitions() {
    let (_cluster, bootstrap, names) = mock_broker("rebalance", PARTITIONS);
    let dir = TestDir::new();
    rebalance_after_a_death(&bootstrap, &names, dir.path(), "mock cluster");
}

/// The same rebalance on Apache Kafka: the dead member's partitions move once its session expires.
#[test]
fn on_kafka_a_surviving_member_restores_the_dead_members_partitions() {
    let kafka = shared_kafka();
    let names = Names::new("rebalancekafka");
    let dir = TestDir::new();
    provision_topics(&write_config(&kafka.bootstrap, &names, dir.path(), "a"));
    rebalance_after_a_death(&kafka.bootstrap, &names, dir.path(), "Apache Kafka");
}

/// Two members share the partitions of the first half of a stream; one dies without a goodbye, the
/// second half arrives, and the survivor must restore the dead member's partitions and finish the job.
fn rebalance_after_a_death(bootstrap: &str, names: &Names, dir: &Path, broker: &str) {
    let events = stream(5, 10_000, 1_000);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let (first, second) = events.split_at(events.len() / 2);
    let mut expected = produce(bootstrap, &names.input, PARTITIONS, first);
    let port_b = free_port();
    let config = |member: &str, port: u16| member_config(bootstrap, names, dir, member, PARTITIONS, port);
    let mut a = spawn_run(&config("a", 0), &dir.join("a.log"));
    let mut b = spawn_run(&config("b", port_b), &dir.join("b.log"));
    wait_for(Duration::from_secs(60), || {
        owned_partitions(port_b).is_some_and(|owned| !owned.is_empty() && owned.len() < PARTITIONS as usize)
    });
    std::thread::sleep(Duration::from_secs(2));
    a.kill9();
    for (partition, count) in produce(bootstrap, &names.input, PARTITIONS, second) {
        *expected.entry(partition).or_insert(0) += count;
    }
    let taken_over = try_wait_for(Duration::from_secs(90), || {
        owned_partitions(port_b).is_some_and(|owned| owned.len() == PARTITIONS as usize)
    });
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(taken_over, "b never owned every partition; its log:\n{}", &log[log.len().saturating_sub(6000)..]);
    wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    assert_eq!(b.terminate(Duration::from_secs(30)), Some(0));
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(log.contains("restored partition from the changelog"), "b restored partitions");
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &dir.join("state-b")));
    eprintln!("rebalance on {broker}: {} outputs, {duplicates} duplicate copies", published.len());
}

/// A restore longer than `max.poll.interval.ms` (1.5M contacts in the changelog, an empty state directory)
/// runs beside the poll loop, so that the member keeps its place in the group throughout: it never leaves
/// for a missed poll, nothing is revoked, and the input waiting behind the restore is scored after it.
#[test]
fn on_kafka_a_restore_longer_than_the_poll_interval_keeps_the_membership() {
    const CONTACTS: u64 = 1_500_000;
    const POLL_INTERVAL_MS: u64 = 6_000;
    let kafka = shared_kafka();
    let names = Names::new("longrestore");
    let dir = TestDir::new();
    let config = write_config(&kafka.bootstrap, &names, dir.path(), "a");
    let toml = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(toml.contains("\"max.poll.interval.ms\" = \"15000\""), "{toml}");
    // One processing thread, so that one restore takes every partition.
    let toml = toml
        .replace("\"max.poll.interval.ms\" = \"15000\"", &format!("\"max.poll.interval.ms\" = \"{POLL_INTERVAL_MS}\""))
        .replace("[processing]", "[processing]\nthreads = 1");
    std::fs::write(&config, toml).unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&config);
    let bar = indicatif::ProgressBar::hidden();
    leadscore::bench::write_changelog(&kafka.bootstrap, &names.changelog, PARTITIONS, CONTACTS, &rules(), &bar)
        .unwrap_or_else(|err| panic!("{err}"));
    let events = stream(17, 2_000, 200);
    let expected = produce(&kafka.bootstrap, &names.input, PARTITIONS, &events);

    let log = dir.path().join("a.log");
    let mut member = spawn_run(&config, &log);
    wait_committed(&kafka.bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    assert_eq!(member.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(6000)..];
    let finished = text.lines().find(|line| line.contains("changelog restore finished")).unwrap_or_else(|| {
        panic!("no restore finished; the log:\n{tail}");
    });
    let words: Vec<String> = without_colours(finished).split_whitespace().map(str::to_owned).collect();
    let field = |name: &str| -> f64 {
        words
            .iter()
            .find_map(|word| word.strip_prefix(&format!("{name}=")).and_then(|value| value.parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {finished:?}"))
    };
    assert_eq!(field("records") as u64, CONTACTS, "every contact restored: {finished}");
    let seconds = field("seconds");
    assert!(
        seconds * 1000.0 > POLL_INTERVAL_MS as f64,
        "the restore took {seconds:.1} s, within max.poll.interval.ms, so this test shows nothing: write more contacts"
    );
    let left = text.find("changelog restore finished").map_or(text.as_str(), |end| &text[..end]);
    for sign in ["maximum poll interval", "MAXPOLL", "partitions revoked", "rejoining"] {
        assert!(!left.contains(sign), "{sign:?} during the restore; the log:\n{tail}");
    }
    eprintln!("a restore of {CONTACTS} contacts took {seconds:.1} s with max.poll.interval.ms = {POLL_INTERVAL_MS}");
}

/// A log line without the terminal colour codes the log writer puts around field names.
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(char) = chars.next() {
        if char == '\u{1b}' {
            chars.by_ref().find(|&end| end == 'm');
        } else {
            plain.push(char);
        }
    }
    plain
}

/// A random share, 10 to 70%, of `records`.
fn random_share(random: &mut SplitMix64, records: usize) -> u64 {
    records as u64 * (10 + random.below(61)) / 100
}

fn wait_for(timeout: Duration, done: impl FnMut() -> bool) {
    assert!(try_wait_for(timeout, done), "condition not met within {timeout:?}");
}

fn try_wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

#[test]
fn sigterm_drains_commits_and_a_restart_reprocesses_nothing() {
    let setup = setup("sigterm", 5_000, 500);
    produce(&setup.kafka.bootstrap, &setup.names.input, PARTITIONS, &setup.events);
    let config = write_config(&setup.kafka.bootstrap, &setup.names, setup.dir.path(), "a");
    let log = setup.dir.path().join("a.log");
    let mut instance = spawn_run(&config, &log);
    wait_committed(
        &setup.kafka.bootstrap,
        &setup.names.group,
        &setup.names.input,
        &setup.expected,
        Duration::from_secs(120),
    );
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let first = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(first.contains("stopped cleanly"), "{first}");

    let log2 = setup.dir.path().join("a2.log");
    let mut again = spawn_run(&config, &log2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(again.terminate(Duration::from_secs(30)), Some(0));
    let second = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(second.contains("stopped cleanly records=0 outputs=0"), "a restart reprocesses nothing: {second}");
    // The shutdown's drain left each partition's checkpoint past its records: none is read again.
    let restores: Vec<&str> = second.lines().filter(|line| line.contains("changelog restore finished")).collect();
    assert!(
        !restores.is_empty() && restores.iter().all(|line| line.contains(" records=0 ")),
        "a restart restores nothing again: {restores:?}"
    );
    let duplicates = finish(&setup, &setup.dir.path().join("state-a"), "sigterm");
    assert_eq!(duplicates, 0);
}

/// Adds records per partition to `expected`.
fn add_counts(expected: &mut BTreeMap<i32, i64>, counts: BTreeMap<i32, i64>) {
    for (partition, count) in counts {
        *expected.entry(partition).or_insert(0) += count;
    }
}

/// Three `leadscore run` processes in one group on Apache Kafka, joining and leaving while a stream
/// arrives in five parts: a alone; b and c join; b is killed with SIGKILL; c stops with SIGTERM; both
/// come back. Each partition must be owned by one process at a time, read from the processes' logs (a
/// partition is assigned only after its previous owner's revocation has drained and committed, or after
/// that owner was killed); the final state, taken from each partition's owner, must equal the model and
/// every expected output must be published.
#[test]
fn three_members_join_and_leave_mid_stream_on_kafka() {
    members_join_and_leave("threemembers", "at_least_once");
}

/// The same changes of membership with `exactly_once`: the killed member's open transaction hides what
/// later owners commit until the broker aborts it, so a partition restored meanwhile must wait for it
/// rather than end short; states equal the model and a `read_committed` reader sees every output once.
/// (Its members are nearly always caught up when a revocation comes; a revocation that finds a
/// transaction open is `on_kafka_a_revocation_commits_the_open_transaction`.)
#[test]
fn three_members_join_and_leave_mid_stream_on_kafka_exactly_once() {
    members_join_and_leave("threemembers-eos", "exactly_once");
}

fn members_join_and_leave(test: &str, guarantee: &str) {
    const SPREAD: u32 = 6;
    let kafka = shared_kafka();
    let bootstrap = kafka.bootstrap.as_str();
    let names = Names::new(test);
    let dir = TestDir::new();
    let mut members: Vec<Member> =
        ["a", "b", "c"].into_iter().map(|name| Member::new(bootstrap, &names, dir.path(), name, SPREAD)).collect();
    if guarantee == "exactly_once" {
        // Small batches, which fill while input waits, and a transaction that may then span cycles.
        for member in &members {
            use_exactly_once(member, 50, 2_000);
        }
    }
    provision_topics(&members[0].config);
    let events = stream(33, 24_000, 2_400);
    let model = model_of_events(&rules(), SPREAD, &events);
    let parts: Vec<&[leadscore::event::Event]> = events.chunks(events.len().div_ceil(5)).collect();
    let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
    let mut random = SplitMix64::new(33);
    let started = Instant::now();
    let settle = Duration::from_secs(120);
    let path = dir.path().to_owned();
    let ports: Vec<u16> = members.iter().map(|member| member.port).collect();
    let ports = ports.as_slice();
    let mut moments = Vec::new();
    // Each part after the first finds the group settled and caught up with the parts before it, and its
    // change of membership lands once the members have consumed a random share (10 to 70%) of the part.
    let mid_part = |expected: &BTreeMap<i32, i64>, index: usize, random: &mut SplitMix64| {
        wait_committed(bootstrap, &names.group, &names.input, expected, Duration::from_secs(120));
        let from = events_consumed(ports);
        let size = parts[index].len();
        let share = random_share(random, size);
        move |what: &str| {
            let consumed = wait_consumed(ports, from, share);
            format!("{what} after {consumed} of the part's {size}")
        }
    };

    // a alone.
    add_counts(&mut expected, produce(bootstrap, &names.input, SPREAD, parts[0]));
    members[0].start(&path);
    wait_settled(&members, &[0], SPREAD, settle);
    // b and c join.
    let when = mid_part(&expected, 1, &mut random);
    add_counts(
        &mut expected,
        producing(bootstrap, &names.input, SPREAD, parts[1], || {
            moments.push(when("b and c join"));
            members[1].start(&path);
            members[2].start(&path);
        }),
    );
    wait_settled(&members, &[0, 1, 2], SPREAD, settle);
    // b dies without a goodbye: its partitions move once its session expires.
    let when = mid_part(&expected, 2, &mut random);
    add_counts(
        &mut expected,
        producing(bootstrap, &names.input, SPREAD, parts[2], || {
            moments.push(when("b killed"));
            members[1].kill9();
        }),
    );
    wait_settled(&members, &[0, 2], SPREAD, settle);
    // c leaves cleanly.
    let when = mid_part(&expected, 3, &mut random);
    add_counts(
        &mut expected,
        producing(bootstrap, &names.input, SPREAD, parts[3], || {
            moments.push(when("c stopped"));
            let status = members[2].terminate();
            assert_eq!(status, Some(0), "c stops cleanly on SIGTERM; its log ends:\n{}", members[2].log_tail());
        }),
    );
    wait_settled(&members, &[0], SPREAD, settle);
    // b and c come back, b on the state directory it had when it was killed.
    let when = mid_part(&expected, 4, &mut random);
    add_counts(
        &mut expected,
        producing(bootstrap, &names.input, SPREAD, parts[4], || {
            moments.push(when("b and c come back"));
            members[1].start(&path);
            members[2].start(&path);
        }),
    );
    wait_settled(&members, &[0, 1, 2], SPREAD, settle);
    wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    let elapsed = started.elapsed().as_secs_f64();
    // Each partition's state is taken from its owner once everything is committed.
    let owners = wait_settled(&members, &[0, 1, 2], SPREAD, settle);

    terminate_all(&mut members);

    let mut owned: Vec<Ownership> = members.iter().flat_map(Member::ownership).collect();
    let mut assignments = BTreeMap::new();
    for member in &members {
        for (run, (log, _)) in member.runs.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assignments.insert(format!("{}{}", member.name, run + 1), text.matches("partitions assigned").count());
            // A change of membership finishes the revoked partitions' work: with exactly_once, by
            // committing the open transaction while the member still owns them.
            let failed = text.lines().find(|line| line.contains("could not finish the revoked partitions"));
            assert!(failed.is_none(), "{}{}: {failed:?}", member.name, run + 1);
        }
    }
    let overlaps = overlapping(&owned);
    assert!(overlaps.is_empty(), "partitions owned by two processes at once: {overlaps:#?}");
    // Who owned each partition, in order.
    owned.sort_by_key(|stretch| (stretch.partition, stretch.from));
    let mut owners_in_turn: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for stretch in &owned {
        owners_in_turn.entry(stretch.partition).or_default().push(&stretch.process);
    }
    assert_eq!(owners_in_turn.len(), SPREAD as usize, "every partition was owned: {owners_in_turn:?}");

    let mut states = BTreeMap::new();
    for (member, partitions) in members.iter().zip(&owners) {
        states.extend(stored_states_of(&rules(), &member.state, Some(partitions)));
    }
    compare_states(&model, &states);
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    if guarantee == "exactly_once" {
        assert_eq!(duplicates, 0, "a read_committed reader sees each output once with exactly_once");
    }
    eprintln!(
        "three members on Apache Kafka ({guarantee}): {} events in {elapsed:.1} s; {moments:?}; assignments per process run \
         {assignments:?}; {} ownership stretches, none overlapping; owners of each partition in turn \
         {owners_in_turn:?}; final owners {owners:?}; lost 0, double-counted 0, {} outputs, duplicate outputs \
         {duplicates}",
        events.len(),
        owned.len(),
        published.len()
    );
}

/// Rewrites a member's configuration for `exactly_once`, with `batch_size` records per poll and
/// transactions open for up to `commit_interval_ms` while input waits.
fn use_exactly_once(member: &Member, batch_size: u32, commit_interval_ms: u64) {
    let toml = std::fs::read_to_string(&member.config).unwrap_or_else(|err| panic!("{err}"));
    let toml = toml.replace("batch_size = 500", &format!("batch_size = {batch_size}")).replace(
        "[processing]\n",
        &format!("[processing]\nguarantee = \"exactly_once\"\ncommit_interval_ms = {commit_interval_ms}\n"),
    );
    assert!(toml.contains("guarantee = \"exactly_once\"") && toml.contains(&format!("batch_size = {batch_size}")));
    std::fs::write(&member.config, toml).unwrap_or_else(|err| panic!("{err}"));
}

/// With `exactly_once`, a member working through a backlog keeps its transaction open across poll
/// cycles; when a second member joins, the revocation commits that transaction while the first still
/// owns its partitions, instead of failing the drain and rebuilding, and nothing is lost or published
/// twice.
#[test]
fn on_kafka_a_revocation_commits_the_open_transaction() {
    const SPREAD: u32 = 6;
    let kafka = shared_kafka();
    let bootstrap = kafka.bootstrap.as_str();
    let names = Names::new("revokeopen");
    let dir = TestDir::new();
    let mut members: Vec<Member> =
        ["a", "b"].into_iter().map(|name| Member::new(bootstrap, &names, dir.path(), name, SPREAD)).collect();
    // Never caught up while the backlog lasts, so one transaction per thread stays open throughout it.
    for member in &members {
        use_exactly_once(member, 50, 30_000);
    }
    provision_topics(&members[0].config);
    let events = stream(41, 40_000, 4_000);
    let model = model_of_events(&rules(), SPREAD, &events);
    let expected = produce(bootstrap, &names.input, SPREAD, &events);
    let ports: Vec<u16> = members.iter().map(|member| member.port).collect();
    members[0].start(dir.path());
    wait_consumed(&ports, 0, 1_000);
    members[1].start(dir.path());
    let settle = Duration::from_secs(120);
    wait_settled(&members, &[0, 1], SPREAD, settle);
    wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(180));
    let owners = wait_settled(&members, &[0, 1], SPREAD, settle);
    terminate_all(&mut members);

    let log = std::fs::read_to_string(&members[0].runs[0].0).unwrap_or_default();
    let failed = log.lines().find(|line| line.contains("could not finish the revoked partitions"));
    assert!(failed.is_none(), "{failed:?}");
    let committed = log.lines().filter(|line| line.contains("committed the open transaction before")).count();
    assert!(
        committed > 0,
        "a revocation found a transaction open and committed it; a's log ends:\n{}",
        members[0].log_tail()
    );
    let mut states = BTreeMap::new();
    for (member, partitions) in members.iter().zip(&owners) {
        states.extend(stored_states_of(&rules(), &member.state, Some(partitions)));
    }
    compare_states(&model, &states);
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    assert_eq!(compare_outputs(&model, &published), 0, "a read_committed reader sees each output once");
    eprintln!("{committed} open transactions committed by revocations; {} outputs", published.len());
}

/// Dead letters, decay timers and a lost state directory on Apache Kafka, with `leadscore run`
/// processes: bad records in the middle of the stream land in the dead-letter topic with their reasons
/// while the events behind them are scored, decay-driven falls are published, and a run on an empty
/// state directory restores every contact from the changelog and publishes nothing new.
#[test]
fn on_kafka_bad_records_timers_and_a_lost_state_directory() {
    let kafka = shared_kafka();
    let names = Names::new("restorekafka");
    let dir = TestDir::new();
    let port = free_port();
    let config = member_config(&kafka.bootstrap, &names, dir.path(), "a", PARTITIONS, port);
    provision_topics(&config);
    let rules = rules();
    let events = stream(11, 4_000, 400);
    let mut records: Vec<(Vec<u8>, Vec<u8>)> =
        events.iter().map(|event| (event.contact.as_bytes().to_vec(), leadscore::event::json::encode(event))).collect();
    let bad: [(&[u8], &[u8]); 3] = [
        (b"contact-0000001", b"{\"id\":\"broken\",\"contact\":"),
        (b"contact-0000001", br#"{"id":"no-type","contact":"contact-0000001","ts":1772366400000}"#),
        (b"contact-0000002", br#"{"id":"typed","contact":"contact-0000002","type":"x","ts":"yesterday"}"#),
    ];
    for (index, (key, value)) in bad.iter().enumerate() {
        records.insert(500 + index * 700, (key.to_vec(), value.to_vec()));
    }
    let expected = produce_raw(&kafka.bootstrap, &names.input, PARTITIONS, &records);
    let lines: Vec<Vec<u8>> = records.iter().map(|(_, value)| value.clone()).collect();
    let model = model(&rules, PARTITIONS, &lines);
    assert!(model.outputs.keys().any(|id| id.contains(":down:")), "the stream has decay-driven falls");

    let mut instance = spawn_run(&config, &dir.path().join("a.log"));
    wait_committed(&kafka.bootstrap, &names.group, &names.input, &expected, Duration::from_secs(120));
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let published = read_all(&kafka.bootstrap, &names.outputs(), Duration::from_secs(3));
    assert_eq!(compare_outputs(&model, &published), 0, "a clean run publishes each output once");
    let falls = published
        .iter()
        .filter(|(_, _, payload, _)| {
            payload.as_deref().is_some_and(|bytes| String::from_utf8_lossy(bytes).contains(":down:"))
        })
        .count();
    assert!(falls > 0, "decay-driven falls were published");
    let state = dir.path().join("state-a");
    compare_states(&model, &stored_states(&rules, &state));

    let dead = read_all(&kafka.bootstrap, &[&names.dlq], Duration::from_secs(2));
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, _, headers)| {
            assert!(headers.iter().any(|(name, _)| name == "leadscore.source.offset"), "{headers:?}");
            let error = headers.iter().find(|(name, _)| name == "leadscore.error").map(|(_, value)| value.clone());
            String::from_utf8_lossy(&error.unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(dead.len(), bad.len(), "every bad record is dead-lettered once: {reasons:?}");
    for needle in ["not valid JSON", "missing field `type`", "field `ts` is invalid"] {
        assert!(reasons.iter().any(|reason| reason.contains(needle)), "no dead letter says {needle:?}: {reasons:?}");
    }

    // Lose the state directory: the next run restores every contact from the changelog.
    std::fs::remove_dir_all(&state).unwrap_or_else(|err| panic!("{err}"));
    let log = dir.path().join("a2.log");
    let mut again = spawn_run(&config, &log);
    wait_for(Duration::from_secs(60), || {
        owned_partitions(port).is_some_and(|owned| owned.len() == PARTITIONS as usize)
    });
    assert_eq!(again.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // Every partition is restored; one may be restored again, from the checkpoint the first restore wrote,
    // when the group moves it to another processing thread of the instance.
    for partition in 0..PARTITIONS {
        let line = format!("restored partition from the changelog partition={partition} ");
        assert!(text.contains(&line), "partition {partition} was not restored: {text}");
    }
    assert!(text.contains("stopped cleanly records=0 outputs=0"), "the restore scored nothing again: {text}");
    compare_states(&model, &stored_states(&rules, &state));
    let again = read_all(&kafka.bootstrap, &names.outputs(), Duration::from_secs(3));
    assert_eq!(again.len(), published.len(), "a restore publishes nothing new");
    eprintln!(
        "restore on Apache Kafka: {} events, {} dead letters, {falls} decay-driven falls, {} contacts restored",
        events.len(),
        dead.len(),
        model.states.len()
    );
}

/// The ownership check itself, on two made-up logs in `leadscore run`'s format: b is assigned
/// partition 1 before a's revocation of it has drained, which must count as an overlap; partition 0
/// moves cleanly.
#[test]
fn the_ownership_check_sees_two_owners_at_once() {
    let dir = TestDir::new();
    let line =
        |at: &str, message: &str| format!("2026-03-01T10:00:{at}Z  INFO leadscore::runtime::rebalance: {message}\n");
    let a = [
        line("00.000000", r#"partitions assigned partitions=[("t.events", 0), ("t.events", 1)]"#),
        line(
            "05.000000",
            r#"partitions revoked; draining and committing partitions=[("t.events", 0), ("t.events", 1)]"#,
        ),
        line("05.300000", "revocation drained and committed batches=2"),
    ]
    .concat();
    let b = line("05.100000", r#"partitions assigned partitions=[("t.events", 1)]"#)
        + &line("06.000000", r#"partitions assigned partitions=[("t.events", 0)]"#);
    std::fs::write(dir.path().join("a.log"), a).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(dir.path().join("b.log"), b).unwrap_or_else(|err| panic!("{err}"));
    let mut owned = ownership("a", &dir.path().join("a.log"), i128::MAX);
    owned.extend(ownership("b", &dir.path().join("b.log"), i128::MAX));
    assert_eq!(owned.len(), 4, "{owned:#?}");
    let overlaps = overlapping(&owned);
    assert_eq!(overlaps.len(), 1, "{overlaps:#?}");
    assert_eq!((overlaps[0].0.partition, overlaps[0].1.partition), (1, 1));
}

/// The same check on a process with two processing threads, whose revocations interleave in its log.
#[test]
fn the_ownership_check_tells_the_threads_of_a_process_apart() {
    let dir = TestDir::new();
    let line = |at: &str, thread: u8, message: &str| {
        format!("2026-03-01T10:00:{at}Z  INFO processor{{thread={thread}}}: leadscore::runtime::rebalance: {message}\n")
    };
    let revoke = r#"partitions revoked; draining and committing partitions="#;
    let a = [
        line("00.000000", 0, r#"partitions assigned partitions=[("t.events", 0)]"#),
        line("00.000000", 1, r#"partitions assigned partitions=[("t.events", 1)]"#),
        line("05.000000", 0, &format!(r#"{revoke}[("t.events", 0)]"#)),
        line("05.010000", 1, &format!(r#"{revoke}[("t.events", 1)]"#)),
        line("05.200000", 0, "revocation drained and committed batches=2"),
        line("05.300000", 1, "revocation drained and committed batches=1"),
        // Thread 1 takes partition 0 while thread 0 still holds it: two owners within one process.
        line("06.000000", 0, r#"partitions assigned partitions=[("t.events", 0)]"#),
        line("06.500000", 1, r#"partitions assigned partitions=[("t.events", 0)]"#),
    ]
    .concat();
    let b = line("05.250000", 0, r#"partitions assigned partitions=[("t.events", 0)]"#)
        + &line("05.260000", 0, &format!(r#"{revoke}[("t.events", 0)]"#))
        + &line("05.270000", 0, "revocation drained and committed batches=0")
        + &line("05.400000", 0, r#"partitions assigned partitions=[("t.events", 1)]"#);
    std::fs::write(dir.path().join("a.log"), a).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(dir.path().join("b.log"), b).unwrap_or_else(|err| panic!("{err}"));
    let mut owned = ownership("a", &dir.path().join("a.log"), i128::MAX);
    owned.extend(ownership("b", &dir.path().join("b.log"), i128::MAX));
    assert_eq!(owned.len(), 6, "{owned:#?}");
    let overlaps = overlapping(&owned);
    assert_eq!(overlaps.len(), 1, "{overlaps:#?}");
    assert_eq!((overlaps[0].0.process.as_str(), overlaps[0].1.process.as_str()), ("a/t0", "a/t1"));
}

/// Merges cross partitions through the internal topic on Apache Kafka, as on the mock cluster (see
/// [`merges::scenario`]): states, aliases and outputs equal the offline model's.
#[test]
fn on_kafka_merged_contacts_move_to_their_survivor_across_partitions() {
    let kafka = shared_kafka();
    let names = Names::new("merges");
    let dir = TestDir::new();
    let path = write_config(&kafka.bootstrap, &names, dir.path(), "a");
    provision_topics(&path);
    let config = leadscore::config::Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    merges::scenario(&kafka.bootstrap, &names, config, PARTITIONS);
}

/// Contacts' changes reach their accounts across partitions on Apache Kafka, as on the mock cluster (see
/// [`accounts::scenario`]): account outputs and final accounts equal the offline model's.
#[test]
fn on_kafka_accounts_score_their_contacts_across_partitions() {
    let kafka = shared_kafka();
    let names = Names::new("accounts");
    let dir = TestDir::new();
    let path = write_config(&kafka.bootstrap, &names, dir.path(), "a");
    provision_topics(&path);
    let config = leadscore::config::Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    accounts::scenario(&kafka.bootstrap, &names, config, PARTITIONS);
}

/// Two members on Apache Kafka, one of them killed with kill -9 in each of three phases while contacts
/// are scored, merged and forwarded across partitions, and report to their accounts through the internal
/// topics (so across the two processes): a crash, the rebalance after it and the replay of what was
/// uncommitted never lose a transfer or apply one twice. The final contacts, aliases and account members
/// equal the offline model's, every account the model ends above its `engaged` level has it fired, and every
/// contact output the model expects is published, none it does not. (Account outputs describe the
/// accounts as changes from several partitions meet them, an order a crash changes, so they are not
/// compared one by one.)
#[test]
fn on_kafka_kill_9_during_merges_and_account_updates_loses_and_repeats_no_transfer() {
    kill_9_during_transfers("transfers", "at_least_once");
}

/// The same kills with `exactly_once`: a `read_committed` reader also sees each contact output once.
#[test]
fn on_kafka_kill_9_during_merges_and_account_updates_exactly_once() {
    kill_9_during_transfers("transfers-eos", "exactly_once");
}

fn kill_9_during_transfers(test: &str, guarantee: &str) {
    use leadscore::event::{AttrValue, Event};

    const CONTACTS: u64 = 2_000;
    const ACCOUNTS: u32 = 20;
    let kafka = shared_kafka();
    let bootstrap = kafka.bootstrap.as_str();
    let names = Names::new(test);
    let dir = TestDir::new();
    let path = dir.path().to_owned();
    let mut members: Vec<Member> =
        ["a", "b"].into_iter().map(|name| Member::new(bootstrap, &names, &path, name, PARTITIONS)).collect();
    // Offsets committed every 5 s (in transactions of up to 2 s with exactly_once), so that a kill leaves
    // much to replay.
    for member in &members {
        if guarantee == "exactly_once" {
            use_exactly_once(member, 50, 2_000);
        } else {
            let toml = std::fs::read_to_string(&member.config).unwrap_or_else(|err| panic!("{err}"));
            let toml = toml.replace("[processing]\n", "[processing]\ncommit_interval_ms = 5000\n");
            std::fs::write(&member.config, toml).unwrap_or_else(|err| panic!("{err}"));
        }
    }
    provision_topics(&members[0].config);
    let rules = rules();

    // Every contact belongs to one of twenty accounts, named on each of its events.
    let account_of = |contact: &str| {
        let bucket = leadscore::hashing::partition_for_key(contact.as_bytes(), ACCOUNTS);
        AttrValue::Text(format!("account-{bucket:02}"))
    };
    let mut scored = stream(71, 10_000, CONTACTS);
    for event in &mut scored {
        event.attrs.push(("account_id".into(), account_of(&event.contact)));
    }
    let end = scored.iter().map(|event| event.ts_ms).max().unwrap_or_default();
    let contact = |n: u64| format!("contact-{n:07}");
    // A quarter of the contacts merge into the ones before them, all at one time, so that no decay timer
    // depends on the order in which the transfers meet.
    let t_merge = end + 3_600_000;
    // Half of them as CRM merges, half as identify events that name the other id as the anonymous one.
    let merges: Vec<Event> = (0..CONTACTS / 4)
        .map(|n| {
            let (kind, attr) = if n % 2 == 0 { ("merge", "merged") } else { ("identify", "anonymous_id") };
            Event {
                id: format!("merge-{n}"),
                contact: contact(4 * n),
                kind: kind.into(),
                ts_ms: t_merge,
                item: None,
                attrs: vec![(attr.into(), AttrValue::Text(contact(4 * n + 1)))],
                adjustment: None,
                phase: None,
            }
        })
        .collect();
    // Each merged id's next event reaches its survivor, which moves to the merged contact's account.
    let t_after = t_merge + 3_600_000;
    let forwarded: Vec<Event> = (0..CONTACTS / 4)
        .map(|n| Event {
            id: format!("after-{n}"),
            contact: contact(4 * n + 1),
            kind: "page_visit".into(),
            ts_ms: t_after,
            item: Some("/pricing".into()),
            attrs: vec![("account_id".into(), account_of(&contact(4 * n + 1)))],
            adjustment: None,
            phase: None,
        })
        .collect();

    let ports: Vec<u16> = members.iter().map(|member| member.port).collect();
    let settle = Duration::from_secs(120);
    let mut random = SplitMix64::new(71);
    let mut moments = Vec::new();
    members[0].start(&path);
    members[1].start(&path);
    for (phase, events) in [&scored, &merges, &forwarded].into_iter().enumerate() {
        wait_settled(&members, &[0, 1], PARTITIONS, settle);
        let victim = phase % 2;
        // Input, merge requests and answers, and account updates: about three records per event.
        let share = random_share(&mut random, 3 * events.len());
        let from = events_consumed(&ports);
        producing(bootstrap, &names.input, PARTITIONS, events, || {
            let consumed = wait_consumed(&ports, from, share);
            members[victim].kill9();
            moments.push(format!("{} killed after {consumed} records of phase {phase}", members[victim].name));
            members[victim].start(&path);
        });
        wait_settled(&members, &[0, 1], PARTITIONS, settle);
        merges::wait_processed(bootstrap, &names, PARTITIONS);
    }
    let owners = wait_settled(&members, &[0, 1], PARTITIONS, settle);
    terminate_all(&mut members);

    let all: Vec<Event> = [scored, merges, forwarded].concat();
    let model = model_of_events(&rules, PARTITIONS, &all);
    let (mut states, mut aliases, mut stored_accounts) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (member, partitions) in members.iter().zip(&owners) {
        states.extend(stored_states_of(&rules, &member.state, Some(partitions)));
        aliases.extend(stored_aliases_of(&rules, &member.state, Some(partitions)));
        stored_accounts.extend(accounts::stored_accounts_of(&rules, &member.state, Some(partitions)));
    }
    compare_states(&model, &states);
    assert_eq!(aliases, model.aliases, "every merged id is an alias of its survivor");
    let mut scorer = leadscore::offline::OfflineScorer::new(&rules, PARTITIONS);
    for event in &all {
        let _ = scorer.score_line(&leadscore::event::json::encode(event));
    }
    let modelled = scorer.accounts().accounts();
    assert_eq!(stored_accounts.keys().collect::<Vec<_>>(), modelled.keys().collect::<Vec<_>>());
    let engaged = rules.accounts.as_ref().map_or(0.0, |accounts| accounts.thresholds[0].sum.unwrap_or(0.0));
    let mut above = 0;
    for (account, modelled) in modelled {
        let stored = &stored_accounts[account];
        assert_eq!(stored.members, modelled.members, "{account}'s members");
        if modelled.aggregate(&rules, modelled.clock_ms).sum >= engaged {
            assert_eq!((stored.fired[0], modelled.fired[0]), (true, true), "{account} is engaged");
            above += 1;
        }
    }
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    let merged =
        model.outputs.values().filter(|json| String::from_utf8_lossy(json).contains("\"contact_merged\"")).count();
    assert!(merged > 100, "{merged} merges moved a state");
    if guarantee == "exactly_once" {
        assert_eq!(duplicates, 0, "a read_committed reader sees each output once with exactly_once");
    }
    eprintln!(
        "kill -9 during transfers on Apache Kafka ({guarantee}): {moments:?}; {} contacts, {} aliases, {} accounts ({above} engaged), \
         {merged} merges moved a state; lost 0, applied twice 0, {} outputs, duplicate outputs {duplicates}",
        states.len(),
        aliases.len(),
        stored_accounts.len(),
        published.len()
    );
}
