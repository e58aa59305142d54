//! Protobuf event decoding (`leadscore.v1.Event`).

use std::borrow::Cow;

use prost::Message;

use super::{AttrValue, DecodeError, DecodeLimits, Event, EventFields, check_payload};
use crate::proto::v1;

/// Decodes one protobuf event, checking it against `limits`.
pub fn decode(payload: &[u8], limits: &DecodeLimits) -> Result<Event, DecodeError> {
    check_payload(payload, limits)?;
    let raw = v1::Event::decode(payload)
        .map_err(|err| DecodeError::Malformed { format: "protobuf", reason: err.to_string() })?;
    from_proto(raw, limits)
}

/// Validates a decoded `leadscore.v1.Event` against `limits`.
pub fn from_proto(raw: v1::Event, limits: &DecodeLimits) -> Result<Event, DecodeError> {
    let mut attrs = Vec::with_capacity(raw.attrs.len());
    for (name, value) in raw.attrs {
        let value = match value.value {
            Some(v1::attr_value::Value::Text(text)) => AttrValue::Text(text),
            Some(v1::attr_value::Value::Number(number)) => AttrValue::Number(number),
            Some(v1::attr_value::Value::Flag(flag)) => AttrValue::Flag(flag),
            None => {
                return Err(DecodeError::InvalidField {
                    field: format!("attrs.{name}"),
                    reason: "has no value".to_owned(),
                });
            }
        };
        attrs.push((name, value));
    }
    // Protobuf maps have no order; sort so that decoding is deterministic.
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    let fields = EventFields {
        id: non_empty(raw.id),
        contact: non_empty(raw.contact),
        kind: non_empty(raw.r#type),
        ts_ms: (raw.ts_ms != 0).then_some(raw.ts_ms),
        item: raw.item.map(Cow::Owned),
        attrs,
        points: raw.points,
        reason: raw.reason.map(Cow::Owned),
        group: raw.group.map(Cow::Owned),
        actor: raw.actor.map(Cow::Owned),
        phase: raw.phase.map(Cow::Owned),
    };
    fields.validate(limits)
}

/// Proto3 cannot tell an empty string from an absent one; both count as missing.
fn non_empty(text: String) -> Option<Cow<'static, str>> {
    (!text.is_empty()).then_some(Cow::Owned(text))
}

/// Encodes an event as `leadscore.v1.Event`: for producers, tests and the benchmark generator.
pub fn encode(event: &Event) -> Vec<u8> {
    to_proto(event).encode_to_vec()
}

/// The event as a `leadscore.v1.Event` message.
pub fn to_proto(event: &Event) -> v1::Event {
    let attrs = event
        .attrs
        .iter()
        .map(|(name, value)| {
            let value = match value {
                AttrValue::Text(text) => v1::attr_value::Value::Text(text.clone()),
                AttrValue::Number(number) => v1::attr_value::Value::Number(*number),
                AttrValue::Flag(flag) => v1::attr_value::Value::Flag(*flag),
            };
            (name.clone(), v1::AttrValue { value: Some(value) })
        })
        .collect();
    let adjustment = event.adjustment.as_ref();
    v1::Event {
        id: event.id.clone(),
        contact: event.contact.clone(),
        r#type: event.kind.clone(),
        ts_ms: event.ts_ms,
        item: event.item.clone(),
        attrs,
        points: adjustment.map(|a| a.points),
        reason: adjustment.map(|a| a.reason.clone()),
        group: adjustment.and_then(|a| a.group.clone()),
        actor: adjustment.and_then(|a| a.actor.clone()),
        phase: event.phase.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ManualAdjustment;

    #[test]
    fn round_trips_through_protobuf() {
        let event = Event {
            id: "e1".into(),
            contact: "c1".into(),
            kind: "manual_adjustment".into(),
            ts_ms: 1_772_366_400_000,
            item: Some("/pricing".into()),
            attrs: vec![("plan".into(), AttrValue::Text("pro".into())), ("seats".into(), AttrValue::Number(40.0))],
            adjustment: Some(ManualAdjustment {
                points: 12.5,
                reason: "met at trade fair".into(),
                group: Some("fit".into()),
                actor: Some("ana".into()),
            }),
            phase: None,
        };
        let decoded = decode(&encode(&event), &DecodeLimits::default());
        assert_eq!(decoded, Ok(event));
    }

    #[test]
    fn names_missing_and_bad_fields() {
        let raw = v1::Event { id: "e1".into(), r#type: "x".into(), ts_ms: 1_772_366_400_000, ..Default::default() };
        assert_eq!(decode(&raw.encode_to_vec(), &DecodeLimits::default()), Err(DecodeError::MissingField("contact")));
        assert!(matches!(decode(&[0xff, 0xff, 0xff], &DecodeLimits::default()), Err(DecodeError::Malformed { .. })));
        let raw = v1::Event {
            id: "e1".into(),
            contact: "c".into(),
            r#type: "manual_adjustment".into(),
            ts_ms: 1_772_366_400_000,
            points: Some(f64::NAN),
            reason: Some("x".into()),
            ..Default::default()
        };
        let err = decode(&raw.encode_to_vec(), &DecodeLimits::default());
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "points"));
    }
}
