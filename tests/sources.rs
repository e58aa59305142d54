//! Input formats end to end on Apache Kafka: one processor reads a Segment topic and a Debezium topic (the
//! same contacts in both), and its outputs and final states equal the offline model of the mapped events;
//! malformed records of either format are dead-lettered with their reasons and filtered ones skipped.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use leadscore::config::Config;
use leadscore::event::input::InputDecoder;
use leadscore::event::mapping::render::{self, ChangeLog};
use leadscore::event::mapping::{Mapped, Position, SourceRecord};
use leadscore::event::{DecodeLimits, Event, json};
use leadscore::hashing::partition_for_key;

const PARTITIONS: u32 = 4;

fn mapped(decoder: &InputDecoder, payload: &[u8]) -> Option<Vec<u8>> {
    let record = SourceRecord { payload, key: None, headers: &[], position: Position::Line { file: "model", line: 0 } };
    match decoder.decode_value(&record, &DecodeLimits::default()) {
        Ok(Mapped::Event(event)) => Some(json::encode(&event)),
        _ => None,
    }
}

#[test]
fn a_segment_topic_and_a_debezium_topic_score_like_the_model_on_kafka() {
    let kafka = shared_kafka();
    let names = Names::new("sources");
    let (segment, crm) = (format!("{}.segment", names.input), format!("{}.crm", names.input));
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let mut toml = names
        .config_toml(&kafka.bootstrap, &state, PARTITIONS)
        .replace(&format!("inputs = [\"{}\"]", names.input), &format!("inputs = [\"{segment}\", \"{crm}\"]"));
    toml.push_str(&format!(
        r#"
[input.topics."{segment}"]
format = "segment"
item = ["/properties/item", "/properties/url"]
phase = "/properties/phase"
points = "/properties/points"
reason = "/properties/reason"
types = {{ page = "page_visit" }}
drop_types = ["Heartbeat"]

[input.topics."{crm}"]
format = "debezium"
contact = ["/after/email", "/before/email"]
"#
    ));
    let config_path = dir.path().join("leadscore.toml");
    std::fs::write(&config_path, &toml).unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&config_path);
    let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
    let decoders = config.input.decoders(&config.topics.inputs).unwrap_or_else(|err| panic!("{err}"));

    let events = stream(16, 6_000, 600);
    let (profiles, behaviour): (Vec<&Event>, Vec<&Event>) =
        events.iter().partition(|event| event.kind == "profile_update");
    let place = |key: &str, value: Vec<u8>| {
        (partition_for_key(key.as_bytes(), PARTITIONS) as i32, Some(key.as_bytes().to_vec()), Some(value))
    };
    let mut table = ChangeLog::default();
    let mut crm_records: Vec<PlacedRecord> =
        profiles.iter().map(|event| place(&event.contact, table.change(event).into_bytes())).collect();
    let mut segment_records: Vec<PlacedRecord> =
        behaviour.iter().map(|event| place(&event.contact, render::segment(event).into_bytes())).collect();
    // The model scores what the mappings make of the records, in the order the processor reads them:
    // the CRM topic is read to its end before the Segment topic gets its first record.
    let lines: Vec<Vec<u8>> = crm_records
        .iter()
        .map(|record| (&decoders[1], record))
        .chain(segment_records.iter().map(|record| (&decoders[0], record)))
        .filter_map(|(decoder, (_, _, value))| mapped(decoder, value.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(lines.len(), events.len(), "every generated event maps to one event");
    let model = model(&rules(), PARTITIONS, &lines);

    // Records the mappings filter out, and malformed ones of each format.
    let heartbeat = serde_json::json!({"type": "track", "event": "Heartbeat", "messageId": "hb-1", "userId": "contact-0000001",
                           "timestamp": "2026-01-05T10:00:00Z"});
    segment_records.push(place("contact-0000001", heartbeat.to_string().into_bytes()));
    let no_contact = serde_json::json!({"type": "track", "event": "email_open", "messageId": "m-x", "timestamp": "2026-01-05T10:00:00Z"});
    segment_records.push(place("contact-0000002", no_contact.to_string().into_bytes()));
    segment_records
        .push(place("contact-0000003", br#"{"type":"page","messageId":"m-y","userId":"contact-0000003""#.to_vec()));
    let delete = serde_json::json!({"before": {"id": 1, "email": "contact-0000004"}, "after": null, "op": "d", "ts_ms": 1_767_000_000_000_i64});
    crm_records.push(place("contact-0000004", delete.to_string().into_bytes()));
    let bad_time =
        serde_json::json!({"before": null, "after": {"id": 9, "email": "contact-0000005"}, "op": "c", "ts_ms": "soon"});
    crm_records.push(place("contact-0000005", bad_time.to_string().into_bytes()));
    crm_records.push((0, Some(b"contact-0000006".to_vec()), None));

    let count = |records: &[PlacedRecord]| {
        let mut counts = BTreeMap::new();
        for (partition, _, _) in records {
            *counts.entry(*partition).or_insert(0i64) += 1;
        }
        counts
    };
    let instance = InProcess::start(&config, PARTITIONS);
    produce_placed(&kafka.bootstrap, &crm, &crm_records);
    wait_committed(&kafka.bootstrap, &names.group, &crm, &count(&crm_records), Duration::from_secs(120));
    produce_placed(&kafka.bootstrap, &segment, &segment_records);
    wait_committed(&kafka.bootstrap, &names.group, &segment, &count(&segment_records), Duration::from_secs(120));
    instance.stop();

    let published = read_all(&kafka.bootstrap, &names.outputs(), Duration::from_secs(3));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &state));
    let dead: Vec<String> = read_all(&kafka.bootstrap, &[&names.dlq], Duration::from_secs(2))
        .into_iter()
        .map(|(_, _, _, headers)| {
            let reason = headers.iter().find(|(name, _)| name == "leadscore.error").map(|(_, value)| value.clone());
            String::from_utf8_lossy(&reason.unwrap_or_default()).into_owned()
        })
        .collect();
    let expected = [
        "missing field `contact`: none of /userId, /anonymousId is in the record",
        "payload is not valid JSON",
        "field `ts (/source/ts_ms, /ts_ms)` is invalid: not a number of epoch time",
    ];
    assert_eq!(dead.len(), expected.len(), "dead letters: {dead:?}");
    for reason in expected {
        assert!(dead.iter().any(|dead| dead.contains(reason)), "no dead letter says {reason:?}: {dead:?}");
    }
    eprintln!("{} events in two formats: {} outputs, {duplicates} duplicate copies", lines.len(), published.len());
}

/// (config, sample, events, skipped): every example sample maps with no dead letter.
const EXAMPLES: [(&str, &str, usize, usize); 6] = [
    ("segment", "segment.jsonl", 14, 0),
    ("cloudevents", "cloudevents.jsonl", 9, 1),
    ("snowplow", "snowplow.tsv", 8, 1),
    ("snowplow", "snowplow.json", 8, 1),
    ("debezium", "debezium.jsonl", 8, 0),
    ("mapping", "mapping.jsonl", 8, 1),
];

fn example_decoder(config: &str) -> InputDecoder {
    let config =
        Config::load(&manifest(&format!("examples/sources/{config}.toml"))).unwrap_or_else(|err| panic!("{err}"));
    let topic = &config.topics.inputs[0];
    InputDecoder::for_topic(&config.input.topic(topic)).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn every_example_sample_maps_and_every_malformed_record_says_why() {
    for (config, sample, events, skipped) in EXAMPLES {
        let text = std::fs::read(manifest(&format!("examples/sources/{sample}"))).unwrap_or_else(|err| panic!("{err}"));
        let mut report = Vec::new();
        let summary = leadscore::event::sample::report(
            &example_decoder(config),
            sample,
            &text,
            &DecodeLimits::default(),
            &mut report,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        let report = String::from_utf8_lossy(&report);
        assert_eq!(
            (summary.events, summary.skipped, summary.dead_letters),
            (events, skipped, 0),
            "{sample}:\n{report}"
        );
    }
    for (config, fixture) in [
        ("segment", "segment-malformed.jsonl"),
        ("cloudevents", "cloudevents-malformed.jsonl"),
        ("snowplow", "snowplow-malformed.tsv"),
        ("snowplow", "snowplow-json-malformed.jsonl"),
        ("debezium", "debezium-malformed.jsonl"),
        ("mapping", "mapping-malformed.jsonl"),
    ] {
        let decoder = example_decoder(config);
        let path = manifest(&format!("tests/fixtures/sources/{fixture}"));
        let records = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{err}"));
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(records.lines().count(), expected.lines().count(), "{fixture}: one expected reason per record");
        for (record, reason) in records.lines().zip(expected.lines()) {
            let source = SourceRecord {
                payload: record.as_bytes(),
                key: None,
                headers: &[],
                position: Position::Line { file: fixture, line: 0 },
            };
            match decoder.decode_value(&source, &DecodeLimits::default()) {
                Err(err) => {
                    assert!(err.to_string().contains(reason), "{fixture}: {record}\nexpected {reason:?}, got {err}")
                }
                Ok(other) => panic!("{fixture}: {record}\nexpected a dead letter ({reason}), got {other:?}"),
            }
        }
    }
}

/// What the README shows: `leadscore check --config … --sample …` prints each mapped event.
#[test]
fn check_prints_what_each_sample_record_becomes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["check", "--config"])
        .arg(manifest("examples/sources/segment.toml"))
        .arg("--sample")
        .arg(manifest("examples/sources/segment.jsonl"))
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("format segment"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|line| line.starts_with("line ") && line.contains("\"contact\":")).count(),
        14,
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("14 events, 0 skipped, 0 dead letters"), "{stdout}");
}

/// `leadscore score --config` models a topic's own format: its outputs equal those of the mapped events
/// that `leadscore check` prints, scored as leadscore JSON.
#[test]
fn the_offline_model_reads_a_topics_format() {
    let binary = env!("CARGO_BIN_EXE_leadscore");
    let run = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(binary).args(args).output().unwrap_or_else(|err| panic!("{err}"));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let (rules, config) = (manifest("examples/rules.toml"), manifest("examples/sources/snowplow.toml"));
    let sample = manifest("examples/sources/snowplow.tsv");
    let checked =
        run(&["check".as_ref(), "--config".as_ref(), config.as_os_str(), "--sample".as_ref(), sample.as_os_str()]);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let mapped = dir.path().join("mapped.jsonl");
    let events: Vec<&str> = checked.lines().filter_map(|line| line.split_once(": {").map(|(_, json)| json)).collect();
    let lines: String = events.iter().map(|json| format!("{{{json}\n")).collect();
    std::fs::write(&mapped, lines).unwrap_or_else(|err| panic!("{err}"));
    let from_json =
        run(&["score".as_ref(), "--rules".as_ref(), rules.as_os_str(), "--input".as_ref(), mapped.as_os_str()]);
    let from_tsv = run(&[
        "score".as_ref(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--input".as_ref(),
        sample.as_os_str(),
    ]);
    assert_eq!(events.len(), 8);
    assert!(from_tsv.lines().count() > events.len(), "{from_tsv}");
    assert_eq!(from_tsv, from_json);
}

/// CloudEvents in binary mode: the attributes travel as `ce_` Kafka headers and the value is the data.
/// Through a real consumer, the runtime reads them as the offline model does.
#[test]
fn binary_cloudevents_are_read_from_their_kafka_headers() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let (_cluster, bootstrap, names) = mock_broker("cloudevents", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let mut toml = names.config_toml(&bootstrap, &state, PARTITIONS);
    toml.push_str(
        "\n[input.topics.\"PLACEHOLDER\"]\nformat = \"cloudevents\"\nphase = \"/data/phase\"\npoints = \"/data/points\"\nreason = \"/data/reason\"\n",
    );
    let toml = toml.replace("PLACEHOLDER", &names.input);
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let decoder = &config.input.decoders(&config.topics.inputs).unwrap_or_else(|err| panic!("{err}"))[0];

    let events = stream(23, 3_000, 300);
    let producer: ThreadedProducer<DefaultProducerContext> =
        client(&bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    let mut lines = Vec::new();
    let mut counts = BTreeMap::new();
    for event in &events {
        // The data: the event's properties; everything else in headers, as the Kafka protocol binding writes.
        let mut data: serde_json::Value =
            serde_json::from_str(&render::cloudevent(event)).unwrap_or_else(|err| panic!("{err}"));
        let data = data["data"].take().to_string();
        let time = leadscore::event::format_rfc3339(event.ts_ms);
        let attributes = [
            ("ce_specversion", "1.0"),
            ("ce_id", event.id.as_str()),
            ("ce_source", "/web/tracker"),
            ("ce_type", event.kind.as_str()),
            ("ce_subject", event.contact.as_str()),
            ("ce_time", time.as_str()),
            ("content-type", "application/json"),
        ];
        let headers: Vec<(String, Vec<u8>)> =
            attributes.iter().map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())).collect();
        let record = SourceRecord {
            payload: data.as_bytes(),
            key: None,
            headers: &headers,
            position: Position::Line { file: "model", line: 0 },
        };
        match decoder.decode_value(&record, &DecodeLimits::default()) {
            Ok(Mapped::Event(mapped)) => lines.push(json::encode(&mapped)),
            other => panic!("{other:?}"),
        }
        let kafka_headers = attributes
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(*value) }));
        let partition = partition_for_key(event.contact.as_bytes(), PARTITIONS) as i32;
        *counts.entry(partition).or_insert(0i64) += 1;
        let mut record =
            BaseRecord::to(&names.input).partition(partition).key(&event.contact).payload(&data).headers(kafka_headers);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap_or_else(|err| panic!("{err}"));
    let model = model(&rules(), PARTITIONS, &lines);

    run_in_process(&config, &bootstrap, &names, &counts, PARTITIONS, true);
    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(3));
    compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &state));
    assert!(read_all(&bootstrap, &[&names.dlq], Duration::from_secs(1)).is_empty(), "nothing is dead-lettered");
}
