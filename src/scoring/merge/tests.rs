//! Merges against the same events scored on one contact, and the merge's own outputs.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::rules::Rules;
use crate::scoring::{Direction, OutputBody, apply};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z

const RULES: &str = r#"
name = "merge"
[settings]
history = 6
dedup_window = 8

[[groups]]
name = "engagement"
max = 100000
decay = "exponential"
half_life = "10d"

[[groups]]
name = "fit"
max = 100000

[[groups]]
name = "intent"
max = 100000
decay = "step"
expire_after = "7d"

[[phases]]
name = "lead"
[[phases]]
name = "mql"

[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 10

[[rules]]
id = "webinar"
on = "webinar"
group = "engagement"
points = 25
max_times = 1

[[rules]]
id = "size"
on = "profile_update"
group = "fit"
points = 20
max_times = 1

[[rules]]
id = "cart"
on = "add_to_cart"
group = "intent"
points = 15
max_times = 2

[[rules]]
id = "pricing"
on = "pricing"
group = "intent"
points = 5

[[rules]]
id = "competitor"
on = "competitor"
disqualify = "works for a competitor"

[[thresholds]]
name = "warm"
target = "total"
at = 40
"#;

const KINDS: [&str; 6] = ["page_visit", "webinar", "profile_update", "add_to_cart", "pricing", "page_visit"];

fn rules() -> Rules {
    Rules::parse(RULES, Path::new("merge.toml")).unwrap_or_else(|err| panic!("{err}"))
}

fn event(id: &str, contact: &str, kind: &str, ts_ms: i64) -> Event {
    Event {
        id: id.into(),
        contact: contact.into(),
        kind: kind.into(),
        ts_ms,
        item: None,
        attrs: Vec::new(),
        adjustment: None,
        phase: None,
    }
}

fn scored(rules: &Rules, mut state: Option<ContactState>, events: &[Event]) -> Option<ContactState> {
    for event in events {
        state = apply(rules, state, event).state;
    }
    state
}

fn merged_into(rules: &Rules, survivor: Option<ContactState>, merged: ContactState, ts_ms: i64) -> Applied {
    merge(rules, survivor, merged, &event("merge-1", "known", "merge", ts_ms))
}

fn values(rules: &Rules, state: &ContactState, at_ms: i64) -> Vec<f64> {
    (0..rules.groups.len()).map(|group| state.group_value(rules, group, at_ms)).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn decayed_groups_add_as_if_one_contact_had_every_event() {
    let rules = rules();
    let anonymous = [event("a1", "anon", "page_visit", T0), event("a2", "anon", "page_visit", T0 + 2 * DAY)];
    let known = [event("k1", "known", "page_visit", T0 + DAY), event("k2", "known", "add_to_cart", T0 + 3 * DAY)];
    let applied = merged_into(
        &rules,
        scored(&rules, None, &known),
        scored(&rules, None, &anonymous).unwrap_or_else(|| panic!("no state")),
        T0 + 4 * DAY,
    );
    let state = applied.state.unwrap_or_else(|| panic!("no state"));

    let mut together: Vec<Event> = anonymous.iter().chain(&known).cloned().collect();
    together.sort_by_key(|event| event.ts_ms);
    together.iter_mut().for_each(|event| event.contact = "known".into());
    let one = scored(&rules, None, &together).unwrap_or_else(|| panic!("no state"));
    let at = T0 + 4 * DAY;
    for (merged, single) in values(&rules, &state, at).into_iter().zip(values(&rules, &one, at)) {
        assert!(close(merged, single), "{merged} vs {single}");
    }
    assert_eq!(state.contact, "known");
    assert_eq!(state.clock_ms, at);
    // The merged contact's events are now the survivor's: seen again, they are duplicates.
    let again = apply(&rules, Some(state), &event("a2", "known", "page_visit", at));
    assert_eq!(again.outcome, Outcome::Duplicate);
}

#[test]
fn a_max_times_one_rule_that_fired_on_both_counts_once_with_the_earlier_points() {
    let rules = rules();
    let anonymous = scored(&rules, None, &[event("a1", "anon", "webinar", T0)]);
    let known = scored(&rules, None, &[event("k1", "known", "webinar", T0 + 5 * DAY)]);
    let at = T0 + 6 * DAY;
    let state = merged_into(&rules, known, anonymous.unwrap_or_else(|| panic!("no state")), at)
        .state
        .unwrap_or_else(|| panic!("no state"));
    // 25 points from T0, six days of a ten-day half-life; the later webinar's are taken back.
    let expected = 25.0 * (-6.0f64 / 10.0).exp2();
    assert!(close(state.group_value(&rules, 0, at), expected), "{}", state.group_value(&rules, 0, at));
    let count = state.rule_counts.iter().find(|count| count.rule == rules.rules[1].key);
    assert_eq!(count.map(|count| (count.count, count.window_start_ms)), Some((1, T0)));
    // And it stays at its limit.
    let later = apply(&rules, Some(state), &event("k2", "known", "webinar", at + DAY));
    assert_eq!(later.outcome, Outcome::Ignored);
}

#[test]
fn a_step_group_takes_back_the_latest_firings_of_both() {
    let rules = rules();
    // One contact would count the carts at T0 and T0+1d, and refuse those at T0+2d and T0+3d.
    let anonymous = [event("a1", "anon", "add_to_cart", T0), event("a2", "anon", "add_to_cart", T0 + 2 * DAY)];
    let known = [event("k1", "known", "add_to_cart", T0 + DAY), event("k2", "known", "add_to_cart", T0 + 3 * DAY)];
    let state = merged_into(
        &rules,
        scored(&rules, None, &known),
        scored(&rules, None, &anonymous).unwrap_or_else(|| panic!("no state")),
        T0 + 3 * DAY,
    )
    .state
    .unwrap_or_else(|| panic!("no state"));
    let intent = &state.groups[2];
    let live: Vec<(f64, Option<i64>)> = intent.contributions.iter().map(|c| (c.points, c.expires_at_ms)).collect();
    assert_eq!(live, vec![(15.0, Some(T0 + 7 * DAY)), (15.0, Some(T0 + 8 * DAY))]);
    assert_eq!(state.group_value(&rules, 2, T0 + 7 * DAY), 15.0);
}

#[test]
fn a_threshold_the_merged_state_reaches_fires_for_the_survivor() {
    let rules = rules();
    let anonymous = scored(&rules, None, &[event("a1", "anon", "profile_update", T0)]);
    let known = scored(&rules, None, &[event("k1", "known", "webinar", T0)]);
    let applied = merged_into(&rules, known, anonymous.unwrap_or_else(|| panic!("no state")), T0);
    let kinds: Vec<(&str, &str)> =
        applied.outputs.iter().map(|output| (output.contact.as_str(), output.body.kind())).collect();
    assert_eq!(kinds, vec![("known", "contact_merged"), ("known", "score_changed"), ("known", "threshold_crossed")]);
    let OutputBody::ContactMerged(body) = &applied.outputs[0].body else { panic!("not a merge") };
    assert_eq!((body.merged.as_str(), body.old_total, body.merged_total, body.new_total), ("anon", 25.0, 20.0, 45.0));
    assert_eq!((body.old_groups[1].value, body.merged_groups[1].value, body.groups[1].value), (0.0, 20.0, 20.0));
    let OutputBody::ScoreChanged(change) = &applied.outputs[1].body else { panic!("not a score change") };
    assert_eq!((change.cause.as_str(), change.delta), ("merge", 20.0));
    let OutputBody::ThresholdCrossed(crossing) = &applied.outputs[2].body else { panic!("not a crossing") };
    assert_eq!((crossing.threshold.as_str(), crossing.direction), ("warm", Direction::Up));
    // Output ids follow from the merge event's id, as every output's do from its cause.
    let ids: Vec<&str> = applied.outputs.iter().map(|output| output.id.as_str()).collect();
    assert_eq!(ids, ["merge-1:0", "merge-1:1", "merge-1:2"]);
}

#[test]
fn the_later_phase_and_a_disqualification_carry_over() {
    let rules = rules();
    let mut anonymous = scored(&rules, None, &[event("a1", "anon", "competitor", T0)]);
    if let Some(state) = anonymous.as_mut() {
        state.phase = 1;
    }
    let known = scored(&rules, None, &[event("k1", "known", "page_visit", T0)]);
    let applied = merged_into(&rules, known, anonymous.unwrap_or_else(|| panic!("no state")), T0 + DAY);
    let state = applied.state.as_ref().unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.phase, 1);
    assert_eq!(state.disqualified.as_deref(), Some("works for a competitor"));
    // Muted as a disqualified contact's outputs are, but for the merge and the change of qualification.
    let kinds: Vec<&str> = applied.outputs.iter().map(|output| output.body.kind()).collect();
    assert_eq!(kinds, ["contact_merged", "score_changed"]);
}

#[test]
fn a_survivor_seen_for_the_first_time_takes_the_merged_state() {
    let rules = rules();
    let events = [event("a1", "anon", "page_visit", T0), event("a2", "anon", "add_to_cart", T0 + DAY)];
    let anonymous = scored(&rules, None, &events).unwrap_or_else(|| panic!("no state"));
    let applied = merged_into(&rules, None, anonymous.clone(), T0 + DAY);
    let state = applied.state.unwrap_or_else(|| panic!("no state"));
    assert_eq!(values(&rules, &state, T0 + 2 * DAY), values(&rules, &anonymous, T0 + 2 * DAY));
    assert_eq!(state.history.len(), anonymous.history.len() + 1);
    assert_eq!(state.history.back().map(|entry| rules.source_name(entry.source)), Some("merge"));
}

#[test]
fn a_merge_into_itself_is_rejected_and_a_repeated_merge_is_a_duplicate() {
    let rules = rules();
    let known = scored(&rules, None, &[event("k1", "known", "page_visit", T0)]).unwrap_or_else(|| panic!("no state"));
    let itself = merged_into(&rules, Some(known.clone()), known.clone(), T0);
    assert!(matches!(itself.outcome, Outcome::Rejected(_)));
    assert_eq!(itself.state.as_ref(), Some(&known));

    let anonymous =
        scored(&rules, None, &[event("a1", "anon", "page_visit", T0)]).unwrap_or_else(|| panic!("no state"));
    let once = merged_into(&rules, Some(known), anonymous.clone(), T0).state;
    let twice = merged_into(&rules, once.clone(), anonymous, T0);
    assert_eq!(twice.outcome, Outcome::Duplicate);
    assert_eq!(twice.state, once);
    assert!(twice.outputs.is_empty());
}

#[test]
fn history_is_unioned_in_time_order_and_bounded() {
    let rules = rules();
    let anonymous: Vec<Event> =
        (0..4).map(|n| event(&format!("a{n}"), "anon", "page_visit", T0 + 2 * n * DAY)).collect();
    let known: Vec<Event> =
        (0..4).map(|n| event(&format!("k{n}"), "known", "page_visit", T0 + (2 * n + 1) * DAY)).collect();
    let state = merged_into(
        &rules,
        scored(&rules, None, &known),
        scored(&rules, None, &anonymous).unwrap_or_else(|| panic!("no state")),
        T0 + 8 * DAY,
    )
    .state
    .unwrap_or_else(|| panic!("no state"));
    let ids: Vec<&str> = state.history.iter().map(|entry| entry.event_id.as_str()).collect();
    assert_eq!(ids, ["k1", "a2", "k2", "a3", "k3", "merge-1"]);
    assert_eq!(state.recent_ids.len(), 8);
}

/// One event of either contact: which, what, and days after T0.
fn arb_events() -> impl Strategy<Value = Vec<(bool, usize, i64)>> {
    prop::collection::vec((any::<bool>(), 0..KINDS.len(), 0..(30 * DAY)), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Without per-window limits or a clamp reached, two contacts merged score what one contact would
    /// have scored from both streams, for exponential and step decay and for groups without decay.
    #[test]
    fn a_merge_scores_what_one_contact_with_both_streams_scores(events in arb_events()) {
        let rules = rules();
        let mut events: Vec<(bool, Event)> = events
            .into_iter()
            .enumerate()
            .map(|(n, (anonymous, kind, offset))| {
                let contact = if anonymous { "anon" } else { "known" };
                (anonymous, event(&format!("e{n}"), contact, KINDS[kind], T0 + offset))
            })
            .collect();
        events.sort_by_key(|(_, event)| event.ts_ms);
        let side = |anonymous: bool| -> Vec<Event> {
            events.iter().filter(|(which, _)| *which == anonymous).map(|(_, event)| event.clone()).collect()
        };
        let at = events.last().map_or(T0, |(_, event)| event.ts_ms);
        let survivor = scored(&rules, None, &side(false));
        let merged = scored(&rules, None, &side(true))
            .unwrap_or_else(|| ContactState::new(&rules, "anon", T0));
        let state = merged_into(&rules, survivor, merged, at).state;
        let one = scored(&rules, None, &events.iter().map(|(_, event)| Event { contact: "known".into(), ..event.clone() }).collect::<Vec<_>>());
        // Read then and later, as step contributions expire one by one.
        for read in [at, at + 2 * DAY, at + 5 * DAY] {
            let values_of = |state: &Option<ContactState>| {
                state.as_ref().map_or_else(|| vec![0.0; rules.groups.len()], |state| values(&rules, state, read))
            };
            for (merged, single) in values_of(&state).into_iter().zip(values_of(&one)) {
                prop_assert!(close(merged, single), "{} vs {} at {}", merged, single, read);
            }
        }
        let limited = |state: &Option<ContactState>| {
            let mut counts: Vec<(u32, u32)> = state.iter().flat_map(|state| state.rule_counts.iter().map(|count| (count.rule, count.count))).collect();
            counts.sort_unstable();
            counts
        };
        prop_assert_eq!(limited(&state), limited(&one));
    }
}
