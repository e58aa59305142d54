//! What scoring an event did that rule statistics count: which rules fired with how many points, and
//! which phases the contact entered with the explanation it had just before, so marketers can see which
//! actions lead to conversions. It is data returned next to the outputs, never published.

use super::state::ContactState;
use crate::rules::Rules;

/// Rule firings and phase entries of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribution {
    /// Rules fired, in order.
    pub fired: Vec<RuleFire>,
    /// Phases entered, in order.
    pub conversions: Vec<Conversion>,
}

/// One rule firing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleFire {
    /// Index of the rule in [`Rules::rules`].
    pub rule: usize,
    /// Change of the group value it caused (after clamping; 0 for a disqualification).
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
