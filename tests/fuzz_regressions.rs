//! Every input a fuzz target once failed on (`fuzz/regressions/<target>/`), replayed through the same
//! checks the targets run (`fuzz/src/lib.rs`), so a fixed crash stays fixed without cargo-fuzz. The
//! fuzzers' seed inputs (the example events, rules and states) run too.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.unwrap_or_else(|err| panic!("{err}")).path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.')) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        check(&bytes);
        count += 1;
    }
    count
}

#[test]
fn json_event_regressions() {
    replay("event_json", checks::check_json_event);
    for line in include_str!("../examples/events.jsonl").lines() {
        checks::check_json_event(line.as_bytes());
    }
}

#[test]
fn protobuf_event_regressions() {
    replay("event_protobuf", checks::check_protobuf_event);
}

#[test]
fn rules_file_regressions() {
    replay("rules_file", checks::check_rules_file);
    checks::check_rules_file(include_bytes!("../examples/rules.toml"));
}

#[test]
fn contact_state_regressions() {
    replay("contact_state", checks::check_contact_state);
}

/// Seeds for `cargo fuzz run`: the example events as JSON and protobuf, the example rules, and the
/// stored records of the example contacts after scoring them.
#[test]
#[ignore = "writes the fuzzers' seed corpora into fuzz/corpus/"]
fn write_seed_corpora() {
    use leadscore::event::{DecodeLimits, json, protobuf};
    use leadscore::offline::OfflineScorer;
    use leadscore::runtime::record::StoredContact;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: String, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{err}"));
        std::fs::write(dir.join(name), bytes).unwrap_or_else(|err| panic!("{err}"));
    };
    let rules = checks::example_rules();
    let mut scorer = OfflineScorer::new(rules, 1);
    for (index, line) in include_str!("../examples/events.jsonl").lines().enumerate() {
        write("event_json", format!("example-{index:03}"), line.as_bytes());
        if let Ok(event) = json::decode(line.as_bytes(), &DecodeLimits::default()) {
            write("event_protobuf", format!("example-{index:03}"), &protobuf::encode(&event));
        }
        let _ = scorer.score_line(line.as_bytes());
    }
    write("rules_file", "example".into(), include_bytes!("../examples/rules.toml"));
    for (index, state) in scorer.store().contacts().values().enumerate() {
        let mut stored = StoredContact::fresh(Some(state.clone()));
        write("contact_state", format!("bare-{index:03}"), &stored.encode(rules));
        stored.mark_applied(7, 42);
        write("contact_state", format!("bookkept-{index:03}"), &stored.encode(rules));
    }
    write("contact_state", "erased".into(), &StoredContact::fresh(None).encode(rules));
}
