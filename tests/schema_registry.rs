//! Confluent Schema Registry framing against a real registry (Apicurio Registry, started by
//! `scripts/registry.sh`): framed protobuf events whose schema id names `leadscore.v1.Event` are scored,
//! the others are dead-lettered with the reason, and while the registry is down nothing is dead-lettered
//! or committed: the records wait and are scored once it is back.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use leadscore::config::Config;
use leadscore::event::framing::frame;
use leadscore::event::{Event, protobuf};
use leadscore::hashing::partition_for_key;

const PARTITIONS: u32 = 4;

/// A registry of `scripts/registry.sh` in a temporary directory, stopped when dropped.
struct Registry {
    dir: tempfile::TempDir,
    url: String,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let url = registry_script("start", dir.path());
        Registry { dir, url }
    }

    fn stop(&self) {
        registry_script("stop", self.dir.path());
    }

    fn start_again(&self) {
        assert_eq!(registry_script("start", self.dir.path()), self.url, "a restart keeps the port");
    }

    /// Registers a schema under `subject`; returns its id.
    fn register(&self, subject: &str, kind: &str, schema: &str) -> u32 {
        let body = serde_json::json!({"schemaType": kind, "schema": schema}).to_string();
        let mut response = ureq::post(&format!("{}/subjects/{subject}/versions", self.url))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send(body.as_bytes())
            .unwrap_or_else(|err| panic!("{err}"));
        let text = response.body_mut().read_to_string().unwrap_or_else(|err| panic!("{err}"));
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
        answer["id"].as_u64().unwrap_or_else(|| panic!("no id in {text}")) as u32
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(manifest("scripts/registry.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

fn registry_script(command: &str, dir: &Path) -> String {
    let output = Command::new(manifest("scripts/registry.sh"))
        .arg(command)
        .arg(dir)
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(output.status.success(), "registry.sh {command}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn placed(events: &[(Event, Vec<u8>)]) -> Vec<PlacedRecord> {
    events
        .iter()
        .map(|(event, payload)| {
            let key = event.contact.as_bytes().to_vec();
            (partition_for_key(&key, PARTITIONS) as i32, Some(key), Some(payload.clone()))
        })
        .collect()
}

fn counts(records: &[PlacedRecord]) -> BTreeMap<i32, i64> {
    let mut counts = BTreeMap::new();
    for (partition, _, _) in records {
        *counts.entry(*partition).or_insert(0) += 1;
    }
    counts
}

fn dead_letters(bootstrap: &str, dlq: &str) -> Vec<String> {
    read_all(bootstrap, &[dlq], Duration::from_secs(2))
        .into_iter()
        .map(|(_, _, _, headers)| {
            let reason = headers.iter().find(|(name, _)| name == "leadscore.error").map(|(_, value)| value.clone());
            String::from_utf8_lossy(&reason.unwrap_or_default()).into_owned()
        })
        .collect()
}

#[test]
fn framed_protobuf_events_are_checked_against_a_schema_registry() {
    let registry = Registry::start();
    let proto =
        std::fs::read_to_string(manifest("proto/leadscore/v1/event.proto")).unwrap_or_else(|err| panic!("{err}"));
    let event_schema = registry.register("leadscore.events-value", "PROTOBUF", &proto);
    let other_schema = registry.register(
        "shop.clicks-value",
        "PROTOBUF",
        "syntax = \"proto3\";\npackage shop.v1;\nmessage Click { string id = 1; }\n",
    );
    // The same messages again, as a new version of the schema: an id the processor has not seen yet.
    let later_schema = registry.register("leadscore.events-value", "PROTOBUF", &format!("{proto}\n// version 2\n"));
    assert_ne!(event_schema, later_schema);

    let (_cluster, bootstrap, names) = mock_broker("registry", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let mut toml = names.config_toml(&bootstrap, &state, PARTITIONS);
    toml.push_str(&format!("\n[input]\nformat = \"protobuf\"\nschema_registry = \"{}\"\n", registry.url));
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));

    let events = stream(21, 4_000, 400);
    let (first, second) = events.split_at(3_000);
    let mut valid = Vec::new();
    let mut framed = Vec::new();
    let mut expected_reasons = BTreeMap::new();
    for (index, event) in first.iter().enumerate() {
        let body = protobuf::encode(event);
        let (payload, reason) = match index % 10 {
            3 => (frame(999_999, &[0], &body), Some("schema id 999999 is not in the schema registry".to_owned())),
            5 => (
                frame(other_schema, &[0], &body),
                Some(format!("schema id {other_schema} names message shop.v1.Click")),
            ),
            7 => (
                frame(event_schema, &[1], &body),
                Some(format!("schema id {event_schema} names message leadscore.v1.AttrValue")),
            ),
            // Unframed records are read as they are: there is no id to check.
            0 => (body, None),
            _ => (frame(event_schema, &[0], &body), None),
        };
        match reason {
            Some(reason) => *expected_reasons.entry(reason).or_insert(0) += 1,
            None => valid.push(event.clone()),
        }
        framed.push((event.clone(), payload));
    }
    let first_records = placed(&framed);
    let second_records = placed(
        &second
            .iter()
            .map(|event| (event.clone(), frame(later_schema, &[0], &protobuf::encode(event))))
            .collect::<Vec<_>>(),
    );
    valid.extend(second.iter().cloned());
    let model = model_of_events(&rules(), PARTITIONS, &valid);

    let instance = InProcess::start(&config, PARTITIONS);
    produce_placed(&bootstrap, &names.input, &first_records);
    let first_counts = counts(&first_records);
    wait_committed(&bootstrap, &names.group, &names.input, &first_counts, Duration::from_secs(120));
    let dead = dead_letters(&bootstrap, &names.dlq);
    assert_eq!(dead.len(), expected_reasons.values().sum::<usize>(), "{dead:?}");
    for (reason, count) in &expected_reasons {
        assert_eq!(dead.iter().filter(|dead| dead.contains(reason.as_str())).count(), *count, "{reason}");
    }

    // With the registry down, records under an id not seen yet wait: nothing is dead-lettered or committed.
    registry.stop();
    produce_placed(&bootstrap, &names.input, &second_records);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(committed_offsets(&bootstrap, &names.group, &names.input, PARTITIONS), first_counts);
    assert_eq!(dead_letters(&bootstrap, &names.dlq).len(), dead.len());
    registry.start_again();
    let mut all = first_counts.clone();
    for (partition, count) in counts(&second_records) {
        *all.entry(partition).or_insert(0) += count;
    }
    wait_committed(&bootstrap, &names.group, &names.input, &all, Duration::from_secs(120));
    instance.stop();

    let published = read_all(&bootstrap, &names.outputs(), Duration::from_secs(3));
    compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules(), &state));
    assert_eq!(dead_letters(&bootstrap, &names.dlq).len(), dead.len());
}
