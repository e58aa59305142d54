//! One input topic's decoder: leadscore's JSON or protobuf, or a mapping; framing taken off first.

use super::framing::{self, Payload};
use super::mapping::{InputFormat, Mapped, Mapping, SourceRecord, TopicInput};
use super::{DecodeError, DecodeLimits, json, protobuf};

/// Decodes the records of one input topic.
#[derive(Debug, Clone)]
pub enum InputDecoder {
    /// leadscore's JSON events.
    Json,
    /// leadscore's protobuf events.
    Protobuf,
    /// Any other shape, through a mapping.
    Mapped(Box<Mapping>),
}

impl InputDecoder {
    /// The decoder for a topic's format and mapping; the error says which mapping key is wrong.
    pub fn for_topic(input: &TopicInput) -> Result<InputDecoder, String> {
        Ok(match input.format {
            InputFormat::Json => InputDecoder::Json,
            InputFormat::Protobuf => InputDecoder::Protobuf,
            _ => InputDecoder::Mapped(Box::new(Mapping::compile(input)?)),
        })
    }

    /// What the payload under a record's Schema Registry framing is.
    pub fn payload(&self) -> Payload {
        match self {
            InputDecoder::Protobuf => Payload::Protobuf,
            InputDecoder::Json | InputDecoder::Mapped(_) => Payload::Json,
        }
    }

    /// Whether a record's key must equal its contact id.
    pub fn key_is_contact(&self) -> bool {
        match self {
            InputDecoder::Json | InputDecoder::Protobuf => true,
            InputDecoder::Mapped(mapping) => mapping.key_is_contact(),
        }
    }

    /// Decodes one record, checking the key against the contact where the topic says it must match.
    pub fn decode(&self, record: &SourceRecord<'_>, limits: &DecodeLimits) -> Result<Mapped, (&'static str, String)> {
        let mapped = self.decode_value(record, limits).map_err(|err| (err.kind(), err.to_string()))?;
        if let Mapped::Event(event) = &mapped
            && self.key_is_contact()
        {
            match record.key {
                None => return Err(("key", "record has no key; the key must be the contact id".to_owned())),
                Some(key) if key != event.contact.as_bytes() => {
                    return Err((
                        "key",
                        format!(
                            "record key {:?} does not match contact {:?}",
                            String::from_utf8_lossy(key),
                            event.contact
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(mapped)
    }

    /// Decodes one record's value (and headers), without the key check: what `leadscore check --sample`
    /// shows for records whose keys a sample file does not have.
    pub fn decode_value(&self, record: &SourceRecord<'_>, limits: &DecodeLimits) -> Result<Mapped, DecodeError> {
        match self {
            InputDecoder::Json => framing::strip(record.payload, Payload::Json)
                .and_then(|framed| json::decode(framed.body, limits))
                .map(Mapped::Event),
            InputDecoder::Protobuf => framing::strip(record.payload, Payload::Protobuf)
                .and_then(|framed| protobuf::decode(framed.body, limits))
                .map(Mapped::Event),
            InputDecoder::Mapped(mapping) => mapping.map(record, limits),
        }
    }
}
