//! `leadscore topics create` against real brokers: on Apache Kafka, whose DescribeConfigs reports every
//! setting with the broker's defaults, it creates every topic, a second run changes nothing, and a
//! mis-partitioned or uncompacted changelog, or an output or changelog topic whose `max.message.bytes` is
//! below what the producer may send, is reported with a non-zero exit, which `leadscore run` also
//! refuses. On librdkafka's mock cluster (no CreateTopics, no DescribeConfigs) the partition checks still
//! hold and compaction and size limits are reported as unchecked, not as fine.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Kafka, Names, create_topic, mock_broker};

const PARTITIONS: u32 = 4;

fn write_config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    path
}

fn leadscore(args: &[&str], config: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore: {err}"));
    eprintln!(
        "leadscore {args:?} exited {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn all_topics(names: &Names) -> Vec<&str> {
    vec![
        &names.input,
        &names.score_changed,
        &names.threshold_crossed,
        &names.phase_changed,
        &names.dlq,
        &names.changelog,
    ]
}

#[test]
fn topics_create_is_idempotent_and_reports_bad_topics_on_kafka() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let names = Names::new("topics");
    let config =
        write_config(dir.path(), "a.toml", &names.config_toml(&kafka.bootstrap, &dir.path().join("state"), PARTITIONS));

    let first = leadscore(&["topics", "create"], &config);
    assert_eq!(first.status.code(), Some(0));
    let report = stdout(&first);
    for topic in all_topics(&names) {
        assert!(report.contains(&format!("created   {topic} ({PARTITIONS} partitions)\n")), "{topic}: {report}");
    }
    assert!(!report.contains("WRONG") && !report.contains("unchecked"), "{report}");

    let second = leadscore(&["topics", "create"], &config);
    assert_eq!(second.status.code(), Some(0));
    let report = stdout(&second);
    assert!(!report.contains("created"), "the second run created a topic: {report}");
    for topic in all_topics(&names) {
        assert!(report.contains(&format!("exists    {topic} ({PARTITIONS} partitions)\n")), "{topic}: {report}");
    }

    // Another deployment whose changelog was created by hand with 2 partitions, as a plain topic.
    let other = Names::new("topics-bad");
    let maker = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\n[topics]\ninputs = [\"{}.maker\"]\nscore_changed = \"{}\"\n\
         partitions = 2\n[rules]\npath = \"{}\"\n",
        kafka.bootstrap,
        other.group,
        other.input,
        other.changelog,
        common::manifest("examples/rules.toml").display()
    );
    let maker = write_config(dir.path(), "maker.toml", &maker);
    assert_eq!(leadscore(&["topics", "create"], &maker).status.code(), Some(0));

    let bad = write_config(
        dir.path(),
        "bad.toml",
        &other.config_toml(&kafka.bootstrap, &dir.path().join("state-bad"), PARTITIONS),
    );
    let third = leadscore(&["topics", "create"], &bad);
    assert_eq!(third.status.code(), Some(1), "a bad changelog must fail the command");
    let report = stdout(&third);
    let changelog = &other.changelog;
    assert!(report.contains(&format!("exists    {changelog} (2 partitions)\n")), "{report}");
    assert!(
        report
            .contains(&format!("WRONG     {changelog}: changelog has 2 partitions but the inputs have {PARTITIONS}\n")),
        "{report}"
    );
    assert!(
        report.contains(&format!("WRONG     {changelog}: changelog is not compacted (cleanup.policy=delete)")),
        "{report}"
    );
    assert!(report.contains(&format!("created   {} ({PARTITIONS} partitions)\n", other.input)), "{report}");

    let run = leadscore(&["run"], &bad);
    assert_eq!(run.status.code(), Some(1), "leadscore run started on a mis-partitioned changelog");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("error: topics: {changelog}: changelog has 2 partitions")), "{stderr}");

    // Inputs that exist with another partition count than topics.partitions: the changelog follows them.
    let existing = Names::new("topics-existing");
    let toml = other
        .config_toml(&kafka.bootstrap, &dir.path().join("state-maker"), 2)
        .replace(&other.input, &existing.input)
        .replace(&other.internal, &existing.internal)
        .replace(&other.internal_account, &existing.internal_account);
    let input_maker = write_config(dir.path(), "input-maker.toml", &toml);
    assert_eq!(leadscore(&["topics", "create"], &input_maker).status.code(), Some(1), "its changelog is still bad");
    let follows = write_config(
        dir.path(),
        "follows.toml",
        &existing.config_toml(&kafka.bootstrap, &dir.path().join("state-follows"), PARTITIONS),
    );
    let fourth = leadscore(&["topics", "create"], &follows);
    assert_eq!(fourth.status.code(), Some(0));
    let report = stdout(&fourth);
    assert!(report.contains(&format!("exists    {} (2 partitions)\n", existing.input)), "{report}");
    assert!(report.contains(&format!("created   {} (2 partitions)\n", existing.changelog)), "{report}");
    assert!(report.contains(&format!("created   {} ({PARTITIONS} partitions)\n", existing.dlq)), "{report}");

    // An output topic and a changelog made by hand with max.message.bytes=1000, below the producer's
    // 1 000 000 (librdkafka's default message.max.bytes): records leadscore writes would be refused.
    let small = Names::new("topics-small");
    create_topic(&kafka.bootstrap, &small.score_changed, PARTITIONS as i32, &[("max.message.bytes", "1000")]);
    create_topic(
        &kafka.bootstrap,
        &small.changelog,
        PARTITIONS as i32,
        &[("cleanup.policy", "compact"), ("max.message.bytes", "1000")],
    );
    let config = write_config(
        dir.path(),
        "small.toml",
        &small.config_toml(&kafka.bootstrap, &dir.path().join("state-small"), PARTITIONS),
    );
    let fifth = leadscore(&["topics", "create"], &config);
    assert_eq!(fifth.status.code(), Some(1), "topics too small for the producer's records must fail the command");
    let report = stdout(&fifth);
    for topic in [&small.score_changed, &small.changelog] {
        assert!(
            report.contains(&format!(
                "WRONG     {topic}: max.message.bytes=1000 is below the producer's message.max.bytes=1000000"
            )),
            "{topic}: {report}"
        );
    }
    assert_eq!(report.matches("WRONG").count(), 2, "only the two small topics are wrong: {report}");
    let run = leadscore(&["run"], &config);
    assert_eq!(run.status.code(), Some(1), "leadscore run started on topics too small for its records");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("max.message.bytes=1000 is below"), "{stderr}");
}

#[test]
fn on_the_mock_cluster_partitions_are_checked_and_topic_configs_are_unchecked() {
    let (_cluster, bootstrap, names) = mock_broker("topics-mock", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let config = load_config(dir.path(), "a.toml", &names, &bootstrap);
    let provisioned = runtime.block_on(leadscore::app::provision_topics(&config)).unwrap_or_else(|err| panic!("{err}"));
    assert!(provisioned.problems.is_empty(), "{provisioned}");
    assert!(provisioned.created.is_empty(), "{provisioned}");
    assert_eq!(provisioned.partitions.get(&names.changelog), Some(&(PARTITIONS as i32)), "{provisioned}");
    // Every topic leadscore writes has its configs checked (the changelog's compaction, every written
    // topic's max.message.bytes); the inputs have none to check.
    let unverified: Vec<&str> = provisioned.unverified.iter().map(|problem| problem.topic.as_str()).collect();
    let written = [
        &names.score_changed,
        &names.threshold_crossed,
        &names.phase_changed,
        &names.accounts,
        &names.dlq,
        &names.changelog,
    ];
    assert_eq!(unverified, written, "{provisioned}");
    for problem in &provisioned.unverified {
        assert!(problem.problem.starts_with("topic configs could not be read ("), "{provisioned}");
    }

    // A changelog partitioned unlike the inputs, on a broker that cannot be asked for configs either.
    let (cluster, bootstrap, names) = mock_broker("topics-mock-bad", PARTITIONS);
    let mut config = load_config(dir.path(), "b.toml", &names, &bootstrap);
    let short = format!("{}.short", names.changelog);
    cluster.create_topic(&short, 3, 1).unwrap_or_else(|err| panic!("{err}"));
    config.topics.changelog = Some(short);
    let provisioned = runtime.block_on(leadscore::app::provision_topics(&config)).unwrap_or_else(|err| panic!("{err}"));
    let problems: Vec<String> = provisioned.problems.iter().map(|problem| problem.problem.clone()).collect();
    assert_eq!(problems, [format!("changelog has 3 partitions but the inputs have {PARTITIONS}")], "{provisioned}");
}

fn load_config(dir: &Path, name: &str, names: &Names, bootstrap: &str) -> leadscore::config::Config {
    let toml = names.config_toml(bootstrap, &dir.join(name).with_extension("state"), PARTITIONS);
    leadscore::config::Config::load(&write_config(dir, name, &toml)).unwrap_or_else(|err| panic!("{err}"))
}
