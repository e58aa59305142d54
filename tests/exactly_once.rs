//! `processing.guarantee = "exactly_once"` on Apache Kafka (one node, shared by the tests of this file):
//! a `leadscore run` process is killed with SIGKILL again and again while a stream arrives, most kills
//! landing inside an open transaction, and restarted each time on the same state directory (and so the
//! same transactional id, which fences the killed incarnation and aborts its open transaction). Then a
//! `read_committed` consumer must see every expected output exactly once (no copy, none missing, none
//! unexpected), although a `read_uncommitted` consumer sees the records of the aborted transactions; the
//! final state must equal the offline model, and so must a restore of the transactional changelog into an
//! empty state directory.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use leadscore::generator::SplitMix64;

const PARTITIONS: u32 = 4;

/// Records scored per poll batch, and so per transaction: smaller than the default so that a run has
/// many transactions and a kill at a random moment most likely finds one open.
const BATCH_SIZE: u32 = 250;

/// An exactly-once configuration for `names`: a stable client id (the transactional id derives from it and
/// the state directory), the state in `dir/state`, the HTTP API on `port`.
fn eos_config(bootstrap: &str, names: &Names, dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("eos.toml");
    let toml = names
        .config_toml(bootstrap, &dir.join("state"), PARTITIONS)
        .replace("[kafka]\n", "[kafka]\nclient_id = \"leadscore-eos-a\"\n")
        .replace("batch_size = 500", &format!("batch_size = {BATCH_SIZE}"))
        .replace("[processing]\n", "[processing]\nguarantee = \"exactly_once\"\n")
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    assert!(toml.contains("guarantee = \"exactly_once\"") && toml.contains("client_id"), "{toml}");
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    path
}

/// Kills the process 6 times at random points while a 24,000-event stream arrives in seven parts. Each
/// part finds the restarted process restored and caught up with the parts before it; during each but the
/// last the process is killed once it has scored a random share (10 to 70%) of the part, plus a random
/// 0 to 200 ms, so that kills land while transactions are open, being committed, or between them.
#[test]
fn exactly_once_on_kafka_publishes_each_output_once_through_kill_9() {
    let kafka = shared_kafka();
    let bootstrap = kafka.bootstrap.as_str();
    let names = Names::new("eos");
    let dir = TestDir::new();
    let port = free_port();
    let config = eos_config(bootstrap, &names, dir.path(), port);
    provision_topics(&config);
    let events = stream(41, 24_000, 2_400);
    let model = model_of_events(&rules(), PARTITIONS, &events);
    let log = dir.path().join("a.log");
    let restores = || std::fs::read_to_string(&log).unwrap_or_default().matches("restored partition").count();
    let mut random = SplitMix64::new(41);
    let parts: Vec<&[leadscore::event::Event]> = events.chunks(events.len().div_ceil(7)).collect();
    let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
    let mut kills = Vec::new();
    let started = Instant::now();

    let mut instance = spawn_run(&config, &log);
    let mut restored = 0;
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        // The restarted process has restored its partitions (once the killed member's session expired)
        // and scored again what the aborted transaction of its predecessor left uncommitted.
        wait_until(Duration::from_secs(120), "the partitions are restored", || {
            restores() >= restored + PARTITIONS as usize
        });
        wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(120));
        let from = events_consumed(&[port]);
        let produced = std::thread::scope(|scope| {
            let producer = scope.spawn(|| produce(bootstrap, &names.input, PARTITIONS, part));
            if !last {
                let share = part.len() as u64 * (10 + random.below(61)) / 100;
                let consumed = wait_consumed(&[port], from, share);
                let delay = random.below(201);
                std::thread::sleep(Duration::from_millis(delay));
                instance.kill9();
                kills.push(format!("{consumed} of the part's {} scored, then {delay} ms", part.len()));
            }
            producer.join().unwrap_or_else(|_| panic!("the producer thread failed"))
        });
        for (partition, count) in produced {
            *expected.entry(partition).or_insert(0) += count;
        }
        if !last {
            restored = restores();
            instance = spawn_run(&config, &log);
        }
    }
    wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(180));
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0; log:\n{}", log_tail(&log));
    assert!(kills.len() >= 5, "{} kills", kills.len());

    // What a read_committed consumer sees: each expected output once, nothing else.
    let committed = read_isolated(bootstrap, &names.outputs(), "read_committed");
    let diff = diff_outputs(&model, &committed);
    let duplicates = compare_outputs(&model, &committed);
    assert_eq!(duplicates, 0, "read_committed saw duplicate outputs: {diff:?}");
    assert_eq!(committed.len(), model.outputs.len(), "read_committed saw every output exactly once");

    // What a read_uncommitted consumer sees in addition: the records of aborted transactions.
    let uncommitted = read_isolated(bootstrap, &names.outputs(), "read_uncommitted");
    let committed_ids = count_ids(&committed);
    let uncommitted_ids = count_ids(&uncommitted);
    let missing_from_uncommitted: Vec<&String> = committed_ids
        .iter()
        .filter(|(id, count)| uncommitted_ids.get(*id).copied().unwrap_or(0) < **count)
        .map(|(id, _)| id)
        .collect();
    assert!(
        missing_from_uncommitted.is_empty(),
        "read_uncommitted saw fewer copies than read_committed of {:?}",
        &missing_from_uncommitted[..missing_from_uncommitted.len().min(5)]
    );
    let aborted = uncommitted.len() - committed.len();
    let aborted_ids = uncommitted_ids.keys().filter(|id| !committed_ids.contains_key(*id)).count();
    assert_eq!(aborted_ids, 0, "an aborted record is an output the next incarnation published again");
    // Each kill lands just after a batch was scored, while its outputs are sent inside its open
    // transaction (or within 200 ms of that), so the kills leave aborted outputs behind: without them this
    // test would not show that read_committed hides anything.
    assert!(aborted > 0, "no kill left an aborted transaction behind: {kills:?}");
    let aborted_changelog = read_isolated(bootstrap, &[&names.changelog], "read_uncommitted")
        .len()
        .saturating_sub(read_isolated(bootstrap, &[&names.changelog], "read_committed").len());

    // The final state, and a restore of the transactional changelog into an empty state directory.
    let state = dir.path().join("state");
    compare_states(&model, &stored_states(&rules(), &state));
    std::fs::remove_dir_all(&state).unwrap_or_else(|err| panic!("{err}"));
    let restore_log = dir.path().join("restore.log");
    let mut again = spawn_run(&config, &restore_log);
    wait_until(Duration::from_secs(120), "every partition is restored into an empty state directory", || {
        owned_partitions(port).is_some_and(|owned| owned.len() == PARTITIONS as usize)
    });
    assert_eq!(again.terminate(Duration::from_secs(30)), Some(0), "SIGTERM exits 0");
    let text = std::fs::read_to_string(&restore_log).unwrap_or_default();
    assert!(text.contains("stopped cleanly records=0 outputs=0"), "the restore scored nothing again: {text}");
    compare_states(&model, &stored_states(&rules(), &state));
    assert_eq!(
        read_isolated(bootstrap, &names.outputs(), "read_committed").len(),
        model.outputs.len(),
        "a restore publishes nothing new"
    );

    eprintln!(
        "exactly_once on Apache Kafka: {} events in {elapsed:.1} s with {} kills ({kills:?}); read_committed: \
         {} outputs = the model's {}, 0 duplicates, 0 missing, 0 unexpected; read_uncommitted: {} records, of \
         which {aborted} aborted (outputs), plus {aborted_changelog} aborted changelog records; final state and a \
         restore into an empty state directory equal the model ({} contacts)",
        events.len(),
        kills.len(),
        committed.len(),
        model.outputs.len(),
        uncommitted.len(),
        model.states.len()
    );
}

/// Every record of `topics`, read from the start until idle with `isolation.level` set to `isolation`.
fn read_isolated(bootstrap: &str, topics: &[&str], isolation: &str) -> Vec<ReadRecord> {
    let mut client = client(bootstrap);
    client.set("isolation.level", isolation);
    read_all_with(client, topics, Duration::from_secs(3))
}

/// Copies of each output id.
fn count_ids(records: &[ReadRecord]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (topic, _, payload, _) in records {
        let payload = payload.as_deref().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|err| panic!("{topic}: {err}"));
        *counts.entry(value["id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    counts
}

/// Merges in exactly-once mode: the internal merge topic's records are written in the same transactions
/// as the outputs and offsets, and the states, aliases and outputs equal the offline model's (see
/// [`merges::scenario`]).
#[test]
fn exactly_once_on_kafka_merges_contacts_as_the_model_says() {
    let kafka = shared_kafka();
    let names = Names::new("eos-merges");
    let dir = TestDir::new();
    let path = eos_config(&kafka.bootstrap, &names, dir.path(), free_port());
    provision_topics(&path);
    let config = leadscore::config::Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    merges::scenario(&kafka.bootstrap, &names, config, PARTITIONS);
}

/// Accounts in exactly-once mode: the internal account topic's updates are written in the same
/// transactions as the outputs and offsets, and the account outputs and final accounts equal the offline
/// model's (see [`accounts::scenario`]).
#[test]
fn exactly_once_on_kafka_scores_accounts_as_the_model_says() {
    let kafka = shared_kafka();
    let names = Names::new("eos-accounts");
    let dir = TestDir::new();
    let path = eos_config(&kafka.bootstrap, &names, dir.path(), free_port());
    provision_topics(&path);
    let config = leadscore::config::Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    accounts::scenario(&kafka.bootstrap, &names, config, PARTITIONS);
}
