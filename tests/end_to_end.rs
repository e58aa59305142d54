//! End-to-end tests with `leadscore run` processes against real Kafka-protocol brokers (the mock cluster
//! hosted in the test process, and tansu started by `scripts/tansu.sh`): kill -9 at random points, a
//! rebalance after one of two members dies, and a clean SIGTERM. After each, the final state equals the offline model (nothing lost, nothing double-counted)
//! and every expected output was published, with no unexpected one.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use leadscore::generator::SplitMix64;

const PARTITIONS: u32 = 4;

struct Setup {
    tansu: Tansu,
    names: Names,
    dir: tempfile::TempDir,
    model: Model,
    events: Vec<leadscore::event::Event>,
    expected: BTreeMap<i32, i64>,
}

fn setup(test: &str, events: usize, contacts: u64) -> Setup {
    let tansu = Tansu::start();
    let names = Names::new(test);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&write_config(&tansu.bootstrap, &names, dir.path(), "a"));
    let events = stream(test.len() as u64, events, contacts);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let mut expected = BTreeMap::new();
    for event in &events {
        let partition = leadscore::hashing::partition_for_key(event.contact.as_bytes(), PARTITIONS) as i32;
        *expected.entry(partition).or_insert(0) += 1;
    }
    Setup { tansu, names, dir, model, events, expected }
}

fn write_config(bootstrap: &str, names: &Names, dir: &Path, member: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{member}.toml"));
    let toml = names.config_toml(bootstrap, &dir.join(format!("state-{member}")), PARTITIONS);
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    path
}

fn finish(setup: &Setup, state_dir: &Path, published_from: &str) -> usize {
    let published = read_all(&setup.tansu.bootstrap, &setup.names.outputs(), Duration::from_secs(3));
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
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    kill_9_loop(&bootstrap, &names, dir.path(), "mock cluster");
}

/// The same loop on tansu, with the broker in another process.
#[test]
fn kill_9_on_tansu_loses_and_double_counts_nothing() {
    let tansu = Tansu::start();
    let names = Names::new("kill9tansu");
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&write_config(&tansu.bootstrap, &names, dir.path(), "a"));
    kill_9_loop(&tansu.bootstrap, &names, dir.path(), "tansu");
}

/// Kills one `leadscore run` process 5 times at random points while a 20,000-event stream arrives,
/// restarting it each time; then the final state must equal the model and every expected output must be published.
fn kill_9_loop(bootstrap: &str, names: &Names, dir: &Path, broker: &str) {
    let events = stream(9, 20_000, 2_000);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let config = write_config(bootstrap, names, dir, "a");
    let log = dir.join("a.log");
    let mut random = SplitMix64::new(9);
    let started = std::time::Instant::now();
    // The stream arrives in six parts, one before the first start and one before each kill, so every
    // kill lands while records are being scored, published and committed.
    let mut parts = events.chunks(events.len() / 6 + 1);
    let mut expected = BTreeMap::new();
    let restores = || std::fs::read_to_string(&log).unwrap_or_default().matches("restored partition").count();
    let mut instance = spawn_run(&config, &log);
    let mut restored = 0;
    while let Some(part) = parts.next() {
        // Wait until this process has restored its partitions (a killed member's session expires first).
        wait_for(Duration::from_secs(60), || restores() >= restored + PARTITIONS as usize);
        let last = parts.len() == 0;
        let produced = std::thread::scope(|scope| {
            let producer = scope.spawn(|| produce(bootstrap, &names.input, PARTITIONS, part));
            if !last {
                // Kill while the part is still arriving and being scored.
                std::thread::sleep(Duration::from_millis(random.below(400)));
                instance.kill9();
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
    eprintln!(
        "kill -9 test on {broker}: 20000 events in {elapsed:.1} s with 5 kills, lost 0, double-counted 0, \
         {} outputs, duplicate outputs {duplicates}",
        published.len()
    );
}

/// Runs against librdkafka's mock cluster, hosted in this test process and reached over loopback by
/// both `leadscore run` processes.
#[test]
fn a_surviving_member_restores_the_dead_members_partitions() {
    let (_cluster, bootstrap, names) = mock_broker("rebalance", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    rebalance_after_a_death(&bootstrap, &names, dir.path(), "mock cluster");
}

/// The same rebalance on tansu. Not part of the default run: tansu 0.6.0 keeps a member that died in the
/// group, so the rebalance its session expiry starts hands the dead member's partitions back to it, and
/// the survivor never gets them (seen in 3 runs of 3; a restarted member, as in the kill -9 test, is
/// not affected). Run it with `cargo test --release --test end_to_end -- --ignored`.
#[test]
#[ignore = "tansu 0.6.0 keeps a dead member in the group and reassigns its partitions to it"]
fn on_tansu_a_surviving_member_restores_the_dead_members_partitions() {
    let tansu = Tansu::start();
    let names = Names::new("rebalancetansu");
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&write_config(&tansu.bootstrap, &names, dir.path(), "a"));
    rebalance_after_a_death(&tansu.bootstrap, &names, dir.path(), "tansu");
}

/// Two members share the partitions of the first half of a stream; one dies without a goodbye, the
/// second half arrives, and the survivor must restore the dead member's partitions and finish the job.
fn rebalance_after_a_death(bootstrap: &str, names: &Names, dir: &Path, broker: &str) {
    let events = stream(5, 10_000, 1_000);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let (first, second) = events.split_at(events.len() / 2);
    let mut expected = produce(bootstrap, &names.input, PARTITIONS, first);
    let port_b = free_port();
    let config = |member: &str, port: u16| {
        let path = dir.join(format!("{member}.toml"));
        let toml = names
            .config_toml(bootstrap, &dir.join(format!("state-{member}")), PARTITIONS)
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
        std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
        path
    };
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
    produce(&setup.tansu.bootstrap, &setup.names.input, PARTITIONS, &setup.events);
    let config = write_config(&setup.tansu.bootstrap, &setup.names, setup.dir.path(), "a");
    let log = setup.dir.path().join("a.log");
    let mut instance = spawn_run(&config, &log);
    wait_committed(
        &setup.tansu.bootstrap,
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
    let duplicates = finish(&setup, &setup.dir.path().join("state-a"), "sigterm");
    assert_eq!(duplicates, 0);
}
