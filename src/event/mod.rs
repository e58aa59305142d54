//! Contact interaction events: the model, its limits, and the typed errors of decoding.
//!
//! Both wire formats (JSON in [`json`], protobuf in [`protobuf`]) decode into raw fields that pass one
//! validation, [`EventFields::validate`], so the two can never disagree on what is a valid event.

pub mod framing;
pub mod input;
pub mod json;
mod json_fast;
pub mod mapping;
pub mod protobuf;
pub mod sample;
mod time;

use std::borrow::Cow;

pub use time::{format_rfc3339, parse_rfc3339, parse_sql_time, write_rfc3339};

/// Event type of a hand-given adjustment of points; carries `points` and `reason`.
pub const MANUAL_ADJUSTMENT: &str = "manual_adjustment";
/// Event type that moves a contact to the phase named in `phase`.
pub const PHASE_CHANGE: &str = "phase_change";
/// Event type that deletes every trace of a contact.
pub const ERASE: &str = "erase";
/// Event type that lifts a disqualification.
pub const REQUALIFY: &str = "requalify";

/// One interaction of a contact, validated and ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id, used to drop duplicates.
    pub id: String,
    /// The contact the event is about.
    pub contact: String,
    /// The event type (an open set).
    pub kind: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The form, asset, page or email id, or a URL.
    pub item: Option<String>,
    /// Attributes matched by rule predicates, in the order given.
    pub attrs: Vec<(String, AttrValue)>,
    /// Present exactly when `kind` is `manual_adjustment`.
    pub adjustment: Option<ManualAdjustment>,
    /// Present exactly when `kind` is `phase_change`.
    pub phase: Option<String>,
}

impl Event {
    /// The attribute named `name`, if the event carries it.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

/// Points given by hand, with the reason that the history keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualAdjustment {
    /// Points to add; negative to remove. Always finite.
    pub points: f64,
    /// Why the points were given.
    pub reason: String,
    /// The group credited; the rules file's manual group when absent.
    pub group: Option<String>,
    /// Who gave the points.
    pub actor: Option<String>,
}

/// A value of an event attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Text(String),
    /// A finite number.
    Number(f64),
    /// A bool.
    Flag(bool),
}

/// Bounds on what a decoder accepts; anything outside goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Largest accepted payload in bytes.
    pub max_bytes: usize,
    /// Earliest accepted event time, epoch ms.
    pub min_ts_ms: i64,
    /// Latest accepted event time, epoch ms.
    pub max_ts_ms: i64,
}

impl DecodeLimits {
    /// 1 MiB, the same as Kafka's default `message.max.bytes`.
    pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
    /// 2000-01-01T00:00:00Z: earlier times are clock or producer errors (the epoch, for one).
    pub const DEFAULT_MIN_TS_MS: i64 = 946_684_800_000;
    /// 2200-01-01T00:00:00Z: later times are sentinels such as year 9999.
    pub const DEFAULT_MAX_TS_MS: i64 = 7_258_118_400_000;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            min_ts_ms: Self::DEFAULT_MIN_TS_MS,
            max_ts_ms: Self::DEFAULT_MAX_TS_MS,
        }
    }
}

/// Longest accepted id, contact, type, item or attribute text, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;
/// Most attributes one event may carry.
pub const MAX_ATTRS: usize = 256;

/// Why a payload is not a valid event. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is larger than [`DecodeLimits::max_bytes`].
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload is empty (a null or zero-length record value).
    #[error("payload is empty")]
    Empty,
    /// The payload is not well-formed JSON or protobuf.
    #[error("payload is not valid {format}: {reason}")]
    Malformed {
        /// `JSON` or `protobuf`.
        format: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A required field is absent or null.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// None of the places a mapping reads a required field from is in the record.
    #[error("missing field `{field}`: none of {sources} is in the record")]
    Unmapped {
        /// The event field.
        field: String,
        /// The mapping's sources for it.
        sources: String,
    },
    /// A field is present but has the wrong type or an unacceptable value.
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Path of the field, such as `ts` or `attrs.plan`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// A short, fixed label for metrics and the dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Empty => "empty",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::MissingField(_) | DecodeError::Unmapped { .. } => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }

    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        DecodeError::InvalidField { field: field.to_owned(), reason: reason.into() }
    }
}

/// The fields of an event as a wire format gives them, before validation.
#[derive(Debug, Default)]
pub(crate) struct EventFields<'a> {
    pub id: Option<Cow<'a, str>>,
    pub contact: Option<Cow<'a, str>>,
    pub kind: Option<Cow<'a, str>>,
    pub ts_ms: Option<i64>,
    pub item: Option<Cow<'a, str>>,
    pub attrs: Vec<(String, AttrValue)>,
    pub points: Option<f64>,
    pub reason: Option<Cow<'a, str>>,
    pub group: Option<Cow<'a, str>>,
    pub actor: Option<Cow<'a, str>>,
    pub phase: Option<Cow<'a, str>>,
}

impl EventFields<'_> {
    /// Checks presence, sizes, time range and the type-specific fields, and builds the event.
    pub fn validate(self, limits: &DecodeLimits) -> Result<Event, DecodeError> {
        let id = required_text("id", self.id)?;
        let contact = required_text("contact", self.contact)?;
        if contact.starts_with('\0') {
            // The state store and the changelog keep a partition's other records under such keys.
            return Err(DecodeError::invalid("contact", "must not begin with a NUL character"));
        }
        let kind = required_text("type", self.kind)?;
        let ts_ms = self.ts_ms.ok_or(DecodeError::MissingField("ts"))?;
        if ts_ms < limits.min_ts_ms || ts_ms > limits.max_ts_ms {
            return Err(DecodeError::invalid(
                "ts",
                format!(
                    "{} is outside the accepted range {} .. {}",
                    format_rfc3339(ts_ms),
                    format_rfc3339(limits.min_ts_ms),
                    format_rfc3339(limits.max_ts_ms)
                ),
            ));
        }
        let item = optional_text("item", self.item)?;
        if self.attrs.len() > MAX_ATTRS {
            return Err(DecodeError::invalid("attrs", format!("more than {MAX_ATTRS} attributes")));
        }
        for (name, value) in &self.attrs {
            let too_long = |text: &str| text.len() > MAX_FIELD_BYTES;
            match value {
                _ if too_long(name) => return Err(too_long_error(&format!("attrs.{name}"))),
                AttrValue::Text(text) if too_long(text) => return Err(too_long_error(&format!("attrs.{name}"))),
                AttrValue::Number(number) if !number.is_finite() => {
                    return Err(DecodeError::invalid(&format!("attrs.{name}"), "must be a finite number"));
                }
                _ => {}
            }
        }
        let adjustment = if kind == MANUAL_ADJUSTMENT {
            let points = self.points.ok_or(DecodeError::MissingField("points"))?;
            if !points.is_finite() {
                return Err(DecodeError::invalid("points", "must be a finite number"));
            }
            let reason = required_text("reason", self.reason)?;
            Some(ManualAdjustment {
                points,
                reason,
                group: optional_text("group", self.group)?,
                actor: optional_text("actor", self.actor)?,
            })
        } else {
            None
        };
        let phase = if kind == PHASE_CHANGE { Some(required_text("phase", self.phase)?) } else { None };
        Ok(Event { id, contact, kind, ts_ms, item, attrs: self.attrs, adjustment, phase })
    }
}

fn check_size(field: &str, text: &str) -> Result<(), DecodeError> {
    if text.len() > MAX_FIELD_BYTES {
        return Err(too_long_error(field));
    }
    Ok(())
}

fn too_long_error(field: &str) -> DecodeError {
    DecodeError::invalid(field, format!("longer than {MAX_FIELD_BYTES} bytes"))
}

fn required_text(field: &'static str, value: Option<Cow<'_, str>>) -> Result<String, DecodeError> {
    match optional_text(field, value)? {
        Some(text) => Ok(text),
        None => Err(DecodeError::MissingField(field)),
    }
}

fn optional_text(field: &str, value: Option<Cow<'_, str>>) -> Result<Option<String>, DecodeError> {
    match value {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Err(DecodeError::invalid(field, "must not be empty")),
        Some(text) => {
            check_size(field, &text)?;
            Ok(Some(text.into_owned()))
        }
    }
}

fn check_payload(payload: &[u8], limits: &DecodeLimits) -> Result<(), DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    if payload.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge { size: payload.len(), limit: limits.max_bytes });
    }
    Ok(())
}
