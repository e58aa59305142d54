//! Writes a state's `leadscore.v1.ContactState` encoding straight from the state, byte for byte what
//! prost writes for the message [`super::codec::to_proto`] builds, without building that message (and
//! copying every history string into it) first. Every changed contact is encoded once per batch.
//!
//! As prost does for proto3: fields in tag order, scalars at their default value left out (optional
//! ones written whenever set), repeated scalars packed, nested messages prefixed by their length, which
//! is computed before the message is written.

use super::state::{ContactState, Contribution, GroupScore, HistoryEntry, RuleCount};
use crate::rules::Rules;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH: u32 = 2;
const FIXED32: u32 = 5;

/// Appends the encoding of a contact record: `state` (when `None`, an erased record, or the alias of the
/// contact it was `merged_into`) and the applied offsets per input topic key.
pub fn write_record(
    rules: &Rules,
    state: Option<&ContactState>,
    offsets: &[(u32, i64)],
    merged_into: Option<&str>,
    out: &mut Vec<u8>,
) {
    uint(out, 1, u64::from(super::codec::STATE_FORMAT));
    if let Some(state) = state {
        int(out, 2, state.clock_ms);
        fixed32(out, 3, rules.phases.get(state.phase).map_or(0, |phase| phase.key));
        for (group, score) in rules.groups.iter().zip(&state.groups) {
            if score.value != 0.0 || !score.contributions.is_empty() {
                message(out, 4, group_len(group.key, score));
                write_group(out, group.key, score);
            }
        }
        let fired = rules.thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired).count();
        if fired > 0 {
            message(out, 5, 4 * fired);
            for (threshold, _) in rules.thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired) {
                out.extend_from_slice(&threshold.key.to_le_bytes());
            }
        }
        for count in &state.rule_counts {
            message(out, 6, rule_count_len(count));
            fixed32(out, 1, count.rule);
            uint(out, 2, u64::from(count.count));
            int(out, 3, count.window_start_ms);
        }
        if let Some(reason) = &state.disqualified {
            text(out, 7, reason);
        }
        if !state.recent_ids.is_empty() {
            message(out, 8, 8 * state.recent_ids.len());
            for id in &state.recent_ids {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        for entry in &state.history {
            message(out, 9, history_len(entry));
            write_history(out, entry);
        }
        if let Some(due) = state.next_timer_ms {
            key(out, 10, VARINT);
            varint(out, due as u64);
        }
    }
    for &(topic, offset) in offsets {
        message(out, 11, fixed32_len(topic) + int_len(offset));
        fixed32(out, 1, topic);
        int(out, 2, offset);
    }
    match (state, merged_into) {
        (Some(state), _) => {
            for merged in &state.merged_ids {
                text(out, 15, merged);
            }
            if state.anonymous {
                uint(out, 16, 1);
            }
            if let Some(account) = &state.account {
                text(out, 17, account);
            }
        }
        (None, None) => uint(out, 13, 1),
        (None, Some(survivor)) => text(out, 14, survivor),
    }
}

fn write_group(out: &mut Vec<u8>, group: u32, score: &GroupScore) {
    fixed32(out, 1, group);
    double(out, 2, score.value);
    int(out, 3, score.since_ms);
    for contribution in &score.contributions {
        message(out, 4, contribution_len(contribution));
        fixed32(out, 1, contribution.source);
        double(out, 2, contribution.points);
        if let Some(expires) = contribution.expires_at_ms {
            key(out, 3, VARINT);
            varint(out, expires as u64);
        }
    }
}

fn write_history(out: &mut Vec<u8>, entry: &HistoryEntry) {
    fixed32(out, 1, entry.source);
    if !entry.event_id.is_empty() {
        text(out, 2, &entry.event_id);
    }
    int(out, 3, entry.ts_ms);
    double(out, 4, entry.delta);
    double(out, 5, entry.value_after);
    fixed32(out, 6, entry.group);
    if let Some(reason) = &entry.reason {
        text(out, 7, reason);
    }
    if let Some(actor) = &entry.actor {
        text(out, 8, actor);
    }
}

fn group_len(group: u32, score: &GroupScore) -> usize {
    let contributions: usize = score.contributions.iter().map(|c| nested_len(contribution_len(c))).sum();
    fixed32_len(group) + double_len(score.value) + int_len(score.since_ms) + contributions
}

fn contribution_len(contribution: &Contribution) -> usize {
    fixed32_len(contribution.source)
        + double_len(contribution.points)
        + contribution.expires_at_ms.map_or(0, |expires| 1 + varint_len(expires as u64))
}

fn rule_count_len(count: &RuleCount) -> usize {
    fixed32_len(count.rule) + uint_len(u64::from(count.count)) + int_len(count.window_start_ms)
}

fn history_len(entry: &HistoryEntry) -> usize {
    let event_id = if entry.event_id.is_empty() { 0 } else { nested_len(entry.event_id.len()) };
    fixed32_len(entry.source)
        + event_id
        + int_len(entry.ts_ms)
        + double_len(entry.delta)
        + double_len(entry.value_after)
        + fixed32_len(entry.group)
        + entry.reason.as_ref().map_or(0, |reason| nested_len(reason.len()))
        + entry.actor.as_ref().map_or(0, |actor| nested_len(actor.len()))
}

/// Bytes of a length-delimited field with a one-byte key (every tag here is below 16).
fn nested_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn fixed32_len(value: u32) -> usize {
    if value == 0 { 0 } else { 5 }
}

fn double_len(value: f64) -> usize {
    if value == 0.0 { 0 } else { 9 }
}

fn int_len(value: i64) -> usize {
    uint_len(value as u64)
}

fn uint_len(value: u64) -> usize {
    if value == 0 { 0 } else { 1 + varint_len(value) }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn key(out: &mut Vec<u8>, tag: u32, wire: u32) {
    varint(out, u64::from(tag << 3 | wire));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn message(out: &mut Vec<u8>, tag: u32, len: usize) {
    key(out, tag, LENGTH);
    varint(out, len as u64);
}

fn fixed32(out: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        key(out, tag, FIXED32);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn double(out: &mut Vec<u8>, tag: u32, value: f64) {
    if value != 0.0 {
        key(out, tag, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn int(out: &mut Vec<u8>, tag: u32, value: i64) {
    uint(out, tag, value as u64);
}

fn uint(out: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        key(out, tag, VARINT);
        varint(out, value);
    }
}

/// Appends ids as a repeated string field: the runtime's bookkeeping after [`write_record`].
pub fn write_ids(out: &mut Vec<u8>, tag: u32, ids: &[String]) {
    for id in ids {
        text(out, tag, id);
    }
}

fn text(out: &mut Vec<u8>, tag: u32, value: &str) {
    message(out, tag, value.len());
    out.extend_from_slice(value.as_bytes());
}
