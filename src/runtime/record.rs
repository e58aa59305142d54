//! The record stored per contact in RocksDB and in the changelog: the engine's state plus the runtime's
//! bookkeeping for exactly-once state: the last input offset applied per input topic, and the outputs of
//! recent input records, re-sent if their offsets were never committed.

use prost::Message;

use crate::proto::v1;
use crate::rules::Rules;
use crate::scoring::{ContactState, OutputBody, codec};

/// Which output topic a payload goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `score_changed` and `contact_erased`.
    ScoreChanged = 0,
    /// `threshold_crossed`.
    ThresholdCrossed = 1,
    /// `phase_changed`.
    PhaseChanged = 2,
}

impl Route {
    /// The route of an output.
    pub fn of(body: &OutputBody) -> Route {
        match body {
            OutputBody::ScoreChanged(_) | OutputBody::ContactErased => Route::ScoreChanged,
            OutputBody::ThresholdCrossed(_) => Route::ThresholdCrossed,
            OutputBody::PhaseChanged(_) => Route::PhaseChanged,
        }
    }

    fn from_code(code: u32) -> Route {
        match code {
            1 => Route::ThresholdCrossed,
            2 => Route::PhaseChanged,
            _ => Route::ScoreChanged,
        }
    }
}

/// An encoded output and its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedOutput {
    /// Output topic.
    pub route: Route,
    /// The record value as published.
    pub payload: Vec<u8>,
}

/// Outputs caused by one input record, kept until its offset is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentOutputs {
    /// Input topic key.
    pub topic: u32,
    /// Input offset.
    pub offset: i64,
    /// The outputs.
    pub outputs: Vec<RoutedOutput>,
}

/// What is stored under a contact's key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContact {
    /// The engine's state; `None` once the contact is erased (the record then only waits for its commit).
    pub state: Option<ContactState>,
    /// Last input offset applied, per input topic key.
    pub offsets: Vec<(u32, i64)>,
    /// Outputs of recent input records.
    pub recent: Vec<RecentOutputs>,
}

impl StoredContact {
    /// A record for a contact seen for the first time.
    pub fn fresh(state: Option<ContactState>) -> Self {
        StoredContact { state, offsets: Vec::new(), recent: Vec::new() }
    }

    /// The last offset of `topic` applied to this contact.
    pub fn applied_offset(&self, topic: u32) -> Option<i64> {
        self.offsets.iter().find(|(key, _)| *key == topic).map(|(_, offset)| *offset)
    }

    /// Records that the input record at `offset` of `topic` has been applied.
    pub fn mark_applied(&mut self, topic: u32, offset: i64) {
        match self.offsets.iter_mut().find(|(key, _)| *key == topic) {
            Some(entry) => entry.1 = entry.1.max(offset),
            None => self.offsets.push((topic, offset)),
        }
    }

    /// Adds outputs caused by the input record at `offset`.
    pub fn remember_outputs(&mut self, topic: u32, offset: i64, outputs: Vec<RoutedOutput>) {
        if outputs.is_empty() {
            return;
        }
        match self.recent.iter_mut().find(|recent| recent.topic == topic && recent.offset == offset) {
            Some(recent) => recent.outputs.extend(outputs),
            None => self.recent.push(RecentOutputs { topic, offset, outputs }),
        }
    }

    /// Drops outputs whose input offsets are committed (`committed` gives the next offset to consume).
    pub fn forget_committed(&mut self, committed: impl Fn(u32) -> Option<i64>) {
        self.recent.retain(|recent| committed(recent.topic).is_none_or(|next| recent.offset >= next));
    }

    /// Encodes the record.
    pub fn encode(&self, rules: &Rules) -> Vec<u8> {
        let mut message = match &self.state {
            Some(state) => codec::to_proto(rules, state),
            None => v1::ContactState { format: codec::STATE_FORMAT, erased: true, ..Default::default() },
        };
        message.offsets =
            self.offsets.iter().map(|(topic, offset)| v1::InputOffset { topic: *topic, offset: *offset }).collect();
        message.recent_outputs = self
            .recent
            .iter()
            .map(|recent| v1::SentOutputs {
                topic: recent.topic,
                offset: recent.offset,
                outputs: recent
                    .outputs
                    .iter()
                    .map(|out| v1::StoredOutput { route: out.route as u32, payload: out.payload.clone() })
                    .collect(),
            })
            .collect();
        message.encode_to_vec()
    }

    /// Decodes a record written by [`StoredContact::encode`].
    pub fn decode(rules: &Rules, contact: &str, bytes: &[u8]) -> Result<StoredContact, codec::CodecError> {
        let message = v1::ContactState::decode(bytes).map_err(|err| codec::CodecError::Corrupt(err.to_string()))?;
        let state = if message.erased {
            if message.format != codec::STATE_FORMAT {
                return Err(codec::CodecError::UnknownFormat { found: message.format });
            }
            None
        } else {
            Some(codec::from_proto(rules, contact, &message)?)
        };
        Ok(StoredContact {
            state,
            offsets: message.offsets.iter().map(|entry| (entry.topic, entry.offset)).collect(),
            recent: message
                .recent_outputs
                .into_iter()
                .map(|recent| RecentOutputs {
                    topic: recent.topic,
                    offset: recent.offset,
                    outputs: recent
                        .outputs
                        .into_iter()
                        .map(|out| RoutedOutput { route: Route::from_code(out.route), payload: out.payload })
                        .collect(),
                })
                .collect(),
        })
    }
}
