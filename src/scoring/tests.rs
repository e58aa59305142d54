//! Unit tests of every rule feature, and property tests of the engine's invariants.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::event::{AttrValue, Event, ManualAdjustment};
use crate::offline::MemoryStore;
use crate::rules::{CLAMP_KEY, Rules, Target};
use crate::stream::{ContactStore, PartitionStream, TimerClock};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z

const TEST_RULES: &str = r#"
name = "unit"
[settings]
history = 5

[[groups]]
name = "engagement"
decay = "exponential"
half_life = "10d"

[[groups]]
name = "fit"
weight = 0.5

[[groups]]
name = "intent"
max = 50
decay = "step"
expire_after = "7d"

[[groups]]
name = "risk"
min = -100
max = 0
decay = "linear"
per_day = 2

[[groups]]
name = "activity"
decay = "linear"
per_day = 5

[grades]
group = "fit"
a = 75
b = 50
c = 25

[[phases]]
name = "lead"
[[phases]]
name = "mql"
resets = ["engagement", "intent"]
[[phases]]
name = "sql"

[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 10

[[rules]]
id = "pricing"
on = "page_visit"
group = "engagement"
items = ["*/pricing*"]
points = 30
max_times = 2
per = "1d"

[[rules]]
id = "big_company"
on = "profile_update"
group = "fit"
points = 60
when = [{ attr = "employees", ge = 500 }]

[[rules]]
id = "enterprise_plan"
on = "profile_update"
group = "fit"
points = 10
when = [{ attr = "plan", in = ["enterprise", "business"] }]

[[rules]]
id = "cart"
on = "add_to_cart"
group = "intent"
points = 30

[[rules]]
id = "bounce"
on = "hard_bounce"
group = "risk"
points = -20

[[rules]]
id = "competitor"
on = "form_submit"
when = [{ attr = "domain", glob = "*rival*" }]
disqualify = "competitor"

[[rules]]
id = "opt_out"
on = "opt_out"
group = "engagement"
points = -15

[[rules]]
id = "cooldown"
on = "complaint"
group = "engagement"
points = -50

[[rules]]
id = "careers"
on = "page_visit"
group = "engagement"
items = ["*/careers*"]
points = -10

[[rules]]
id = "cheap_cart"
on = "add_to_cart"
group = "intent"
points = -5
when = [{ attr = "price", lt = 10 }]

[[thresholds]]
name = "warm"
target = "engagement"
at = 40
hysteresis = 10

[[thresholds]]
name = "mql"
target = "engagement"
at = 80
advance_to = "mql"
requires = { min_grade = "B", phases = ["lead"] }

[[thresholds]]
name = "hot"
target = "total"
at = 70
hysteresis = 5
"#;

fn rules() -> Rules {
    Rules::parse(TEST_RULES, Path::new("unit.toml")).unwrap_or_else(|err| panic!("{err}"))
}

pub(super) fn example_rules() -> Rules {
    Rules::parse(include_str!("../../examples/rules.toml"), Path::new("examples/rules.toml"))
        .unwrap_or_else(|err| panic!("{err}"))
}

fn event(id: &str, kind: &str, ts_ms: i64) -> Event {
    Event {
        id: id.into(),
        contact: "c1".into(),
        kind: kind.into(),
        ts_ms,
        item: None,
        attrs: Vec::new(),
        adjustment: None,
        phase: None,
    }
}

fn with_item(mut event: Event, item: &str) -> Event {
    event.item = Some(item.into());
    event
}

fn with_attr(mut event: Event, name: &str, value: AttrValue) -> Event {
    event.attrs.push((name.into(), value));
    event
}

/// Applies events in order and returns the final state and every output.
fn run(rules: &Rules, events: &[Event]) -> (Option<ContactState>, Vec<Output>) {
    let mut state = None;
    let mut outputs = Vec::new();
    for event in events {
        let applied = apply(rules, state, event);
        state = applied.state;
        outputs.extend(applied.outputs);
    }
    (state, outputs)
}

fn state_of(rules: &Rules, events: &[Event]) -> ContactState {
    run(rules, events).0.unwrap_or_else(|| panic!("no state"))
}

fn crossings(outputs: &[Output]) -> Vec<(String, Direction, i64)> {
    outputs
        .iter()
        .filter_map(|out| match &out.body {
            OutputBody::ThresholdCrossed(c) => Some((c.threshold.clone(), c.direction, c.crossed_at)),
            _ => None,
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn exponential_decay_halves_per_half_life() {
    let rules = rules();
    let state = state_of(&rules, &[event("e1", "page_visit", T0)]);
    assert_eq!(state.group_value(&rules, 0, T0), 10.0);
    assert!(close(state.group_value(&rules, 0, T0 + 10 * DAY), 5.0));
    assert!(close(state.group_value(&rules, 0, T0 + 20 * DAY), 2.5));
}

#[test]
fn linear_decay_moves_toward_zero_and_stops() {
    let rules = rules();
    let state = state_of(&rules, &[event("e1", "hard_bounce", T0)]);
    assert_eq!(state.group_value(&rules, 3, T0), -20.0);
    assert!(close(state.group_value(&rules, 3, T0 + 5 * DAY), -10.0));
    assert_eq!(state.group_value(&rules, 3, T0 + 30 * DAY), 0.0);
}

#[test]
fn step_contributions_expire_and_the_cap_applies_to_the_live_sum() {
    let rules = rules();
    let events = [event("e1", "add_to_cart", T0), event("e2", "add_to_cart", T0 + DAY)];
    let state = state_of(&rules, &events);
    assert_eq!(state.group_value(&rules, 2, T0 + DAY), 50.0, "60 capped at 50");
    let lines = state.groups[2].contributions_at(&rules.groups[2], T0 + DAY);
    assert!(lines.iter().any(|line| line.source == CLAMP_KEY && line.points == -10.0), "{lines:?}");
    assert_eq!(state.group_value(&rules, 2, T0 + 7 * DAY), 30.0, "the first expired");
    assert_eq!(state.group_value(&rules, 2, T0 + 8 * DAY), 0.0, "both expired");
}

#[test]
fn clamping_shows_in_the_explanation() {
    let rules = rules();
    let events: Vec<Event> =
        (0..12).map(|i| with_item(event(&format!("e{i}"), "page_visit", T0 + i * DAY), "/pricing")).collect();
    let state = state_of(&rules, &events);
    let at = T0 + 12 * DAY;
    let group = &rules.groups[0];
    let lines = state.groups[0].contributions_at(group, at);
    let sum: f64 = lines.iter().map(|line| line.points).sum();
    assert!(close(sum, state.group_value(&rules, 0, at)));
    assert!(lines.iter().any(|line| line.source == CLAMP_KEY && line.points < 0.0), "{lines:?}");
}

#[test]
fn late_events_are_scored_at_the_contact_clock() {
    let rules = rules();
    let state = state_of(&rules, &[event("e1", "page_visit", T0 + 10 * DAY), event("e2", "page_visit", T0)]);
    assert_eq!(state.clock_ms, T0 + 10 * DAY);
    assert_eq!(state.group_value(&rules, 0, T0 + 10 * DAY), 20.0);
}

#[test]
fn limits_cap_firings_per_period() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let state = state_of(&rules, &[pricing("e1", T0), pricing("e2", T0 + 1), pricing("e3", T0 + 2)]);
    let pricing_points: f64 = state.history.iter().filter(|h| h.source == rules.rules[1].key).map(|h| h.delta).sum();
    assert!(close(pricing_points, 60.0), "two firings, not three: {pricing_points}");
    let two = state_of(&rules, &[pricing("e1", T0), pricing("e2", T0 + 1)]);
    let pricing_fires = |at: i64| {
        let applied = apply(&rules, Some(two.clone()), &pricing("e3", at));
        applied.attribution.fired.iter().filter(|fire| fire.rule == 1).count()
    };
    assert_eq!(pricing_fires(T0 + 2), 0);
    assert_eq!(pricing_fires(T0 + DAY), 1, "a new window opens after a day");
}

#[test]
fn predicates_and_globs_select_rules() {
    let rules = rules();
    let small = with_attr(event("e1", "profile_update", T0), "employees", AttrValue::Number(20.0));
    assert_eq!(apply(&rules, None, &small).outcome, Outcome::Ignored);
    let big = with_attr(event("e2", "profile_update", T0), "employees", AttrValue::Number(900.0));
    let big = with_attr(big, "plan", AttrValue::Text("business".into()));
    let state = state_of(&rules, &[big]);
    assert_eq!(state.group_value(&rules, 1, T0), 70.0);
    let rival = with_attr(event("e3", "form_submit", T0), "domain", AttrValue::Text("mail.rivalsoft.com".into()));
    assert_eq!(state_of(&rules, &[rival]).disqualified.as_deref(), Some("competitor"));
}

#[test]
fn thresholds_fire_up_and_down_with_hysteresis() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let (_, outputs) = run(
        &rules,
        &[
            pricing("e1", T0),                 // 40: warm up
            event("e2", "page_visit", T0 + 1), // 50: no second up
            event("e3", "opt_out", T0 + 2),    // 35: inside the hysteresis band, no down
            event("e4", "opt_out", T0 + 3),    // 20: warm down
        ],
    );
    let warm: Vec<_> = crossings(&outputs).into_iter().filter(|c| c.0 == "warm").collect();
    assert_eq!(warm, vec![("warm".into(), Direction::Up, T0), ("warm".into(), Direction::Down, T0 + 3)]);
}

#[test]
fn decay_driven_fall_fires_at_the_exact_crossing_time() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let state = state_of(&rules, &[pricing("e1", T0)]);
    // 40 · 2^(−Δ/10d) < 30  ⇔  Δ > 10d · log2(4/3)
    let exact = T0 as f64 + 10.0 * DAY as f64 * (40.0f64 / 30.0).log2();
    let due = state.next_timer_ms.unwrap_or_else(|| panic!("no timer"));
    assert_eq!(due, exact.ceil() as i64);
    assert!(state.group_value(&rules, 0, due) < 30.0);
    assert!(state.group_value(&rules, 0, due - 1) >= 30.0);
    let early = on_timer(&rules, state.clone(), due - 1);
    assert!(early.outputs.is_empty());
    let fired = on_timer(&rules, state, due + DAY);
    assert_eq!(crossings(&fired.outputs), vec![("warm".into(), Direction::Down, due)]);
    assert_eq!(fired.outputs[0].id, format!("c1:warm:down:{due}"));
    assert_eq!(fired.state.and_then(|s| s.next_timer_ms), None);
}

#[test]
fn an_event_after_a_missed_timer_emits_the_fall_first_at_t_star() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let state = state_of(&rules, &[pricing("e1", T0)]);
    let due = state.next_timer_ms.unwrap_or_default();
    let applied = apply(&rules, Some(state), &event("e2", "page_visit", T0 + 30 * DAY));
    assert_eq!(crossings(&applied.outputs)[0], ("warm".into(), Direction::Down, due));
}

#[test]
fn total_thresholds_solve_t_star_by_bisection() {
    let rules = rules();
    let big = with_attr(event("e1", "profile_update", T0), "employees", AttrValue::Number(900.0));
    let pricing = with_item(event("e2", "page_visit", T0), "/pricing");
    let state = state_of(&rules, &[big, pricing]);
    // total = 0.5·60 + 40 = 70 ≥ 70; falls below 65 when engagement < 35.
    assert!(state.fired[2]);
    let due = fall_time(&rules, &state, Target::Total, 65.0, state.clock_ms).unwrap_or_default();
    assert!(state.total(&rules, due) < 65.0);
    assert!(state.total(&rules, due - 1) >= 65.0);
    let exact = T0 as f64 + 10.0 * DAY as f64 * (40.0f64 / 35.0).log2();
    assert!((due as f64 - exact).abs() <= 1.0, "{due} vs {exact}");
}

#[test]
fn advance_to_needs_the_grade_and_the_phase() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let visits = [pricing("e1", T0), pricing("e2", T0 + 1), event("e3", "page_visit", T0 + 2)];
    let (state, _) = run(&rules, &visits);
    assert_eq!(state.map(|s| s.phase), Some(0), "grade D: no MQL");

    let mut events = vec![with_attr(event("p1", "profile_update", T0), "employees", AttrValue::Number(900.0))];
    events.extend(visits.iter().cloned());
    let (state, outputs) = run(&rules, &events);
    let state = state.unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.phase, 1, "grade B and lead: MQL");
    assert_eq!(state.group_value(&rules, 0, state.clock_ms), 0.0, "MQL resets engagement");
    assert!(state.fired.iter().all(|fired| !fired), "entering a phase re-arms thresholds");
    let kinds: Vec<&str> = outputs.iter().map(|out| out.body.kind()).collect();
    assert!(kinds.ends_with(&["threshold_crossed", "phase_changed", "score_changed"]), "{kinds:?}");
    assert!(state.rule_counts.is_empty(), "limits reset per phase");
}

#[test]
fn phase_change_events_reset_groups_and_reject_unknown_phases() {
    let rules = rules();
    let mut change = event("e2", "phase_change", T0 + 1);
    change.phase = Some("mql".into());
    let (state, outputs) = run(&rules, &[event("e1", "page_visit", T0), change]);
    assert_eq!(state.map(|s| s.phase), Some(1));
    assert!(matches!(&outputs[1].body, OutputBody::PhaseChanged(p) if p.from == "lead" && p.to == "mql"));
    assert!(
        matches!(&outputs[2].body, OutputBody::ScoreChanged(s) if s.cause == "phase_reset:mql" && s.new_total == 0.0)
    );

    let mut unknown = event("e3", "phase_change", T0);
    unknown.phase = Some("wonderland".into());
    assert!(matches!(apply(&rules, None, &unknown).outcome, Outcome::Rejected(ref r) if r.contains("wonderland")));
}

#[test]
fn disqualified_contacts_are_muted_until_requalified() {
    let rules = rules();
    let rival = with_attr(event("e1", "form_submit", T0), "domain", AttrValue::Text("rival.io".into()));
    let (state, outputs) = run(&rules, &[rival, event("e2", "page_visit", T0 + 1)]);
    assert_eq!(outputs.len(), 1, "only the disqualification itself is published");
    assert!(matches!(&outputs[0].body, OutputBody::ScoreChanged(s) if s.disqualified.as_deref() == Some("competitor")));
    let applied = apply(&rules, state, &event("e3", "requalify", T0 + 2));
    assert_eq!(applied.state.as_ref().and_then(|s| s.disqualified.clone()), None);
    assert!(matches!(&applied.outputs[0].body, OutputBody::ScoreChanged(s) if s.cause == "requalified"));
}

#[test]
fn manual_adjustments_keep_reason_and_actor() {
    let rules = rules();
    let mut manual = event("m1", "manual_adjustment", T0);
    manual.adjustment = Some(ManualAdjustment {
        points: 15.0,
        reason: "met at trade fair".into(),
        group: Some("fit".into()),
        actor: Some("ana".into()),
    });
    let state = state_of(&rules, &[manual.clone()]);
    assert_eq!(state.group_value(&rules, 1, T0), 15.0);
    let entry = state.history.back().cloned().unwrap_or_else(|| panic!("no history"));
    assert_eq!((entry.reason.as_deref(), entry.actor.as_deref()), (Some("met at trade fair"), Some("ana")));
    if let Some(adjustment) = manual.adjustment.as_mut() {
        adjustment.group = Some("nope".into());
    }
    manual.id = "m2".into();
    assert!(matches!(apply(&rules, None, &manual).outcome, Outcome::Rejected(_)));
}

#[test]
fn erase_deletes_the_contact() {
    let rules = rules();
    let (state, outputs) = run(&rules, &[event("e1", "page_visit", T0), event("e2", "erase", T0 + 1)]);
    assert!(state.is_none());
    assert_eq!(outputs.last().map(|out| out.body.kind()), Some("contact_erased"));
}

#[test]
fn duplicates_and_unknown_types_change_nothing() {
    let rules = rules();
    let state = state_of(&rules, &[event("e1", "page_visit", T0)]);
    let again = apply(&rules, Some(state.clone()), &event("e1", "page_visit", T0 + DAY));
    assert_eq!((again.outcome, again.state), (Outcome::Duplicate, Some(state.clone())));
    let unknown = apply(&rules, Some(state.clone()), &event("e9", "teleported", T0 + DAY));
    assert_eq!((unknown.outcome, unknown.state), (Outcome::Ignored, Some(state)));
}

#[test]
fn history_is_bounded() {
    let rules = rules();
    let events: Vec<Event> = (0..20).map(|i| event(&format!("e{i}"), "page_visit", T0 + i)).collect();
    let state = state_of(&rules, &events);
    assert_eq!(state.history.len(), 5);
    assert_eq!(state.history.back().map(|h| h.event_id.as_str()), Some("e19"));
}

fn manual(id: &str, group: &str, points: f64, at: i64) -> Event {
    let mut manual = event(id, "manual_adjustment", at);
    manual.adjustment =
        Some(ManualAdjustment { points, reason: "call".into(), group: Some(group.into()), actor: None });
    manual
}

fn score_changes(outputs: &[Output]) -> Vec<&ScoreChanged> {
    outputs
        .iter()
        .filter_map(|out| match &out.body {
            OutputBody::ScoreChanged(change) => Some(change),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rule_firing_on_a_group_at_its_bound_publishes_no_score_change() {
    let rules = rules();
    let bounces: Vec<Event> = (0..5).map(|i| event(&format!("b{i}"), "hard_bounce", T0)).collect();
    let state = state_of(&rules, &bounces);
    assert_eq!(state.group_value(&rules, 3, T0), -100.0);

    let applied = apply(&rules, Some(state.clone()), &event("b5", "hard_bounce", T0));
    assert_eq!(applied.outcome, Outcome::Scored, "the state changed: history, recent ids");
    assert!(score_changes(&applied.outputs).is_empty(), "{:?}", applied.outputs);
    let after = applied.state.unwrap_or_else(|| panic!("no state"));
    let entry = after.history.back().cloned().unwrap_or_else(|| panic!("no history"));
    assert_eq!((entry.source, entry.event_id.as_str(), entry.delta), (rules.rules[5].key, "b5", 0.0));
    assert_eq!(entry.delta.to_bits(), 0.0f64.to_bits(), "no negative zero");
    assert_eq!(applied.attribution.fired, vec![RuleFire { rule: 5, points: 0.0 }], "statistics still count it");
    let replay = apply(&rules, Some(after.clone()), &event("b5", "hard_bounce", T0));
    assert_eq!((replay.outcome, replay.state), (Outcome::Duplicate, Some(after)));
}

#[test]
fn a_manual_adjustment_that_changes_nothing_is_kept_in_history_only() {
    let rules = rules();
    let state = state_of(&rules, &[manual("m1", "fit", 100.0, T0)]);
    let applied = apply(&rules, Some(state), &manual("m2", "fit", 30.0, T0 + 1));
    assert_eq!(applied.outcome, Outcome::Scored);
    assert!(score_changes(&applied.outputs).is_empty(), "{:?}", applied.outputs);
    let state = applied.state.unwrap_or_else(|| panic!("no state"));
    let entry = state.history.back().cloned().unwrap_or_else(|| panic!("no history"));
    assert_eq!((entry.event_id.as_str(), entry.delta, entry.reason.as_deref()), ("m2", 0.0, Some("call")));
    let zero = apply(&rules, Some(state), &manual("m3", "engagement", 0.0, T0 + 2));
    assert!(score_changes(&zero.outputs).is_empty(), "{:?}", zero.outputs);
}

#[test]
fn a_phase_entry_that_resets_only_zeros_publishes_the_phase_change_alone() {
    let rules = rules();
    let mut change = event("p1", "phase_change", T0 + 1);
    change.phase = Some("mql".into());
    let (state, outputs) = run(&rules, &[manual("m1", "fit", 40.0, T0), change]);
    assert_eq!(state.map(|s| s.phase), Some(1));
    let kinds: Vec<&str> = outputs.iter().map(|out| out.body.kind()).collect();
    assert_eq!(kinds, ["score_changed", "phase_changed"], "engagement and intent were already 0");
}

#[test]
fn the_points_of_one_event_are_summed_per_group_and_clamped_once() {
    // visit +10 and careers −10 on a contact at 95 of 100: clamping after each rule would give 90 or
    // 95 depending on which comes first in the file.
    let rules = rules();
    let start = state_of(&rules, &[manual("m1", "engagement", 95.0, T0)]);
    let careers = with_item(event("e1", "page_visit", T0), "https://acme.io/careers");
    let applied = apply(&rules, Some(start.clone()), &careers);
    let state = applied.state.clone().unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.group_value(&rules, 0, T0), 95.0);
    assert!(score_changes(&applied.outputs).is_empty(), "nothing changed: {:?}", applied.outputs);
    let explanation = state.groups[0].contributions_at(&rules.groups[0], T0);
    assert!(explanation.iter().all(|line| line.source != CLAMP_KEY), "{explanation:?}");

    // visit +10, pricing +30 and careers −10: +30 clamped to +5 once. The clamp's −25 is shared by the
    // two rules that pushed up, in proportion to their points; the malus keeps its −10.
    let both = with_item(event("e2", "page_visit", T0), "https://acme.io/careers/pricing");
    let applied = apply(&rules, Some(start), &both);
    let state = applied.state.clone().unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.group_value(&rules, 0, T0), 100.0);
    let deltas: Vec<(&str, f64, f64)> = state
        .history
        .iter()
        .filter(|entry| entry.event_id == "e2")
        .map(|entry| (rules.source_name(entry.source), entry.delta, entry.value_after))
        .collect();
    assert_eq!(deltas, [("careers", -10.0, 100.0), ("pricing", 11.25, 100.0), ("visit", 3.75, 100.0)]);
    let fired: Vec<(&str, f64)> =
        applied.attribution.fired.iter().map(|fire| (rules.rules[fire.rule].id.as_str(), fire.points)).collect();
    assert_eq!(fired, [("careers", -10.0), ("pricing", 11.25), ("visit", 3.75)]);
    let lines: Vec<(&str, f64)> = state.groups[0]
        .contributions_at(&rules.groups[0], T0)
        .iter()
        .map(|line| (rules.source_name(line.source), line.points))
        .collect();
    assert_eq!(lines, [("manual", 95.0), ("careers", -10.0), ("pricing", 30.0), ("visit", 10.0), ("clamp", -25.0)]);
    let [change] = score_changes(&applied.outputs)[..] else {
        panic!("one score change expected: {:?}", applied.outputs);
    };
    assert_eq!((change.old_total, change.new_total, change.delta), (95.0, 100.0, 5.0));
    assert_eq!(change.rules_fired, ["careers", "pricing", "visit"], "sorted by id");
}

#[test]
fn step_groups_sum_one_events_points_against_the_live_contributions() {
    let rules = rules();
    let cheap = |id: &str, at: i64| with_attr(event(id, "add_to_cart", at), "price", AttrValue::Number(5.0));
    let state = state_of(&rules, &[event("c1", "add_to_cart", T0), event("c2", "add_to_cart", T0 + 1)]);
    assert_eq!(state.group_value(&rules, 2, T0 + 1), 50.0, "60 live, capped");

    // cart +30 and cheap_cart −5: 85 live, still 50; the cap's extra −25 is taken from the +30.
    let applied = apply(&rules, Some(state), &cheap("c3", T0 + 2));
    assert!(score_changes(&applied.outputs).is_empty(), "{:?}", applied.outputs);
    let fired: Vec<(&str, f64)> =
        applied.attribution.fired.iter().map(|fire| (rules.rules[fire.rule].id.as_str(), fire.points)).collect();
    assert_eq!(fired, [("cart", 5.0), ("cheap_cart", -5.0)]);
    let state = applied.state.unwrap_or_else(|| panic!("no state"));
    let lines = state.groups[2].contributions_at(&rules.groups[2], T0 + 2);
    assert!(lines.iter().any(|line| line.source == CLAMP_KEY && line.points == -35.0), "{lines:?}");
    // The first two carts expire a week later; the third event's +25 net stays until its own expiry.
    assert_eq!(state.group_value(&rules, 2, T0 + 7 * DAY + 1), 25.0);
    assert_eq!(state.group_value(&rules, 2, T0 + 7 * DAY + 2), 0.0);

    // Below the cap both rules count in full.
    let (_, outputs) = run(&rules, &[cheap("c1", T0), cheap("c2", T0 + 1)]);
    let totals: Vec<f64> = score_changes(&outputs).iter().map(|change| change.new_total).collect();
    assert_eq!(totals, [25.0, 50.0]);
}

#[test]
fn an_event_no_rule_takes_leaves_the_contact_untouched() {
    let rules = rules();
    let pricing = |id: &str, at: i64| with_item(event(id, "page_visit", at), "/pricing");
    let state = state_of(&rules, &[pricing("e1", T0), pricing("e2", T0 + 1)]);
    let due = state.next_timer_ms.unwrap_or_else(|| panic!("warm is up and will fall"));
    let later = due + DAY;
    let small = with_attr(event("e3", "profile_update", later), "employees", AttrValue::Number(20.0));
    let rival = with_attr(event("e4", "form_submit", later), "domain", AttrValue::Text("friend.io".into()));
    let requalify = event("e5", "requalify", later);
    let mut same_phase = event("e6", "phase_change", later);
    same_phase.phase = Some("lead".into());
    for ignored in [small, rival, requalify, same_phase] {
        let applied = apply(&rules, Some(state.clone()), &ignored);
        assert_eq!(applied.outcome, Outcome::Ignored, "{}", ignored.kind);
        assert!(applied.outputs.is_empty(), "the due fall waits for a timer or a scored event");
        assert_eq!(applied.state.as_ref(), Some(&state), "clock, recent ids and thresholds as they were");
    }
    // A rule at its limit: with `visit` listening to another type, `pricing` alone matches, and both its
    // firings of the day are used up.
    let text = TEST_RULES.replace("id = \"visit\"\non = \"page_visit\"", "id = \"visit\"\non = \"x\"");
    let limited = Rules::parse(&text, Path::new("limited.toml")).unwrap_or_else(|err| panic!("{err}"));
    let applied = apply(&limited, Some(state.clone()), &pricing("e7", T0 + 2));
    assert_eq!((applied.outcome, applied.state), (Outcome::Ignored, Some(state)));
}

/// The example events scored under `rules`, one partition.
pub(super) fn scored_examples(rules: &Rules) -> crate::offline::OfflineScorer<'_> {
    let mut scorer = crate::offline::OfflineScorer::new(rules, 1);
    for line in include_str!("../../examples/events.jsonl").lines() {
        let _ = scorer.score_line(line.as_bytes());
    }
    scorer
}

#[test]
fn the_codec_round_trips_and_refuses_garbage() {
    let rules = example_rules();
    let scorer = scored_examples(&rules);
    for (contact, state) in scorer.store().contacts() {
        let bytes = codec::encode(&rules, state);
        let decoded = codec::decode(&rules, contact, &bytes).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(codec::encode(&rules, &decoded), bytes);
        assert_eq!(
            ContactView::new(&rules, &decoded, decoded.clock_ms),
            ContactView::new(&rules, state, state.clock_ms)
        );
    }
    assert!(codec::decode(&rules, "x", &[0xff, 0x01, 0x02]).is_err());
    let future = crate::proto::v1::ContactState { format: 99, ..Default::default() };
    let bytes = prost::Message::encode_to_vec(&future);
    assert_eq!(codec::decode(&rules, "x", &bytes), Err(codec::CodecError::UnknownFormat { found: 99 }));
}

/// The bytes prost writes for the message `to_proto` builds, plus the runtime's offsets and erasure.
fn prost_record(rules: &Rules, state: Option<&ContactState>, offsets: &[(u32, i64)]) -> Vec<u8> {
    use crate::proto::v1;
    let mut message = match state {
        Some(state) => codec::to_proto(rules, state),
        None => v1::ContactState { format: codec::STATE_FORMAT, erased: true, ..Default::default() },
    };
    message.offsets = offsets.iter().map(|&(topic, offset)| v1::InputOffset { topic, offset }).collect();
    prost::Message::encode_to_vec(&message)
}

fn written_record(rules: &Rules, state: Option<&ContactState>, offsets: &[(u32, i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    codec_write::write_record(rules, state, &codec_write::Bookkeeping { offsets, ..Default::default() }, &mut out);
    out
}

#[test]
fn the_record_writer_writes_what_prost_writes_at_the_edges() {
    let rules = example_rules();
    let mut state = ContactState::new(&rules, "c", i64::MIN);
    state.phase = rules.phases.len() - 1;
    state.fired = vec![true; rules.thresholds.len()];
    state.groups[0] = GroupScore {
        value: -0.0,
        since_ms: -1,
        contributions: vec![
            Contribution { source: 0, points: f64::MAX, expires_at_ms: Some(0) },
            Contribution { source: u32::MAX, points: -1.5, expires_at_ms: Some(i64::MIN) },
            Contribution { source: 7, points: 0.0, expires_at_ms: None },
            Contribution { source: 8, points: 9007199254740992.0, expires_at_ms: Some(i64::MAX) },
            Contribution { source: 9, points: -9007199254740994.0, expires_at_ms: None },
        ],
    };
    state.groups[1] = GroupScore { value: -3.0, since_ms: i64::MAX, contributions: Vec::new() };
    state.groups[2].value = f64::MIN_POSITIVE;
    state.rule_counts = vec![
        RuleCount { rule: 0, count: 0, window_start_ms: 0 },
        RuleCount { rule: 1, count: u32::MAX, window_start_ms: i64::MAX },
    ];
    state.disqualified = Some(String::new());
    state.recent_ids = [0, u64::MAX].into_iter().collect();
    state.history = [
        HistoryEntry {
            source: 0,
            event_id: String::new(),
            ts_ms: 0,
            delta: 0.0,
            value_after: -0.0,
            group: 0,
            reason: Some(String::new()),
            actor: None,
        },
        HistoryEntry {
            source: 3,
            event_id: "é".repeat(100),
            ts_ms: -5,
            delta: 1e300,
            value_after: 2.5,
            group: u32::MAX,
            reason: None,
            actor: Some("a".repeat(300)),
        },
        // Three changes of one event: two sources to one group and value, one to another group.
        HistoryEntry {
            source: 4,
            event_id: "e-9".into(),
            ts_ms: 7,
            delta: 15.0,
            value_after: 45.0,
            group: 2,
            reason: None,
            actor: None,
        },
        HistoryEntry { source: 5, delta: -0.25, ..history_entry(7, "e-9", 45.0, 2) },
        HistoryEntry { source: 6, delta: 1.0, ..history_entry(7, "e-9", 1.5, 3) },
        // The same id at another time is another stored event.
        history_entry(8, "e-9", 1.5, 3),
    ]
    .into_iter()
    .collect();
    state.next_timer_ms = Some(0);
    state.merged_ids = vec![String::new(), "anonymous-1".into()];
    state.anonymous = true;
    state.account = Some("acme.io".into());
    let offsets = [(0, 0), (u32::MAX, -1), (5, i64::MAX)];
    assert_eq!(written_record(&rules, Some(&state), &offsets), prost_record(&rules, Some(&state), &offsets));
    assert_eq!(written_record(&rules, None, &offsets), prost_record(&rules, None, &offsets));
    let fresh = ContactState::new(&rules, "c", 0);
    assert_eq!(written_record(&rules, Some(&fresh), &[]), prost_record(&rules, Some(&fresh), &[]));
}

fn history_entry(ts_ms: i64, event_id: &str, value_after: f64, group: u32) -> HistoryEntry {
    HistoryEntry {
        source: 1,
        event_id: event_id.into(),
        ts_ms,
        delta: 2.0,
        value_after,
        group,
        reason: None,
        actor: None,
    }
}

#[test]
fn a_record_of_the_first_format_still_reads() {
    use crate::proto::v1;
    let rules = example_rules();
    let scorer = scored_examples(&rules);
    let (mut first_bytes, mut second_bytes) = (0, 0);
    for (contact, state) in scorer.store().contacts() {
        // The first format: times as epoch ms, numbers as doubles, one history entry per change.
        let first = v1::ContactState {
            format: codec::FIRST_STATE_FORMAT,
            clock_ms: state.clock_ms,
            phase: rules.phases[state.phase].key,
            groups: codec::groups_to_proto(&rules, &state.groups),
            fired: rules.thresholds.iter().zip(&state.fired).filter(|(_, f)| **f).map(|(t, _)| t.key).collect(),
            rule_counts: state
                .rule_counts
                .iter()
                .map(|c| v1::RuleCount {
                    rule: c.rule,
                    count: c.count,
                    window_start_ms: c.window_start_ms,
                    ..Default::default()
                })
                .collect(),
            disqualified: state.disqualified.clone(),
            recent_ids: state.recent_ids.iter().copied().collect(),
            history: state
                .history
                .iter()
                .map(|e| v1::HistoryEntry {
                    source: e.source,
                    event_id: e.event_id.clone(),
                    ts_ms: e.ts_ms,
                    delta: e.delta,
                    value_after: e.value_after,
                    group: e.group,
                    reason: e.reason.clone(),
                    actor: e.actor.clone(),
                })
                .collect(),
            next_timer_ms: state.next_timer_ms,
            merged_ids: state.merged_ids.clone(),
            anonymous: state.anonymous,
            account: state.account.clone(),
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&first);
        let decoded = codec::decode(&rules, contact, &bytes).unwrap_or_else(|err| panic!("{err}"));
        let second =
            codec::decode(&rules, contact, &codec::encode(&rules, state)).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(decoded, second);
        assert!(codec::encode(&rules, state).len() <= bytes.len(), "the second format is never the larger");
        (first_bytes, second_bytes) = (first_bytes + bytes.len(), second_bytes + codec::encode(&rules, state).len());
    }
    assert!(second_bytes < first_bytes * 4 / 5, "{second_bytes} bytes against {first_bytes}");
}

// ---- Property tests ------------------------------------------------------------------------------------

const KINDS: [&str; 12] = [
    "page_visit",
    "email_open",
    "email_click",
    "asset_download",
    "webinar_attended",
    "form_submit",
    "add_to_cart",
    "profile_update",
    "unsubscribe",
    "hard_bounce",
    "phase_change",
    "manual_adjustment",
];

prop_compose! {
    fn arb_event(index: usize)(
        contact in 0..6u8,
        kind in 0..KINDS.len(),
        step in 0..(3 * DAY),
        late in proptest::bool::weighted(0.1),
        item in prop_oneof!["https://acme.io/pricing", "https://acme.io/product/x", "whitepaper-roi", "demo-request", "other"],
        visit in 0..6u8,
        domain in prop_oneof!["acme.com", "gmail.com", "rivalsoft.com"],
        phase in prop_oneof!["lead", "mql", "sql", "customer"],
        points in -40.0..60.0f64,
        employees in 0..3000u32,
    ) -> (i64, bool, Event) {
        let kind = KINDS[kind];
        let mut event = Event {
            id: format!("e{index}"),
            contact: format!("c{contact}"),
            kind: kind.to_owned(),
            ts_ms: 0,
            item: Some(item.to_owned()),
            attrs: vec![
                ("visit_number".into(), AttrValue::Number(f64::from(visit))),
                ("source".into(), AttrValue::Text("google".into())),
                ("email_domain".into(), AttrValue::Text(domain.to_owned())),
                ("employees".into(), AttrValue::Number(f64::from(employees))),
                ("role".into(), AttrValue::Text("cto".into())),
                ("budget".into(), AttrValue::Flag(employees % 2 == 0)),
            ],
            adjustment: None,
            phase: None,
        };
        if kind == "phase_change" {
            event.phase = Some(phase.to_owned());
        }
        if kind == "manual_adjustment" {
            event.adjustment = Some(ManualAdjustment { points, reason: "call".into(), group: None, actor: None });
        }
        (step, late, event)
    }
}

/// A stream with rising times, some late events and some duplicated ids.
fn arb_stream(max: usize) -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(0..max, 1..max)
        .prop_flat_map(|indices| indices.into_iter().enumerate().map(|(i, _)| arb_event(i)).collect::<Vec<_>>())
        .prop_flat_map(|raw| {
            let len = raw.len();
            (Just(raw), proptest::collection::vec((0..len, proptest::bool::weighted(0.1)), len))
        })
        .prop_map(|(raw, duplicates)| {
            let mut now = T0;
            let mut events: Vec<Event> = Vec::with_capacity(raw.len());
            for (i, (step, late, mut event)) in raw.into_iter().enumerate() {
                now += step;
                event.ts_ms = if late { now - 2 * DAY } else { now };
                let (source, duplicate) = duplicates[i];
                if duplicate && source < events.len() {
                    event = events[source].clone();
                }
                events.push(event);
            }
            events
        })
}

/// Rules for the permutation test: the example scorecard plus rules that fire together on one event into
/// one group with mixed signs (so clamping could depend on their order), fractional points (so float
/// rounding could), and a second disqualification.
const MIXED_RULES: &str = r#"
[[rules]]
id = "junk_page"
on = "page_visit"
group = "engagement"
items = ["other", "demo-request"]
points = -12

[[rules]]
id = "free_mail_form"
on = "form_submit"
group = "engagement"
points = -20
when = [{ attr = "email_domain", in = ["gmail.com"] }]

[[rules]]
id = "huge_company_form"
on = "form_submit"
when = [{ attr = "employees", gt = 2500 }]
disqualify = "suspicious company size"

[[rules]]
id = "small_company_cart"
on = "add_to_cart"
group = "intent"
points = -25
when = [{ attr = "employees", lt = 1000 }]

[[rules]]
id = "bounce_cools_intent"
on = "hard_bounce"
group = "intent"
points = -20

[[rules]]
id = "bounce_cools_engagement"
on = "hard_bounce"
group = "engagement"
points = -30
max_times = 2
per = "3d"

[[rules]]
id = "email_open_bonus"
on = "email_open"
group = "engagement"
points = 0.1

[[rules]]
id = "email_open_noise"
on = "email_open"
group = "engagement"
points = -0.3

[[rules]]
id = "small_company_profile"
on = "profile_update"
group = "fit"
points = -35
when = [{ attr = "employees", lt = 100 }]
"#;

/// A rules file cut into its `[[rules]]` tables and the rest. A table runs from its header to the next
/// header, which is what TOML says too.
fn rule_tables(text: &str) -> (String, Vec<String>) {
    let mut rest = String::new();
    let mut tables: Vec<String> = Vec::new();
    let mut in_rule = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_rule = line.trim_end() == "[[rules]]";
            if in_rule {
                tables.push(String::new());
            }
        }
        let target = match tables.last_mut() {
            Some(table) if in_rule => table,
            _ => &mut rest,
        };
        target.push_str(line);
        target.push('\n');
    }
    (rest, tables)
}

fn mixed_rules_text() -> String {
    format!("{}{MIXED_RULES}", include_str!("../../examples/rules.toml"))
}

/// Everything one stream produced, with rules named by id rather than by their index in the file.
#[derive(Debug, PartialEq)]
struct StreamResult {
    outcomes: Vec<Outcome>,
    outputs: Vec<Output>,
    fired: Vec<(String, f64)>,
    conversions: Vec<Conversion>,
    states: Vec<(String, Vec<u8>)>,
}

fn stream_result(rules: &Rules, events: &[Event]) -> StreamResult {
    let mut store = MemoryStore::default();
    let mut partition = PartitionStream::new(TimerClock::StreamTime);
    let mut result = StreamResult {
        outcomes: Vec::new(),
        outputs: Vec::new(),
        fired: Vec::new(),
        conversions: Vec::new(),
        states: Vec::new(),
    };
    for event in events {
        let processed = partition.process(rules, &mut store, event);
        result.outcomes.push(processed.outcome);
        result.outputs.extend(processed.outputs);
        let fired = processed.attribution.fired.iter();
        result.fired.extend(fired.map(|fire| (rules.rules[fire.rule].id.clone(), fire.points)));
        result.conversions.extend(processed.attribution.conversions);
    }
    result.states = encoded(rules, &store);
    result
}

fn run_stream(
    rules: &Rules,
    partitions: &mut PartitionStream,
    store: &mut MemoryStore,
    events: &[Event],
) -> Vec<Output> {
    events.iter().flat_map(|event| partitions.process(rules, store, event).outputs).collect()
}

fn encoded(rules: &Rules, store: &MemoryStore) -> Vec<(String, Vec<u8>)> {
    store.contacts().iter().map(|(contact, state)| (contact.clone(), codec::encode(rules, state))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decay_is_monotone_and_never_crosses_zero(
        law in 0..4usize,
        value in -100.0..100.0f64,
        a in 0..(400 * DAY),
        b in 0..(400 * DAY),
    ) {
        let rules = rules();
        let group_index = [0, 1, 2, 3][law];
        let group = &rules.groups[group_index];
        let mut score = GroupScore::empty(T0);
        score.add(group, &[(1, value)], T0);
        let (early, late) = (T0 + a.min(b), T0 + a.max(b));
        let (v1, v2) = (score.value_at(group, early), score.value_at(group, late));
        prop_assert!(v2.abs() <= v1.abs() + 1e-12, "{v1} then {v2}");
        prop_assert!(v1 == 0.0 || v2 == 0.0 || v1.signum() == v2.signum(), "{v1} then {v2}");
    }

    #[test]
    fn the_record_writer_writes_what_prost_writes(events in arb_stream(60), topic in any::<u32>(), offset in any::<i64>()) {
        let rules = example_rules();
        let mut store = MemoryStore::default();
        run_stream(&rules, &mut PartitionStream::new(TimerClock::StreamTime), &mut store, &events);
        for state in store.contacts().values() {
            let offsets = [(topic, offset)];
            prop_assert_eq!(written_record(&rules, Some(state), &offsets), prost_record(&rules, Some(state), &offsets));
        }
    }

    #[test]
    fn explanations_sum_to_the_value(events in arb_stream(60), later in 0..(100 * DAY)) {
        let mixed = Rules::parse(&mixed_rules_text(), Path::new("mixed.toml"))
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        for rules in [example_rules(), mixed] {
            let mut store = MemoryStore::default();
            run_stream(&rules, &mut PartitionStream::new(TimerClock::StreamTime), &mut store, &events);
            for state in store.contacts().values() {
                for at in [state.clock_ms, state.clock_ms + later] {
                    let view = ContactView::new(&rules, state, at);
                    for group in &view.groups {
                        let sum: f64 = group.explanation.iter().map(|line| line.points).sum();
                        prop_assert!((sum - group.value).abs() <= 1e-9, "{}: {sum} vs {}", group.group, group.value);
                    }
                }
            }
        }
    }

    #[test]
    fn a_stream_split_anywhere_and_restored_equals_one_run(events in arb_stream(60), split in 0..60usize) {
        let rules = example_rules();
        let mut whole_store = MemoryStore::default();
        let whole = run_stream(&rules, &mut PartitionStream::new(TimerClock::StreamTime), &mut whole_store, &events);

        // First part, then a "crash": only the encoded states survive, and everything is rebuilt from them.
        let split = split.min(events.len());
        let mut store = MemoryStore::default();
        let mut partition = PartitionStream::new(TimerClock::StreamTime);
        let mut outputs = run_stream(&rules, &mut partition, &mut store, &events[..split]);
        let mut restored = MemoryStore::default();
        let mut resumed = PartitionStream::new(TimerClock::StreamTime);
        resumed.advance_stream_time(partition.stream_time_ms());
        for (contact, bytes) in encoded(&rules, &store) {
            let state = codec::decode(&rules, &contact, &bytes).map_err(|err| TestCaseError::fail(err.to_string()))?;
            resumed.track(&state);
            restored.save(state);
        }
        outputs.extend(run_stream(&rules, &mut resumed, &mut restored, &events[split..]));
        prop_assert_eq!(outputs, whole);
        prop_assert_eq!(encoded(&rules, &restored), encoded(&rules, &whole_store));
    }

    #[test]
    fn replaying_an_applied_event_changes_nothing(events in arb_stream(40), pick in 0..16usize) {
        let rules = example_rules();
        let mut store = MemoryStore::default();
        let mut partition = PartitionStream::new(TimerClock::StreamTime);
        let mut scored = Vec::new();
        for event in &events {
            if partition.process(&rules, &mut store, event).outcome == Outcome::Scored {
                scored.push(event.clone());
            }
        }
        // Among the 16 most recently applied events, each is within its contact's duplicate window.
        prop_assume!(!scored.is_empty());
        let event = &scored[scored.len() - 1 - pick.min(scored.len() - 1)];
        if let Some(state) = store.contacts().get(&event.contact).cloned() {
            let applied = apply(&rules, Some(state.clone()), event);
            prop_assert_eq!(applied.outcome, Outcome::Duplicate);
            prop_assert!(applied.outputs.is_empty());
            prop_assert_eq!(applied.state, Some(state));
        }
    }

    #[test]
    fn the_order_of_the_rules_in_the_file_changes_nothing(
        events in arb_stream(60),
        order in Just(rule_tables(&mixed_rules_text()).1).prop_shuffle(),
    ) {
        let text = mixed_rules_text();
        let rules = Rules::parse(&text, Path::new("mixed.toml")).map_err(|err| TestCaseError::fail(err.to_string()))?;
        let (rest, tables) = rule_tables(&text);
        prop_assert_eq!(tables.len(), rules.rules.len());
        let shuffled_text = format!("{rest}{}", order.concat());
        let mut shuffled =
            Rules::parse(&shuffled_text, Path::new("shuffled.toml")).map_err(|err| TestCaseError::fail(err.to_string()))?;
        // The version hashes the file's text; everything else must be the same.
        shuffled.version = rules.version.clone();
        prop_assert_eq!(stream_result(&shuffled, &events), stream_result(&rules, &events));
    }

    #[test]
    fn t_star_is_where_the_decayed_value_meets_the_level(
        value in 1.0..100.0f64,
        fraction in 0.01..0.99f64,
        law in prop_oneof![Just(0usize), Just(4usize)],
    ) {
        let rules = rules();
        let group = &rules.groups[law];
        let mut state = ContactState::new(&rules, "c", T0);
        state.groups[law].add(group, &[(1, value)], T0);
        let level = value * fraction;
        let due = fall_time(&rules, &state, Target::Group(law), level, T0);
        let due = due.ok_or_else(|| TestCaseError::fail("no crossing"))?;
        let (at, before) = (state.group_value(&rules, law, due), state.group_value(&rules, law, due - 1));
        prop_assert!(at < level && before >= level, "{before} ≥ {level} > {at}");
        // t* is the first millisecond past the exact crossing: the value there is within one
        // millisecond of decay of the level.
        prop_assert!(before - at <= 1e-6 * level.max(1.0), "{before} - {at}");
    }
}

#[test]
fn an_unlimited_rule_on_a_step_group_stops_at_the_contribution_cap() {
    let rules = Rules::parse(
        r#"
[[groups]]
name = "intent"
decay = "step"
expire_after = "1d"
[[phases]]
name = "lead"
[[rules]]
id = "ping"
on = "ping"
group = "intent"
points = 1
"#,
        Path::new("cap.toml"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let mut state = None;
    for index in 0..MAX_UNLIMITED_CONTRIBUTIONS as i64 {
        let applied = apply(&rules, state, &event(&format!("e{index}"), "ping", T0 + index));
        assert!(matches!(applied.outcome, Outcome::Scored), "{index}: {:?}", applied.outcome);
        state = applied.state;
    }
    let full = T0 + MAX_UNLIMITED_CONTRIBUTIONS as i64;
    let refused = apply(&rules, state.clone(), &event("over", "ping", full));
    assert!(
        matches!(&refused.outcome, Outcome::Rejected(reason) if reason.contains("\"ping\" has no max_times")),
        "{:?}",
        refused.outcome
    );
    assert_eq!(refused.state, state, "a rejected event changes nothing");
    assert!(refused.outputs.is_empty());
    // Once the first contributions expired, the rule fires again.
    let later = apply(&rules, state, &event("later", "ping", T0 + DAY + 10));
    assert!(matches!(later.outcome, Outcome::Scored), "{:?}", later.outcome);
}
