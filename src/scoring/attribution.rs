//! What scoring an event did that rule statistics count: which rules fired with how many points, and
//! which phases the contact entered with the explanation it had just before, so marketers can see which
//! actions lead to conversions. It is data returned next to the outputs, never published.

use super::state::ContactState;
use crate::rules::Rules;

/// Rule firings and phase entries of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribution {
    /// Rules fired: per group in rules-file order, its rules by id, then disqualifying rules by id.
    pub fired: Vec<RuleFire>,
    /// Phases entered, in order.
    pub conversions: Vec<Conversion>,
}

/// One rule firing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleFire {
    /// Index of the rule in [`Rules::rules`].
    pub rule: usize,
    /// What it gave after clamping (0 for a disqualification): its points, less its share of what the
    /// clamp cut when the event's points were summed into the group ([`super::GroupChange::share`]).
    pub points: f64,
}

/// A phase entry and the points each source held when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// Index of the phase left.
    pub from: usize,
    /// Index of the phase entered.
    pub to: usize,
    /// Per source key (a rule, `manual` or `clamp`): its decayed points summed over every group, just
    /// before the entered phase reset any group. Sources holding nothing are left out.
    pub contributions: Vec<(u32, f64)>,
}

impl Conversion {
    /// The explanation of `state` at `at_ms`, taken as it enters phase `to` from `from`.
    pub fn snapshot(rules: &Rules, state: &ContactState, from: usize, to: usize, at_ms: i64) -> Conversion {
        let mut contributions: Vec<(u32, f64)> = Vec::new();
        for (group, score) in rules.groups.iter().zip(&state.groups) {
            for line in score.contributions_at(group, at_ms) {
                match contributions.iter_mut().find(|(source, _)| *source == line.source) {
                    Some((_, points)) => *points += line.points,
                    None => contributions.push((line.source, line.points)),
                }
            }
        }
        contributions.retain(|(_, points)| *points != 0.0);
        Conversion { from, to, contributions }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::event::{DecodeLimits, json};
    use crate::generator::EventGenerator;
    use crate::rules::Rules;
    use crate::scoring::{ContactState, ContactView, apply};

    const START_MS: i64 = 1_772_366_400_000;

    /// A phase entry records the explanation the contact had just before it (decayed to the entry, before
    /// the reset), which is what the contact view showed at that moment.
    #[test]
    fn conversions_snapshot_the_explanation_before_the_reset() {
        let rules = Rules::parse(include_str!("../../examples/rules.toml"), Path::new("examples/rules.toml"))
            .unwrap_or_else(|err| panic!("{err}"));
        let mut generator = EventGenerator::new(3, 40, START_MS, 600_000);
        let mut states: BTreeMap<String, ContactState> = BTreeMap::new();
        for _ in 0..2_000 {
            let event = generator.next_event();
            let applied = apply(&rules, states.remove(&event.contact), &event);
            if let Some(state) = applied.state {
                states.insert(state.contact.clone(), state);
            }
        }
        let customer = rules.phase_index("customer").unwrap_or_else(|| panic!("no customer phase"));
        let mut checked = 0;
        for (contact, state) in &states {
            if state.phase == customer {
                continue;
            }
            let at = state.clock_ms + 3 * 86_400_000;
            let line = format!(
                r#"{{"id":"convert-{contact}","contact":"{contact}","type":"phase_change","phase":"customer","ts":{at}}}"#
            );
            let event = json::decode(line.as_bytes(), &DecodeLimits::default()).unwrap_or_else(|err| panic!("{err}"));
            let view = ContactView::new(&rules, state, at);
            let applied = apply(&rules, Some(state.clone()), &event);
            let [conversion] = applied.attribution.conversions.as_slice() else {
                panic!("one phase entry expected, got {:?}", applied.attribution.conversions);
            };
            assert_eq!((conversion.from, conversion.to), (state.phase, customer));
            let mut expected: BTreeMap<String, f64> = BTreeMap::new();
            for line in view.groups.iter().flat_map(|group| &group.explanation) {
                *expected.entry(line.source.clone()).or_default() += line.points;
            }
            expected.retain(|_, points| *points != 0.0);
            let recorded: BTreeMap<String, f64> = conversion
                .contributions
                .iter()
                .map(|(source, points)| (rules.source_name(*source).to_owned(), *points))
                .collect();
            assert_eq!(recorded.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{contact}");
            for (source, points) in &expected {
                assert!(
                    (recorded[source] - points).abs() < 1e-9,
                    "{contact} {source}: {} vs {points}",
                    recorded[source]
                );
            }
            assert!(applied.attribution.fired.is_empty());
            checked += 1;
        }
        assert!(checked > 10, "only {checked} contacts checked");
    }
}
