//! Reloading: validation before the switch, and contact state written under one rules version read and
//! scored under another without a panic or a misread.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::event::Event;
use crate::runtime::record::StoredContact;
use crate::scoring::{self, Outcome, OutputBody, codec};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000;

const OLD: &str = r#"
name = "old"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "10d"
[[groups]]
name = "legacy"
[[phases]]
name = "lead"
[[phases]]
name = "mql"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 30
max_times = 2
[[rules]]
id = "legacy_points"
on = "page_visit"
group = "legacy"
points = 7
[[thresholds]]
name = "warm"
target = "engagement"
at = 50
hysteresis = 10
[[thresholds]]
name = "retired"
target = "legacy"
at = 5
"#;

/// The group `legacy`, the threshold `retired` and the phase `mql` are gone; `fit` and the threshold
/// `hot` are new; the half-life of `engagement` is 20 days instead of 10; `visit` allows 3 firings.
const NEW: &str = r#"
name = "new"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "20d"
[[groups]]
name = "fit"
[[phases]]
name = "lead"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 30
max_times = 3
[[rules]]
id = "profile"
on = "profile_update"
group = "fit"
points = 10
[[thresholds]]
name = "warm"
target = "engagement"
at = 50
hysteresis = 10
[[thresholds]]
name = "hot"
target = "engagement"
at = 40
"#;

fn compile(text: &str) -> Rules {
    Rules::parse(text, Path::new("rules.toml")).unwrap_or_else(|err| panic!("{err}"))
}

fn visit(id: &str, ts_ms: i64) -> Event {
    Event {
        id: id.to_owned(),
        contact: "c1".to_owned(),
        kind: "page_visit".to_owned(),
        ts_ms,
        item: None,
        attrs: Vec::new(),
        adjustment: None,
        phase: None,
    }
}

fn source() -> RulesSource {
    RulesSource { path: PathBuf::from("rules.toml"), history: Some(7) }
}

#[test]
fn a_valid_file_replaces_the_rules_and_bumps_the_generation() {
    let active = ActiveRules::new(Arc::new(compile(OLD)));
    let before = active.get();
    let reload = reload_text(&source(), NEW, &active);
    assert!(matches!(&reload, Reload::Applied { from, to } if from.starts_with("old@") && to.starts_with("new@")));
    assert_eq!(active.generation(), 1);
    assert!(active.get().version.starts_with("new@"));
    assert_eq!(active.get().history_limit, 7, "the config's history override applies to reloaded rules");
    assert!(before.version.starts_with("old@"), "a reader keeps the version it started with");
}

#[test]
fn an_invalid_file_is_rejected_with_its_location_and_the_rules_stay() {
    let active = ActiveRules::new(Arc::new(compile(OLD)));
    let broken = NEW.replace("points = 10", "points = \"ten\"");
    match reload_text(&source(), &broken, &active) {
        Reload::Rejected(err) => {
            let text = err.to_string();
            assert!(text.starts_with("rules.toml:"), "{text}");
            assert!(err.line > 1 && err.column > 1, "{text}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(active.generation(), 0);
    assert!(active.get().version.starts_with("old@"));
}

#[test]
fn the_same_version_reloads_nothing() {
    let active = ActiveRules::new(Arc::new(source().compile(OLD).unwrap_or_else(|err| panic!("{err}"))));
    assert!(matches!(reload_text(&source(), OLD, &active), Reload::Unchanged));
    assert_eq!(active.generation(), 0);
}

#[test]
fn state_written_under_old_rules_reads_and_scores_under_new_rules() {
    let (old, new) = (compile(OLD), compile(NEW));
    let mut state = None;
    for (index, ts) in [T0, T0 + 1_000].into_iter().enumerate() {
        state = scoring::apply(&old, state, &visit(&format!("e{index}"), ts)).state;
    }
    let mut state = state.unwrap_or_else(|| panic!("no state"));
    state.phase = old.phase_index("mql").unwrap_or_else(|| panic!("no mql"));
    assert!(state.fired.iter().all(|fired| *fired), "warm and retired fired under the old rules");
    let stored = StoredContact { state: Some(state.clone()), offsets: vec![(1, 41)], ..StoredContact::default() };
    let bytes = stored.encode(&old);

    let read = StoredContact::decode(&new, "c1", &bytes).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(read.offsets, vec![(1, 41)], "runtime bookkeeping survives");
    let read = read.state.unwrap_or_else(|| panic!("no state"));
    assert_eq!(read.groups.len(), new.groups.len());
    assert_eq!(read.groups[0], state.groups[0], "engagement keeps its value and contributions");
    assert_eq!(read.groups[1].value, 0.0, "the new group fit starts at 0");
    assert_eq!(read.fired, vec![true, false], "warm stays fired; the new threshold hot starts armed");
    assert_eq!(read.phase, 0, "a contact in a removed phase is read as in the first phase");
    assert_eq!(read.rule_counts, state.rule_counts, "limit counts are kept");

    // The new half-life applies from the group's last change, not from the reload.
    let later = T0 + 1_000 + 20 * DAY;
    let value = read.group_value(&new, 0, later);
    assert!((value - 30.0).abs() < 1e-4, "60 points halve once in 20 days under the new law, got {value}");

    // `visit` fired twice; the new limit allows a third firing, and new thresholds are evaluated.
    let applied = scoring::apply(&new, Some(read), &visit("e2", later));
    assert_eq!(applied.outcome, Outcome::Scored);
    let after = applied.state.unwrap_or_else(|| panic!("no state"));
    assert!((after.group_value(&new, 0, later) - 60.0).abs() < 1e-4);
    let crossings: Vec<(String, String)> = applied
        .outputs
        .iter()
        .filter_map(|out| match &out.body {
            OutputBody::ThresholdCrossed(crossed) => {
                Some((crossed.threshold.clone(), format!("{:?}", crossed.direction)))
            }
            _ => None,
        })
        .collect();
    // The stored timer (solved under the 10-day half-life) is due; the fall it stands for is solved again
    // under the 20-day law, at its exact t*. Then the new points lift warm again and reach hot.
    let pair = |name: &str, direction: &str| (name.to_owned(), direction.to_owned());
    assert_eq!(crossings, vec![pair("warm", "Down"), pair("warm", "Up"), pair("hot", "Up")]);
    let fall = applied.outputs.first().map(|out| out.ts_ms).unwrap_or_default();
    let (value, since) = (state.groups[0].value, state.groups[0].since_ms);
    let exact = since + (20.0 * DAY as f64 * (value / 40.0).log2()).ceil() as i64;
    assert!((fall - exact).abs() <= 1, "warm fell at {fall}, the 20-day law says {exact}");
    assert!(applied.outputs.iter().all(|out| out.rules_version == new.version));
    let fourth = scoring::apply(&new, Some(after), &visit("e3", later + 1));
    assert_eq!(fourth.outcome, Outcome::Ignored, "the kept count reaches the new limit of 3");

    // A timer stored under the old rules fires under the new ones without a panic.
    let stale = codec::decode(&new, "c1", &codec::encode(&old, &state)).unwrap_or_else(|err| panic!("{err}"));
    let due = stale.next_timer_ms.unwrap_or_else(|| panic!("the old rules set a timer"));
    let fired = scoring::on_timer(&new, stale, due);
    assert_eq!(fired.outcome, Outcome::Scored);
}
