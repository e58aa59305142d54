//! The runtime against librdkafka's in-process mock cluster: outputs and final state equal the offline
//! model (late events, duplicates and decay timers included), bad records land in the dead-letter topic
//! with their reasons while the events behind them are still processed, and a deleted state directory is
//! rebuilt from the changelog.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

use leadscore::config::Config;
use leadscore::event::json;

const PARTITIONS: u32 = 3;

fn run_until_committed(config: &Config, bootstrap: &str, names: &Names, expected: &BTreeMap<i32, i64>) {
    run_in_process(config, bootstrap, names, expected, PARTITIONS, true);
}

fn run_until(config: &Config, bootstrap: &str, names: &Names, expected: &BTreeMap<i32, i64>, offsets_visible: bool) {
    run_in_process(config, bootstrap, names, expected, PARTITIONS, offsets_visible);
}

/// The test configuration with `processing` settings added, written to `dir/leadscore.toml` and loaded;
/// the state lives in `dir/db`. Returns the config and its path.
fn config_with(
    names: &Names,
    bootstrap: &str,
    dir: &std::path::Path,
    processing: &str,
) -> (Config, std::path::PathBuf) {
    let path = dir.join("leadscore.toml");
    let toml = names
        .config_toml(bootstrap, &dir.join("db"), PARTITIONS)
        .replace("[processing]", &format!("[processing]\n{processing}"));
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("{e}"));
    (Config::load(&path).unwrap_or_else(|err| panic!("{err}")), path)
}

#[test]
fn outputs_and_state_equal_the_model_and_survive_a_lost_state_directory() {
    let (_cluster, bootstrap, names) = mock_broker("equivalence", PARTITIONS);
    let rules = rules();
    let events = stream(11, 4_000, 400);
    let mut records: Vec<(Vec<u8>, Vec<u8>)> =
        events.iter().map(|event| (event.contact.as_bytes().to_vec(), json::encode(event))).collect();
    // Bad records in the middle of the stream; the events after them must still be scored.
    let bad: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"contact-0000001".to_vec(), b"{\"id\":\"broken\",\"contact\":".to_vec()),
        (b"contact-0000001".to_vec(), br#"{"id":"no-type","contact":"contact-0000001","ts":1772366400000}"#.to_vec()),
        (
            b"contact-0000002".to_vec(),
            br#"{"id":"typed","contact":"contact-0000002","type":"x","ts":"yesterday"}"#.to_vec(),
        ),
        (
            b"contact-0000003".to_vec(),
            format!(
                r#"{{"id":"big","contact":"contact-0000003","type":"page_visit","ts":1772366400000,"item":"{}"}}"#,
                "x".repeat(2_000_000)
            )
            .into_bytes(),
        ),
    ];
    for (index, record) in bad.iter().enumerate() {
        records.insert(500 + index * 700, record.clone());
    }
    let expected = produce_raw(&bootstrap, &names.input, PARTITIONS, &records);
    let lines: Vec<Vec<u8>> = records.iter().map(|(_, value)| value.clone()).collect();
    let model = model(&rules, PARTITIONS, &lines);
    assert!(model.outputs.keys().any(|id| id.contains(":down:")), "the stream has decay-driven falls");

    let state = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config_path = state.path().join("leadscore.toml");
    std::fs::write(&config_path, names.config_toml(&bootstrap, &state.path().join("db"), PARTITIONS))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
    run_until_committed(&config, &bootstrap, &names, &expected);

    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
    let duplicates = compare_outputs(&model, &published);
    assert_eq!(duplicates, 0, "a clean run publishes each output once");
    let falls = published.iter().filter(|(topic, ..)| *topic == names.threshold_crossed).count();
    assert!(falls > 0);
    compare_states(&model, &stored_states(&rules, &state.path().join("db")));

    let dead = read_all(&bootstrap, &[&names.dlq], Duration::from_secs(1));
    assert_eq!(dead.len(), 4, "every bad record is dead-lettered once");
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, _, headers)| {
            let error =
                headers.iter().find(|(name, _)| name == "leadscore.error").map(|(_, v)| v.clone()).unwrap_or_default();
            assert!(headers.iter().any(|(name, _)| name == "leadscore.source.offset"));
            String::from_utf8_lossy(&error).into_owned()
        })
        .collect();
    for needle in ["not valid JSON", "missing field `type`", "field `ts` is invalid", "exceeds the limit"] {
        assert!(reasons.iter().any(|reason| reason.contains(needle)), "no dead letter says {needle:?}: {reasons:?}");
    }

    // Lose the state directory: the next run restores every contact from the changelog.
    std::fs::remove_dir_all(state.path().join("db")).unwrap_or_else(|err| panic!("{err}"));
    run_until_committed(&config, &bootstrap, &names, &expected);
    compare_states(&model, &stored_states(&rules, &state.path().join("db")));
    let again = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
    assert_eq!(again.len(), published.len(), "a restore publishes nothing new");
}

/// Exactly-once mode: each cycle's outputs, changelog records and input offsets commit in one Kafka
/// transaction, and RocksDB is written after the commit. The mock cluster runs the commit path (it cannot
/// prove that aborted records are hidden; that needs Apache Kafka 2.5 or later).
#[test]
fn exactly_once_mode_commits_through_transactions() {
    let (_cluster, bootstrap, names) = mock_broker("eos", PARTITIONS);
    let rules = rules();
    let events = stream(23, 2_000, 300);
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);
    let model = model_of_events(&rules, PARTITIONS, &events);

    let state = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (config, _) = config_with(&names, &bootstrap, state.path(), "guarantee = \"exactly_once\"");
    run_until(&config, &bootstrap, &names, &expected, false);

    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
    assert_eq!(compare_outputs(&model, &published), 0);
    compare_states(&model, &stored_states(&rules, &state.path().join("db")));
}

/// A transaction the broker makes abortable (its offsets refused with ILLEGAL_GENERATION, as when a commit
/// meets a rebalance) is aborted and the processor rebuilt, instead of the process stopping: a
/// `read_committed` reader then sees every output once, and the state equals the model.
#[test]
fn an_aborted_transaction_is_rebuilt_and_loses_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (cluster, bootstrap, names) = mock_broker("eosabort", PARTITIONS);
    let rules = rules();
    let events = stream(29, 6_000, 600);
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);
    let model = model_of_events(&rules, PARTITIONS, &events);
    let state = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (config, _) = config_with(&names, &bootstrap, state.path(), "guarantee = \"exactly_once\"\nthreads = 1");
    let config = Config { kafka: leadscore::config::KafkaConfig { batch_size: 200, ..config.kafka.clone() }, ..config };
    let instance = common::InProcess::start(&config, PARTITIONS);
    instance.wait_events(1_000, Duration::from_secs(60));
    cluster.request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION]);
    // The mock cluster keeps no transactional offsets, so the rebuilt processor scores the input again
    // from the start (it has counted more events than the stream has once it did): what the restored
    // changelog already applied must be skipped, not published twice.
    let total: i64 = expected.values().sum();
    instance.wait_events(total as u64 + 1, Duration::from_secs(120));
    let started = std::time::Instant::now();
    let mut published = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(2));
        if diff_outputs(&model, &published).missing.is_empty() {
            break;
        }
    }
    instance.stop();
    assert_eq!(compare_outputs(&model, &published), 0, "a read_committed reader sees each output once");
    compare_states(&model, &stored_states(&rules, &state.path().join("db")));
}

/// An offset commit the group refuses (as it does while it rebalances) is made again once the processor
/// is idle: otherwise a partition with no new records keeps a committed offset behind what was processed,
/// which lag monitors and the partition's next owner read.
#[test]
fn a_refused_offset_commit_is_made_again_when_idle() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (cluster, bootstrap, names) = mock_broker("recommit", PARTITIONS);
    let state = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (config, _) = config_with(&names, &bootstrap, state.path(), "threads = 1");
    let instance = common::InProcess::start(&config, PARTITIONS);
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 10_000],
    );
    let events = stream(37, 600, 60);
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);
    let total: i64 = expected.values().sum();
    instance.wait_events(total as u64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let refused = committed_offsets(&bootstrap, &names.group, &names.input, PARTITIONS);
    assert!(refused.is_empty(), "the commits were refused: {refused:?}");
    cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(20));
    instance.stop();
}

/// The batches of a transaction that is aborted never come out of the sink, so their RocksDB writes are
/// never applied: a processor rebuilt after a failed transaction step (a broker outage, offsets refused)
/// finds only what committed transactions wrote, and scores the aborted input again instead of skipping it
/// as applied. A drain while a transaction is open (a revocation in the middle of one) fails rather than
/// finishing batches whose transaction may still abort.
#[test]
fn an_aborted_transaction_leaves_no_batch_to_write() {
    use leadscore::kafka::sink::{Sink, SinkError};
    use leadscore::runtime::record::Route;
    use leadscore::runtime::task::{Destination, Publish};
    use leadscore::store::PartitionBatch;

    let (_cluster, bootstrap, names) = mock_broker("eossink", PARTITIONS);
    let properties = vec![("bootstrap.servers".to_owned(), bootstrap.clone())];
    let mut sink = Sink::new(&properties, sink_topics(&names), Some(&unique("eossink-txn")), None)
        .unwrap_or_else(|err| panic!("{err}"));
    let transaction = |sink: &mut Sink| {
        sink.begin_transaction().unwrap_or_else(|err| panic!("{err}"));
        sink.open();
        let record = |destination| Publish {
            destination,
            key: b"c1".to_vec(),
            payload: Some(b"{}".to_vec()),
            headers: Vec::new(),
        };
        sink.send(0, vec![record(Destination::Output(Route::ScoreChanged)), record(Destination::Changelog)])
            .unwrap_or_else(|err| panic!("{err}"));
        sink.commit_after([(0, 0, 1)]);
        sink.write_after(1, PartitionBatch::new(0));
        sink.close();
    };

    transaction(&mut sink);
    assert!(matches!(sink.drain(Duration::from_secs(10)), Err(SinkError::TransactionOpen)));
    sink.abort_transaction();
    let drained = sink.drain(Duration::from_secs(10)).unwrap_or_else(|err| panic!("{err}"));
    assert!(drained.is_empty(), "an aborted transaction's batches are dropped, not finished");

    // A committed one is finished with its writes.
    transaction(&mut sink);
    sink.commit_transaction(&rdkafka::TopicPartitionList::new(), None).unwrap_or_else(|err| panic!("{err}"));
    let drained = sink.drain(Duration::from_secs(10)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(drained.iter().map(|batch| batch.writes.len()).sum::<usize>(), 1);
}

/// A member whose partitions go before their records are acknowledged (here the records wait for a retry
/// of refused produce requests) abandons its batches and purges what its producer holds: once the broker
/// takes records again, none of them arrives. Sent after the partitions' next owner had restored them, a
/// contact record would land after that owner's newer ones, and a restore would take the older state.
#[test]
fn abandoned_batches_send_nothing_after_their_partitions_go() {
    use leadscore::kafka::sink::{Sink, SinkError};
    use leadscore::runtime::record::Route;
    use leadscore::runtime::task::{Destination, Publish};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let (cluster, bootstrap, names) = mock_broker("abandon", PARTITIONS);
    let properties = vec![("bootstrap.servers".to_owned(), bootstrap.clone())];
    let mut sink = Sink::new(&properties, sink_topics(&names), None, None).unwrap_or_else(|err| panic!("{err}"));
    // Retriable refusals: librdkafka keeps the records and sends them again after a back-off.
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 20];
    cluster.request_errors(RDKafkaApiKey::Produce, &refused);
    sink.open();
    let record =
        |destination| Publish { destination, key: b"c1".to_vec(), payload: Some(b"{}".to_vec()), headers: Vec::new() };
    sink.send(0, vec![record(Destination::Output(Route::ScoreChanged))]).unwrap_or_else(|err| panic!("{err}"));
    let drained = sink.drain(Duration::from_millis(300));
    assert!(matches!(drained, Err(SinkError::Timeout(1))), "the record waits for its retry: {drained:?}");

    sink.abandon();
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    std::thread::sleep(Duration::from_secs(3));
    let arrived = read_all(&bootstrap, &[&names.score_changed], Duration::from_secs(2));
    assert!(arrived.is_empty(), "an abandoned record arrived after its partitions went: {arrived:?}");
    assert!(sink.drain(Duration::from_secs(1)).is_ok_and(|done| done.is_empty()), "nothing is left in flight");
}

/// The sink topics of a test's names.
fn sink_topics(names: &Names) -> leadscore::kafka::sink::SinkTopics {
    leadscore::kafka::sink::SinkTopics {
        score_changed: names.score_changed.clone(),
        threshold_crossed: names.threshold_crossed.clone(),
        phase_changed: names.phase_changed.clone(),
        accounts: names.accounts.clone(),
        dlq: names.dlq.clone(),
        changelog: names.changelog.clone(),
        internal: names.internal.clone(),
        internal_account: names.internal_account.clone(),
    }
}

/// Merges cross partitions through the internal topic, on the mock cluster (see [`merges::scenario`]).
#[test]
fn merged_contacts_move_to_their_survivor_across_partitions_as_the_model_says() {
    let (_cluster, bootstrap, names) = mock_broker("merges", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (config, _) = config_with(&names, &bootstrap, dir.path(), "");
    merges::scenario(&bootstrap, &names, config, PARTITIONS);
}

/// Contacts' changes reach their accounts across partitions, on the mock cluster (see
/// [`accounts::scenario`]).
#[test]
fn accounts_score_their_contacts_across_partitions_as_the_model_says() {
    let (_cluster, bootstrap, names) = mock_broker("accounts", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (config, _) = config_with(&names, &bootstrap, dir.path(), "");
    accounts::scenario(&bootstrap, &names, config, PARTITIONS);
}
