//! Records of the internal merge topic (`leadscore.v1.InternalRecord`): work one contact's task hands to
//! the task of another contact, keyed by that contact, so that it lands on the partition that owns it.
//!
//! - **Forward**: an event for a contact merged into another, scored on the survivor.
//! - **Request**: a merge event, sent to the merged contact's task, which turns that contact into an alias
//!   of the survivor and sends its state on.
//! - **Transfer**: the merged contact's answer, always sent: its state, which the survivor's task merges
//!   in, or that it has none, or that it declined. The survivor awaits it, so that an erasure of the
//!   survivor before it arrives drops it instead of bringing the contact back. An alias forgotten while
//!   it still awaited an answer (which comes to it, and which it drops) declines it at once to the
//!   contact it had joined, which took over the wait.
//! - **Forget**: the survivor was erased, and with it every id merged into it: the alias is deleted.
//!
//! Each record names its origin: the record (input or internal) whose processing wrote it. A task sends
//! its records again when it scores uncommitted input again after a crash or a rebalance; the copies keep
//! their origin, and a contact applies each origin partition's records once, in order, as it applies its
//! input topics' records once (its record stamps the last origin offset applied).

use prost::Message;

use crate::event::{DecodeLimits, Event, protobuf};
use crate::proto::v1;
use crate::rules::Rules;
use crate::scoring::{ContactState, codec};

pub use crate::scoring::MAX_ALIAS_HOPS as MAX_HOPS;

/// The record whose processing wrote an internal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Stored key of its topic.
    pub topic: u32,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

impl Origin {
    /// The key a contact's record stamps this origin partition's applied offset under.
    pub fn stamp_key(&self) -> u32 {
        crate::hashing::name_key(&format!("{:08x}#{}", self.topic, self.partition))
    }
}

/// What an internal record asks of the task that owns its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Score this event on the key's contact.
    Forward(Event),
    /// Merge the key's contact into the contact of this merge event.
    Request {
        /// The merge event.
        event: Event,
        /// What the survivor's aliases (and the contacts it awaits) take of
        /// [`crate::scoring::MAX_ALIAS_BYTES`].
        survivor_alias_bytes: u32,
    },
    /// The answer of the contact `merged` to the key's contact, on this merge event.
    Transfer {
        /// The merge event.
        event: Event,
        /// The merged contact's id.
        merged: String,
        /// What it answered.
        answer: Answer,
        /// Answers it awaited itself, which follow it to the survivor.
        awaiting: Vec<String>,
    },
    /// Forget the alias `alias` of an erased contact.
    Forget {
        /// The alias: the record's key.
        alias: String,
        /// The erased contact and all its aliases; `alias` is forgotten if it was merged into one of them.
        erased: Vec<String>,
    },
}

/// What a contact asked to merge into another answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Its state: it is an alias of the survivor now.
    State(Box<ContactState>),
    /// It had no state; it is an alias of the survivor now.
    Stateless,
    /// It stays as it was: merged into another contact first, or the rules no longer merge on the event.
    Declined,
}

/// One internal record.
#[derive(Debug, Clone, PartialEq)]
pub struct InternalRecord {
    /// Where it came from.
    pub origin: Origin,
    /// Aliases followed so far.
    pub hops: u32,
    /// What to do.
    pub work: Work,
}

impl InternalRecord {
    /// Encodes the record.
    pub fn encode(&self, rules: &Rules) -> Vec<u8> {
        let event = protobuf::to_proto;
        let body = match &self.work {
            Work::Forward(forwarded) => v1::internal_record::Body::Forward(event(forwarded)),
            Work::Request { event: merge, .. } => v1::internal_record::Body::Request(event(merge)),
            Work::Transfer { event: merge, merged, answer, awaiting } => {
                v1::internal_record::Body::Transfer(v1::Transfer {
                    event: Some(event(merge)),
                    merged: merged.clone(),
                    state: match answer {
                        Answer::State(state) => codec::encode(rules, state),
                        Answer::Stateless | Answer::Declined => Vec::new(),
                    },
                    awaiting: awaiting.clone(),
                    declined: *answer == Answer::Declined,
                })
            }
            Work::Forget { alias, erased } => {
                v1::internal_record::Body::Forget(v1::Forget { alias: alias.clone(), erased: erased.clone() })
            }
        };
        v1::InternalRecord {
            origin_topic: self.origin.topic,
            origin_partition: self.origin.partition,
            origin_offset: self.origin.offset,
            hops: self.hops,
            survivor_alias_bytes: match &self.work {
                Work::Request { survivor_alias_bytes, .. } => *survivor_alias_bytes,
                _ => 0,
            },
            body: Some(body),
        }
        .encode_to_vec()
    }

    /// Decodes a record written by [`InternalRecord::encode`]; the error says what is wrong with it.
    pub fn decode(rules: &Rules, bytes: &[u8], limits: &DecodeLimits) -> Result<InternalRecord, String> {
        let message = v1::InternalRecord::decode(bytes).map_err(|err| format!("internal record: {err}"))?;
        let event = |event: v1::Event| {
            protobuf::from_proto(event, limits).map_err(|err| format!("internal record's event: {err}"))
        };
        let work = match message.body {
            Some(v1::internal_record::Body::Forward(forwarded)) => Work::Forward(event(forwarded)?),
            Some(v1::internal_record::Body::Request(merge)) => {
                Work::Request { event: event(merge)?, survivor_alias_bytes: message.survivor_alias_bytes }
            }
            Some(v1::internal_record::Body::Transfer(transfer)) => {
                let answer = match (transfer.declined, transfer.state.is_empty()) {
                    (true, _) => Answer::Declined,
                    (false, true) => Answer::Stateless,
                    (false, false) => Answer::State(Box::new(
                        codec::decode(rules, &transfer.merged, &transfer.state)
                            .map_err(|err| format!("internal transfer of {:?}: {err}", transfer.merged))?,
                    )),
                };
                let merge = transfer.event.ok_or("internal transfer without its merge event")?;
                Work::Transfer { event: event(merge)?, merged: transfer.merged, answer, awaiting: transfer.awaiting }
            }
            Some(v1::internal_record::Body::Forget(forget)) => {
                Work::Forget { alias: forget.alias, erased: forget.erased }
            }
            None => return Err("internal record without a body".to_owned()),
        };
        let origin =
            Origin { topic: message.origin_topic, partition: message.origin_partition, offset: message.origin_offset };
        Ok(InternalRecord { origin, hops: message.hops, work })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::event::AttrValue;

    const RULES: &str = r#"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "10d"
[[phases]]
name = "lead"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 10
"#;

    fn event(contact: &str, kind: &str) -> Event {
        Event {
            id: "e-1".into(),
            contact: contact.into(),
            kind: kind.into(),
            ts_ms: 1_772_366_400_000,
            item: Some("/pricing".into()),
            attrs: vec![("merged".into(), AttrValue::Text("anonymous-1".into()))],
            adjustment: None,
            phase: None,
        }
    }

    #[test]
    fn every_kind_of_record_round_trips() {
        let rules = Rules::parse(RULES, Path::new("internal.toml")).unwrap_or_else(|err| panic!("{err}"));
        let merged = crate::scoring::apply(&rules, None, &event("anonymous-1", "page_visit"))
            .state
            .unwrap_or_else(|| panic!("no state"));
        let origin = Origin { topic: 7, partition: 3, offset: 41 };
        for work in [
            Work::Forward(event("known-1", "page_visit")),
            Work::Request { event: event("known-1", "merge"), survivor_alias_bytes: 40 },
            Work::Transfer {
                event: event("known-1", "merge"),
                merged: "anonymous-1".into(),
                answer: Answer::State(Box::new(merged)),
                awaiting: vec!["cookie-2".into()],
            },
            Work::Transfer {
                event: event("known-1", "merge"),
                merged: "anonymous-1".into(),
                answer: Answer::Stateless,
                awaiting: Vec::new(),
            },
            Work::Transfer {
                event: event("known-1", "merge"),
                merged: "anonymous-1".into(),
                answer: Answer::Declined,
                awaiting: Vec::new(),
            },
            Work::Forget { alias: "anonymous-1".into(), erased: vec!["known-1".into(), "anonymous-1".into()] },
        ] {
            let record = InternalRecord { origin, hops: 2, work };
            let bytes = record.encode(&rules);
            assert_eq!(InternalRecord::decode(&rules, &bytes, &DecodeLimits::default()), Ok(record));
        }
        assert!(InternalRecord::decode(&rules, b"\xff\xff", &DecodeLimits::default()).is_err());
        // Two partitions of one topic are two origins.
        assert_ne!(origin.stamp_key(), Origin { partition: 4, ..origin }.stamp_key());
    }
}
