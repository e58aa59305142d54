//! What the fuzz targets check once an input decodes: the decoded value survives its own encoding,
//! and the engine scores it without panicking. The same checks run in the main test suite over the
//! saved crash inputs (`tests/fuzz_regressions.rs` includes this file).

use std::path::Path;
use std::sync::OnceLock;

use leadscore::event::{DecodeLimits, Event, json, protobuf};
use leadscore::rules::Rules;
use leadscore::runtime::record::StoredContact;
use leadscore::scoring;

/// The example scorecard, which exercises every decay law, thresholds, phases and grades.
pub fn example_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let source = include_str!("../../examples/rules.toml");
        match Rules::parse(source, Path::new("examples/rules.toml")) {
            Ok(rules) => rules,
            Err(err) => unreachable!("the example rules are valid: {err}"),
        }
    })
}

/// Scores a decoded event from no state, then once more on the state it produced, and fires its timer.
fn score(rules: &Rules, event: &Event) {
    let applied = scoring::apply(rules, None, event);
    if let Some(state) = applied.state {
        let again = scoring::apply(rules, Some(state), event);
        if let Some(state) = again.state
            && let Some(due) = state.next_timer_ms
        {
            let _ = scoring::on_timer(rules, state, due);
        }
    }
}

/// A JSON payload: decoding never panics; a decoded event re-encodes to one that decodes, and scores.
pub fn check_json_event(data: &[u8]) {
    let limits = DecodeLimits::default();
    if let Ok(event) = json::decode(data, &limits) {
        let again = json::decode(&json::encode(&event), &limits);
        assert!(again.is_ok(), "a decoded event must survive its own encoding: {again:?}");
        score(example_rules(), &event);
    }
}

/// A protobuf payload: decoding never panics; a decoded event round-trips exactly, and scores.
pub fn check_protobuf_event(data: &[u8]) {
    let limits = DecodeLimits::default();
    if let Ok(event) = protobuf::decode(data, &limits) {
        assert_eq!(protobuf::decode(&protobuf::encode(&event), &limits).as_ref(), Ok(&event));
        score(example_rules(), &event);
    }
}

/// A rules file: parsing and validation never panic (an error renders with its location); valid rules
/// score the example events.
pub fn check_rules_file(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Rules::parse(source, Path::new("fuzz.toml")) {
        Ok(rules) => {
            for line in include_str!("../../examples/events.jsonl").lines().take(64) {
                if let Ok(event) = json::decode(line.as_bytes(), &DecodeLimits::default()) {
                    score(&rules, &event);
                }
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

/// A changelog or RocksDB value: decoding never panics; a decoded record's encoding is stable (decoding
/// and encoding it again gives the same bytes), and the engine goes on from the decoded state.
///
/// Stable bytes, not equal states: the encoding leaves out groups at 0 without contributions, whose
/// `since` time means nothing, so a crafted record with such a group decodes to a state that differs
/// from its re-decoded self only there (the first crash this target found).
pub fn check_contact_state(data: &[u8]) {
    let rules = example_rules();
    let Ok(stored) = StoredContact::decode(rules, "contact-fuzz", data) else {
        return;
    };
    let encoded = stored.encode(rules);
    let again = StoredContact::decode(rules, "contact-fuzz", &encoded);
    assert_eq!(again.map(|record| record.encode(rules)), Ok(encoded));
    if let Some(state) = stored.state {
        let event = Event {
            id: "fuzz-event".into(),
            contact: "contact-fuzz".into(),
            kind: "form_submit".into(),
            ts_ms: 1_772_366_400_000,
            item: Some("demo-request".into()),
            attrs: Vec::new(),
            adjustment: None,
            phase: None,
        };
        if let Some(due) = state.next_timer_ms {
            let _ = scoring::on_timer(rules, state.clone(), due);
        }
        let _ = scoring::apply(rules, Some(state), &event);
    }
}
