//! Changing rules: `leadscore replay` over a stream on the mock cluster equals a fresh offline scoring
//! with the new rules and leaves the live group alone; the offline diff report is right on a crafted case;
//! a hot reload of `leadscore run` switches versions between batches with no event scored twice or
//! skipped; an invalid reload keeps the rules in force. On Apache Kafka, a replay from a time starts at
//! the first record after it.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use leadscore::config::Config;
use leadscore::event::json;
use leadscore::rules::Rules;

const PARTITIONS: u32 = 3;

/// The example scorecard with a shorter half-life, dearer pricing visits and a lower "hot" threshold.
fn new_rules_text() -> String {
    let text = std::fs::read_to_string(manifest("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    let changed = text
        .replace("name = \"b2b-saas\"", "name = \"b2b-saas-v2\"")
        .replace("half_life = \"30d\"", "half_life = \"14d\"")
        .replace("items = [\"*/pricing*\"]\npoints = 10", "items = [\"*/pricing*\"]\npoints = 25")
        .replace("at = 60\nhysteresis = 10", "at = 45\nhysteresis = 10");
    assert_eq!(changed.matches("b2b-saas-v2").count(), 1);
    assert!(changed.contains("points = 25") && changed.contains("at = 45") && changed.contains("\"14d\""));
    changed
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|err| panic!("{err}"));
    path
}

/// Runs `leadscore replay --rules RULES --config CONFIG ARGS…`, which must succeed; returns its output.
fn replay(rules: &Path, config: &Path, args: &[&str]) -> String {
    let replay = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["replay", "--rules"])
        .arg(rules)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore replay: {err}"));
    let stdout = String::from_utf8_lossy(&replay.stdout).into_owned();
    assert!(replay.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&replay.stderr));
    stdout
}

/// Everything published on the shadow output topics of `prefix`.
fn shadow_outputs(bootstrap: &str, names: &Names, prefix: &str) -> Vec<ReadRecord> {
    let shadow: Vec<String> = names.outputs().iter().map(|topic| format!("{prefix}{topic}")).collect();
    let shadow: Vec<&str> = shadow.iter().map(String::as_str).collect();
    read_all(bootstrap, &shadow, Duration::from_secs(2))
}

fn parse(text: &str) -> Rules {
    Rules::parse(text, Path::new("rules.toml")).unwrap_or_else(|err| panic!("{err}"))
}

/// The offline diff of two rules over `lines`, as `leadscore replay --input` computes it.
fn offline_report(live: &Rules, new: &Rules, lines: &[Vec<u8>], top: usize) -> leadscore::replay::DiffReport {
    let mut input = Vec::new();
    for line in lines {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    leadscore::replay::offline::replay_lines(&input[..], new, live, PARTITIONS, &mut std::io::sink(), top)
        .unwrap_or_else(|err| panic!("{err}"))
        .report
}

#[test]
fn a_replay_equals_fresh_scoring_with_the_new_rules_and_leaves_the_live_group_alone() {
    let (cluster, bootstrap, names) = mock_broker("replay", PARTITIONS);
    let prefix = "shadow.";
    for topic in [&names.score_changed, &names.threshold_crossed, &names.phase_changed, &names.dlq] {
        cluster.create_topic(&format!("{prefix}{topic}"), 2, 1).unwrap_or_else(|err| panic!("{err}"));
    }
    let (old, new_text) = (rules(), new_rules_text());
    let new = parse(&new_text);
    let events = stream(31, 3_000, 300);
    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);

    // The live instance scores everything with the old rules.
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config_path =
        write(dir.path(), "live.toml", &names.config_toml(&bootstrap, &dir.path().join("db"), PARTITIONS));
    let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
    run_in_process(&config, &bootstrap, &names, &expected, PARTITIONS, true);
    let live_outputs = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2)).len();

    let new_path = write(dir.path(), "new.toml", &new_text);
    let stdout = replay(&new_path, &config_path, &["--from", "earliest", "--output-prefix", prefix, "--top", "5"]);
    assert!(stdout.contains(&format!("replayed {} records", events.len())), "{stdout}");

    // The shadow topics hold exactly what a fresh offline scoring with the new rules gives.
    let published = shadow_outputs(&bootstrap, &names, prefix);
    let fresh = model(&new, PARTITIONS, &lines);
    assert_eq!(compare_outputs(&fresh, &published), 0, "a replay publishes each output once");
    assert!(published.iter().all(|(_, _, payload, _)| {
        let value: serde_json::Value =
            serde_json::from_slice(payload.as_deref().unwrap_or_default()).unwrap_or_else(|err| panic!("{err}"));
        value["rules_version"] == new.version.as_str()
    }));

    // The report compares with the live changelog exactly as the offline diff of the two rules does.
    let report = offline_report(&old, &new, &lines, 5);
    eprintln!("{stdout}");
    assert!(report.compared > 100 && report.only_live == 0 && report.only_replayed == 0, "{report}");
    assert!(report.phase_differs() + report.threshold_differs > 0, "the new rules change outcomes:\n{report}");
    assert!(stdout.contains(&report.to_string()), "report differs from the offline diff:\n{stdout}\n---\n{report}");

    // The live group, its topics and its state are untouched.
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(5));
    assert_eq!(read_all(&bootstrap, &names.outputs(), Duration::from_secs(2)).len(), live_outputs);
    compare_states(&model(&old, PARTITIONS, &lines), &stored_states(&old, &dir.path().join("db")));
}

#[test]
fn the_offline_diff_report_counts_a_crafted_case() {
    let scorecard = |name: &str, pricing: u32| {
        parse(&format!(
            r#"
name = "{name}"
[[groups]]
name = "engagement"
[[phases]]
name = "lead"
[[phases]]
name = "mql"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
items = ["/home"]
points = 10
[[rules]]
id = "pricing"
on = "page_visit"
group = "engagement"
items = ["/pricing"]
points = {pricing}
[[thresholds]]
name = "qualified"
target = "engagement"
at = 50
advance_to = "mql"
"#
        ))
    };
    let (live, new) = (scorecard("live", 20), scorecard("new", 45));
    let event = |id: &str, contact: &str, item: &str| {
        format!(r#"{{"id":"{id}","contact":"{contact}","type":"page_visit","ts":1772366400000,"item":"{item}"}}"#)
            .into_bytes()
    };
    let lines = vec![
        // ann: 10 + 20 = 30 live; 10 + 45 = 55 new, which qualifies her for mql.
        event("a1", "ann", "/home"),
        event("a2", "ann", "/pricing"),
        // bob: two pricing visits, 40 live, 90 new (qualified under the new rules only).
        event("b1", "bob", "/pricing"),
        event("b2", "bob", "/pricing"),
        // cid: visits only; the same under both.
        event("c1", "cid", "/home"),
        // dan: one pricing visit, 20 live, 45 new.
        event("d1", "dan", "/pricing"),
    ];
    let report = offline_report(&live, &new, &lines, 2);
    assert_eq!((report.compared, report.unchanged, report.only_live, report.only_replayed), (4, 1, 0, 0));
    assert_eq!(report.phase_moves, BTreeMap::from([(("lead".to_owned(), "mql".to_owned()), 2)]));
    assert_eq!(report.threshold_differs, 2);
    let qualified = report.thresholds.get("qualified").copied().unwrap_or_default();
    assert_eq!((qualified.gained, qualified.lost), (2, 0));
    // Changes: ann +25, bob +50, dan +25.
    let mut histogram = vec![0; leadscore::replay::diff::BUCKET_EDGES.len() + 1];
    histogram[9] = 2; // 20 .. 50
    histogram[10] = 1; // >= 50
    assert_eq!(report.histogram, histogram);
    assert!((report.mean_delta() - 100.0 / 4.0).abs() < 1e-9);
    let movers: Vec<(&str, f64, f64)> =
        report.top_movers.iter().map(|mover| (mover.contact.as_str(), mover.live, mover.replayed)).collect();
    // Ties (ann and dan, both +25) go to the contact id that sorts first.
    assert_eq!(movers, vec![("bob", 40.0, 90.0), ("ann", 30.0, 55.0)]);
    let text = report.to_string();
    assert!(text.contains("phase would differ for 2 contacts") && text.contains("lead → mql"), "{text}");
}

/// A config for a `leadscore run` process whose rules file is `rules`, polled every `watch_ms`.
fn process_config(names: &Names, bootstrap: &str, dir: &Path, rules: &Path, watch_ms: u64) -> PathBuf {
    let toml = names.config_toml(bootstrap, &dir.join("db"), PARTITIONS).replace(
        &format!("path = \"{}\"", manifest("examples/rules.toml").display()),
        &format!("path = \"{}\"\nwatch_ms = {watch_ms}", rules.display()),
    );
    assert!(toml.contains("watch_ms"), "the rules path was not replaced");
    write(dir, "live.toml", &toml)
}

fn counts(events: &[leadscore::event::Event]) -> BTreeMap<i32, i64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts
            .entry(leadscore::hashing::partition_for_key(event.contact.as_bytes(), PARTITIONS) as i32)
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_reload_on_sighup_switches_versions_between_batches_and_scores_every_event_once() {
    let (_cluster, bootstrap, names) = mock_broker("reload", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (old, new_text) = (rules(), new_rules_text());
    let new = parse(&new_text);
    let old_text = std::fs::read_to_string(manifest("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    let rules_path = write(dir.path(), "rules.toml", &old_text);
    // No polling: only the signal reloads.
    let config = process_config(&names, &bootstrap, dir.path(), &rules_path, 0);
    let events = stream(41, 4_000, 300);
    let (first, second) = events.split_at(2_500);

    let mut process = spawn_run(&config, &dir.path().join("run.log"));
    let part1 = produce(&bootstrap, &names.input, PARTITIONS, first);
    wait_committed(&bootstrap, &names.group, &names.input, &part1, Duration::from_secs(60));
    std::fs::write(&rules_path, &new_text).unwrap_or_else(|err| panic!("{err}"));
    let status = Command::new("kill").arg("-HUP").arg(process.child.id().to_string()).status();
    assert!(status.is_ok_and(|status| status.success()));
    let applied = wait_for_log(&process.log, "rules applied", Duration::from_secs(20));
    assert!(applied.contains(&old.version) && applied.contains(&new.version), "{applied}");
    produce(&bootstrap, &names.input, PARTITIONS, second);
    wait_committed(&bootstrap, &names.group, &names.input, &counts(&events), Duration::from_secs(60));
    assert_eq!(process.terminate(Duration::from_secs(20)), Some(0));

    // The model applies the old rules to part 1 and the new ones to part 2: outputs (with their rules
    // versions) and final states agree, so no event was scored twice, skipped, or scored by the wrong rules.
    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    let model = model_switching(&old, &new, PARTITIONS, &lines, first.len());
    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
    assert_eq!(compare_outputs(&model, &published), 0);
    let versions: BTreeMap<String, usize> =
        published.iter().fold(BTreeMap::new(), |mut versions, (_, _, payload, _)| {
            let value: serde_json::Value =
                serde_json::from_slice(payload.as_deref().unwrap_or_default()).unwrap_or_else(|err| panic!("{err}"));
            *versions.entry(value["rules_version"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            versions
        });
    let mut both = vec![old.version.clone(), new.version.clone()];
    both.sort();
    assert_eq!(versions.keys().cloned().collect::<Vec<_>>(), both, "outputs carry both versions");
    compare_states(&model, &stored_states(&new, &dir.path().join("db")));
}

#[test]
fn an_invalid_rules_file_is_rejected_and_the_rules_in_force_stay() {
    let (_cluster, bootstrap, names) = mock_broker("badreload", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let old = rules();
    let old_text = std::fs::read_to_string(manifest("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    let rules_path = write(dir.path(), "rules.toml", &old_text);
    let config = process_config(&names, &bootstrap, dir.path(), &rules_path, 100);
    let events = stream(43, 2_000, 200);
    let (first, second) = events.split_at(1_000);

    let mut process = spawn_run(&config, &dir.path().join("run.log"));
    let part1 = produce(&bootstrap, &names.input, PARTITIONS, first);
    wait_committed(&bootstrap, &names.group, &names.input, &part1, Duration::from_secs(60));
    // A typo on line 3: the watcher sees the change, rejects it with its location, and carries on.
    let broken = old_text.replacen("name = \"b2b-saas\"", "name = \"b2b-saas\"\nhalf_life = ", 1);
    std::fs::write(&rules_path, broken).unwrap_or_else(|err| panic!("{err}"));
    let rejected = wait_for_log(&process.log, "rules reload rejected", Duration::from_secs(20));
    assert!(rejected.contains(&format!("{}:4:", rules_path.display())), "{rejected}");
    produce(&bootstrap, &names.input, PARTITIONS, second);
    wait_committed(&bootstrap, &names.group, &names.input, &counts(&events), Duration::from_secs(60));
    assert!(process.child.try_wait().ok().flatten().is_none(), "the process keeps running");
    assert_eq!(process.terminate(Duration::from_secs(20)), Some(0));

    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    let model = model(&old, PARTITIONS, &lines);
    assert_eq!(compare_outputs(&model, &read_all(&bootstrap, &names.outputs(), Duration::from_secs(2))), 0);
    compare_states(&model, &stored_states(&old, &dir.path().join("db")));
    let log = std::fs::read_to_string(&process.log).unwrap_or_default();
    assert!(!log.contains("rules applied"), "the rules in force stayed");
}

/// `--from` a time finds its offsets with ListOffsets by timestamp, which Apache Kafka answers from the
/// records' timestamps: a replay from a time between two halves of a stream reads the second half alone,
/// and publishes what a fresh scoring of that half gives.
#[test]
fn on_kafka_a_replay_from_a_time_reads_the_records_after_it() {
    let kafka = shared_kafka();
    let names = Names::new("replaytime");
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config_path =
        write(dir.path(), "live.toml", &names.config_toml(&kafka.bootstrap, &dir.path().join("db"), PARTITIONS));
    provision_topics(&config_path);
    let events = stream(37, 2_000, 200);
    let (early, late) = events.split_at(800);
    produce(&kafka.bootstrap, &names.input, PARTITIONS, early);
    std::thread::sleep(Duration::from_millis(1_100));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let from = leadscore::event::format_rfc3339(now.as_millis() as i64);
    std::thread::sleep(Duration::from_millis(1_100));
    produce(&kafka.bootstrap, &names.input, PARTITIONS, late);

    let prefix = "fromtime.";
    let stdout = replay(&manifest("examples/rules.toml"), &config_path, &["--from", &from, "--output-prefix", prefix]);
    assert!(stdout.contains(&format!("replayed {} records", late.len())), "from {from}: {stdout}");

    let published = shadow_outputs(&kafka.bootstrap, &names, prefix);
    let lines: Vec<Vec<u8>> = late.iter().map(json::encode).collect();
    assert_eq!(compare_outputs(&model(&rules(), PARTITIONS, &lines), &published), 0);
}
