//! The contact record's format 3: recent ids stored as the history events they came from, and group
//! values left out where the contributions sum to them; format 2 records still read.

use prost::Message;

use super::codec::{self, CodecError};
use super::state::{ContactState, Contribution, GroupScore, HistoryEntry};
use super::tests::{example_rules, scored_examples};
use crate::hashing::id_fingerprint;
use crate::proto::v1;
use crate::rules::Rules;

fn message_of(bytes: &[u8]) -> v1::ContactState {
    v1::ContactState::decode(bytes).unwrap_or_else(|err| panic!("{err}"))
}

fn decoded(rules: &Rules, bytes: &[u8]) -> ContactState {
    codec::decode(rules, "c", bytes).unwrap_or_else(|err| panic!("{err}"))
}

fn entry(event_id: &str, ts_ms: i64) -> HistoryEntry {
    HistoryEntry {
        source: 1,
        event_id: event_id.into(),
        ts_ms,
        delta: 2.0,
        value_after: 2.0,
        group: 7,
        reason: None,
        actor: None,
    }
}

/// A contact whose history holds the events `e1` to `e3`, each at its own time.
fn with_history(rules: &Rules) -> ContactState {
    let mut state = ContactState::new(rules, "c", 100);
    state.history = ["e1", "e2", "e3"].iter().zip(10..).map(|(id, ts)| entry(id, ts)).collect();
    state
}

/// The same record as format 2 wrote it: every recent id as its hash, every group value as a number.
fn as_format_2(state: &ContactState, bytes: &[u8]) -> Vec<u8> {
    let mut message = message_of(bytes);
    message.format = 2;
    message.recent_ids = state.recent_ids.iter().copied().collect();
    message.recent_id_events.clear();
    for (stored, score) in message.groups.iter_mut().zip(state.groups.iter().filter(|score| !score.is_empty())) {
        let whole = codec::whole(score.value);
        (stored.value, stored.whole_value, stored.zero) =
            (if whole.is_some() { 0.0 } else { score.value }, whole.unwrap_or(0), false);
    }
    message.encode_to_vec()
}

#[test]
fn recent_ids_of_history_events_are_stored_as_their_place_in_the_history() {
    let rules = example_rules();
    let mut state = with_history(&rules);
    let other = id_fingerprint("not in the history");
    state.recent_ids = [id_fingerprint("e1"), id_fingerprint("e2"), other, id_fingerprint("e3")].into_iter().collect();
    let bytes = codec::encode(&rules, &state);
    let message = message_of(&bytes);
    assert_eq!(message.recent_ids, vec![other]);
    assert_eq!(message.recent_id_events, vec![1, 2, 0, 3]);
    assert_eq!(decoded(&rules, &bytes), state);
    let format_2 = as_format_2(&state, &bytes);
    assert_eq!(decoded(&rules, &format_2), state);
    assert_eq!(format_2.len() - bytes.len(), 3 * 8 - 7, "three hashes for a field of four places");
}

#[test]
fn recent_ids_stay_hashes_where_places_would_take_more_bytes() {
    let rules = example_rules();
    let mut state = with_history(&rules);
    state.recent_ids = (0..20).map(|n| id_fingerprint(&format!("elsewhere-{n}"))).collect();
    state.recent_ids.push_back(id_fingerprint("e2"));
    let bytes = codec::encode(&rules, &state);
    let message = message_of(&bytes);
    assert!(message.recent_id_events.is_empty());
    assert_eq!(message.recent_ids.len(), 21);
    assert_eq!(decoded(&rules, &bytes), state);
}

#[test]
fn recent_ids_that_name_what_the_record_does_not_hold_are_refused() {
    let rules = example_rules();
    let mut state = with_history(&rules);
    state.recent_ids = [id_fingerprint("e1"), id_fingerprint("e2"), 9].into_iter().collect();
    let message = message_of(&codec::encode(&rules, &state));
    let broken = |change: &dyn Fn(&mut v1::ContactState)| {
        let mut message = message.clone();
        change(&mut message);
        codec::decode(&rules, "c", &message.encode_to_vec())
    };
    let corrupt = |reason: &str| Err(CodecError::Corrupt(format!("recent ids: {reason}")));
    assert_eq!(broken(&|m| m.recent_id_events[0] = 4), corrupt("names a history event it does not hold"));
    assert_eq!(broken(&|m| m.recent_id_events.push(0)), corrupt("names more stored hashes than it holds"));
    assert_eq!(broken(&|m| m.recent_ids.push(5)), corrupt("a stored hash is left over"));
    assert_eq!(broken(&|_| {}).map(|state| state.recent_ids.len()), Ok(3));
}

#[test]
fn a_group_value_is_stored_only_where_its_contributions_do_not_sum_to_it() {
    let rules = example_rules();
    let contributions = |points: &[f64]| {
        points.iter().zip(1..).map(|(&points, source)| Contribution { source, points, expires_at_ms: None }).collect()
    };
    let mut state = ContactState::new(&rules, "c", 100);
    // Summed in order, 0.1 + 0.2 is 0.30000000000000004: a value of 0.3 is not their sum.
    state.groups[0] = GroupScore { value: 0.1 + 0.2, since_ms: 90, contributions: contributions(&[0.1, 0.2]) };
    state.groups[1] = GroupScore { value: 0.3, since_ms: 90, contributions: contributions(&[0.1, 0.2]) };
    state.groups[2] = GroupScore { value: 0.0, since_ms: 90, contributions: contributions(&[4.0, 1.5]) };
    state.groups[3] = GroupScore { value: 7.0, since_ms: 90, contributions: Vec::new() };
    let bytes = codec::encode(&rules, &state);
    let stored: Vec<(f64, i64, bool)> =
        message_of(&bytes).groups.iter().map(|group| (group.value, group.whole_value, group.zero)).collect();
    assert_eq!(stored, vec![(0.0, 0, false), (0.3, 0, false), (0.0, 0, true), (0.0, 7, false)]);
    let read = decoded(&rules, &bytes);
    assert_eq!(read, state);
    assert_eq!(read.groups[0].value.to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(decoded(&rules, &as_format_2(&state, &bytes)), state);
}

#[test]
fn a_format_2_record_reads_a_value_left_out_as_0() {
    let rules = example_rules();
    let mut state = ContactState::new(&rules, "c", 100);
    state.groups[0] = GroupScore {
        value: 0.0,
        since_ms: 100,
        contributions: vec![Contribution { source: 1, points: 3.0, expires_at_ms: None }],
    };
    let mut message = message_of(&codec::encode(&rules, &state));
    assert!(message.groups[0].zero);
    message.groups[0].zero = false;
    assert_eq!(decoded(&rules, &message.encode_to_vec()).groups[0].value, 3.0, "format 3 sums what is left out");
    message.format = 2;
    assert_eq!(decoded(&rules, &message.encode_to_vec()), state, "format 2 left out only 0");
}

/// Every contact of the example events reads back the same from format 3 as from format 2, in no more
/// bytes.
#[test]
fn format_3_takes_no_more_bytes_than_format_2_and_reads_the_same() {
    let rules = example_rules();
    let scorer = scored_examples(&rules);
    let (mut third, mut second) = (0, 0);
    for state in scorer.store().contacts().values() {
        let bytes = codec::encode(&rules, state);
        let format_2 = as_format_2(state, &bytes);
        assert_eq!(decoded(&rules, &bytes), decoded(&rules, &format_2));
        assert!(bytes.len() <= format_2.len(), "{} against {}", bytes.len(), format_2.len());
        (third, second) = (third + bytes.len(), second + format_2.len());
    }
    assert!(third < second, "{third} bytes against {second}");
}
