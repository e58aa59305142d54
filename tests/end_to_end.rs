//! End-to-end tests with `leadscore run` processes against a tansu broker (started by
//! `scripts/tansu.sh`): kill -9 at random points, a rebalance after one of two members dies, and a clean
//! SIGTERM. After each, the final state equals the offline model (nothing lost, nothing double-counted)
//! and every expected output was published, with no unexpected one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use leadscore::event::json;
use leadscore::generator::SplitMix64;

const PARTITIONS: u32 = 4;

struct Setup {
    tansu: Tansu,
    names: Names,
    dir: tempfile::TempDir,
    model: Model,
    expected: BTreeMap<i32, i64>,
}

fn setup(test: &str, events: usize, contacts: u64) -> Setup {
    let tansu = Tansu::start();
    let names = Names::new(test);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    // Create the topics the way `leadscore run` would, before producing to explicit partitions.
    let config = write_config(&tansu, &names, dir.path(), "a");
    let config = leadscore::config::Config::load(&config).unwrap_or_else(|err| panic!("{err}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let provisioned = runtime
        .block_on(leadscore::kafka::topics::create_missing(
            &config.kafka.client_config(),
            &leadscore::app::topic_specs(&config),
            Duration::from_secs(10),
        ))
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(provisioned.problems.is_empty(), "{:?}", provisioned.problems);
    let events = stream(test.len() as u64, events, contacts);
    let expected = produce(&tansu.bootstrap, &names.input, PARTITIONS, &events);
    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    let model = model(&rules(), PARTITIONS, &lines);
    Setup { tansu, names, dir, model, expected }
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

#[test]
fn kill_9_at_random_points_loses_and_double_counts_nothing() {
    let setup = setup("kill9", 20_000, 2_000);
    let config = write_config(&setup.tansu, &setup.names, setup.dir.path(), "a");
    let log = setup.dir.path().join("a.log");
    let mut random = SplitMix64::new(9);
    let mut instance = spawn_run(&config, &log);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(800 + random.below(2_000)));
        instance.kill9();
        instance = spawn_run(&config, &log);
    }
    wait_committed(&setup.tansu.bootstrap, &setup.names.group, &setup.names.input, &setup.expected, Duration::from_secs(300));
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let duplicates = finish(&setup, &setup.dir.path().join("state-a"), "kill -9 x5");
    eprintln!("kill -9 test: 20000 events, lost 0, double-counted 0, duplicate outputs {duplicates}");
}

#[test]
fn a_surviving_member_restores_the_dead_members_partitions() {
    let setup = setup("rebalance", 10_000, 1_000);
    let config_a = write_config(&setup.tansu, &setup.names, setup.dir.path(), "a");
    let config_b = write_config(&setup.tansu, &setup.names, setup.dir.path(), "b");
    let mut a = spawn_run(&config_a, &setup.dir.path().join("a.log"));
    let mut b = spawn_run(&config_b, &setup.dir.path().join("b.log"));
    std::thread::sleep(Duration::from_secs(4));
    a.kill9();
    wait_committed(&setup.tansu.bootstrap, &setup.names.group, &setup.names.input, &setup.expected, Duration::from_secs(300));
    assert_eq!(b.terminate(Duration::from_secs(30)), Some(0));
    let log = std::fs::read_to_string(setup.dir.path().join("b.log")).unwrap_or_default();
    assert!(log.contains("restored partition from the changelog"), "b restored partitions");
    finish(&setup, &setup.dir.path().join("state-b"), "rebalance");
}

#[test]
fn sigterm_drains_commits_and_a_restart_reprocesses_nothing() {
    let setup = setup("sigterm", 5_000, 500);
    let config = write_config(&setup.tansu, &setup.names, setup.dir.path(), "a");
    let log = setup.dir.path().join("a.log");
    let mut instance = spawn_run(&config, &log);
    wait_committed(&setup.tansu.bootstrap, &setup.names.group, &setup.names.input, &setup.expected, Duration::from_secs(120));
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
