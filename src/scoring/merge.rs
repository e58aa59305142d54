//! Merging one contact into another: an anonymous visitor who identified, or a duplicate the CRM merged.
//!
//! The survivor ends as if both contacts' events had been scored on it:
//! - each group's two values, decayed to the later of the two clocks, add source by source, then the
//!   group is clamped once (for exponential and step decay, and groups without decay, this is what
//!   scoring the events on one contact gives; linear decay subtracts its rate once per contact, so there
//!   the sum keeps what each side had left);
//! - a limited rule counts the firings of both in its current window, up to its `max_times`, and the
//!   firings over it are taken back: in a step group, which keeps each firing's time, the latest of
//!   both; in the others, which keep one sum per rule, a share of the points of the contact whose window
//!   opened later (exact for a `max_times = 1` rule that fired on both: it counts once, with the earlier
//!   firing's points);
//! - the phase is the later of the two, and the limits counted are those of that phase (in the same
//!   phase, both);
//! - a disqualification carries over (the survivor's reason first);
//! - recent event ids and history are unioned, in time order, within the rules' bounds;
//! - thresholds are the survivor's: those the merged state reaches fire for it, with the merge as cause.
//!
//! Outputs, all for the survivor: `contact_merged` (who, both states before, the state after), a
//! `phase_changed` if the merged contact's phase was later, a `score_changed` with cause `merge` if a
//! value changed, and the thresholds crossed.

use std::collections::VecDeque;

use super::emit::{Emitter, group_values};
use super::output::ContactMerged;
use super::state::{ContactState, HistoryEntry, RuleCount};
use super::{Applied, Outcome, evaluate_thresholds, fire_due_timers, next_timer, push_history, remember};
use crate::event::Event;
use crate::hashing::id_fingerprint;
use crate::rules::{DecayLaw, Effect, MERGE_KEY, Rules};

use super::Attribution;

/// Aliases a merged contact's work follows before it is taken for a cycle of merges.
pub const MAX_ALIAS_HOPS: u32 = 8;

/// Why work that followed [`MAX_ALIAS_HOPS`] merged contacts and got to `survivor` is refused.
pub fn alias_cycle(survivor: &str) -> String {
    format!("followed {MAX_ALIAS_HOPS} merged contacts to {survivor:?}: the merges form a cycle")
}

/// The most a contact keeps of the ids merged into it, in bytes (each id's length plus 3, as stored): they
/// are its aliases, listed so that erasing it forgets them, and they must fit its record.
pub const MAX_ALIAS_BYTES: usize = 64 << 10;

/// What an alias takes of [`MAX_ALIAS_BYTES`].
pub fn alias_bytes(id: &str) -> usize {
    id.len() + 3
}

/// Whether `merged`, whose own aliases take `merged_bytes`, may merge into a survivor whose aliases take
/// `survivor_bytes`: an error says why not; the merge is then declined and both stay apart.
pub fn merge_fits(survivor_bytes: usize, merged: &str, merged_bytes: usize) -> Result<(), String> {
    let total = survivor_bytes + alias_bytes(merged) + merged_bytes;
    if total > MAX_ALIAS_BYTES {
        return Err(format!(
            "merge declined: its survivor would keep {total} bytes of merged ids, more than the {MAX_ALIAS_BYTES} \
             leadscore keeps per contact (merged contact {merged:?})"
        ));
    }
    Ok(())
}

/// A merge event as it is scored on the survivor: its id marked, so that the merge's outputs are named
/// apart from those of the merge event itself, which is also scored as an event of its own.
pub fn merge_event(event: &Event) -> Event {
    Event { id: format!("{}:merge", event.id), ..event.clone() }
}

/// Merges `merged` into `survivor` (`None` for a contact not seen before, which takes the merged state
/// under its own id), on `event`: the `merge` or `identify` event, keyed by the survivor.
pub fn merge(rules: &Rules, survivor: Option<ContactState>, merged: ContactState, event: &Event) -> Applied {
    let unchanged =
        |state, outcome| Applied { state, outputs: Vec::new(), outcome, attribution: Attribution::default() };
    if merged.contact == event.contact {
        return unchanged(survivor, Outcome::Rejected("a contact cannot be merged into itself".to_owned()));
    }
    let fingerprint = id_fingerprint(&event.id);
    if survivor.as_ref().is_some_and(|state| state.recent_ids.contains(&fingerprint)) {
        return unchanged(survivor, Outcome::Duplicate);
    }
    let at_ms = survivor.as_ref().map_or(event.ts_ms, |state| state.clock_ms.max(event.ts_ms)).max(merged.clock_ms);
    let mut merged = merged;
    let mut state = survivor.unwrap_or_else(|| ContactState::new(rules, &event.contact, at_ms));
    let merged_first = merged.clock_ms <= state.clock_ms;
    let mut emit = Emitter::new(rules, &event.contact, &event.id);
    // The survivor's own decay-driven falls come first, as they would before any event of its own.
    fire_due_timers(rules, &mut state, at_ms, &mut emit);
    state.clock_ms = at_ms;

    let old_total = state.total(rules, at_ms);
    let merged_total = merged.total(rules, at_ms);
    let old_groups = group_values(rules, &state, at_ms);
    let merged_groups = group_values(rules, &merged, at_ms);
    let (old_phase, merged_phase) = (state.phase, merged.phase);
    let was_disqualified = state.disqualified.is_some();

    let over = combine_limits(rules, &mut state, &mut merged, at_ms);
    // Firings over a limit: a step group keeps each firing's time, so the latest of both are taken back
    // once the groups are one; the others hold a sum per rule, taken back from the later contact first.
    let is_step = |group: usize| matches!(rules.groups[group].decay, DecayLaw::Step { .. });
    for excess in over.iter().filter(|excess| !is_step(excess.group)) {
        let side = if excess.from_merged { &mut merged } else { &mut state };
        side.groups[excess.group].withdraw(
            &rules.groups[excess.group],
            excess.rule,
            excess.points,
            excess.firings,
            excess.held,
            at_ms,
        );
    }
    for ((group, score), theirs) in rules.groups.iter().zip(&mut state.groups).zip(&merged.groups) {
        score.absorb(group, theirs, at_ms);
    }
    for excess in over.iter().filter(|excess| is_step(excess.group)) {
        let group = &rules.groups[excess.group];
        state.groups[excess.group].withdraw(group, excess.rule, excess.points, excess.firings, u32::MAX, at_ms);
    }
    let new_groups = group_values(rules, &state, at_ms);
    state.phase = old_phase.max(merged_phase);
    if state.disqualified.is_none() {
        state.disqualified = merged.disqualified.take();
    }
    state.recent_ids = if merged_first {
        union_ids(&merged.recent_ids, &state.recent_ids, rules.dedup_window)
    } else {
        union_ids(&state.recent_ids, &merged.recent_ids, rules.dedup_window)
    };
    state.history = union_history(std::mem::take(&mut state.history), std::mem::take(&mut merged.history));
    // Its ids and those merged into it are aliases of the survivor now; a contact others merge into is
    // known, not an anonymous visitor.
    for id in std::iter::once(merged.contact.as_str()).chain(merged.merged_ids.iter().map(String::as_str)) {
        state.adopt_alias(id);
    }
    state.anonymous = false;
    if state.account.is_none() {
        state.account = merged.account.take();
    }
    let new_total = state.total(rules, at_ms);
    let entry = HistoryEntry {
        source: MERGE_KEY,
        event_id: event.id.clone(),
        ts_ms: at_ms,
        delta: new_total - old_total,
        value_after: new_total,
        group: 0,
        reason: Some(format!("merged {}", merged.contact)),
        actor: None,
    };
    push_history(&mut state, entry, rules.history_limit);

    let phases = &rules.phases;
    emit.contact_merged(
        at_ms,
        ContactMerged {
            merged: merged.contact.clone(),
            old_total,
            merged_total,
            new_total,
            old_groups: old_groups.clone(),
            merged_groups,
            groups: new_groups.clone(),
            old_phase: phases[old_phase].name.clone(),
            merged_phase: phases[merged_phase].name.clone(),
            phase: phases[state.phase].name.clone(),
        },
    );
    if state.phase != old_phase {
        emit.phase_changed(at_ms, old_phase, state.phase, format!("merge:{}", merged.contact));
    }
    let changed_qualification = was_disqualified != state.disqualified.is_some();
    if new_groups != old_groups || changed_qualification {
        emit.score_changed(&state, at_ms, old_total, Vec::new(), "merge".to_owned(), changed_qualification);
    }
    if state.disqualified.is_none() {
        evaluate_thresholds(rules, &mut state, at_ms, &mut emit);
    }
    remember(&mut state.recent_ids, fingerprint, rules.dedup_window);
    state.next_timer_ms = next_timer(rules, &state);
    let outputs = emit.finish(&state);
    Applied { state: Some(state), outputs, outcome: Outcome::Scored, attribution: Attribution::default() }
}

/// Firings of a rule over its limit once two contacts' counts are added.
struct Excess {
    group: usize,
    rule: u32,
    points: f64,
    firings: u32,
    /// Whether the contact whose window opened later, which gives them back, is the merged one.
    from_merged: bool,
    /// Its firings in the window.
    held: u32,
}

/// Counts of limited rules after the merge, and the firings over a limit. In different phases only the
/// later phase's counts stay: the other contact's firings were in a phase the merged contact has left.
fn combine_limits(rules: &Rules, state: &mut ContactState, merged: &mut ContactState, at_ms: i64) -> Vec<Excess> {
    let mut over = Vec::new();
    if merged.phase > state.phase {
        state.rule_counts = std::mem::take(&mut merged.rule_counts);
    }
    if merged.phase != state.phase {
        return over;
    }
    for theirs in std::mem::take(&mut merged.rule_counts) {
        let Some(rule) = rules.rules.iter().find(|rule| rule.key == theirs.rule) else { continue };
        let Some(limit) = rule.limit else { continue };
        let live = |count: &RuleCount| limit.per_ms.is_none_or(|per| at_ms < count.window_start_ms.saturating_add(per));
        if !live(&theirs) {
            continue;
        }
        let Some(ours) = state.rule_counts.iter_mut().find(|count| count.rule == theirs.rule) else {
            state.rule_counts.push(theirs);
            continue;
        };
        if !live(ours) {
            *ours = theirs;
            continue;
        }
        let firings = (ours.count + theirs.count).saturating_sub(limit.max_times);
        if let (Some(group), Effect::Points(points), true) = (rule.group, &rule.effect, firings > 0) {
            let from_merged = theirs.window_start_ms >= ours.window_start_ms;
            let held = if from_merged { theirs.count } else { ours.count };
            over.push(Excess { group, rule: rule.key, points: *points, firings, from_merged, held });
        }
        ours.count = (ours.count + theirs.count).min(limit.max_times);
        ours.window_start_ms = ours.window_start_ms.min(theirs.window_start_ms);
    }
    over
}

/// Both contacts' recent ids, those of the contact whose clock was earlier first, without repeats, the
/// last `limit` kept.
fn union_ids(first: &VecDeque<u64>, second: &VecDeque<u64>, limit: usize) -> VecDeque<u64> {
    let mut ids: VecDeque<u64> = VecDeque::with_capacity(first.len() + second.len());
    for id in first.iter().chain(second) {
        if !ids.contains(id) {
            ids.push_back(*id);
        }
    }
    while ids.len() > limit {
        ids.pop_front();
    }
    ids
}

/// Both histories in time order (the survivor's first at equal times); the caller's push trims them.
fn union_history(ours: VecDeque<HistoryEntry>, theirs: VecDeque<HistoryEntry>) -> VecDeque<HistoryEntry> {
    let mut all: Vec<HistoryEntry> = ours.into_iter().chain(theirs).collect();
    all.sort_by_key(|entry| entry.ts_ms);
    all.into()
}

#[cfg(test)]
mod tests;
