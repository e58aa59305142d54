//! Security: the Kafka client is built with TLS and SASL (PLAIN, SCRAM-SHA-256/512) and accepts them from
//! the typed config; and `erase` leaves no trace of a contact in RocksDB after compaction, with a
//! tombstone as the last changelog record of its key.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::time::Duration;

use common::*;
use leadscore::config::Config;
use leadscore::event::{Event, json};
use leadscore::store::{RocksOptions, RocksStore, StateStore};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::producer::BaseProducer;

const PARTITIONS: u32 = 2;

#[test]
fn the_kafka_client_is_built_with_tls_and_sasl() {
    let native = ClientConfig::new().create_native_config().unwrap_or_else(|err| panic!("{err}"));
    let features = native.get("builtin.features").unwrap_or_else(|err| panic!("{err}"));
    for feature in ["ssl", "sasl_plain", "sasl_scram"] {
        assert!(features.split(',').any(|f| f == feature), "librdkafka lacks {feature}: {features}");
    }
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap_or_else(|err| panic!("{err}"));
    for (protocol, mechanism) in [
        ("sasl_ssl", "plain"),
        ("sasl_ssl", "scram-sha-256"),
        ("sasl_ssl", "scram-sha-512"),
        ("sasl_plaintext", "plain"),
        ("ssl", ""),
    ] {
        let sasl = if mechanism.is_empty() {
            String::new()
        } else {
            format!(
                "sasl_mechanism = \"{mechanism}\"\nsasl_username = {{ env = \"LEADSCORE_TEST_SASL_USER\" }}\n\
                 sasl_password = {{ file = \"password\" }}\n"
            )
        };
        let path = dir.path().join("leadscore.toml");
        let toml = format!(
            "[kafka]\nbrokers = \"127.0.0.1:1\"\nsecurity_protocol = \"{protocol}\"\n{sasl}\n[rules]\npath = \"{}\"\n",
            manifest("examples/rules.toml").display()
        );
        std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
        let env = vec![("LEADSCORE_TEST_SASL_USER".to_owned(), "scorer".to_owned())];
        let config = Config::load_with_env(&path, &env).unwrap_or_else(|err| panic!("{protocol}/{mechanism}: {err}"));
        let properties = config.kafka.producer_config();
        let get = |key: &str| properties.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str());
        assert_eq!(get("security.protocol"), Some(protocol));
        if !mechanism.is_empty() {
            assert_eq!(get("sasl.mechanisms"), Some(mechanism.to_uppercase().as_str()));
            assert_eq!(get("sasl.username"), Some("scorer"), "from the environment");
            assert_eq!(get("sasl.password"), Some("s3cret"), "from the file, without its line break");
            let shown = config.redacted().to_string();
            assert!(!shown.contains("s3cret") && !shown.contains("scorer"), "secrets are redacted: {shown}");
        }
        // librdkafka refuses a protocol or mechanism it was built without when the client is created.
        let mut client = ClientConfig::new();
        for (key, value) in &properties {
            client.set(key, value);
        }
        client.set_log_level(RDKafkaLogLevel::Emerg);
        let created: Result<BaseProducer, _> = client.create();
        assert!(created.is_ok(), "{protocol}/{mechanism}: {:?}", created.err());
    }
}

fn event(id: &str, contact: &str, kind: &str, ts_ms: i64) -> Event {
    Event {
        id: id.into(),
        contact: contact.into(),
        kind: kind.into(),
        ts_ms,
        item: Some("https://acme.io/pricing".into()),
        attrs: Vec::new(),
        adjustment: None,
        phase: None,
    }
}

#[test]
fn erase_leaves_no_trace_in_rocksdb_and_ends_the_changelog_with_a_tombstone() {
    const ERASED: &str = "contact-erase-4b1d9e";
    let (_cluster, bootstrap, names) = mock_broker("erase", PARTITIONS);
    let mut events = stream(53, 2_000, 200);
    for index in 0..20 {
        events.insert(
            index * 50,
            event(&format!("erase-me-{index}"), ERASED, "page_visit", START_MS + index as i64 * 60_000),
        );
    }
    events.push(event("erase-me-now", ERASED, "erase", START_MS + 3_600_000));
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);

    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let config = dir.path().join("leadscore.toml");
    std::fs::write(&config, names.config_toml(&bootstrap, &state, PARTITIONS)).unwrap_or_else(|err| panic!("{err}"));
    let mut instance = spawn_run(&config, &dir.path().join("run.log"));
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(120));
    // The tombstone follows once the erase's outputs are committed; give the next batch a moment.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(instance.terminate(Duration::from_secs(30)), Some(0));

    let changelog = read_all(&bootstrap, &[&names.changelog], Duration::from_secs(2));
    let of_contact: Vec<_> =
        changelog.iter().filter(|(_, key, ..)| key.as_deref() == Some(ERASED.as_bytes())).collect();
    assert!(of_contact.len() > 1, "the contact had changelog records before its erase");
    let last = of_contact.last().unwrap_or_else(|| panic!("no changelog record"));
    assert_eq!(last.2, None, "the last changelog record of the contact is a tombstone");
    let tombstone_at =
        changelog.iter().rposition(|(_, key, ..)| key.as_deref() == Some(ERASED.as_bytes())).unwrap_or(0);
    for (_, key, value, _) in &changelog[tombstone_at + 1..] {
        for bytes in [key, value].into_iter().flatten() {
            assert!(!contains(bytes, ERASED.as_bytes()), "a changelog record after the tombstone mentions the contact");
        }
    }

    let store = RocksStore::open(&state, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    store.compact().unwrap_or_else(|err| panic!("{err}"));
    store.flush().unwrap_or_else(|err| panic!("{err}"));
    drop(store);
    // Reopening rewrites the MANIFEST, which still lists the boundary keys of the files compacted away.
    drop(RocksStore::open(&state, &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}")));
    // Every key and value of every column family, read raw.
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &state, leadscore::store::ALL_CFS, false)
        .unwrap_or_else(|err| panic!("{err}"));
    let mut scanned = 0;
    let mut others = 0;
    for cf_name in leadscore::store::ALL_CFS {
        let cf = db.cf_handle(cf_name).unwrap_or_else(|| panic!("no column family {cf_name}"));
        for entry in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) = entry.unwrap_or_else(|err| panic!("{err}"));
            assert!(!contains(&key, ERASED.as_bytes()), "column family {cf_name} still has a key of the contact");
            assert!(!contains(&value, ERASED.as_bytes()), "column family {cf_name} still has a value naming it");
            others += usize::from(contains(&key, b"contact-0000001"));
            scanned += 1;
        }
    }
    assert!(others > 0, "the scan sees the other contacts");
    drop(db);
    // Nor in any file of the directory: SST files, logs, the MANIFEST (rewritten by the reopening above).
    let hex: String = ERASED.bytes().map(|byte| format!("{byte:02x}")).collect();
    for needle in [ERASED.to_owned(), hex.clone(), hex.to_uppercase()] {
        let files = files_containing(&state, needle.as_bytes());
        assert!(files.is_empty(), "{needle} is still in {files:?}");
    }
    let lines: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    compare_states(&model(&rules(), PARTITIONS, &lines), &stored_states(&rules(), &state));
    eprintln!(
        "erase: {scanned} RocksDB entries scanned, {} changelog records, none names the erased contact",
        changelog.len()
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.unwrap_or_else(|err| panic!("{err}")).path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if contains(&std::fs::read(&path).unwrap_or_default(), needle) {
            found.push(path);
        }
    }
    found
}
