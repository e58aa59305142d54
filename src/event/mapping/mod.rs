//! Events as other systems write them: Segment and RudderStack, CloudEvents, Snowplow, Debezium, or any
//! JSON shape, mapped onto leadscore's event by a declarative mapping.
//!
//! A [`TopicInput`] in the config names a format (whose preset is a mapping too) and overrides any of its
//! fields. [`Mapping::compile`] turns it into a [`walk::PathTree`] of the pointers it reads, so that a
//! record is read in one pass that keeps only those values, borrowed from the payload.

pub(crate) mod lexer;
pub mod render;
mod snowplow;
mod source;
mod spec;
mod walk;

use std::borrow::Cow;
use std::collections::HashMap;

pub use source::{Source, Sources};
pub use spec::{InputFormat, TimeFormat, TopicInput, UnmappedTypes};

use super::{
    AttrValue, DecodeError, DecodeLimits, Event, EventFields, MANUAL_ADJUSTMENT, PHASE_CHANGE, check_payload,
    parse_rfc3339, parse_sql_time,
};
pub(crate) use walk::Scalar;
use walk::{Extraction, PathTree, ROOT};

/// A Kafka record as the mapping sees it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    /// The value.
    pub payload: &'a [u8],
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The headers, in order.
    pub headers: &'a [(String, Vec<u8>)],
    /// Where the record was read, for the `offset` source: `topic/partition/offset`, or `file:line`.
    pub position: Position<'a>,
}

/// Where a record was read.
#[derive(Debug, Clone, Copy)]
pub enum Position<'a> {
    /// A Kafka topic partition and offset.
    Kafka {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// A line of a sample file.
    Line {
        /// The file name.
        file: &'a str,
        /// The 1-based line.
        line: usize,
    },
}

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Kafka { topic, partition, offset } => write!(f, "{topic}/{partition}/{offset}"),
            Position::Line { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

/// What a record became.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "nearly every record is an event; a box would allocate for each")]
pub enum Mapped {
    /// An event to score.
    Event(Event),
    /// A record the mapping filters out (a dropped type, a tombstone), with the reason.
    Skipped(String),
}

/// Where one field's value may come from, compiled.
#[derive(Debug, Clone)]
enum Pick {
    Slot(usize),
    Header(String),
    Key,
    Offset,
    Literal(String),
}

/// One field's picks, with the config text that names them in errors.
#[derive(Debug, Clone, Default)]
struct Field {
    name: String,
    picks: Vec<Pick>,
    described: String,
}

/// A compiled mapping for one input topic.
#[derive(Debug, Clone)]
pub struct Mapping {
    format: InputFormat,
    key_is_contact: bool,
    wrapper: Option<walk::Wrapper>,
    tree: PathTree,
    /// For Snowplow TSV: the columns read, by index, and what each fills.
    tsv_columns: Vec<(usize, snowplow::Column)>,
    id: Field,
    contact: Field,
    kind: Field,
    ts: Field,
    ts_format: TimeFormat,
    item: Field,
    attrs: Vec<(String, Field)>,
    attrs_from: Vec<usize>,
    attrs_changed_from: Option<usize>,
    types: HashMap<String, String>,
    unmapped_types: UnmappedTypes,
    drop_types: Vec<String>,
    phase: Field,
    points: Field,
    reason: Field,
}

impl Mapping {
    /// Builds the mapping of a topic; the error names the key at fault.
    pub fn compile(input: &TopicInput) -> Result<Mapping, String> {
        let resolved = input.resolve();
        let mut tree = PathTree::new();
        let mut field = |name: &str, sources: &Sources, required: bool| -> Result<Field, String> {
            if required && sources.0.is_empty() {
                return Err(format!("`{name}` is required: format {:?} has no preset for it", resolved.format.name()));
            }
            let picks = sources
                .0
                .iter()
                .map(|source| match source {
                    Source::Pointer(path) => Pick::Slot(tree.slot(path)),
                    Source::Header(name) => Pick::Header(name.clone()),
                    Source::Key => Pick::Key,
                    Source::Offset => Pick::Offset,
                    Source::Literal(text) => Pick::Literal(text.clone()),
                })
                .collect();
            Ok(Field { name: name.to_owned(), picks, described: sources.to_string() })
        };
        let id = field("id", &resolved.id, true)?;
        let contact = field("contact", &resolved.contact, true)?;
        let kind = field("type", &resolved.kind, true)?;
        let ts = field("ts", &resolved.ts, true)?;
        let item = field("item", &resolved.item, false)?;
        let phase = field("phase", &resolved.phase, false)?;
        let points = field("points", &resolved.points, false)?;
        let reason = field("reason", &resolved.reason, false)?;
        let mut attrs = Vec::new();
        for (name, sources) in &resolved.attrs {
            attrs.push((name.clone(), field(&format!("attrs.{name}"), sources, false)?));
        }
        let mut bucket = |name: &str, sources: &Sources| -> Result<Vec<usize>, String> {
            sources
                .0
                .iter()
                .map(|source| match source {
                    Source::Pointer(path) => Ok(tree.bucket(path)),
                    other => Err(format!("`{name}` takes JSON pointers to objects, not {:?}", other.to_string())),
                })
                .collect()
        };
        let mut attrs_from = Vec::new();
        for sources in &resolved.attrs_from {
            attrs_from.extend(bucket("attrs_from", sources)?);
        }
        let attrs_changed_from = match &resolved.attrs_changed_from {
            None => None,
            Some(sources) => match bucket("attrs_changed_from", sources)?.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ => return Err("`attrs_changed_from` takes one JSON pointer".to_owned()),
            },
        };
        let tsv_columns = match resolved.format {
            InputFormat::Snowplow => snowplow::columns(&tree),
            _ => Vec::new(),
        };
        Ok(Mapping {
            format: resolved.format,
            key_is_contact: resolved.key_is_contact,
            wrapper: resolved.unwrap.map(walk::Wrapper::new),
            tree,
            tsv_columns,
            id,
            contact,
            kind,
            ts,
            ts_format: resolved.ts_format,
            item,
            attrs,
            attrs_from,
            attrs_changed_from,
            types: resolved.types.into_iter().collect(),
            unmapped_types: resolved.unmapped_types,
            drop_types: resolved.drop_types,
            phase,
            points,
            reason,
        })
    }

    /// Whether a record's key must equal its contact id.
    pub fn key_is_contact(&self) -> bool {
        self.key_is_contact
    }

    /// Maps one record: an event, a record the mapping skips, or why it goes to the dead-letter topic.
    pub fn map(&self, record: &SourceRecord<'_>, limits: &DecodeLimits) -> Result<Mapped, DecodeError> {
        if record.payload.is_empty() && self.format == InputFormat::Debezium {
            return Ok(Mapped::Skipped("a tombstone (a null value after a delete)".to_owned()));
        }
        // A binary-mode CloudEvent may have no data: its attributes are all in the headers.
        if !(record.payload.is_empty() && self.binary_cloudevent(record)) {
            check_payload(record.payload, limits)?;
        }
        let mut found = self.tree.extraction();
        self.extract(record, &mut found)?;
        let source_kind = self.text(&self.kind, &found, record)?.ok_or_else(|| absent(&self.kind))?;
        if self.drop_types.iter().any(|dropped| *dropped == source_kind) {
            return Ok(Mapped::Skipped(format!("type {source_kind:?} is in drop_types")));
        }
        let kind = match (self.types.get(source_kind.as_ref()), self.unmapped_types) {
            (Some(mapped), _) => Cow::Borrowed(mapped.as_str()),
            (None, UnmappedTypes::Keep) => source_kind,
            (None, UnmappedTypes::Drop) => {
                return Ok(Mapped::Skipped(format!("type {source_kind:?} is not in types")));
            }
        };
        let ts = self.pick(&self.ts, &found, record).ok_or_else(|| absent(&self.ts))?;
        let fields = EventFields {
            id: Some(self.text(&self.id, &found, record)?.ok_or_else(|| absent(&self.id))?),
            contact: Some(self.text(&self.contact, &found, record)?.ok_or_else(|| absent(&self.contact))?),
            kind: Some(kind),
            ts_ms: Some(epoch_ms(&ts, self.ts_format).map_err(|reason| invalid(&self.ts, reason))?),
            item: self.text(&self.item, &found, record)?,
            attrs: self.attrs(&found, record),
            points: match self.pick(&self.points, &found, record) {
                None => None,
                Some(value) => Some(number(&value).ok_or_else(|| invalid(&self.points, "not a number"))?),
            },
            reason: self.text(&self.reason, &found, record)?,
            group: None,
            actor: None,
            phase: self.text(&self.phase, &found, record)?,
        };
        // The fields a special type needs name the mapping's sources when they are absent.
        let needed: &[(&Field, bool)] = match fields.kind.as_deref() {
            Some(PHASE_CHANGE) => &[(&self.phase, fields.phase.is_none())],
            Some(MANUAL_ADJUSTMENT) => {
                &[(&self.points, fields.points.is_none()), (&self.reason, fields.reason.is_none())]
            }
            _ => &[],
        };
        if let Some((field, _)) = needed.iter().find(|(field, absent)| *absent && !field.picks.is_empty()) {
            return Err(absent(field));
        }
        fields.validate(limits).map(Mapped::Event)
    }

    fn extract<'a>(&self, record: &SourceRecord<'a>, found: &mut Extraction<'a>) -> Result<(), DecodeError> {
        let malformed = |format: &'static str, reason: String| DecodeError::Malformed { format, reason };
        let payload = strip_json_framing(record.payload)?;
        let is_json = payload.iter().find(|byte| !byte.is_ascii_whitespace()).is_some_and(|&byte| byte == b'{');
        if self.format == InputFormat::Snowplow && !is_json {
            let line = std::str::from_utf8(payload).map_err(|err| malformed("Snowplow TSV", err.to_string()))?;
            return snowplow::walk_tsv(line, &self.tsv_columns, found)
                .map_err(|reason| malformed("Snowplow TSV", reason));
        }
        let mut node = ROOT;
        if self.binary_cloudevent(record) {
            // Binary mode: the attributes are `ce_` headers and the value is the data.
            for (name, value) in record.headers {
                let Some(attribute) = name.strip_prefix("ce_") else { continue };
                let slot = self.tree.child(ROOT, attribute).and_then(|child| self.tree.slot_of(child));
                if let (Some(slot), Ok(text)) = (slot, std::str::from_utf8(value)) {
                    found.slots[slot] = Some(Scalar::Text(Cow::Borrowed(text)));
                }
            }
            match self.tree.child(ROOT, "data") {
                Some(data) if !payload.is_empty() => node = data,
                _ => return Ok(()),
            }
        } else if !is_json {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(16)]).into_owned();
            return Err(malformed("JSON", format!("the record is not a JSON object: it starts with {shown:?}")));
        }
        // One UTF-8 check of the whole record, so that the reader slices strings out of it without another.
        let text = std::str::from_utf8(payload).map_err(|err| malformed("JSON", format!("not UTF-8: {err}")))?;
        walk::walk_json(text, &self.tree, node, self.wrapper.as_ref(), found)
            .map_err(|reason| malformed("JSON", reason))
    }

    /// Whether a record is a CloudEvent in binary mode: attributes in `ce_` headers, the data as the value.
    fn binary_cloudevent(&self, record: &SourceRecord<'_>) -> bool {
        self.format == InputFormat::Cloudevents && header(record.headers, "ce_specversion").is_some()
    }

    /// The first of a field's sources that the record has; empty text counts as absent.
    #[inline]
    fn pick<'a>(&self, field: &Field, found: &Extraction<'a>, record: &SourceRecord<'a>) -> Option<Scalar<'a>> {
        for pick in &field.picks {
            let value = match pick {
                Pick::Slot(slot) => match &found.slots[*slot] {
                    Some(Scalar::Text(text)) if text.is_empty() => continue,
                    Some(value) => value.clone(),
                    None => continue,
                },
                Pick::Header(name) => match header(record.headers, name) {
                    Some(text) if !text.is_empty() => Scalar::Text(Cow::Borrowed(text)),
                    _ => continue,
                },
                Pick::Key => match record.key.and_then(|key| std::str::from_utf8(key).ok()) {
                    Some(text) if !text.is_empty() => Scalar::Text(Cow::Borrowed(text)),
                    _ => continue,
                },
                Pick::Offset => Scalar::Text(Cow::Owned(record.position.to_string())),
                Pick::Literal(text) if text.is_empty() => continue,
                Pick::Literal(text) => Scalar::Text(Cow::Owned(text.clone())),
            };
            return Some(value);
        }
        None
    }

    fn text<'a>(
        &self,
        field: &Field,
        found: &Extraction<'a>,
        record: &SourceRecord<'a>,
    ) -> Result<Option<Cow<'a, str>>, DecodeError> {
        Ok(match self.pick(field, found, record) {
            None => None,
            Some(Scalar::Text(text)) => Some(text),
            Some(Scalar::Int(number)) => Some(Cow::Owned(itoa::Buffer::new().format(number).to_owned())),
            Some(Scalar::Float(number)) => Some(Cow::Owned(zmij::Buffer::new().format(number).to_owned())),
            Some(Scalar::Flag(_)) => return Err(invalid(field, "a bool where text is needed")),
        })
    }

    fn attrs<'a>(&self, found: &Extraction<'a>, record: &SourceRecord<'a>) -> Vec<(String, AttrValue)> {
        let mut attrs: Vec<(String, AttrValue)> = Vec::with_capacity(self.attrs.len() + found.members.len());
        for (name, field) in &self.attrs {
            if let Some(value) = self.pick(field, found, record) {
                attrs.push((name.clone(), attr_value(value)));
            }
        }
        // `before` nearly always lists the columns `after` does, in the same order: each column is looked
        // for first where the last one was found, and only then among all members.
        let mut hint = 0;
        let mut unchanged = |name: &str, value: &Scalar<'_>| {
            let Some(before) = self.attrs_changed_from else { return false };
            let named = |member: &(usize, Cow<'_, str>, Scalar<'_>)| member.0 == before && member.1 == name;
            let hinted = found.members.get(hint).filter(|member| named(member));
            if let Some(member) = hinted {
                hint += 1;
                if member.2 == *value {
                    return true;
                }
            }
            let at = found.members.iter().position(|member| named(member) && member.2 == *value);
            if let (None, Some(at)) = (hinted, at) {
                hint = at + 1;
            }
            at.is_some()
        };
        for bucket in &self.attrs_from {
            for (_, name, value) in found.members.iter().filter(|member| member.0 == *bucket) {
                if !unchanged(name, value) && !attrs.iter().any(|(kept, _)| kept == name) {
                    attrs.push((name.as_ref().to_owned(), attr_value(value.clone())));
                }
            }
        }
        attrs
    }
}

fn absent(field: &Field) -> DecodeError {
    DecodeError::Unmapped { field: field.name.clone(), sources: field.described.clone() }
}

fn invalid(field: &Field, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidField { field: format!("{} ({})", field.name, field.described), reason: reason.into() }
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers.iter().rev().find(|(key, _)| key == name).and_then(|(_, value)| std::str::from_utf8(value).ok())
}

fn attr_value(value: Scalar<'_>) -> AttrValue {
    match value {
        Scalar::Text(text) => AttrValue::Text(text.into_owned()),
        Scalar::Int(number) => AttrValue::Number(number as f64),
        Scalar::Float(number) => AttrValue::Number(number),
        Scalar::Flag(flag) => AttrValue::Flag(flag),
    }
}

fn number(value: &Scalar<'_>) -> Option<f64> {
    match value {
        Scalar::Int(number) => Some(*number as f64),
        Scalar::Float(number) => Some(*number),
        Scalar::Text(text) => text.trim().parse().ok(),
        Scalar::Flag(_) => None,
    }
}

/// A mapped time in epoch milliseconds; sub-millisecond parts are cut toward the past.
fn epoch_ms(value: &Scalar<'_>, format: TimeFormat) -> Result<i64, String> {
    let scale = match format {
        TimeFormat::Rfc3339 => {
            let Scalar::Text(text) = value else {
                return Err(
                    "a number where RFC 3339 text is expected; set ts_format to seconds, millis or micros".to_owned()
                );
            };
            if let Some(ms) = parse_sql_time(text) {
                return Ok(ms);
            }
            return match text.as_bytes() {
                [_, _, _, _, b'-', _, _, b'-', _, _, b' ', ..] => {
                    Err(format!("{text:?} is not a time of the form YYYY-MM-DD HH:MM:SS[.fff]"))
                }
                _ => parse_rfc3339(text),
            };
        }
        TimeFormat::Seconds => 1000.0,
        TimeFormat::Millis => 1.0,
        TimeFormat::Micros => 0.001,
    };
    let exact = match value {
        Scalar::Int(number) => match format {
            TimeFormat::Seconds => number.checked_mul(1000),
            TimeFormat::Micros => Some(number.div_euclid(1000)),
            _ => Some(*number),
        },
        _ => None,
    };
    if let Some(ms) = exact {
        return Ok(ms);
    }
    let number = number(value).filter(|number| number.is_finite()).ok_or("not a number of epoch time")?;
    let ms = (number * scale).floor();
    if ms.abs() < 9.0e15 { Ok(ms as i64) } else { Err("epoch time out of range".to_owned()) }
}

/// Strips Confluent Schema Registry framing (a zero byte and a 4-byte schema id) from a JSON payload.
fn strip_json_framing(payload: &[u8]) -> Result<&[u8], DecodeError> {
    super::framing::strip(payload, super::framing::Payload::Json).map(|framed| framed.body)
}

#[cfg(test)]
mod tests;
