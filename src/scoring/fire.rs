//! Firing the rules one event matched, together: limits, points summed per group and clamped once, and
//! disqualification.
//!
//! The rules of one event act as one change, so their order in the rules file cannot change a score.
//! [`super::plan`] hands them over sorted by rule id, and everything here runs in that order (sums of
//! points, history, statistics), so even float rounding and the order of stored lists are the same
//! whatever the file's order.

use super::attribution::RuleFire;
use super::emit::Emitter;
use super::push_history;
use super::state::{ContactState, HistoryEntry, RuleCount};
use crate::event::Event;
use crate::rules::{Effect, Rules};

/// Unexpired contributions a step-expiry group keeps from rules without `max_times` and from manual
/// points. Such a group keeps one contribution per firing until it expires, so without this a contact's
/// record would grow with its events until the changelog could no longer take it; an event that would add
/// one more is rejected (dead-lettered) instead. At about 30 bytes each this is 150 KB of record.
pub const MAX_UNLIMITED_CONTRIBUTIONS: usize = 5_000;

/// Refuses an event that would credit a step-expiry group already holding
/// [`MAX_UNLIMITED_CONTRIBUTIONS`] unexpired contributions, through a rule without a limit (`rule`) or a
/// manual adjustment (`None`).
pub(super) fn within_record_bound(
    rules: &Rules,
    state: &ContactState,
    group: usize,
    rule: Option<usize>,
    at_ms: i64,
) -> Result<(), String> {
    let (Some(spec), Some(score)) = (rules.groups.get(group), state.groups.get(group)) else { return Ok(()) };
    if !matches!(spec.decay, crate::rules::DecayLaw::Step { .. }) {
        return Ok(());
    }
    if rule.is_some_and(|index| rules.rules[index].limit.is_some()) {
        return Ok(());
    }
    let live = score.contributions.iter().filter(|c| c.expires_at_ms.is_none_or(|end| end > at_ms)).count();
    if live < MAX_UNLIMITED_CONTRIBUTIONS {
        return Ok(());
    }
    let source = match rule {
        Some(index) => format!("rule {:?} has no max_times", rules.rules[index].id),
        None => "manual points have no limit".to_owned(),
    };
    Err(format!(
        "the contact holds {live} unexpired contributions in step-expiry group {:?}, the most its record keeps, \
         and {source}",
        spec.name
    ))
}

/// Whether rule `index` may fire again for this contact at `at_ms`.
pub(super) fn within_limit(rules: &Rules, state: &ContactState, index: usize, at_ms: i64) -> bool {
    let rule = &rules.rules[index];
    let Some(limit) = rule.limit else {
        return true;
    };
    match state.rule_counts.iter().find(|count| count.rule == rule.key) {
        None => true,
        Some(count) => {
            let window_over = limit.per_ms.is_some_and(|per| at_ms >= count.window_start_ms.saturating_add(per));
            window_over || count.count < limit.max_times
        }
    }
}

/// Fires the rules `indices` (sorted by rule id) on one event. Returns whether any group value changed.
///
/// Per group, the points of every rule firing into it are summed and the group is clamped once (see
/// [`super::GroupScore::add`]); the explanation credits each rule its points and the `clamp` line what
/// the range cut. Each rule gets one history entry and one [`RuleFire`], in group order and then by rule
/// id, whose delta is its share of the group's change (see [`super::GroupChange::share`]: its points,
/// less its part of what the clamp cut), so the deltas of one event sum to the change (up to rounding);
/// `value_after` is the group's value after the whole event.
///
/// Disqualifying rules act after the points, so their history entry shows the total with this event's
/// points in it. If several fire, the first by rule id gives the reason; all of them count toward their
/// limits and statistics (with 0 points).
pub(super) fn fire_rules(
    rules: &Rules,
    state: &mut ContactState,
    indices: &[usize],
    event: &Event,
    at_ms: i64,
    emit: &mut Emitter,
) -> bool {
    for index in indices {
        count_firing(rules, state, *index, at_ms);
    }
    let points_into = |group: usize| {
        indices.iter().filter_map(move |index| {
            let rule = &rules.rules[*index];
            match rule.effect {
                Effect::Points(points) if rule.group == Some(group) => Some((*index, rule.key, points)),
                _ => None,
            }
        })
    };
    let mut changed = false;
    let mut credits: Vec<(u32, f64)> = Vec::with_capacity(indices.len());
    for (group, group_rules) in rules.groups.iter().enumerate() {
        credits.clear();
        credits.extend(points_into(group).map(|(_, key, points)| (key, points)));
        let Some(score) = state.groups.get_mut(group).filter(|_| !credits.is_empty()) else {
            continue;
        };
        let change = score.add(group_rules, &credits, at_ms);
        changed |= change.after != change.before;
        for (index, key, points) in points_into(group) {
            let share = change.share(points);
            let entry = HistoryEntry {
                source: key,
                event_id: event.id.clone(),
                ts_ms: at_ms,
                delta: share,
                value_after: change.after,
                group: group_rules.key,
                reason: None,
                actor: None,
            };
            push_history(state, entry, rules.history_limit);
            emit.rule_fired(RuleFire { rule: index, points: share });
        }
    }
    for index in indices {
        let rule = &rules.rules[*index];
        match &rule.effect {
            Effect::Points(_) if rule.group.is_some() => {}
            Effect::Points(_) => emit.rule_fired(RuleFire { rule: *index, points: 0.0 }),
            Effect::Disqualify(reason) => {
                if state.disqualified.is_none() {
                    state.disqualified = Some(reason.clone());
                    let entry = HistoryEntry {
                        source: rule.key,
                        event_id: event.id.clone(),
                        ts_ms: at_ms,
                        delta: 0.0,
                        value_after: state.total(rules, at_ms),
                        group: 0,
                        reason: Some(reason.clone()),
                        actor: None,
                    };
                    push_history(state, entry, rules.history_limit);
                }
                emit.rule_fired(RuleFire { rule: *index, points: 0.0 });
            }
        }
    }
    changed
}

/// Counts a firing of rule `index` toward its limit, opening a new window when the last one is over.
fn count_firing(rules: &Rules, state: &mut ContactState, index: usize, at_ms: i64) {
    let rule = &rules.rules[index];
    let Some(limit) = rule.limit else {
        return;
    };
    match state.rule_counts.iter_mut().find(|count| count.rule == rule.key) {
        Some(count) => {
            if limit.per_ms.is_some_and(|per| at_ms >= count.window_start_ms.saturating_add(per)) {
                count.count = 0;
                count.window_start_ms = at_ms;
            }
            count.count += 1;
        }
        None => state.rule_counts.push(RuleCount { rule: rule.key, count: 1, window_start_ms: at_ms }),
    }
}
