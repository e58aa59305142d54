//! What account scoring publishes, keyed by account: `account_score_changed` and
//! `account_threshold_crossed`, with deterministic ids as contact outputs have.

use serde::{Serialize, Serializer};

use crate::event::format_rfc3339;
use crate::proto::v1;
use crate::rules::{AccountThreshold, Rules};
use crate::scoring::Direction;

/// One published record about an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountOutput {
    /// Deterministic id: the cause's id, the account and a sequence number, or account, threshold and t*.
    pub id: String,
    /// The account.
    pub account: String,
    /// The rules version that produced it.
    pub rules_version: String,
    /// Account time of the output, epoch ms.
    #[serde(rename = "ts", serialize_with = "rfc3339")]
    pub ts_ms: i64,
    /// What happened.
    #[serde(flatten)]
    pub body: AccountBody,
}

/// The kinds of account output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountBody {
    /// A contact joined, changed or left, and the aggregates moved.
    AccountScoreChanged(AccountScoreChanged),
    /// An account threshold fired up or fell back down.
    AccountThresholdCrossed(AccountThresholdCrossed),
}

/// The aggregates of an account's contacts' weighted scores at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Aggregate {
    /// How many contacts it has.
    pub contacts: usize,
    /// The sum of their weighted scores.
    pub sum: f64,
    /// The best weighted score (0 without contacts).
    pub max: f64,
    /// The sum of the best `top_k`.
    pub top_k_sum: f64,
}

/// What a contact's change was to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberMove {
    /// It was not a member before.
    Joined,
    /// It was, and its score or phase changed.
    Updated,
    /// It is no longer a member.
    Left,
}

/// An account's aggregates after a contact's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountScoreChanged {
    /// The contact that changed.
    pub contact: String,
    /// How.
    pub change: MemberMove,
    /// The sum before.
    pub old_sum: f64,
    /// The aggregates after.
    #[serde(flatten)]
    pub aggregate: Aggregate,
}

/// An account threshold crossed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountThresholdCrossed {
    /// The threshold's name.
    pub threshold: String,
    /// Up or down.
    pub direction: Direction,
    /// The aggregates at the crossing.
    #[serde(flatten)]
    pub aggregate: Aggregate,
    /// When it crossed.
    #[serde(serialize_with = "rfc3339")]
    pub crossed_at: i64,
}

impl AccountOutput {
    /// The JSON the account topic carries.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The protobuf message (`leadscore.v1.AccountOutput`) the account topic carries with protobuf outputs.
    pub fn to_protobuf(&self) -> Vec<u8> {
        use prost::Message;
        use v1::account_output::Body;
        let aggregate = |aggregate: &Aggregate| v1::AccountAggregate {
            contacts: aggregate.contacts as u32,
            sum: aggregate.sum,
            max: aggregate.max,
            top_k_sum: aggregate.top_k_sum,
        };
        let body = match &self.body {
            AccountBody::AccountScoreChanged(changed) => Body::AccountScoreChanged(v1::AccountScoreChanged {
                contact: changed.contact.clone(),
                change: match changed.change {
                    MemberMove::Joined => v1::MemberChange::Joined,
                    MemberMove::Updated => v1::MemberChange::Updated,
                    MemberMove::Left => v1::MemberChange::Left,
                } as i32,
                old_sum: changed.old_sum,
                aggregate: Some(aggregate(&changed.aggregate)),
            }),
            AccountBody::AccountThresholdCrossed(crossed) => {
                Body::AccountThresholdCrossed(v1::AccountThresholdCrossed {
                    threshold: crossed.threshold.clone(),
                    direction: crate::scoring::direction_to_proto(crossed.direction) as i32,
                    aggregate: Some(aggregate(&crossed.aggregate)),
                    crossed_at_ms: crossed.crossed_at,
                })
            }
        };
        v1::AccountOutput {
            id: self.id.clone(),
            account: self.account.clone(),
            rules_version: self.rules_version.clone(),
            ts_ms: self.ts_ms,
            body: Some(body),
        }
        .encode_to_vec()
    }
}

fn rfc3339<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339(*ms))
}

pub(super) fn score_changed(
    rules: &Rules,
    account: &str,
    id: String,
    body: AccountScoreChanged,
    at_ms: i64,
) -> AccountOutput {
    output(rules, account, id, at_ms, AccountBody::AccountScoreChanged(body))
}

pub(super) fn crossed(
    rules: &Rules,
    account: &str,
    id: String,
    threshold: &AccountThreshold,
    direction: Direction,
    aggregate: Aggregate,
    at_ms: i64,
) -> AccountOutput {
    let body = AccountThresholdCrossed { threshold: threshold.name.clone(), direction, aggregate, crossed_at: at_ms };
    output(rules, account, id, at_ms, AccountBody::AccountThresholdCrossed(body))
}

fn output(rules: &Rules, account: &str, id: String, at_ms: i64, body: AccountBody) -> AccountOutput {
    AccountOutput { id, account: account.to_owned(), rules_version: rules.version.clone(), ts_ms: at_ms, body }
}
