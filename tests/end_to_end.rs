//! End-to-end tests with `leadscore run` processes against a tansu broker (started by
//! `scripts/tansu.sh`): kill -9 at random points, a rebalance after one of two members dies, and a clean
//! SIGTERM. After each, the final state equals the offline model (nothing lost, nothing double-counted)
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
    provision_topics(&write_config(&tansu, &names, dir.path(), "a"));
    let events = stream(test.len() as u64, events, contacts);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let mut expected = BTreeMap::new();
    for event in &events {
        let partition = leadscore::hashing::partition_for_key(event.contact.as_bytes(), PARTITIONS) as i32;
        *expected.entry(partition).or_insert(0) += 1;
    }
    Setup { tansu, names, dir, model, events, expected }
}

fn write_config(tansu: &Tansu, names: &Names, dir: &Path, member: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{member}.toml"));
    let toml = names.config_toml(&tansu.bootstrap, &dir.join(format!("state-{member}")), PARTITIONS);
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
/// `leadscore run` processes. On tansu 0.6.0 a group sometimes never hands out partitions again after a
/// member was killed (seen in about one run in five), which would make this test flaky without saying
/// anything about leadscore; the SIGTERM test below runs on tansu.
#[test]
fn kill_9_at_random_points_loses_and_double_counts_nothing() {
    let (_cluster, bootstrap, names) = mock_broker("kill9", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let events = stream(9, 20_000, 2_000);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);
    let config = dir.path().join("a.toml");
    std::fs::write(&config, names.config_toml(&bootstrap, &dir.path().join("state-a"), PARTITIONS))
        .unwrap_or_else(|err| panic!("{err}"));
    let log = dir.path().join("a.log");
    let mut random = SplitMix64::new(9);
    let mut instance = spawn_run(&config, &log);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(800 + random.below(2_000)));
        instance.kill9();
        instance = spawn_run(&config, &log);
    }
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &dir.path().join("state-a")));
    eprintln!(
        "kill -9 test: 20000 events, lost 0, double-counted 0, {} outputs, duplicate outputs {duplicates}",
        published.len()
    );
}

/// Runs against librdkafka's mock cluster, hosted in this test process and reached over loopback by
/// both `leadscore run` processes. On tansu 0.6.0 the group occasionally never completes the rebalance
/// that follows a member's death (about one run in five was seen waiting for minutes), which would
/// make this test flaky without saying anything about leadscore.
#[test]
fn a_surviving_member_restores_the_dead_members_partitions() {
    let (_cluster, bootstrap, names) = mock_broker("rebalance", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let events = stream(5, 10_000, 1_000);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let (first, second) = events.split_at(events.len() / 2);
    let mut expected = produce(&bootstrap, &names.input, PARTITIONS, first);
    let port_b = free_port();
    let config = |member: &str, port: u16| {
        let path = dir.path().join(format!("{member}.toml"));
        let toml = names
            .config_toml(&bootstrap, &dir.path().join(format!("state-{member}")), PARTITIONS)
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
        std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
        path
    };
    let mut a = spawn_run(&config("a", 0), &dir.path().join("a.log"));
    let mut b = spawn_run(&config("b", port_b), &dir.path().join("b.log"));
    // Both members work on the first half, then one dies without a goodbye.
    wait_for(Duration::from_secs(60), || {
        owned_partitions(port_b).is_some_and(|owned| !owned.is_empty() && owned.len() < PARTITIONS as usize)
    });
    std::thread::sleep(Duration::from_secs(2));
    a.kill9();
    for (partition, count) in produce(&bootstrap, &names.input, PARTITIONS, second) {
        *expected.entry(partition).or_insert(0) += count;
    }
    let taken_over = try_wait_for(Duration::from_secs(90), || {
        owned_partitions(port_b).is_some_and(|owned| owned.len() == PARTITIONS as usize)
    });
    let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    assert!(taken_over, "b never owned every partition; its log:\n{}", &log[log.len().saturating_sub(6000)..]);
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(300));
    assert_eq!(b.terminate(Duration::from_secs(30)), Some(0));
    let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    assert!(log.contains("restored partition from the changelog"), "b restored partitions");
    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &dir.path().join("state-b")));
    eprintln!("rebalance: {} outputs, {duplicates} duplicate copies", published.len());
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
    let config = write_config(&setup.tansu, &setup.names, setup.dir.path(), "a");
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
