//! `leadscore inspect`: after `leadscore run` has scored a stream on the mock cluster and stopped, it
//! prints a contact as the API would, equal to the offline model's view at the same time; it exits 1 for
//! an unknown contact, and refuses, naming the API, while an instance holds the directory.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use leadscore::event::parse_rfc3339;
use leadscore::scoring::{ContactView, codec};

const PARTITIONS: u32 = 3;
const AT: &str = "2026-04-01T00:00:00Z";

fn inspect(config: &Path, contact: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["inspect", "--at", AT, "--config"])
        .arg(config)
        .arg(contact)
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore: {err}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn inspect_prints_a_contact_of_a_stopped_instance_as_the_model_sees_it() {
    let (_cluster, bootstrap, names) = mock_broker("inspect", PARTITIONS);
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let state = dir.path().join("state");
    let config = dir.path().join("leadscore.toml");
    std::fs::write(&config, names.config_toml(&bootstrap, &state, PARTITIONS)).unwrap_or_else(|err| panic!("{err}"));
    let rules = rules();
    let events = stream(5, 2_000, 50);
    // The first contact merges the second in, after everything else.
    let (survivor, merged) = (
        events[0].contact.clone(),
        events.iter().map(|e| &e.contact).find(|c| **c != events[0].contact).cloned().unwrap_or_default(),
    );
    let merge = leadscore::event::Event {
        id: "merge-1".into(),
        kind: "merge".into(),
        ts_ms: events.iter().map(|event| event.ts_ms).max().unwrap_or_default() + 60_000,
        attrs: vec![("merged".into(), leadscore::event::AttrValue::Text(merged.clone()))],
        ..events[0].clone()
    };
    let model = model_of_events(&rules, PARTITIONS, &[events.clone(), vec![merge.clone()]].concat());
    let expected = produce(&bootstrap, &names.input, PARTITIONS, &events);

    let mut run = spawn_run(&config, &dir.path().join("run.log"));
    wait_committed(&bootstrap, &names.group, &names.input, &expected, Duration::from_secs(120));
    common::merges::score_phase(&bootstrap, &names, &[merge], PARTITIONS);
    let (code, _, stderr) = inspect(&config, &events[0].contact);
    assert_eq!(code, Some(1), "refused while the instance runs: {stderr}");
    assert!(stderr.contains("in use by a running instance") && stderr.contains("/v1/contacts/"), "{stderr}");
    assert_eq!(run.terminate(Duration::from_secs(30)), Some(0));

    let at_ms = parse_rfc3339(AT).unwrap_or_else(|err| panic!("{err}"));
    for (contact, bytes) in model.states.iter().take(10) {
        let (code, stdout, stderr) = inspect(&config, contact);
        assert_eq!(code, Some(0), "{contact}: {stderr}");
        let mut printed: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}"));
        let partition = printed.as_object_mut().and_then(|object| object.remove("partition"));
        let home = leadscore::hashing::partition_for_key(contact.as_bytes(), PARTITIONS);
        assert_eq!(partition, Some(serde_json::json!(home)), "{contact} is in its key's partition");
        let state = codec::decode(&rules, contact, bytes).unwrap_or_else(|err| panic!("{err}"));
        // Through text both ways, so that both sides meet serde_json's float parsing alike.
        let view =
            serde_json::to_string(&ContactView::new(&rules, &state, at_ms)).unwrap_or_else(|err| panic!("{err}"));
        let view: serde_json::Value = serde_json::from_str(&view).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(printed, view, "{contact}");
    }
    // A merged contact is shown where it was merged into.
    let (code, stdout, stderr) = inspect(&config, &merged);
    assert_eq!(code, Some(0), "{merged}: {stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(printed["via"], serde_json::json!([merged]));
    assert_eq!(printed["contact"], serde_json::json!(survivor));

    let (code, _, stderr) = inspect(&config, "contact-nobody");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("contact-nobody is not in"), "{stderr}");
}
