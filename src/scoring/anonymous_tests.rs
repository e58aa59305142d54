//! Anonymous visitors: told apart by their own id in the rules' attribute, known for good after one
//! event that is not, and removed once idle for `expire_after`, on their timer or before a later event.

use std::path::Path;

use super::*;
use crate::event::AttrValue;
use crate::offline::MemoryStore;
use crate::stream::{PartitionStream, TimerClock};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z

const RULES: &str = r#"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "10d"
[[phases]]
name = "visitor"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 30
[[thresholds]]
name = "warm"
target = "engagement"
at = 25
hysteresis = 15
[anonymous]
attribute = "anonymous_id"
expire_after = "30d"
"#;

fn rules() -> Rules {
    Rules::parse(RULES, Path::new("anonymous.toml")).unwrap_or_else(|err| panic!("{err}"))
}

/// A visit by `contact`; `anonymous_id` is the attribute's value, if any.
fn visit(id: &str, contact: &str, anonymous_id: Option<&str>, ts_ms: i64) -> Event {
    Event {
        id: id.into(),
        contact: contact.into(),
        kind: "page_visit".into(),
        ts_ms,
        item: None,
        attrs: anonymous_id.map(|anon| ("anonymous_id".to_owned(), AttrValue::Text(anon.into()))).into_iter().collect(),
        adjustment: None,
        phase: None,
    }
}

fn erased_causes(outputs: &[Output]) -> Vec<(String, &'static str, i64)> {
    outputs
        .iter()
        .filter_map(|output| match &output.body {
            OutputBody::ContactErased(erased) => Some((output.id.clone(), erased.cause, output.ts_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_anonymous_visitor_is_removed_on_its_timer_after_its_thresholds_fall() {
    let rules = rules();
    let mut partition = PartitionStream::new(TimerClock::StreamTime);
    let mut store = MemoryStore::default();
    partition.process(&rules, &mut store, &visit("v-1", "cookie-1", Some("cookie-1"), T0));
    partition.process(&rules, &mut store, &visit("k-1", "known-1", Some("cookie-9"), T0));
    let anonymous = store.contacts().get("cookie-1").cloned().unwrap_or_else(|| panic!("no state"));
    assert!(anonymous.anonymous);
    // `warm` falls from 30 to 10 after ln(3) half-lives, before the expiry.
    let fall = fall_time(&rules, &anonymous, rules.thresholds[0].target, 10.0, T0).unwrap_or_else(|| panic!("no fall"));
    assert_eq!(anonymous.next_timer_ms, Some(fall));

    let later = partition.process(&rules, &mut store, &visit("k-2", "known-1", None, T0 + 31 * DAY));
    let expiry = T0 + 30 * DAY;
    assert_eq!(erased_causes(&later.outputs), [(format!("cookie-1:idle:{expiry}"), "idle", expiry)]);
    let fell = later.outputs.iter().position(|output| {
        output.contact == "cookie-1"
            && matches!(&output.body, OutputBody::ThresholdCrossed(crossed) if crossed.direction == Direction::Down)
    });
    assert!(fell.is_some(), "the fall before the expiry is published");
    assert!(!store.contacts().contains_key("cookie-1"), "removed");
    assert!(store.contacts().contains_key("known-1"), "a known contact never expires");
}

#[test]
fn one_event_under_another_id_makes_a_visitor_known_for_good() {
    let rules = rules();
    let mut state = apply(&rules, None, &visit("v-1", "cookie-1", Some("cookie-1"), T0)).state;
    assert_eq!(state.as_ref().map(|state| state.anonymous), Some(true));
    // The attribute is missing: the event is not an anonymous visitor's.
    state = apply(&rules, state, &visit("v-2", "cookie-1", None, T0 + DAY)).state;
    let known = state.unwrap_or_else(|| panic!("no state"));
    assert!(!known.anonymous);
    assert_eq!(idle_expiry(&rules, &known), None);
    let again = apply(&rules, Some(known), &visit("v-3", "cookie-1", Some("cookie-1"), T0 + 2 * DAY)).state;
    assert_eq!(again.map(|state| state.anonymous), Some(false));
    // Without `[anonymous]` no contact is anonymous.
    let plain = Rules::parse(&RULES[..RULES.find("[anonymous]").unwrap_or(RULES.len())], Path::new("plain.toml"))
        .unwrap_or_else(|err| panic!("{err}"));
    let visitor = apply(&plain, None, &visit("v-1", "cookie-1", Some("cookie-1"), T0)).state;
    assert_eq!(visitor.map(|state| state.anonymous), Some(false));
}

#[test]
fn an_event_after_the_expiry_finds_the_visitor_gone_and_starts_anew() {
    let rules = rules();
    let first = apply(&rules, None, &visit("v-1", "cookie-1", Some("cookie-1"), T0)).state;
    // No timer fired (a wall-clock instance between two ticks): the event itself finds it expired.
    let late = apply(&rules, first, &visit("v-2", "cookie-1", Some("cookie-1"), T0 + 40 * DAY));
    let expiry = T0 + 30 * DAY;
    assert_eq!(erased_causes(&late.outputs), [(format!("cookie-1:idle:{expiry}"), "idle", expiry)]);
    assert_eq!(late.outputs.first().map(|output| output.body.kind()), Some("threshold_crossed"), "the fall first");
    let changed = late.outputs.iter().find_map(|output| match &output.body {
        OutputBody::ScoreChanged(change) => Some((change.old_total, change.new_total)),
        _ => None,
    });
    assert_eq!(changed, Some((0.0, 30.0)), "scored on a new contact");
    let state = late.state.unwrap_or_else(|| panic!("no state"));
    assert!(state.anonymous);
    assert_eq!(state.history.len(), 1);
    // The same id once more: the new contact remembers it.
    let duplicate = apply(&rules, Some(state), &visit("v-2", "cookie-1", Some("cookie-1"), T0 + 40 * DAY));
    assert_eq!(duplicate.outcome, Outcome::Duplicate);
}

#[test]
fn a_merge_makes_the_survivor_known_and_its_erasure_names_every_alias() {
    let rules = rules();
    let state = |events: &[Event]| {
        let mut state = None;
        for event in events {
            state = apply(&rules, state, event).state;
        }
        state.unwrap_or_else(|| panic!("no state"))
    };
    let inner = state(&[visit("i-1", "cookie-2", Some("cookie-2"), T0)]);
    let merged_event = |id: &str, survivor: &str, merged: &str| Event {
        kind: "merge".into(),
        attrs: vec![("merged".into(), AttrValue::Text(merged.into()))],
        ..visit(id, survivor, None, T0 + DAY)
    };
    let middle = merge(
        &rules,
        Some(state(&[visit("c-1", "cookie-1", Some("cookie-1"), T0)])),
        inner,
        &merged_event("m-1", "cookie-1", "cookie-2"),
    );
    let middle = middle.state.unwrap_or_else(|| panic!("no state"));
    assert_eq!(middle.merged_ids, ["cookie-2"]);
    assert!(!middle.anonymous, "a contact others merge into is known");
    let survivor = merge(&rules, None, middle, &merged_event("m-2", "known-1", "cookie-1")).state;
    let survivor = survivor.unwrap_or_else(|| panic!("no state"));
    assert_eq!(survivor.merged_ids, ["cookie-1", "cookie-2"]);

    let erase = Event { kind: crate::event::ERASE.into(), ..visit("x-1", "known-1", None, T0 + 2 * DAY) };
    let erased = apply(&rules, Some(survivor), &erase);
    assert_eq!(erased.state, None);
    let aliases = erased.outputs.iter().find_map(|output| match &output.body {
        OutputBody::ContactErased(erased) => Some((erased.cause, erased.aliases.clone())),
        _ => None,
    });
    assert_eq!(aliases, Some(("erase", vec!["cookie-1".to_owned(), "cookie-2".to_owned()])));
}

#[test]
fn the_anonymous_table_is_checked_with_line_and_column() {
    for (table, message) in [
        ("[anonymous]\nattribute = \" \"\nexpire_after = \"30d\"\n", "name the attribute"),
        ("[anonymous]\nattribute = \"anonymous_id\"\nexpire_after = \"soon\"\n", "expire_after"),
        ("[anonymous]\nattribute = \"anonymous_id\"\n", "expire_after"),
    ] {
        let text = RULES[..RULES.find("[anonymous]").unwrap_or(RULES.len())].to_owned() + table;
        let err = Rules::parse(&text, Path::new("anonymous.toml")).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("anonymous.toml:") && err.contains(message), "{err}");
    }
}
