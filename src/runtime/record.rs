//! The record stored per contact in RocksDB and in the changelog: the engine's state plus the runtime's
//! bookkeeping for exactly-once state, the last input offset applied per input topic.
//!
//! The record holds no outputs. A contact's record reaches the changelog (and RocksDB) only after every
//! output of the input it reflects was acknowledged (see [`crate::kafka::sink`]), so an input record
//! that a restart skips as applied never needs its outputs re-sent. Its size therefore depends on the
//! rules file alone (groups, contributions, rule counts, the duplicate window and the history length),
//! never on how many events the contact got since the last commit.

use prost::Message;

use crate::proto::v1;
use crate::rules::Rules;
use crate::scoring::{ContactState, OutputBody, codec, codec_write};

/// Which output topic a payload goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `score_changed` and `contact_erased`.
    ScoreChanged = 0,
    /// `threshold_crossed`.
    ThresholdCrossed = 1,
    /// `phase_changed`.
    PhaseChanged = 2,
    /// `account_score_changed` and `account_threshold_crossed`.
    Account = 3,
}

impl Route {
    /// The route of an output.
    pub fn of(body: &OutputBody) -> Route {
        match body {
            OutputBody::ScoreChanged(_) | OutputBody::ContactMerged(_) | OutputBody::ContactErased(_) => {
                Route::ScoreChanged
            }
            OutputBody::ThresholdCrossed(_) => Route::ThresholdCrossed,
            OutputBody::PhaseChanged(_) => Route::PhaseChanged,
        }
    }
}

/// What is stored under a contact's key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredContact {
    /// The engine's state; `None` once the contact is erased (the record then only waits for its commit).
    pub state: Option<ContactState>,
    /// Last input offset applied, per input topic key.
    pub offsets: Vec<(u32, i64)>,
    /// The contact this one was merged into, whose state holds its events from then on; `state` is then
    /// `None`, and the record stays as the id's alias.
    pub merged_into: Option<String>,
    /// Contacts it asked to merge in whose answer has not arrived; the record stays until they have.
    pub awaiting: Vec<String>,
    /// Answers due from contacts it asked to merge in before its state was erased (or it was forgotten
    /// as an alias): dropped when they arrive. The record stays until they have.
    pub refused: Vec<String>,
}

impl StoredContact {
    /// A record for a contact seen for the first time.
    pub fn fresh(state: Option<ContactState>) -> Self {
        StoredContact { state, ..StoredContact::default() }
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

    /// Encodes the record.
    pub fn encode(&self, rules: &Rules) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let kept = codec_write::Bookkeeping {
            offsets: &self.offsets,
            merged_into: self.merged_into.as_deref(),
            awaiting: &self.awaiting,
            refused: &self.refused,
        };
        codec_write::write_record(rules, self.state.as_ref(), &kept, &mut out);
        out
    }

    /// Decodes a record written by [`StoredContact::encode`].
    pub fn decode(rules: &Rules, contact: &str, bytes: &[u8]) -> Result<StoredContact, codec::CodecError> {
        let message = v1::ContactState::decode(bytes).map_err(|err| codec::CodecError::Corrupt(err.to_string()))?;
        let state = if message.erased || message.merged_into.is_some() {
            codec::check_format(message.format)?;
            None
        } else {
            Some(codec::from_proto(rules, contact, &message)?)
        };
        let offsets = message.offsets.iter().map(|entry| (entry.topic, entry.offset)).collect();
        Ok(StoredContact {
            state,
            offsets,
            merged_into: message.merged_into,
            awaiting: message.awaiting,
            refused: message.refused,
        })
    }
}

/// The largest contact record `rules` allow, in bytes, for `inputs` input topics: every group with a
/// contribution from each of its rules (plus the clamp and manual points), every limited rule counted,
/// the duplicate window and the history full, and every text field at the decoder's size limit
/// ([`crate::event::MAX_FIELD_BYTES`]). A step-expiry group keeps one contribution per firing until it
/// expires: as many as `max_times` allows for a limited rule, and for rules without a limit and manual
/// points together at most [`crate::scoring::MAX_UNLIMITED_CONTRIBUTIONS`] (plus one per such rule for the
/// event that reaches it), beyond which their events are rejected.
pub fn record_size_bound(rules: &Rules, inputs: usize) -> usize {
    use crate::rules::{CLAMP_KEY, DecayLaw, MANUAL_KEY};
    use crate::scoring::{Contribution, GroupScore, HistoryEntry, MAX_UNLIMITED_CONTRIBUTIONS, RuleCount};

    let text = "\u{1}".repeat(crate::event::MAX_FIELD_BYTES);
    // Times are stored relative to the clock: from a clock of -1, one at `i64::MAX` takes the longest
    // varint, as the clock itself does.
    let mut state = ContactState::new(rules, "", -1);
    for (index, group) in rules.groups.iter().enumerate() {
        let mut contributions = Vec::new();
        let mut add = |source: u32, copies: u64| {
            for _ in 0..copies {
                contributions.push(Contribution { source, points: f64::MAX, expires_at_ms: Some(i64::MAX) });
            }
        };
        let mut unlimited = u64::from(index == rules.manual_group);
        for rule in rules.rules.iter().filter(|rule| rule.group == Some(index)) {
            let copies = match (group.decay, rule.limit.as_ref()) {
                (DecayLaw::Step { .. }, None) => {
                    unlimited += 1;
                    1
                }
                (DecayLaw::Step { expire_after_ms }, Some(limit)) => {
                    let windows = match limit.per_ms {
                        Some(per_ms) => (expire_after_ms / per_ms.max(1)) as u64 + 1,
                        None => rules.phases.len().max(1) as u64,
                    };
                    u64::from(limit.max_times) * windows
                }
                _ => 1,
            };
            add(rule.key, copies);
        }
        if let DecayLaw::Step { .. } = group.decay
            && unlimited > 0
        {
            add(MANUAL_KEY, MAX_UNLIMITED_CONTRIBUTIONS as u64 + unlimited);
        } else if index == rules.manual_group {
            add(MANUAL_KEY, 1);
        }
        add(CLAMP_KEY, 1);
        // A value its contributions do not sum to is stored, in the most bytes a value takes.
        state.groups[index] = GroupScore { value: f64::MIN, since_ms: i64::MAX, contributions };
    }
    state.fired = vec![true; rules.thresholds.len()];
    state.rule_counts = rules
        .rules
        .iter()
        .filter(|rule| rule.limit.is_some())
        .map(|rule| RuleCount { rule: rule.key, count: u32::MAX, window_start_ms: i64::MAX })
        .collect();
    state.disqualified = Some(text.clone());
    // Hashes of no history event's id are stored as they are: the most the recent ids take.
    state.recent_ids = std::iter::repeat_n(u64::MAX, rules.dedup_window).collect();
    // Entries at alternating times, so that none shares its stored event with the one before.
    state.history = (0..rules.history_limit as i64)
        .map(|index| HistoryEntry {
            source: u32::MAX,
            event_id: text.clone(),
            ts_ms: i64::MAX - index % 2,
            delta: f64::MAX,
            value_after: f64::MAX,
            group: u32::MAX,
            reason: Some(text.clone()),
            actor: Some(text.clone()),
        })
        .collect();
    state.next_timer_ms = Some(i64::MAX);
    state.phase = rules.phases.len().saturating_sub(1);
    // Its aliases fill what a contact keeps, and so do the contacts it awaits (see `merge_fits`).
    let aliases = vec![text.clone(); crate::scoring::MAX_ALIAS_BYTES / crate::scoring::alias_bytes(&text)];
    state.merged_ids = aliases.clone();
    state.account = Some(text);
    let record = StoredContact {
        state: Some(state),
        offsets: vec![(u32::MAX, i64::MAX); inputs],
        awaiting: aliases,
        ..StoredContact::default()
    };
    record.encode(rules).len()
}

/// The largest output `rules` can produce, in bytes, encoded as JSON (`json`) or protobuf: every text
/// that comes from an event at the decoder's size limit, in characters JSON escapes six bytes wide.
pub fn output_size_bound(rules: &Rules, json: bool) -> usize {
    use crate::scoring::{ContactErased, Direction, GroupValue, Output, PhaseChanged, ScoreChanged, ThresholdCrossed};

    let text = "\u{1}".repeat(crate::event::MAX_FIELD_BYTES);
    let longest = |names: &mut dyn Iterator<Item = &String>| names.max_by_key(|name| name.len()).cloned();
    let phase = longest(&mut rules.phases.iter().map(|phase| &phase.name)).unwrap_or_default();
    let threshold = longest(&mut rules.thresholds.iter().map(|threshold| &threshold.name)).unwrap_or_default();
    let bodies = [
        OutputBody::ScoreChanged(ScoreChanged {
            old_total: f64::MIN,
            new_total: f64::MIN,
            delta: f64::MIN,
            groups: rules
                .groups
                .iter()
                .map(|group| GroupValue { group: group.name.clone(), value: f64::MIN })
                .collect(),
            rules_fired: rules.rules.iter().map(|rule| rule.id.clone()).collect(),
            phase: phase.clone(),
            grade: Some("A"),
            cause: format!("phase_reset:{phase}:{text}"),
            disqualified: Some(text.clone()),
        }),
        OutputBody::ThresholdCrossed(ThresholdCrossed {
            threshold: threshold.clone(),
            direction: Direction::Down,
            value: f64::MIN,
            crossed_at: i64::MIN,
            phase: phase.clone(),
        }),
        OutputBody::PhaseChanged(PhaseChanged {
            from: phase.clone(),
            to: phase,
            cause: format!("threshold:{threshold}:{text}"),
        }),
        OutputBody::ContactErased(ContactErased {
            cause: "erase",
            aliases: vec![text.clone(); crate::scoring::MAX_ALIAS_BYTES / crate::scoring::alias_bytes(&text)],
        }),
    ];
    bodies
        .into_iter()
        .map(|body| {
            let output = Output {
                id: format!("{text}:{threshold}:{}", i64::MIN),
                contact: text.clone(),
                rules_version: rules.version.clone(),
                ts_ms: i64::MIN,
                body,
            };
            if json { output.to_json().len() } else { output.to_protobuf().len() }
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(source: &str) -> Rules {
        Rules::parse(source, std::path::Path::new("test.toml")).unwrap_or_else(|err| panic!("{err}"))
    }

    const BOUNDED: &str = r#"
[settings]
history = 20
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "30d"
[[groups]]
name = "intent"
decay = "step"
expire_after = "14d"
[[phases]]
name = "lead"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 1
[[rules]]
id = "cart"
on = "add_to_cart"
group = "intent"
points = 10
max_times = 3
per = "7d"
"#;

    #[test]
    fn the_bound_holds_for_the_fullest_record_and_grows_with_the_history() {
        let bounded = rules(BOUNDED);
        let bound = record_size_bound(&bounded, 1);
        // Twenty history entries of three 4 KiB texts each dominate it.
        assert!(bound > 20 * 3 * crate::event::MAX_FIELD_BYTES && bound < 1_000_000, "{bound}");
        let longer = rules(&BOUNDED.replace("history = 20", "history = 100"));
        assert!(record_size_bound(&longer, 1) > 1_000_000);
    }

    #[test]
    fn a_step_group_rule_without_a_limit_is_bounded_by_the_contribution_cap() {
        let unlimited = rules(&BOUNDED.replace("max_times = 3\nper = \"7d\"\n", ""));
        let bound = record_size_bound(&unlimited, 1);
        let limited = record_size_bound(&rules(BOUNDED), 1);
        // Each contribution takes at least 20 bytes (source, points, expiry and framing).
        assert!(bound > limited + 20 * crate::scoring::MAX_UNLIMITED_CONTRIBUTIONS, "{bound} vs {limited}");
        assert!(bound < 1_000_000, "{bound}");
    }

    #[test]
    fn outputs_stay_far_below_the_default_message_size() {
        let bound = output_size_bound(&rules(BOUNDED), true);
        assert!(bound > crate::event::MAX_FIELD_BYTES && bound < 1_000_000, "{bound}");
        assert!(output_size_bound(&rules(BOUNDED), false) < bound);
    }

    #[test]
    fn an_alias_record_keeps_its_survivor_and_offsets_and_no_state() {
        let rules = rules(BOUNDED);
        let alias = StoredContact {
            offsets: vec![(7, 41)],
            merged_into: Some("known-1".into()),
            awaiting: vec!["cookie-1".into()],
            ..StoredContact::default()
        };
        let bytes = alias.encode(&rules);
        let message = v1::ContactState {
            format: codec::STATE_FORMAT,
            offsets: vec![v1::InputOffset { topic: 7, offset: 41 }],
            merged_into: Some("known-1".into()),
            awaiting: vec!["cookie-1".into()],
            ..Default::default()
        };
        assert_eq!(bytes, message.encode_to_vec());
        assert_eq!(StoredContact::decode(&rules, "anonymous-1", &bytes), Ok(alias));
    }
}
