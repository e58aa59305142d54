//! What the engine publishes: score changes, threshold crossings, phase changes, merges and erasures.
//!
//! Every output has an `id` derived from its cause, so a consumer can drop copies that are re-sent after
//! a crash, and the rules version that computed it.

use prost::Message;
use serde::{Serialize, Serializer};

use crate::event::format_rfc3339;
use crate::proto::v1;

/// One published record; keyed by `contact` on the output topics. Its JSON is the common fields, then
/// `type` and the body's fields, in one flat object (see the `Serialize` impl).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Deterministic id: the cause's event id and a sequence number, or contact, threshold and t*.
    pub id: String,
    /// The contact.
    pub contact: String,
    /// The rules version that produced it.
    pub rules_version: String,
    /// Contact time of the output, epoch ms.
    pub ts_ms: i64,
    /// What happened.
    pub body: OutputBody,
}

/// The kinds of output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputBody {
    /// A contact's score moved.
    ScoreChanged(ScoreChanged),
    /// A threshold fired up or fell back down.
    ThresholdCrossed(ThresholdCrossed),
    /// A contact entered a phase.
    PhaseChanged(PhaseChanged),
    /// Another contact was merged into this one (boxed: merges are rare, and every output moves as large
    /// as its largest kind).
    ContactMerged(Box<ContactMerged>),
    /// Every trace of a contact was deleted.
    ContactErased(ContactErased),
}

impl OutputBody {
    /// Short, fixed label of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            OutputBody::ScoreChanged(_) => "score_changed",
            OutputBody::ThresholdCrossed(_) => "threshold_crossed",
            OutputBody::PhaseChanged(_) => "phase_changed",
            OutputBody::ContactMerged(_) => "contact_merged",
            OutputBody::ContactErased(_) => "contact_erased",
        }
    }
}

/// A contact deleted with everything known of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactErased {
    /// Why: `erase` (an erase event) or `idle` (an anonymous visitor idle for the rules' `expire_after`).
    pub cause: &'static str,
    /// The ids of the contacts merged into it, forgotten with it.
    pub aliases: Vec<String>,
}

impl ContactErased {
    /// The erased contact (`contact`, the output's) and all its aliases.
    pub fn family(&self, contact: &str) -> Vec<String> {
        std::iter::once(contact).chain(self.aliases.iter().map(String::as_str)).map(str::to_owned).collect()
    }

    /// Whether an alias merged into `merged_into` is forgotten with an erased `family`: it is when it was
    /// merged into one of them; an id merged into another contact since stays.
    pub fn forgets(family: &[String], merged_into: &str) -> bool {
        family.iter().any(|id| id == merged_into)
    }
}

/// A score change with its cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreChanged {
    /// Weighted total before.
    pub old_total: f64,
    /// Weighted total after.
    pub new_total: f64,
    /// `new_total − old_total`.
    pub delta: f64,
    /// Every group's value after, in rules-file order.
    pub groups: Vec<GroupValue>,
    /// Ids of the rules that fired, sorted (they act together, whatever their order in the rules file).
    pub rules_fired: Vec<String>,
    /// The contact's phase after.
    pub phase: String,
    /// Fit grade after, if the rules define grades.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<&'static str>,
    /// What caused it: `event:<type>`, `manual`, `phase_reset:<phase>`, `disqualified`, `requalified`.
    pub cause: String,
    /// Disqualification reason, if the contact is disqualified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disqualified: Option<String>,
}

/// One group's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupValue {
    /// Group name.
    pub group: String,
    /// Value.
    pub value: f64,
}

/// Which way a threshold was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Reached `at`.
    Up,
    /// Fell below `at − hysteresis`.
    Down,
}

/// A threshold crossing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdCrossed {
    /// Threshold name.
    pub threshold: String,
    /// Up or down.
    pub direction: Direction,
    /// The target's value at the crossing.
    pub value: f64,
    /// When it crossed: the event time, or t* for a decay-driven fall.
    #[serde(serialize_with = "as_rfc3339")]
    pub crossed_at: i64,
    /// The contact's phase at the crossing.
    pub phase: String,
}

/// A phase change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseChanged {
    /// Phase left.
    pub from: String,
    /// Phase entered.
    pub to: String,
    /// `event:<id>` or `threshold:<name>`.
    pub cause: String,
}

/// A merge: who was merged into the contact, and both states before it, and the one after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactMerged {
    /// The contact merged into this one; its id now stands for this contact.
    pub merged: String,
    /// This contact's weighted total just before (0 if it was new).
    pub old_total: f64,
    /// The merged contact's weighted total just before.
    pub merged_total: f64,
    /// The weighted total after.
    pub new_total: f64,
    /// This contact's groups just before, in rules-file order.
    pub old_groups: Vec<GroupValue>,
    /// The merged contact's groups just before.
    pub merged_groups: Vec<GroupValue>,
    /// Every group's value after.
    pub groups: Vec<GroupValue>,
    /// This contact's phase before.
    pub old_phase: String,
    /// The merged contact's phase before.
    pub merged_phase: String,
    /// The phase after: the later of the two.
    pub phase: String,
}

fn as_rfc3339<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339(*ms))
}

impl Output {
    /// The output as one line of JSON: the common fields, then `type` and the body's fields, in one
    /// flat object.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        super::output_json::write(self, &mut out);
        out
    }

    /// The output as `leadscore.v1.Output`.
    pub fn to_protobuf(&self) -> Vec<u8> {
        use v1::output::Body;
        let body = match &self.body {
            OutputBody::ScoreChanged(change) => Body::ScoreChanged(v1::ScoreChanged {
                old_total: change.old_total,
                new_total: change.new_total,
                delta: change.delta,
                groups: group_values(&change.groups),
                rules_fired: change.rules_fired.clone(),
                phase: change.phase.clone(),
                grade: change.grade.unwrap_or_default().to_owned(),
                cause: change.cause.clone(),
                disqualified: change.disqualified.clone(),
            }),
            OutputBody::ThresholdCrossed(crossing) => Body::ThresholdCrossed(v1::ThresholdCrossed {
                threshold: crossing.threshold.clone(),
                direction: direction_to_proto(crossing.direction) as i32,
                value: crossing.value,
                crossed_at_ms: crossing.crossed_at,
                phase: crossing.phase.clone(),
            }),
            OutputBody::PhaseChanged(change) => Body::PhaseChanged(v1::PhaseChanged {
                from: change.from.clone(),
                to: change.to.clone(),
                cause: change.cause.clone(),
            }),
            OutputBody::ContactMerged(merge) => Body::ContactMerged(v1::ContactMerged {
                merged: merge.merged.clone(),
                old_total: merge.old_total,
                merged_total: merge.merged_total,
                new_total: merge.new_total,
                old_groups: group_values(&merge.old_groups),
                merged_groups: group_values(&merge.merged_groups),
                groups: group_values(&merge.groups),
                old_phase: merge.old_phase.clone(),
                merged_phase: merge.merged_phase.clone(),
                phase: merge.phase.clone(),
            }),
            OutputBody::ContactErased(erased) => Body::ContactErased(v1::ContactErased {
                cause: erased.cause.to_owned(),
                aliases: erased.aliases.clone(),
            }),
        };
        v1::Output {
            id: self.id.clone(),
            contact: self.contact.clone(),
            rules_version: self.rules_version.clone(),
            ts_ms: self.ts_ms,
            body: Some(body),
        }
        .encode_to_vec()
    }
}

fn group_values(groups: &[GroupValue]) -> Vec<v1::GroupValue> {
    groups.iter().map(|group| v1::GroupValue { group: group.group.clone(), value: group.value }).collect()
}

/// A crossing's direction in the published protobuf messages.
pub fn direction_to_proto(direction: Direction) -> v1::Direction {
    match direction {
        Direction::Up => v1::Direction::Up,
        Direction::Down => v1::Direction::Down,
    }
}
