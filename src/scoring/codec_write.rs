//! Writes a state's `leadscore.v1.ContactState` encoding straight from the state, byte for byte what
//! prost writes for the message [`super::codec::to_proto`] builds, without building that message (and
//! copying every history string into it) first. Every changed contact is encoded once per batch.
//!
//! As prost does for proto3: fields in tag order, scalars at their default value left out (optional
//! ones written whenever set), repeated scalars packed, nested messages prefixed by their length: a small
//! one's is computed first, a larger one's put in front once the message is written.

use super::codec::{StoredValue, age, recent_id_events, same_event, same_group, stored_value, whole};
use super::state::{ContactState, Contribution, GroupScore, HistoryEntry};
use crate::rules::Rules;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH: u32 = 2;
const FIXED32: u32 = 5;

/// What the runtime keeps in a contact record beside the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bookkeeping<'a> {
    /// The last input offset applied, per input topic key.
    pub offsets: &'a [(u32, i64)],
    /// The contact it was merged into, for a record without state.
    pub merged_into: Option<&'a str>,
    /// Contacts it asked to merge in whose answer has not arrived.
    pub awaiting: &'a [String],
    /// Answers still due from contacts it asked to merge in before it was erased.
    pub refused: &'a [String],
}

/// Appends the encoding of a contact record: `state` (when `None`, an erased record, or the alias of the
/// contact it was `merged_into`) and the runtime's bookkeeping.
pub fn write_record(rules: &Rules, state: Option<&ContactState>, kept: &Bookkeeping, out: &mut Vec<u8>) {
    uint(out, 1, u64::from(super::codec::STATE_FORMAT));
    let sources = state.and_then(recent_id_events);
    if let Some(state) = state {
        let clock = state.clock_ms;
        int(out, 2, clock);
        fixed32(out, 3, rules.phases.get(state.phase).map_or(0, |phase| phase.key));
        for (group, score) in rules.groups.iter().zip(&state.groups) {
            if !score.is_empty() {
                let at = open(out, 4);
                write_group(out, clock, group.key, score);
                close(out, at);
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
            let window_age = age(clock, count.window_start_ms);
            message(out, 6, fixed32_len(count.rule) + uint_len(u64::from(count.count)) + sint_len(window_age));
            fixed32(out, 1, count.rule);
            uint(out, 2, u64::from(count.count));
            sint(out, 4, window_age);
        }
        if let Some(reason) = &state.disqualified {
            text(out, 7, reason);
        }
        // The recent ids not stored as a history event's place.
        let hashes = || {
            let as_hash = |place: usize| sources.as_ref().is_none_or(|sources| sources[place] == 0);
            state.recent_ids.iter().enumerate().filter(move |(place, _)| as_hash(*place)).map(|(_, id)| id)
        };
        let stored = hashes().count();
        if stored > 0 {
            message(out, 8, 8 * stored);
            for id in hashes() {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        if let Some(due) = state.next_timer_ms {
            key(out, 10, VARINT);
            varint(out, due as u64);
        }
    }
    for &(topic, offset) in kept.offsets {
        message(out, 11, fixed32_len(topic) + int_len(offset));
        fixed32(out, 1, topic);
        int(out, 2, offset);
    }
    match (state, kept.merged_into) {
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
    for id in kept.awaiting {
        text(out, 18, id);
    }
    for id in kept.refused {
        text(out, 19, id);
    }
    if let Some(state) = state {
        write_history(out, state);
    }
    if let Some(sources) = sources {
        let len = sources.iter().map(|source| varint_len(u64::from(*source))).sum();
        message(out, 21, len);
        for source in sources {
            varint(out, u64::from(source));
        }
    }
}

fn write_group(out: &mut Vec<u8>, clock: i64, group: u32, score: &GroupScore) {
    fixed32(out, 1, group);
    let stored = stored_value(score);
    let (double_value, whole_value) = match stored {
        StoredValue::Number(value) => match whole(value) {
            Some(whole) => (None, Some(whole)),
            None => (Some(value), None),
        },
        StoredValue::Sum | StoredValue::Zero => (None, None),
    };
    if let Some(value) = double_value {
        double(out, 2, value);
    }
    for contribution in &score.contributions {
        message(out, 4, contribution_len(clock, contribution));
        fixed32(out, 1, contribution.source);
        number(out, (2, 4), contribution.points);
        if let Some(expires) = contribution.expires_at_ms {
            key(out, 5, VARINT);
            varint(out, zigzag(age(clock, expires)));
        }
    }
    if let Some(value) = whole_value {
        sint(out, 5, value);
    }
    sint(out, 6, age(clock, score.since_ms));
    if stored == StoredValue::Zero {
        uint(out, 7, 1);
    }
}

/// The history by event, and in each event by group (see `HistoryEvent` in `state.proto`): runs of
/// consecutive entries.
fn write_history(out: &mut Vec<u8>, state: &ContactState) {
    let (mut event, mut group): (Option<usize>, Option<usize>) = (None, None);
    let mut previous: Option<&HistoryEntry> = None;
    for entry in &state.history {
        let same_event = previous.is_some_and(|previous| same_event(previous, entry));
        let same_group = same_event && previous.is_some_and(|previous| same_group(previous, entry));
        if !same_group && let Some(at) = group.take() {
            close(out, at);
        }
        if !same_event {
            if let Some(at) = event.take() {
                close(out, at);
            }
            event = Some(open(out, 20));
            if !entry.event_id.is_empty() {
                text(out, 1, &entry.event_id);
            }
            sint(out, 2, age(state.clock_ms, entry.ts_ms));
            if let Some(reason) = &entry.reason {
                text(out, 3, reason);
            }
            if let Some(actor) = &entry.actor {
                text(out, 4, actor);
            }
        }
        if !same_group {
            group = Some(open(out, 5));
            fixed32(out, 1, entry.group);
            number(out, (2, 3), entry.value_after);
        }
        message(out, 4, fixed32_len(entry.source) + number_len(entry.delta));
        fixed32(out, 1, entry.source);
        number(out, (2, 3), entry.delta);
        previous = Some(entry);
    }
    for at in [group, event].into_iter().flatten() {
        close(out, at);
    }
}

fn contribution_len(clock: i64, contribution: &Contribution) -> usize {
    fixed32_len(contribution.source)
        + number_len(contribution.points)
        + contribution.expires_at_ms.map_or(0, |expires| 1 + varint_len(zigzag(age(clock, expires))))
}

/// Starts a length-delimited field whose length is not known yet, keeping one byte for the length:
/// where [`close`] puts it.
fn open(out: &mut Vec<u8>, tag: u32) -> usize {
    key(out, tag, LENGTH);
    out.push(0);
    out.len() - 1
}

/// Puts the length of what followed [`open`] in front of it, moving it up where the length needs more
/// than the byte kept for it.
fn close(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        out.splice(at..at + 1, prefix);
    }
}

/// A number in its double field or, when whole, its varint field (`tags`, in that order): see
/// [`super::codec::whole`].
fn number(out: &mut Vec<u8>, (double_tag, whole_tag): (u32, u32), value: f64) {
    match whole(value) {
        Some(whole) => sint(out, whole_tag, whole),
        None => double(out, double_tag, value),
    }
}

fn number_len(value: f64) -> usize {
    match whole(value) {
        Some(whole) => sint_len(whole),
        None => double_len(value),
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn sint(out: &mut Vec<u8>, tag: u32, value: i64) {
    uint(out, tag, zigzag(value));
}

fn sint_len(value: i64) -> usize {
    uint_len(zigzag(value))
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

pub(super) fn varint_len(value: u64) -> usize {
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

fn text(out: &mut Vec<u8>, tag: u32, value: &str) {
    message(out, tag, value.len());
    out.extend_from_slice(value.as_bytes());
}
