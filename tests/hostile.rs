//! Hostile records through Kafka, mixed into a realistic stream and read by a `leadscore run` process,
//! on librdkafka's mock cluster and on Apache Kafka: each lands in the dead-letter topic with a reason
//! header (unknown event types are ignored instead), the partitions never stall (every offset is
//! committed), and every contact's final state and outputs equal the offline model of the valid events.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::time::Duration;

use common::*;
use leadscore::event::json;
use leadscore::hashing::partition_for_key;

const PARTITIONS: u32 = 3;

/// A hostile record: key, value, and a word its dead-letter reason must contain (`None`: not dead-lettered).
struct Hostile {
    name: &'static str,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    reason: Option<&'static str>,
}

fn event_json(contact: &str, id: &str, rest: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","contact":"{contact}","ts":1772370000000,{rest}}}"#).into_bytes()
}

/// A record far over the 1 MiB input limit, `mb` megabytes long.
fn huge_record(mb: usize) -> Hostile {
    let c = "contact-0000001";
    let value = format!(
        r#"{{"id":"huge","contact":"{c}","type":"page_visit","ts":1772370000000,"item":"{}"}}"#,
        "x".repeat(mb * 1024 * 1024)
    );
    Hostile {
        name: "huge value",
        key: Some(c.as_bytes().to_vec()),
        value: Some(value.into_bytes()),
        reason: Some("exceeds the limit"),
    }
}

fn hostile_records() -> Vec<Hostile> {
    let c = "contact-0000001";
    let keyed =
        |name, value: Vec<u8>, reason| Hostile { name, key: Some(c.as_bytes().to_vec()), value: Some(value), reason };
    let mut nested =
        String::from(r#"{"id":"nested","contact":"contact-0000001","type":"page_visit","ts":1772370000000,"x":"#);
    nested.push_str(&"[".repeat(100_000));
    nested.push_str(&"]".repeat(100_000));
    nested.push('}');
    let mut invalid_utf8 = event_json(c, "utf8", r#""type":"page_visit","item":"/pricing-"#);
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(b"\"}");
    vec![
        Hostile {
            name: "null key",
            key: None,
            value: Some(event_json(c, "null-key", r#""type":"page_visit""#)),
            reason: Some("key"),
        },
        Hostile {
            name: "key differs from contact",
            key: Some(b"contact-0000002".to_vec()),
            value: Some(event_json(c, "other-key", r#""type":"page_visit""#)),
            reason: Some("does not match contact"),
        },
        Hostile { name: "null value", key: Some(c.as_bytes().to_vec()), value: None, reason: Some("empty") },
        keyed("empty value", Vec::new(), Some("empty")),
        keyed("invalid UTF-8", invalid_utf8, Some("not valid JSON")),
        keyed("deeply nested JSON", nested.into_bytes(), Some("nested deeper")),
        // The mock cluster keeps at most 5 MB per partition and drops older records beyond that, so the
        // 10 MB record runs on Kafka only; this one takes the same path.
        huge_record(4),
        keyed(
            "infinite points",
            event_json(c, "inf", r#""type":"manual_adjustment","points":1e999,"reason":"x""#),
            Some("number out of range"),
        ),
        keyed(
            "negative infinite points",
            event_json(c, "-inf", r#""type":"manual_adjustment","points":-1e999,"reason":"x""#),
            Some("number out of range"),
        ),
        keyed(
            "infinite attribute",
            event_json(c, "inf-attr", r#""type":"page_visit","attrs":{"n":1e999}}"#),
            Some("number out of range"),
        ),
        keyed(
            "ts in 1970",
            br#"{"id":"epoch","contact":"contact-0000001","type":"page_visit","ts":1000}"#.to_vec(),
            Some("field `ts` is invalid"),
        ),
        keyed(
            "ts in 9999",
            br#"{"id":"y9999","contact":"contact-0000001","type":"page_visit","ts":"9999-12-31T23:59:59Z"}"#.to_vec(),
            Some("field `ts` is invalid"),
        ),
        keyed(
            "phase_change to an unknown phase",
            event_json(c, "bad-phase", r#""type":"phase_change","phase":"wizard""#),
            Some("wizard"),
        ),
        keyed(
            "manual_adjustment without a reason",
            event_json(c, "no-reason", r#""type":"manual_adjustment","points":5"#),
            Some("missing field `reason`"),
        ),
        keyed("unknown event type", event_json(c, "teleport", r#""type":"teleported""#), None),
    ]
}

#[test]
fn hostile_records_are_dead_lettered_and_disturb_no_contact() {
    let (_cluster, bootstrap, names) = mock_broker("hostile", PARTITIONS);
    run_hostile(&bootstrap, &names, &hostile_records(), 6_000);
}

/// The same records on Apache Kafka, plus a 10 MB value, which is dead-lettered by size (its first
/// 64 KiB). The input topic takes records of up to 16 MB; Kafka's default is 1 MB.
#[test]
fn on_kafka_hostile_records_and_a_10_mb_record_are_dead_lettered() {
    let kafka = Kafka::start();
    let names = Names::new("hostilekafka");
    create_topic(&kafka.bootstrap, &names.input, PARTITIONS as i32, &[("max.message.bytes", "16777216")]);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config = dir.path().join("provision.toml");
    std::fs::write(&config, names.config_toml(&kafka.bootstrap, &dir.path().join("unused"), PARTITIONS))
        .unwrap_or_else(|err| panic!("{err}"));
    provision_topics(&config);
    let mut hostile = hostile_records();
    hostile.push(huge_record(10));
    run_hostile(&kafka.bootstrap, &names, &hostile, 6_000);
}

/// Produces a stream of `valid` events with `hostile` records spread through it, runs `leadscore run`
/// over it, and checks the dead letters, the metrics, the outputs and the final state.
fn run_hostile(bootstrap: &str, names: &Names, hostile: &[Hostile], valid: usize) {
    let rules = rules();
    let events = stream(31, valid, 300);
    // Valid records, with the hostile ones spread through the middle of the stream on contact-0000001's
    // partition (a null key goes there too).
    let hostile_partition = partition_for_key(b"contact-0000001", PARTITIONS) as i32;
    let mut records: Vec<PlacedRecord> = events
        .iter()
        .map(|event| {
            let key = event.contact.as_bytes().to_vec();
            (partition_for_key(&key, PARTITIONS) as i32, Some(key), Some(json::encode(event)))
        })
        .collect();
    let mut valid_lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    for (index, record) in hostile.iter().enumerate() {
        let at = valid / 6 + index * 300;
        records.insert(at, (hostile_partition, record.key.clone(), record.value.clone()));
        if record.reason.is_none() {
            valid_lines.insert(at, record.value.clone().unwrap_or_default());
        }
    }
    let expected = produce_placed(bootstrap, &names.input, &records);
    let model = model(&rules, PARTITIONS, &valid_lines);

    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let port = free_port();
    let config = dir.path().join("leadscore.toml");
    let toml = names
        .config_toml(bootstrap, &dir.path().join("state"), PARTITIONS)
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&config, toml).unwrap_or_else(|err| panic!("{err}"));
    let mut instance = spawn_run(&config, &dir.path().join("run.log"));
    // Every offset committed: no record stalled its partition.
    let log = dir.path().join("run.log");
    let committed = std::panic::catch_unwind(|| {
        wait_committed(bootstrap, &names.group, &names.input, &expected, Duration::from_secs(180));
    });
    if let Err(panic) = committed {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!("the instance's log ends:\n{}", &text[text.len().saturating_sub(8000)..]);
        std::panic::resume_unwind(panic);
    }
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0), "the instance is alive and stops cleanly");

    let dead = read_all(bootstrap, &[&names.dlq], Duration::from_secs(2));
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, _, headers)| {
            let error = headers.iter().find(|(name, _)| name == "leadscore.error").map(|(_, value)| value.clone());
            String::from_utf8_lossy(&error.unwrap_or_else(|| panic!("a dead letter without a reason: {headers:?}")))
                .into_owned()
        })
        .collect();
    let expected_dead: Vec<&Hostile> = hostile.iter().filter(|record| record.reason.is_some()).collect();
    for record in &expected_dead {
        let needle = record.reason.unwrap_or_default();
        assert!(
            reasons.iter().any(|reason| reason.contains(needle)),
            "{}: no dead letter says {needle:?}; reasons: {reasons:?}",
            record.name
        );
    }
    assert_eq!(dead.len(), expected_dead.len(), "each hostile record is dead-lettered once: {reasons:?}");
    assert!(!reasons.iter().any(|reason| reason.contains("teleported")), "unknown types are not dead letters");
    let huge =
        dead.iter().find(|(_, _, _, headers)| headers.iter().any(|(name, _)| name == "leadscore.truncated.from"));
    let huge_len = huge.and_then(|(_, _, value, _)| value.as_ref().map(Vec::len)).unwrap_or(usize::MAX);
    assert!(huge_len <= 64 * 1024, "the 10 MB record's dead-letter copy keeps only its head ({huge_len} bytes)");
    let unknown_types = hostile.iter().any(|record| record.reason.is_none());
    assert!(
        !unknown_types
            || metrics.lines().any(|line| {
                line.starts_with("leadscore_events_total{")
                    && line.contains("outcome=\"ignored\"")
                    && line.rsplit(' ').next().is_some_and(|count| count != "0")
            }),
        "unknown types are counted as ignored:\n{metrics}"
    );

    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(2));
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules, &dir.path().join("state")));
    eprintln!(
        "hostile: {} hostile records, {} dead letters, {} valid events, {} outputs ({duplicates} duplicates)",
        hostile.len(),
        dead.len(),
        events.len(),
        published.len()
    );
}
