//! The pure scoring engine: `(rules, contact state, event) → (contact state, outputs)`.
//!
//! Nothing here reads a clock or does I/O. Time is the event time: each contact keeps a clock at the
//! latest event time it has seen, a late event is scored at that clock, and decay is applied lazily and
//! exactly when a value is read. [`apply`] scores one event; [`on_timer`] fires the decay-driven threshold
//! falls that are due. Replaying the same input gives the same states and outputs, bit for bit.

mod attribution;
pub mod codec;
pub mod codec_write;
mod crossing;
mod emit;
mod fire;
mod merge;
mod output;
mod output_json;
mod series;
mod state;
mod view;

pub use attribution::{Attribution, Conversion, RuleFire};
#[cfg(test)]
pub(crate) use crossing::tests::DIPPING;
pub use crossing::{BOUND_MARGIN, Decaying, fall_time, first_failure, first_time, target_value};
pub use fire::MAX_UNLIMITED_CONTRIBUTIONS;
pub use merge::{MAX_ALIAS_BYTES, MAX_ALIAS_HOPS, alias_bytes, alias_cycle, merge, merge_event, merge_fits};
pub use output::{
    ContactErased, ContactMerged, Direction, GroupValue, Output, OutputBody, PhaseChanged, ScoreChanged,
    ThresholdCrossed, direction_to_proto,
};
pub use series::{Series, SeriesPoint};
pub use state::{ContactState, Contribution, GroupChange, GroupScore, HistoryEntry, RuleCount};
pub use view::{ContactView, ExplanationLine, GroupView, HistoryView};

use emit::Emitter;

use crate::event::{ERASE, Event, MANUAL_ADJUSTMENT, ManualAdjustment, PHASE_CHANGE, REQUALIFY};
use crate::hashing::id_fingerprint;
use crate::rules::{Grade, MANUAL_KEY, Rules, Threshold};

/// What scoring an event or a timer did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The state changed. Not always a value: rules that fire on a group held at its bound change no
    /// value, but they count toward limits, go into the history, and the event's id is remembered.
    Scored,
    /// Nothing listens to this event (unknown type, no rule matched, or every match is at its limit). The
    /// contact is left exactly as it was: its clock, its recent ids and its thresholds.
    Ignored,
    /// The contact has seen this event id recently.
    Duplicate,
    /// The event is valid JSON but makes no sense under these rules (an unknown phase or group).
    Rejected(String),
}

/// The result of [`apply`] or [`on_timer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The new state; `None` if the contact does not exist (erased, or never scored).
    pub state: Option<ContactState>,
    /// Outputs to publish, in order.
    pub outputs: Vec<Output>,
    /// What happened.
    pub outcome: Outcome,
    /// Rules fired and phases entered, for rule statistics.
    pub attribution: Attribution,
}

/// What an event will do, decided before any state changes.
enum Plan {
    Nothing,
    Erase,
    EnterPhase(usize),
    Manual(usize),
    Requalify,
    Rules(Vec<usize>),
}

/// Scores one event against a contact's state (`None` for a contact not seen before).
pub fn apply(rules: &Rules, state: Option<ContactState>, event: &Event) -> Applied {
    let unchanged =
        |state, outcome| Applied { state, outputs: Vec::new(), outcome, attribution: Attribution::default() };
    let at_ms = state.as_ref().map_or(event.ts_ms, |state| state.clock_ms.max(event.ts_ms));
    // An anonymous visitor idle past its expiry is gone before this event, which finds no contact.
    let expires = state.as_ref().and_then(|state| idle_expiry(rules, state)).is_some_and(|expiry| expiry <= at_ms);
    let current = state.as_ref().filter(|_| !expires);
    let fingerprint = id_fingerprint(&event.id);
    if current.is_some_and(|state| state.recent_ids.contains(&fingerprint)) {
        return unchanged(state, Outcome::Duplicate);
    }
    let plan = match plan(rules, current, event, at_ms) {
        Ok(plan) => plan,
        Err(reason) => return unchanged(state, Outcome::Rejected(reason)),
    };
    // An event that names another account than the contact's moves it there, even if no rule listens.
    let named_account = rules.accounts.as_ref().and_then(|accounts| accounts.account_of(event));
    let moves =
        named_account.as_ref().is_some_and(|named| current.is_none_or(|state| state.account.as_ref() != Some(named)));
    let plan = match plan {
        Plan::Nothing if moves => Plan::Rules(Vec::new()),
        Plan::Nothing => return unchanged(state, Outcome::Ignored),
        plan => plan,
    };
    let (state, expired) = match state {
        Some(old) if expires => (None, expire(rules, old)),
        state => (state, Vec::new()),
    };
    let mut state = state.unwrap_or_else(|| ContactState::new(rules, &event.contact, at_ms));
    state.anonymous &= rules.anonymous.as_ref().is_some_and(|anonymous| anonymous.is_anonymous(event));
    if named_account.is_some() {
        state.account = named_account;
    }
    let mut emit = Emitter::new(rules, &event.contact, &event.id);
    fire_due_timers(rules, &mut state, at_ms, &mut emit);
    state.clock_ms = at_ms;

    if let Plan::Erase = plan {
        let mut outputs = expired;
        outputs.extend(emit.finish(&state));
        let id = [event.id.as_str(), ":erased"].concat();
        outputs.push(emit::erased(rules, &event.contact, id, at_ms, "erase", state.merged_ids));
        let attribution = emit.take_attribution();
        return Applied { state: None, outputs, outcome: Outcome::Scored, attribution };
    }

    let old_total = state.total(rules, at_ms);
    let was_disqualified = state.disqualified.is_some();
    let mut fired_rules = Vec::new();
    let mut cause = ["event:", &event.kind].concat();
    // `score_changed` is published only for a real change: of a group value (the total follows from
    // them) or of the qualification. Rules firing on a group held at its bound change neither.
    let mut values_changed = false;
    match plan {
        Plan::Nothing | Plan::Erase => {}
        Plan::EnterPhase(phase) => {
            enter_phase(rules, &mut state, phase, at_ms, format!("event:{}", event.id), &mut emit);
        }
        Plan::Manual(group) => {
            if let Some(adjustment) = &event.adjustment {
                values_changed = add_manual(rules, &mut state, group, adjustment, event, at_ms);
                cause = format!("manual:{}", adjustment.reason);
            }
        }
        Plan::Requalify => {
            state.disqualified = None;
            cause = "requalified".to_owned();
        }
        Plan::Rules(indices) => {
            values_changed = fire::fire_rules(rules, &mut state, &indices, event, at_ms, &mut emit);
            fired_rules = indices.iter().map(|index| rules.rules[*index].id.clone()).collect();
            if !was_disqualified && state.disqualified.is_some() {
                cause = "disqualified".to_owned();
            }
        }
    }
    let changed_qualification = was_disqualified != state.disqualified.is_some();
    if values_changed || changed_qualification {
        emit.score_changed(&state, at_ms, old_total, fired_rules, cause, changed_qualification);
    }
    if state.disqualified.is_none() {
        evaluate_thresholds(rules, &mut state, at_ms, &mut emit);
    }
    remember(&mut state.recent_ids, fingerprint, rules.dedup_window);
    state.next_timer_ms = next_timer(rules, &state);
    let mut outputs = expired;
    outputs.extend(emit.finish(&state));
    let attribution = emit.take_attribution();
    Applied { state: Some(state), outputs, outcome: Outcome::Scored, attribution }
}

/// Fires the decay-driven threshold falls of one contact that are due at `now_ms`.
pub fn on_timer(rules: &Rules, state: ContactState, now_ms: i64) -> Applied {
    if state.next_timer_ms.is_none_or(|due| due > now_ms) {
        return Applied {
            state: Some(state),
            outputs: Vec::new(),
            outcome: Outcome::Ignored,
            attribution: Attribution::default(),
        };
    }
    if idle_expiry(rules, &state).is_some_and(|expiry| expiry <= now_ms) {
        let outputs = expire(rules, state);
        return Applied { state: None, outputs, outcome: Outcome::Scored, attribution: Attribution::default() };
    }
    let mut state = state;
    let contact = state.contact.clone();
    let mut emit = Emitter::new(rules, &contact, "");
    fire_due_timers(rules, &mut state, now_ms, &mut emit);
    state.next_timer_ms = next_timer(rules, &state);
    let outputs = emit.finish(&state);
    Applied { state: Some(state), outputs, outcome: Outcome::Scored, attribution: Attribution::default() }
}

fn plan(rules: &Rules, state: Option<&ContactState>, event: &Event, at_ms: i64) -> Result<Plan, String> {
    let current_phase = state.map_or(0, |state| state.phase);
    match event.kind.as_str() {
        ERASE => Ok(if state.is_some() { Plan::Erase } else { Plan::Nothing }),
        PHASE_CHANGE => {
            let name = event.phase.as_deref().unwrap_or_default();
            let phase = rules.phase_index(name).ok_or_else(|| format!("unknown phase {name:?}"))?;
            Ok(if phase == current_phase { Plan::Nothing } else { Plan::EnterPhase(phase) })
        }
        MANUAL_ADJUSTMENT => {
            let group = match event.adjustment.as_ref().and_then(|adjustment| adjustment.group.as_deref()) {
                Some(name) => rules.group_index(name).ok_or_else(|| format!("unknown group {name:?}"))?,
                None => rules.manual_group,
            };
            if let Some(state) = state {
                fire::within_record_bound(rules, state, group, None, at_ms)?;
            }
            Ok(Plan::Manual(group))
        }
        REQUALIFY => {
            Ok(if state.is_some_and(|state| state.disqualified.is_some()) { Plan::Requalify } else { Plan::Nothing })
        }
        kind => {
            let mut firing: Vec<usize> = rules
                .rules_for(kind)
                .iter()
                .copied()
                .filter(|index| {
                    let rule = &rules.rules[*index];
                    rule.matches(event) && state.is_none_or(|state| fire::within_limit(rules, state, *index, at_ms))
                })
                .collect();
            if let Some(state) = state {
                for &index in &firing {
                    if let Some(group) = rules.rules[index].group {
                        fire::within_record_bound(rules, state, group, Some(index), at_ms)?;
                    }
                }
            }
            // By id, not by file order: the rules of one event act together, in an order of their own.
            firing.sort_unstable_by(|a, b| rules.rules[*a].id.cmp(&rules.rules[*b].id));
            Ok(if firing.is_empty() { Plan::Nothing } else { Plan::Rules(firing) })
        }
    }
}

/// Credits a manual adjustment; returns whether the group's value changed. Like a rule's, its history
/// entry shows what it gave after the clamp.
fn add_manual(
    rules: &Rules,
    state: &mut ContactState,
    group: usize,
    adjustment: &ManualAdjustment,
    event: &Event,
    at_ms: i64,
) -> bool {
    let (Some(group_rules), Some(score)) = (rules.groups.get(group), state.groups.get_mut(group)) else {
        return false;
    };
    let change = score.add(group_rules, &[(MANUAL_KEY, adjustment.points)], at_ms);
    let entry = HistoryEntry {
        source: MANUAL_KEY,
        event_id: event.id.clone(),
        ts_ms: at_ms,
        delta: change.share(adjustment.points),
        value_after: change.after,
        group: group_rules.key,
        reason: Some(adjustment.reason.clone()),
        actor: adjustment.actor.clone(),
    };
    push_history(state, entry, rules.history_limit);
    change.after != change.before
}

fn enter_phase(rules: &Rules, state: &mut ContactState, phase: usize, at_ms: i64, cause: String, emit: &mut Emitter) {
    let old_total = state.total(rules, at_ms);
    let from = state.phase;
    emit.converted(Conversion::snapshot(rules, state, from, phase, at_ms));
    state.phase = phase;
    let entered = &rules.phases[phase];
    let reset_moves_a_value = entered.resets.iter().any(|group| state.group_value(rules, *group, at_ms) != 0.0);
    for group in &entered.resets {
        if let Some(score) = state.groups.get_mut(*group) {
            score.reset(at_ms);
        }
    }
    state.rule_counts.clear();
    state.fired.iter_mut().for_each(|fired| *fired = false);
    emit.phase_changed(at_ms, from, phase, cause);
    let entry = HistoryEntry {
        source: entered.key,
        event_id: emit.event_id().to_owned(),
        ts_ms: at_ms,
        delta: state.total(rules, at_ms) - old_total,
        value_after: state.total(rules, at_ms),
        group: 0,
        reason: Some(format!("entered phase {}", entered.name)),
        actor: None,
    };
    push_history(state, entry, rules.history_limit);
    if reset_moves_a_value {
        emit.score_changed(state, at_ms, old_total, Vec::new(), format!("phase_reset:{}", entered.name), false);
    }
}

/// Fires thresholds up and down at `at_ms`, following `advance_to` into new phases.
fn evaluate_thresholds(rules: &Rules, state: &mut ContactState, at_ms: i64, emit: &mut Emitter) {
    // Each pass that advances moves strictly forward through the phases, so this ends.
    'passes: for _ in 0..=rules.phases.len() {
        for (index, threshold) in rules.thresholds.iter().enumerate() {
            let value = target_value(rules, state, threshold.target, at_ms);
            if !state.fired[index] {
                if value >= threshold.at && requirements_met(rules, state, threshold, at_ms) {
                    state.fired[index] = true;
                    emit.threshold(state, threshold, Direction::Up, value, at_ms, None);
                    if let Some(phase) = threshold.advance_to.filter(|phase| *phase > state.phase) {
                        enter_phase(rules, state, phase, at_ms, format!("threshold:{}", threshold.name), emit);
                        continue 'passes;
                    }
                }
            } else if value < threshold.down_level() {
                state.fired[index] = false;
                emit.threshold(state, threshold, Direction::Down, value, at_ms, None);
            }
        }
        break;
    }
}

fn requirements_met(rules: &Rules, state: &ContactState, threshold: &Threshold, at_ms: i64) -> bool {
    let requires = &threshold.requires;
    let phase_ok = requires.phases.is_empty() || requires.phases.contains(&state.phase);
    let grade_ok = match requires.min_grade {
        None => true,
        Some(min) => grade(rules, state, at_ms).is_some_and(|grade| grade <= min),
    };
    phase_ok && grade_ok
}

/// The contact's fit grade at `at_ms`, if the rules define grades.
pub fn grade(rules: &Rules, state: &ContactState, at_ms: i64) -> Option<Grade> {
    rules.grades.map(|grades| grades.grade(state.group_value(rules, grades.group, at_ms)))
}

/// Fires, in time order, every decay-driven fall due at `now_ms`, each at its exact t*.
fn fire_due_timers(rules: &Rules, state: &mut ContactState, now_ms: i64, emit: &mut Emitter) {
    if state.next_timer_ms.is_none_or(|due| due > now_ms) {
        return;
    }
    let mut due: Vec<(i64, usize)> = rules
        .thresholds
        .iter()
        .enumerate()
        .filter(|(index, _)| state.fired.get(*index).copied().unwrap_or(false))
        .filter_map(|(index, threshold)| {
            fall_time(rules, state, threshold.target, threshold.down_level(), state.clock_ms)
                .filter(|at| *at <= now_ms)
                .map(|at| (at, index))
        })
        .collect();
    due.sort_unstable();
    for (at_ms, index) in due {
        let threshold = &rules.thresholds[index];
        state.fired[index] = false;
        state.clock_ms = state.clock_ms.max(at_ms);
        let value = target_value(rules, state, threshold.target, at_ms);
        emit.threshold(state, threshold, Direction::Down, value, at_ms, Some(at_ms));
    }
    state.next_timer_ms = None;
}

fn next_timer(rules: &Rules, state: &ContactState) -> Option<i64> {
    let falls =
        rules.thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired).filter_map(|(threshold, _)| {
            fall_time(rules, state, threshold.target, threshold.down_level(), state.clock_ms)
        });
    falls.chain(idle_expiry(rules, state)).min()
}

/// When an anonymous contact is removed for being idle: the rules' `expire_after` past its last event.
fn idle_expiry(rules: &Rules, state: &ContactState) -> Option<i64> {
    let anonymous = rules.anonymous.as_ref().filter(|_| state.anonymous)?;
    Some(state.clock_ms.saturating_add(anonymous.expire_after_ms))
}

/// Removes an idle anonymous contact at its expiry: the thresholds that fall before then fall, then a
/// `contact_erased` with cause `idle` says it is gone.
fn expire(rules: &Rules, mut state: ContactState) -> Vec<Output> {
    let Some(expiry_ms) = idle_expiry(rules, &state) else {
        return Vec::new();
    };
    let contact = std::mem::take(&mut state.contact);
    let mut emit = Emitter::new(rules, &contact, "");
    fire_due_timers(rules, &mut state, expiry_ms, &mut emit);
    let mut outputs = emit.finish(&state);
    let id = format!("{contact}:idle:{expiry_ms}");
    outputs.push(emit::erased(rules, &contact, id, expiry_ms, "idle", state.merged_ids));
    outputs
}

fn push_history(state: &mut ContactState, entry: HistoryEntry, limit: usize) {
    state.history.push_back(entry);
    while state.history.len() > limit {
        state.history.pop_front();
    }
}

fn remember(ids: &mut std::collections::VecDeque<u64>, fingerprint: u64, limit: usize) {
    ids.push_back(fingerprint);
    while ids.len() > limit {
        ids.pop_front();
    }
}

#[cfg(test)]
mod anonymous_tests;
#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod tests;
