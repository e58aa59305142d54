//! The stored form of an account (`leadscore.v1.AccountState`). As contact records, it names groups,
//! phases and thresholds by their keys, so it reads under any rules version: what no longer exists is
//! dropped, what is new starts empty.

use prost::Message;

use super::{AccountState, Member};
use crate::proto::v1;
use crate::rules::Rules;
use crate::scoring::codec::{CodecError, FIRST_STATE_FORMAT, groups_from_proto, groups_to_proto};

/// The encoding version of an account: its members' groups in the first layout of contact records, with
/// times as epoch ms (see `state.proto`).
const ACCOUNT_FORMAT: u32 = 1;

/// The last update an account applied from one origin partition (the runtime's account updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedOrigin {
    /// The origin partition's stamp key.
    pub origin: u32,
    /// The origin record's offset.
    pub offset: i64,
    /// The update's place among those the origin record wrote.
    pub index: u32,
}

impl AppliedOrigin {
    /// Whether the update at `offset` and `index` of this origin is applied already.
    pub fn covers(&self, offset: i64, index: u32) -> bool {
        (offset, index) <= (self.offset, self.index)
    }
}

/// Encodes an account with the last update it applied per origin partition.
pub fn encode(rules: &Rules, state: &AccountState, applied: &[AppliedOrigin]) -> Vec<u8> {
    let thresholds = rules.accounts.as_ref().map_or(&[][..], |accounts| &accounts.thresholds[..]);
    v1::AccountState {
        format: ACCOUNT_FORMAT,
        clock_ms: state.clock_ms,
        members: state.members.iter().map(|member| member_to_proto(rules, member)).collect(),
        fired: thresholds.iter().zip(&state.fired).filter(|(_, fired)| **fired).map(|(t, _)| t.key).collect(),
        next_timer_ms: state.next_timer_ms,
        applied: applied
            .iter()
            .map(|applied| v1::AppliedOrigin { origin: applied.origin, offset: applied.offset, index: applied.index })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes an account written by [`encode`], with its applied origins.
pub fn decode(rules: &Rules, account: &str, bytes: &[u8]) -> Result<(AccountState, Vec<AppliedOrigin>), CodecError> {
    let message = v1::AccountState::decode(bytes).map_err(|err| CodecError::Corrupt(err.to_string()))?;
    if message.format != ACCOUNT_FORMAT {
        return Err(CodecError::UnknownFormat { found: message.format });
    }
    let thresholds = rules.accounts.as_ref().map_or(&[][..], |accounts| &accounts.thresholds[..]);
    let mut members = Vec::with_capacity(message.members.len());
    for member in &message.members {
        members.push(member_from_proto(rules, member)?);
    }
    members.sort_by(|a, b| a.contact.cmp(&b.contact));
    let state = AccountState {
        account: account.to_owned(),
        clock_ms: message.clock_ms,
        members,
        fired: thresholds.iter().map(|threshold| message.fired.contains(&threshold.key)).collect(),
        next_timer_ms: message.next_timer_ms,
    };
    let applied = message
        .applied
        .iter()
        .map(|applied| AppliedOrigin { origin: applied.origin, offset: applied.offset, index: applied.index })
        .collect();
    Ok((state, applied))
}

/// A member in its stored form.
pub fn member_to_proto(rules: &Rules, member: &Member) -> v1::AccountMember {
    v1::AccountMember {
        contact: member.contact.clone(),
        phase: rules.phases.get(member.phase).map_or(0, |phase| phase.key),
        groups: groups_to_proto(rules, &member.groups),
    }
}

/// A member read back under the current rules; its empty groups as of time 0, as [`Member::of`] keeps
/// them.
pub fn member_from_proto(rules: &Rules, member: &v1::AccountMember) -> Result<Member, CodecError> {
    Ok(Member {
        contact: member.contact.clone(),
        phase: rules.phase_by_key(member.phase).unwrap_or(0),
        groups: groups_from_proto(rules, 0, &member.groups, FIRST_STATE_FORMAT)?,
    })
}
