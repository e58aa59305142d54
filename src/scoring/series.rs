//! A contact's score over time, for the console's chart: every group's value from the first change the
//! history keeps to a given time, with the decay between changes drawn as samples and each change as a
//! jump (a point just before it and one after).
//!
//! After a group's last change the values are the state's own, so the series ends exactly where the
//! contact view is. Before it they come from the history: each entry's value after, decayed by the group's
//! law to the next change. That is exact for groups without decay and with exponential or linear decay;
//! a step group's contributions that expire between two older changes show at the next change. Before a
//! group's first change in the history, its value is the one just before that change, decayed backward.

use serde::Serialize;

use super::state::{ContactState, HistoryEntry};
use crate::event::format_rfc3339;
use crate::rules::{DecayLaw, Group, MANUAL_KEY, MERGE_KEY, Rules};

/// Samples drawn between two consecutive changes when a group decays.
pub const SAMPLES_BETWEEN: usize = 8;

/// The chart of one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The contact id.
    pub contact: String,
    /// The time the series ends at.
    pub at: String,
    /// Group names, in the order of each point's `groups`.
    pub groups: Vec<String>,
    /// The values over time, in time order.
    pub points: Vec<SeriesPoint>,
    /// One per history entry, oldest first.
    pub events: Vec<SeriesEvent>,
    /// The phases entered, oldest first.
    pub phases: Vec<PhaseMark>,
    /// The rules' thresholds, with their levels.
    pub thresholds: Vec<ThresholdLevel>,
}

/// Every value at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Epoch ms.
    pub t: i64,
    /// The weighted total.
    pub total: f64,
    /// Each group's value.
    pub groups: Vec<f64>,
}

/// One history entry on the time axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesEvent {
    /// Epoch ms.
    pub t: i64,
    /// The same time, RFC 3339.
    pub ts: String,
    /// A rule id, `manual`, `merge`, or the phase entered.
    pub source: String,
    /// The group changed, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What the entry gave (the change of the total, for phase entries).
    pub delta: f64,
    /// `rule`, `manual`, `merge`, `phase` or `disqualified`.
    pub kind: &'static str,
}

/// A phase entered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseMark {
    /// Epoch ms.
    pub t: i64,
    /// The same time, RFC 3339.
    pub ts: String,
    /// The phase.
    pub phase: String,
}

/// A threshold's levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdLevel {
    /// Its name.
    pub name: String,
    /// `total` or a group name.
    pub target: String,
    /// Fires up at this value.
    pub at: f64,
    /// Falls back below this value.
    pub down: f64,
}

impl Series {
    /// The series of `state` up to `at_ms` (never earlier than the contact's clock).
    pub fn new(rules: &Rules, state: &ContactState, at_ms: i64) -> Series {
        let at_ms = at_ms.max(state.clock_ms);
        let history: Vec<&HistoryEntry> = state.history.iter().collect();
        let tracks: Vec<Track<'_>> = (0..rules.groups.len().min(state.groups.len()))
            .map(|group| Track::new(rules, state, &history, group))
            .collect();
        let mut times: Vec<i64> = history.iter().map(|entry| entry.ts_ms).collect();
        times.dedup();
        let decays = rules.groups.iter().any(|group| group.decay != DecayLaw::None);
        let point = |t: i64, before: bool| {
            let groups: Vec<f64> = tracks.iter().map(|track| track.value(t, before)).collect();
            let total = rules.groups.iter().zip(&groups).fold(0.0, |sum, (group, value)| sum + group.weight * value);
            SeriesPoint { t, total, groups }
        };
        let mut points = Vec::new();
        for (index, &t) in times.iter().enumerate() {
            points.push(point(t, true));
            points.push(point(t, false));
            let next = times.get(index + 1).copied().unwrap_or(at_ms);
            if decays && next > t {
                let step = (next - t) as f64 / (SAMPLES_BETWEEN + 1) as f64;
                points.extend((1..=SAMPLES_BETWEEN).map(|sample| point(t + (step * sample as f64) as i64, false)));
            }
        }
        if times.last().is_none_or(|&last| last < at_ms) {
            points.push(point(at_ms, false));
        }
        Series {
            contact: state.contact.clone(),
            at: format_rfc3339(at_ms),
            groups: rules.groups.iter().map(|group| group.name.clone()).collect(),
            points,
            events: history.iter().map(|entry| event(rules, entry)).collect(),
            phases: history
                .iter()
                .filter_map(|entry| {
                    let phase = phase_entered(rules, entry)?;
                    Some(PhaseMark {
                        t: entry.ts_ms,
                        ts: format_rfc3339(entry.ts_ms),
                        phase: rules.phases[phase].name.clone(),
                    })
                })
                .collect(),
            thresholds: rules
                .thresholds
                .iter()
                .map(|threshold| ThresholdLevel {
                    name: threshold.name.clone(),
                    target: rules.target_name(threshold.target).to_owned(),
                    at: threshold.at,
                    down: threshold.down_level(),
                })
                .collect(),
        }
    }
}

/// The phase a history entry records entering, if it is a phase entry.
fn phase_entered(rules: &Rules, entry: &HistoryEntry) -> Option<usize> {
    if entry.group != 0 {
        return None;
    }
    rules.phase_by_key(entry.source)
}

fn event(rules: &Rules, entry: &HistoryEntry) -> SeriesEvent {
    let group = rules.group_by_key(entry.group).map(|index| rules.groups[index].name.clone());
    let kind = match () {
        () if phase_entered(rules, entry).is_some() => "phase",
        () if entry.source == MANUAL_KEY => "manual",
        () if entry.source == MERGE_KEY => "merge",
        () if group.is_none() => "disqualified",
        () => "rule",
    };
    SeriesEvent {
        t: entry.ts_ms,
        ts: format_rfc3339(entry.ts_ms),
        source: rules.source_name(entry.source).to_owned(),
        group,
        delta: entry.delta,
        kind,
    }
}

/// One group's values over time: its changes in the history, then the state's own value.
struct Track<'a> {
    group: &'a Group,
    state: &'a ContactState,
    index: usize,
    /// (time, value after) of each change, oldest first.
    changes: Vec<(i64, f64)>,
    /// The value just before the first change.
    first_before: f64,
}

impl<'a> Track<'a> {
    fn new(rules: &'a Rules, state: &'a ContactState, history: &[&HistoryEntry], index: usize) -> Track<'a> {
        let group = &rules.groups[index];
        let mut changes: Vec<(i64, f64)> = Vec::new();
        let mut first_before = None;
        for entry in history {
            let value = if entry.group == group.key {
                // The entries of one event share its time and value after: their deltas sum to the change.
                if first_before.is_none() {
                    let same_event = history
                        .iter()
                        .filter(|other| other.ts_ms == entry.ts_ms && other.group == group.key)
                        .fold(0.0, |sum, other| sum + other.delta);
                    first_before = Some(entry.value_after - same_event);
                }
                entry.value_after
            } else if phase_entered(rules, entry).is_some_and(|phase| rules.phases[phase].resets.contains(&index)) {
                0.0
            } else {
                continue;
            };
            match changes.last_mut() {
                Some(last) if last.0 == entry.ts_ms => last.1 = value,
                _ => changes.push((entry.ts_ms, value)),
            }
        }
        let first_before = first_before.unwrap_or_else(|| changes.first().map_or(0.0, |&(_, value)| value));
        Track { group, state, index, changes, first_before }
    }

    /// The value at `t`, or just before any change at `t` when `before` is set.
    fn value(&self, t: i64, before: bool) -> f64 {
        let score = &self.state.groups[self.index];
        let last = self.changes.iter().rposition(|&(time, _)| if before { time < t } else { time <= t });
        if t > score.since_ms || (t == score.since_ms && !before) || self.changes.is_empty() {
            return score.value_at(self.group, t.max(score.since_ms));
        }
        match last {
            Some(last) => {
                let (time, value) = self.changes[last];
                self.group.decay.decay(value, (t - time).max(0) as f64)
            }
            None => {
                let first = self.changes.first().map_or(t, |&(time, _)| time);
                decayed_backward(self.group.decay, self.first_before, first - t)
            }
        }
    }
}

/// The value `earlier_ms` before a time at which it was `value`: decay run backward. A value of 0 under
/// linear decay could have been reached from anything, and is kept.
fn decayed_backward(law: DecayLaw, value: f64, earlier_ms: i64) -> f64 {
    let earlier = earlier_ms.max(0) as f64;
    match law {
        DecayLaw::None | DecayLaw::Step { .. } => value,
        DecayLaw::Exponential { half_life_ms } => value * (earlier / half_life_ms).exp2(),
        DecayLaw::Linear { per_ms } => value + value.signum() * per_ms * earlier,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::event::Event;
    use crate::generator::EventGenerator;
    use crate::scoring::{ContactView, apply};

    fn example_rules() -> Rules {
        let text = include_str!("../../examples/rules.toml");
        Rules::parse(text, Path::new("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"))
    }

    /// One contact's state after the generated events for it, in time order.
    fn scored(rules: &Rules, seed: u64, contact: &str) -> ContactState {
        let mut generator = EventGenerator::new(seed, 3, 1_772_366_400_000, 3_600_000);
        let mut state = None;
        for _ in 0..400 {
            let event: Event = generator.next_event();
            if event.contact == contact {
                state = apply(rules, state, &event).state;
            }
        }
        state.unwrap_or_else(|| ContactState::new(rules, contact, 1_772_366_400_000))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// At every change the history keeps, the series shows the value after it; at the end it shows
        /// what the contact view shows; and every total is its groups' weighted sum.
        #[test]
        fn the_series_passes_through_every_change_and_ends_at_the_view(seed in 0u64..10_000, later in 0i64..90) {
            let rules = example_rules();
            let state = scored(&rules, seed, "contact-0000001");
            let at = state.clock_ms + later * 86_400_000;
            let series = Series::new(&rules, &state, at);
            prop_assert!(state.history.len() >= 5 && series.points.len() > 2 * state.history.len().min(10));
            for entry in &state.history {
                let Some(group) = rules.group_by_key(entry.group) else { continue };
                let last_at_time = state.history.iter().rev().find(|other| other.ts_ms == entry.ts_ms && other.group == entry.group);
                if last_at_time.map(|other| other.value_after) != Some(entry.value_after) {
                    continue;
                }
                let after = series.points.iter().rev().find(|point| point.t == entry.ts_ms);
                let shown = after.map(|point| point.groups[group]);
                // A phase entered at the same time may reset the group after the change.
                let reset = state.history.iter().any(|other| other.ts_ms == entry.ts_ms && other.group == 0);
                prop_assert!(reset || shown.is_some_and(|shown| (shown - entry.value_after).abs() < 1e-9),
                    "{} at {}: {:?} vs {}", rules.groups[group].name, entry.ts_ms, shown, entry.value_after);
            }
            let view = ContactView::new(&rules, &state, at);
            let last = series.points.last();
            prop_assert!(last.is_some_and(|point| point.t == at && (point.total - view.total).abs() < 1e-9));
            for point in &series.points {
                let weighted = rules.groups.iter().zip(&point.groups).fold(0.0, |sum, (group, value)| sum + group.weight * value);
                prop_assert!((point.total - weighted).abs() < 1e-9);
            }
            prop_assert!(series.points.windows(2).all(|pair| pair[0].t <= pair[1].t));
            prop_assert_eq!(series.events.len(), state.history.len());
        }
    }

    #[test]
    fn exponential_decay_runs_back_to_what_it_was() {
        let law = DecayLaw::Exponential { half_life_ms: 1000.0 };
        assert!((decayed_backward(law, law.decay(80.0, 2500.0), 2500) - 80.0).abs() < 1e-9);
        let linear = DecayLaw::Linear { per_ms: 0.001 };
        assert!((decayed_backward(linear, linear.decay(-30.0, 5000.0), 5000) + 30.0).abs() < 1e-9);
        assert_eq!(linear.decay(3.0, 5000.0), 0.0);
    }
}
