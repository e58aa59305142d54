//! The compact binary form of a contact's state (`leadscore.v1.ContactState`), for RocksDB and the
//! changelog. Names are stored as 32-bit keys, so a record is readable by any rules version: groups,
//! thresholds and phases that no longer exist are dropped on decode, and new ones start at 0.

use std::collections::VecDeque;

use prost::Message;

use super::state::{ContactState, Contribution, GroupScore, HistoryEntry, RuleCount};
use crate::proto::v1;
use crate::rules::Rules;

/// The encoding version written by this build: times relative to the contact's clock, whole numbers as
/// varints, the history by event, recent ids and group values left out where the record already holds
/// them (see `state.proto`).
pub const STATE_FORMAT: u32 = 3;
/// The format from which times are relative and whole numbers varints.
const RELATIVE_STATE_FORMAT: u32 = 2;
/// The format from which a group value that is the sum of its contributions is not stored.
const SUMMED_STATE_FORMAT: u32 = 3;
/// The first encoding, still read: times as epoch ms, numbers as doubles, one history entry per change.
pub const FIRST_STATE_FORMAT: u32 = 1;

/// Why stored bytes are not a contact state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// Not a protobuf `ContactState`.
    #[error("stored contact state is corrupt: {0}")]
    Corrupt(String),
    /// Written by a newer or unknown encoding.
    #[error("stored state has format {found}, which this build does not read")]
    UnknownFormat {
        /// The format found.
        found: u32,
    },
}

/// Refuses a format this build does not read.
pub fn check_format(format: u32) -> Result<(), CodecError> {
    if (FIRST_STATE_FORMAT..=STATE_FORMAT).contains(&format) {
        Ok(())
    } else {
        Err(CodecError::UnknownFormat { found: format })
    }
}

/// A number's stored form in format 2: `Some` when it is a whole number no larger than 2^53, which a
/// zigzag varint holds exactly and in fewer bytes than a double (0 is not stored at all).
pub fn whole(value: f64) -> Option<i64> {
    // The cast saturates and truncates: it gives the value back only for a whole number in range.
    let whole = value as i64;
    (whole != 0 && whole.unsigned_abs() <= 1 << 53 && whole as f64 == value).then_some(whole)
}

/// A number read back from its two stored fields.
fn number(double: f64, whole: i64) -> f64 {
    if whole != 0 { whole as f64 } else { double }
}

/// How a group's value is stored from format 3 on (see `GroupState` in `state.proto`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoredValue {
    /// Not at all: the contributions, added in order, sum to it.
    Sum,
    /// As the `zero` flag: the value is 0, and the contributions do not sum to it.
    Zero,
    /// As a number.
    Number(f64),
}

/// How `score`'s value is stored. A reader adds the contributions in the same order, so a value left out
/// reads back with the same bits.
pub fn stored_value(score: &GroupScore) -> StoredValue {
    if contributions_sum(&score.contributions) == score.value {
        StoredValue::Sum
    } else if score.value == 0.0 {
        StoredValue::Zero
    } else {
        StoredValue::Number(score.value)
    }
}

fn contributions_sum(contributions: &[Contribution]) -> f64 {
    contributions.iter().fold(0.0, |sum, contribution| sum + contribution.points)
}

/// Where each of `state`'s recent ids is stored from format 3 on (see `recent_id_events` in
/// `state.proto`): 0 for its own hash, n for the id of the n-th stored history event. `None` where the
/// hashes take no more bytes as they are, so that the recent ids never take more than in format 2.
pub fn recent_id_events(state: &ContactState) -> Option<Vec<u32>> {
    if state.recent_ids.is_empty() || state.history.is_empty() {
        return None;
    }
    let mut events: Vec<u64> = Vec::new();
    let mut previous: Option<&HistoryEntry> = None;
    for entry in &state.history {
        if !previous.is_some_and(|previous| same_event(previous, entry)) {
            events.push(crate::hashing::id_fingerprint(&entry.event_id));
        }
        previous = Some(entry);
    }
    let sources: Vec<u32> = state
        .recent_ids
        .iter()
        .map(|id| events.iter().rposition(|event| event == id).map_or(0, |place| place as u32 + 1))
        .collect();
    let saved = 8 * sources.iter().filter(|source| **source != 0).count();
    let packed: usize = sources.iter().map(|source| super::codec_write::varint_len(u64::from(*source))).sum();
    // The field's key (tag 21) takes two bytes.
    let cost = 2 + super::codec_write::varint_len(packed as u64) + packed;
    (cost < saved).then_some(sources)
}

/// A time's stored form in format 2: how far before the contact's clock it lies (wrapping, so that every
/// pair of times reads back exactly).
pub fn age(clock_ms: i64, at_ms: i64) -> i64 {
    clock_ms.wrapping_sub(at_ms)
}

/// Converts a state to its protobuf message: the reference [`super::codec_write`] is tested against.
#[cfg(test)]
pub fn to_proto(rules: &Rules, state: &ContactState) -> v1::ContactState {
    let clock = state.clock_ms;
    let sources = recent_id_events(state);
    v1::ContactState {
        format: STATE_FORMAT,
        clock_ms: clock,
        phase: rules.phases.get(state.phase).map_or(0, |phase| phase.key),
        groups: rules
            .groups
            .iter()
            .zip(&state.groups)
            .filter(|(_, score)| !score.is_empty())
            .map(|(group, score)| v1::GroupState {
                group: group.key,
                value: stored_number(score).0,
                whole_value: stored_number(score).1,
                zero: stored_value(score) == StoredValue::Zero,
                since_age_ms: age(clock, score.since_ms),
                contributions: score
                    .contributions
                    .iter()
                    .map(|c| v1::Contribution {
                        source: c.source,
                        points: split(c.points).0,
                        whole_points: split(c.points).1,
                        expires_age_ms: c.expires_at_ms.map(|at| age(clock, at)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        fired: rules.thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired).map(|(t, _)| t.key).collect(),
        rule_counts: state
            .rule_counts
            .iter()
            .map(|count| v1::RuleCount {
                rule: count.rule,
                count: count.count,
                window_age_ms: age(clock, count.window_start_ms),
                ..Default::default()
            })
            .collect(),
        disqualified: state.disqualified.clone(),
        recent_ids: match &sources {
            Some(sources) => {
                state.recent_ids.iter().zip(sources).filter(|(_, source)| **source == 0).map(|(id, _)| *id).collect()
            }
            None => state.recent_ids.iter().copied().collect(),
        },
        recent_id_events: sources.unwrap_or_default(),
        history_events: history_to_proto(clock, &state.history),
        next_timer_ms: state.next_timer_ms,
        merged_ids: state.merged_ids.clone(),
        anonymous: state.anonymous,
        account: state.account.clone(),
        ..Default::default()
    }
}

/// A group value's two stored fields: left out where it is the contributions' sum.
#[cfg(test)]
fn stored_number(score: &GroupScore) -> (f64, i64) {
    match stored_value(score) {
        StoredValue::Number(value) => split(value),
        StoredValue::Sum | StoredValue::Zero => (0.0, 0),
    }
}

/// A number's two stored fields in format 2: the double, or the whole number.
#[cfg(test)]
fn split(value: f64) -> (f64, i64) {
    whole(value).map_or((value, 0), |whole| (0.0, whole))
}

/// The format-2 history: runs of consecutive entries of one event, and in them of one group and value.
#[cfg(test)]
fn history_to_proto(clock_ms: i64, history: &VecDeque<HistoryEntry>) -> Vec<v1::HistoryEvent> {
    let mut events: Vec<v1::HistoryEvent> = Vec::new();
    let mut previous: Option<&HistoryEntry> = None;
    for entry in history {
        let source =
            v1::HistorySource { source: entry.source, delta: split(entry.delta).0, whole_delta: split(entry.delta).1 };
        let group = v1::HistoryGroup {
            group: entry.group,
            value_after: split(entry.value_after).0,
            whole_value_after: split(entry.value_after).1,
            sources: vec![source],
        };
        match (previous, events.last_mut()) {
            (Some(last), Some(event)) if same_event(last, entry) => match event.groups.last_mut() {
                Some(run) if same_group(last, entry) => run.sources.push(source),
                _ => event.groups.push(group),
            },
            _ => events.push(v1::HistoryEvent {
                event_id: entry.event_id.clone(),
                age_ms: age(clock_ms, entry.ts_ms),
                reason: entry.reason.clone(),
                actor: entry.actor.clone(),
                groups: vec![group],
            }),
        }
        previous = Some(entry);
    }
    events
}

/// Whether two consecutive history entries share one stored event: id, time, reason and actor.
pub fn same_event(a: &HistoryEntry, b: &HistoryEntry) -> bool {
    a.ts_ms == b.ts_ms && a.event_id == b.event_id && a.reason == b.reason && a.actor == b.actor
}

/// Whether two consecutive entries of one stored event share one stored group: group and value after.
pub fn same_group(a: &HistoryEntry, b: &HistoryEntry) -> bool {
    a.group == b.group && a.value_after.to_bits() == b.value_after.to_bits()
}

/// Reads a state from its protobuf message (format 1, 2 or 3) under the current rules.
pub fn from_proto(rules: &Rules, contact: &str, message: &v1::ContactState) -> Result<ContactState, CodecError> {
    check_format(message.format)?;
    let relative = message.format >= RELATIVE_STATE_FORMAT;
    let clock = message.clock_ms;
    let time = |absolute: i64, age: i64| if relative { clock.wrapping_sub(age) } else { absolute };
    let groups = groups_from_proto(rules, clock, &message.groups, message.format)?;
    let fired = rules.thresholds.iter().map(|threshold| message.fired.contains(&threshold.key)).collect();
    let history = if relative { history_from_events(clock, &message.history_events)? } else { first_history(message)? };
    Ok(ContactState {
        contact: contact.to_owned(),
        clock_ms: clock,
        phase: rules.phase_by_key(message.phase).unwrap_or(0),
        groups,
        fired,
        rule_counts: message
            .rule_counts
            .iter()
            .map(|count| RuleCount {
                rule: count.rule,
                count: count.count,
                window_start_ms: time(count.window_start_ms, count.window_age_ms),
            })
            .collect(),
        disqualified: message.disqualified.clone(),
        recent_ids: recent_ids_from_proto(message)?,
        history,
        next_timer_ms: message.next_timer_ms,
        merged_ids: message.merged_ids.clone(),
        anonymous: message.anonymous,
        account: message.account.clone(),
    })
}

/// The recent ids, oldest first: the stored hashes, and from format 3 the ids of the history events
/// `recent_id_events` names.
fn recent_ids_from_proto(message: &v1::ContactState) -> Result<VecDeque<u64>, CodecError> {
    if message.recent_id_events.is_empty() {
        return Ok(message.recent_ids.iter().copied().collect());
    }
    let mut hashes = message.recent_ids.iter();
    let ids = message
        .recent_id_events
        .iter()
        .map(|&source| match source {
            0 => hashes.next().copied().ok_or("names more stored hashes than it holds"),
            event => message
                .history_events
                .get(event as usize - 1)
                .map(|event| crate::hashing::id_fingerprint(&event.event_id))
                .ok_or("names a history event it does not hold"),
        })
        .collect::<Result<VecDeque<u64>, _>>();
    match (ids, hashes.next()) {
        (Ok(ids), None) => Ok(ids),
        (Ok(_), Some(_)) => Err(CodecError::Corrupt("recent ids: a stored hash is left over".to_owned())),
        (Err(reason), _) => Err(CodecError::Corrupt(format!("recent ids: {reason}"))),
    }
}

/// Format 1's history: one entry per change.
fn first_history(message: &v1::ContactState) -> Result<VecDeque<HistoryEntry>, CodecError> {
    let mut history = VecDeque::with_capacity(message.history.len());
    for entry in &message.history {
        history.push_back(HistoryEntry {
            source: entry.source,
            event_id: entry.event_id.clone(),
            ts_ms: entry.ts_ms,
            delta: finite(entry.delta, "a history delta")?,
            value_after: finite(entry.value_after, "a history value")?,
            group: entry.group,
            reason: entry.reason.clone(),
            actor: entry.actor.clone(),
        });
    }
    Ok(history)
}

/// Format 2's history: every change of every run, in order.
fn history_from_events(clock_ms: i64, events: &[v1::HistoryEvent]) -> Result<VecDeque<HistoryEntry>, CodecError> {
    let mut history = VecDeque::new();
    for event in events {
        for group in &event.groups {
            let value_after = finite(number(group.value_after, group.whole_value_after), "a history value")?;
            for source in &group.sources {
                history.push_back(HistoryEntry {
                    source: source.source,
                    event_id: event.event_id.clone(),
                    ts_ms: clock_ms.wrapping_sub(event.age_ms),
                    delta: finite(number(source.delta, source.whole_delta), "a history delta")?,
                    value_after,
                    group: group.group,
                    reason: event.reason.clone(),
                    actor: event.actor.clone(),
                });
            }
        }
    }
    Ok(history)
}

/// The format-1 form of a contact's (or an account member's) groups: those with a value or
/// contributions. Accounts store their members' groups so.
pub fn groups_to_proto(rules: &Rules, groups: &[GroupScore]) -> Vec<v1::GroupState> {
    rules
        .groups
        .iter()
        .zip(groups)
        .filter(|(_, score)| !score.is_empty())
        .map(|(group, score)| v1::GroupState {
            group: group.key,
            value: score.value,
            since_ms: score.since_ms,
            contributions: score
                .contributions
                .iter()
                .map(|c| v1::Contribution {
                    source: c.source,
                    points: c.points,
                    expires_at_ms: c.expires_at_ms,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// Reads stored groups under the current rules: groups that no longer exist are dropped, new ones start
/// at 0 as of `clock_ms`. `format`: the record's, which decides whether times are relative to
/// `clock_ms` and whether a value left out is 0 or the contributions' sum.
pub fn groups_from_proto(
    rules: &Rules,
    clock_ms: i64,
    stored: &[v1::GroupState],
    format: u32,
) -> Result<Vec<GroupScore>, CodecError> {
    let relative = format >= RELATIVE_STATE_FORMAT;
    let summed = format >= SUMMED_STATE_FORMAT;
    let mut groups: Vec<GroupScore> = rules.groups.iter().map(|_| GroupScore::empty(clock_ms)).collect();
    for stored in stored {
        let Some(index) = rules.group_by_key(stored.group) else {
            continue;
        };
        let mut contributions = Vec::with_capacity(stored.contributions.len());
        for c in &stored.contributions {
            let expires_at_ms =
                if relative { c.expires_age_ms.map(|age| clock_ms.wrapping_sub(age)) } else { c.expires_at_ms };
            contributions.push(Contribution {
                source: c.source,
                points: finite(number(c.points, c.whole_points), "a contribution")?,
                expires_at_ms,
            });
        }
        let value = number(stored.value, stored.whole_value);
        let value = if summed && value == 0.0 && !stored.zero { contributions_sum(&contributions) } else { value };
        groups[index] = GroupScore {
            value: finite(value, "a group value")?,
            since_ms: if relative { clock_ms.wrapping_sub(stored.since_age_ms) } else { stored.since_ms },
            contributions,
        };
    }
    Ok(groups)
}

fn finite(value: f64, what: &str) -> Result<f64, CodecError> {
    if value.is_finite() { Ok(value) } else { Err(CodecError::Corrupt(format!("{what} is not a finite number"))) }
}

/// Encodes a state on its own (no runtime bookkeeping).
pub fn encode(rules: &Rules, state: &ContactState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    super::codec_write::write_record(rules, Some(state), &super::codec_write::Bookkeeping::default(), &mut out);
    out
}

/// Decodes bytes written by [`encode`] or by the runtime.
pub fn decode(rules: &Rules, contact: &str, bytes: &[u8]) -> Result<ContactState, CodecError> {
    let message = v1::ContactState::decode(bytes).map_err(|err| CodecError::Corrupt(err.to_string()))?;
    from_proto(rules, contact, &message)
}
