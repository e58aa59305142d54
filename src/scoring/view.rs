//! A contact as people read it: values decayed to a time, the explanation of every group, the history.
//! Served by the API and printed by `leadscore score` and `leadscore inspect`.

use serde::Serialize;

use super::grade;
use super::state::ContactState;
use crate::event::format_rfc3339;
use crate::rules::Rules;

/// One contact, read at a given time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactView {
    /// The contact id.
    pub contact: String,
    /// The time the values are decayed to.
    pub at: String,
    /// The latest event time the contact has seen.
    pub clock: String,
    /// Current phase.
    pub phase: String,
    /// Fit grade, if the rules define grades.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<&'static str>,
    /// Weighted total.
    pub total: f64,
    /// Disqualification reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disqualified: Option<String>,
    /// Every group with its value and explanation.
    pub groups: Vec<GroupView>,
    /// Thresholds that fired up and have not fallen back.
    pub thresholds_fired: Vec<String>,
    /// When the next decay-driven fall is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_timer: Option<String>,
    /// Recent changes, oldest first.
    pub history: Vec<HistoryView>,
}

/// One group's value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    /// Group name.
    pub group: String,
    /// Value at the view's time.
    pub value: f64,
    /// Decayed contribution per source; sums to `value`.
    pub explanation: Vec<ExplanationLine>,
}

/// Points one source holds in a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplanationLine {
    /// A rule id, `manual`, or `clamp` for points the group's range cut off.
    pub source: String,
    /// Points, decayed to the view's time.
    pub points: f64,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// A rule id, `manual`, or the phase entered.
    pub source: String,
    /// The event that caused it.
    pub event_id: String,
    /// When.
    pub ts: String,
    /// What the source gave the group after clamping (its points less its share of what the clamp cut;
    /// the change of the total, for phase entries).
    pub delta: f64,
    /// Value after.
    pub value_after: f64,
    /// The group changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Reason given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who gave manual points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl ContactView {
    /// Reads `state` at `at_ms` (never earlier than the contact's clock).
    pub fn new(rules: &Rules, state: &ContactState, at_ms: i64) -> Self {
        let at_ms = at_ms.max(state.clock_ms);
        let groups = rules
            .groups
            .iter()
            .zip(&state.groups)
            .map(|(group, score)| GroupView {
                group: group.name.clone(),
                value: score.value_at(group, at_ms),
                explanation: score
                    .contributions_at(group, at_ms)
                    .into_iter()
                    .map(|line| ExplanationLine {
                        source: rules.source_name(line.source).to_owned(),
                        points: line.points,
                    })
                    .collect(),
            })
            .collect();
        let thresholds_fired = rules
            .thresholds
            .iter()
            .zip(&state.fired)
            .filter(|(_, fired)| **fired)
            .map(|(threshold, _)| threshold.name.clone())
            .collect();
        let history = state
            .history
            .iter()
            .map(|entry| HistoryView {
                source: rules.source_name(entry.source).to_owned(),
                event_id: entry.event_id.clone(),
                ts: format_rfc3339(entry.ts_ms),
                delta: entry.delta,
                value_after: entry.value_after,
                group: rules.group_by_key(entry.group).map(|index| rules.groups[index].name.clone()),
                reason: entry.reason.clone(),
                actor: entry.actor.clone(),
            })
            .collect();
        ContactView {
            contact: state.contact.clone(),
            at: format_rfc3339(at_ms),
            clock: format_rfc3339(state.clock_ms),
            phase: rules.phases.get(state.phase).map_or_else(String::new, |phase| phase.name.clone()),
            grade: grade(rules, state, at_ms).map(|grade| grade.letter()),
            total: state.total(rules, at_ms),
            disqualified: state.disqualified.clone(),
            groups,
            thresholds_fired,
            next_timer: state.next_timer_ms.map(format_rfc3339),
            history,
        }
    }
}
