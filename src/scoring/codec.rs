//! The compact binary form of a contact's state (`leadscore.v1.ContactState`), for RocksDB and the
//! changelog. Names are stored as 32-bit keys, so a record is readable by any rules version: groups,
//! thresholds and phases that no longer exist are dropped on decode, and new ones start at 0.

use std::collections::VecDeque;

use prost::Message;

use super::state::{ContactState, Contribution, GroupScore, HistoryEntry, RuleCount};
use crate::proto::v1;
use crate::rules::Rules;

/// The encoding version written by this build.
pub const STATE_FORMAT: u32 = 1;

/// Why stored bytes are not a contact state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// Not a protobuf `ContactState`.
    #[error("stored contact state is corrupt: {0}")]
    Corrupt(String),
    /// Written by a newer or unknown encoding.
    #[error("stored contact state has format {found}, but this build reads format {STATE_FORMAT}")]
    UnknownFormat {
        /// The format found.
        found: u32,
    },
}

/// Converts a state to its protobuf message: the reference [`super::codec_write`] is tested against.
#[cfg(test)]
pub fn to_proto(rules: &Rules, state: &ContactState) -> v1::ContactState {
    v1::ContactState {
        format: STATE_FORMAT,
        clock_ms: state.clock_ms,
        phase: rules.phases.get(state.phase).map_or(0, |phase| phase.key),
        groups: groups_to_proto(rules, &state.groups),
        fired: rules.thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired).map(|(t, _)| t.key).collect(),
        rule_counts: state
            .rule_counts
            .iter()
            .map(|count| v1::RuleCount { rule: count.rule, count: count.count, window_start_ms: count.window_start_ms })
            .collect(),
        disqualified: state.disqualified.clone(),
        recent_ids: state.recent_ids.iter().copied().collect(),
        history: state
            .history
            .iter()
            .map(|entry| v1::HistoryEntry {
                source: entry.source,
                event_id: entry.event_id.clone(),
                ts_ms: entry.ts_ms,
                delta: entry.delta,
                value_after: entry.value_after,
                group: entry.group,
                reason: entry.reason.clone(),
                actor: entry.actor.clone(),
            })
            .collect(),
        next_timer_ms: state.next_timer_ms,
        offsets: Vec::new(),
        erased: false,
        merged_into: None,
        merged_ids: state.merged_ids.clone(),
        anonymous: state.anonymous,
        account: state.account.clone(),
        awaiting: Vec::new(),
        refused: Vec::new(),
    }
}

/// Reads a state from its protobuf message under the current rules.
pub fn from_proto(rules: &Rules, contact: &str, message: &v1::ContactState) -> Result<ContactState, CodecError> {
    if message.format != STATE_FORMAT {
        return Err(CodecError::UnknownFormat { found: message.format });
    }
    let groups = groups_from_proto(rules, message.clock_ms, &message.groups)?;
    let fired = rules.thresholds.iter().map(|threshold| message.fired.contains(&threshold.key)).collect();
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
    Ok(ContactState {
        contact: contact.to_owned(),
        clock_ms: message.clock_ms,
        phase: rules.phase_by_key(message.phase).unwrap_or(0),
        groups,
        fired,
        rule_counts: message
            .rule_counts
            .iter()
            .map(|count| RuleCount { rule: count.rule, count: count.count, window_start_ms: count.window_start_ms })
            .collect(),
        disqualified: message.disqualified.clone(),
        recent_ids: message.recent_ids.iter().copied().collect(),
        history,
        next_timer_ms: message.next_timer_ms,
        merged_ids: message.merged_ids.clone(),
        anonymous: message.anonymous,
        account: message.account.clone(),
    })
}

/// The stored form of a contact's (or an account member's) groups: those with a value or contributions.
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
                .map(|c| v1::Contribution { source: c.source, points: c.points, expires_at_ms: c.expires_at_ms })
                .collect(),
        })
        .collect()
}

/// Reads stored groups under the current rules: groups that no longer exist are dropped, new ones start
/// at 0 as of `clock_ms`.
pub fn groups_from_proto(
    rules: &Rules,
    clock_ms: i64,
    stored: &[v1::GroupState],
) -> Result<Vec<GroupScore>, CodecError> {
    let mut groups: Vec<GroupScore> = rules.groups.iter().map(|_| GroupScore::empty(clock_ms)).collect();
    for stored in stored {
        let Some(index) = rules.group_by_key(stored.group) else {
            continue;
        };
        let mut contributions = Vec::with_capacity(stored.contributions.len());
        for c in &stored.contributions {
            contributions.push(Contribution {
                source: c.source,
                points: finite(c.points, "a contribution")?,
                expires_at_ms: c.expires_at_ms,
            });
        }
        groups[index] =
            GroupScore { value: finite(stored.value, "a group value")?, since_ms: stored.since_ms, contributions };
    }
    Ok(groups)
}

fn finite(value: f64, what: &str) -> Result<f64, CodecError> {
    if value.is_finite() { Ok(value) } else { Err(CodecError::Corrupt(format!("{what} is not a finite number"))) }
}

/// Encodes a state on its own (no runtime bookkeeping).
pub fn encode(rules: &Rules, state: &ContactState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    super::codec_write::write_record(rules, Some(state), &[], None, &mut out);
    out
}

/// Decodes bytes written by [`encode`] or by the runtime.
pub fn decode(rules: &Rules, contact: &str, bytes: &[u8]) -> Result<ContactState, CodecError> {
    let message = v1::ContactState::decode(bytes).map_err(|err| CodecError::Corrupt(err.to_string()))?;
    from_proto(rules, contact, &message)
}
