//! JSON event decoding, borrowing strings from the payload where it can.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{AttrValue, DecodeError, DecodeLimits, Event, EventFields, check_payload, parse_rfc3339};

/// Decodes one JSON event, checking it against `limits`.
pub fn decode(payload: &[u8], limits: &DecodeLimits) -> Result<Event, DecodeError> {
    check_payload(payload, limits)?;
    check_depth(payload)?;
    // The fast path; only a payload it does not take is decoded by serde, which names the field at fault.
    match super::json_fast::read(payload) {
        Some(fields) => fields.validate(limits),
        None => decode_with_serde(payload, limits),
    }
}

/// Decodes an event with serde, naming the field at fault in an error.
fn decode_with_serde(payload: &[u8], limits: &DecodeLimits) -> Result<Event, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let raw: RawEvent<'_> = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() && path != "." {
            DecodeError::InvalidField { field: path, reason: strip_position(&inner.to_string()) }
        } else {
            DecodeError::Malformed { format: "JSON", reason: inner.to_string() }
        }
    })?;
    deserializer.end().map_err(|err| DecodeError::Malformed { format: "JSON", reason: err.to_string() })?;
    raw.into_fields().validate(limits)
}

/// Encodes an event as one JSON object (times as epoch milliseconds): for producers, tests and the generator.
pub fn encode(event: &Event) -> Vec<u8> {
    use serde_json::{Map, Value};
    let mut object = Map::new();
    object.insert("id".into(), Value::from(event.id.as_str()));
    object.insert("contact".into(), Value::from(event.contact.as_str()));
    object.insert("type".into(), Value::from(event.kind.as_str()));
    object.insert("ts".into(), Value::from(event.ts_ms));
    if let Some(item) = &event.item {
        object.insert("item".into(), Value::from(item.as_str()));
    }
    if !event.attrs.is_empty() {
        let attrs = event
            .attrs
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    AttrValue::Text(text) => Value::from(text.as_str()),
                    AttrValue::Number(number) => Value::from(*number),
                    AttrValue::Flag(flag) => Value::from(*flag),
                };
                (name.clone(), value)
            })
            .collect();
        object.insert("attrs".into(), Value::Object(attrs));
    }
    if let Some(adjustment) = &event.adjustment {
        object.insert("points".into(), Value::from(adjustment.points));
        object.insert("reason".into(), Value::from(adjustment.reason.as_str()));
        if let Some(group) = &adjustment.group {
            object.insert("group".into(), Value::from(group.as_str()));
        }
        if let Some(actor) = &adjustment.actor {
            object.insert("actor".into(), Value::from(actor.as_str()));
        }
    }
    if let Some(phase) = &event.phase {
        object.insert("phase".into(), Value::from(phase.as_str()));
    }
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}

/// Deepest nesting accepted: an event is an object holding an `attrs` object; unknown fields get room.
const MAX_DEPTH: usize = 16;

/// Rejects deeply nested JSON before parsing; serde_json skips unknown fields without a depth limit.
pub(crate) fn check_depth(payload: &[u8]) -> Result<(), DecodeError> {
    // Most events open a handful of objects: too few to nest too deep, which a count without branches
    // (so over whole vector words) shows faster than following strings and escapes byte by byte.
    let opened = payload.iter().fold(0usize, |count, &byte| count + usize::from((byte == b'{') | (byte == b'[')));
    if opened <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in payload {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::Malformed {
                        format: "JSON",
                        reason: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// serde_json appends " at line L column C" to data errors; the field path already locates them.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    contact: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<EventTime>,
    #[serde(borrow, default)]
    item: Option<Cow<'a, str>>,
    #[serde(default)]
    attrs: Option<Attrs>,
    #[serde(default)]
    points: Option<f64>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
}

impl<'a> RawEvent<'a> {
    fn into_fields(self) -> EventFields<'a> {
        EventFields {
            id: self.id,
            contact: self.contact,
            kind: self.kind,
            ts_ms: self.ts.map(|ts| ts.0),
            item: self.item,
            attrs: self.attrs.map(|attrs| attrs.0).unwrap_or_default(),
            points: self.points,
            reason: self.reason,
            group: self.group,
            actor: self.actor,
            phase: self.phase,
        }
    }
}

/// `ts`: an RFC 3339 string or integer epoch milliseconds.
struct EventTime(i64);

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = EventTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<EventTime, E> {
                parse_rfc3339(text).map(EventTime).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<EventTime, E> {
                Ok(EventTime(ms))
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<EventTime, E> {
                i64::try_from(ms).map(EventTime).map_err(|_| E::custom("epoch milliseconds out of range"))
            }
        }
        deserializer.deserialize_any(TimeVisitor)
    }
}

/// `attrs`: a flat object of string, number or bool values.
struct Attrs(Vec<(String, AttrValue)>);

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttrsVisitor;
        impl<'de> Visitor<'de> for AttrsVisitor {
            type Value = Attrs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string, number or bool values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attrs, A::Error> {
                let mut attrs = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    let value: AttrScalar = map.next_value()?;
                    attrs.push((name.into_owned(), value.0));
                }
                Ok(Attrs(attrs))
            }
        }
        deserializer.deserialize_map(AttrsVisitor)
    }
}

struct AttrScalar(AttrValue);

impl<'de> Deserialize<'de> for AttrScalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = AttrScalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or bool")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Text(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Text(text)))
            }
            fn visit_bool<E: de::Error>(self, flag: bool) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Flag(flag)))
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Number(number as f64)))
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Number(number as f64)))
            }
            fn visit_f64<E: de::Error>(self, number: f64) -> Result<AttrScalar, E> {
                Ok(AttrScalar(AttrValue::Number(number)))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_str(text: &str) -> Result<Event, DecodeError> {
        decode(text.as_bytes(), &DecodeLimits::default())
    }

    #[test]
    fn decodes_a_full_event() {
        let event = decode_str(
            r#"{"id":"e1","contact":"c1","type":"page_visit","ts":"2026-03-01T12:00:00Z",
                "item":"/pricing","attrs":{"source":"google","visits":3,"paid":true}}"#,
        );
        let event = event.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(event.kind, "page_visit");
        assert_eq!(event.ts_ms, 1_772_366_400_000);
        assert_eq!(event.item.as_deref(), Some("/pricing"));
        assert_eq!(event.attr("visits"), Some(&AttrValue::Number(3.0)));
        assert_eq!(event.attr("paid"), Some(&AttrValue::Flag(true)));
    }

    #[test]
    fn encode_round_trips() {
        let mut generator = crate::generator::EventGenerator::new(3, 50, 1_772_366_400_000, 1000);
        for _ in 0..500 {
            let event = generator.next_event();
            let mut decoded = decode(&encode(&event), &DecodeLimits::default()).unwrap_or_else(|err| panic!("{err}"));
            decoded.attrs.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected = event.clone();
            expected.attrs.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(decoded, expected);
        }
    }

    /// A JSON value of any type, some of them edge cases of their type.
    fn any_value() -> BoxedStrategy<String> {
        let text = prop_oneof![
            Just(String::new()),
            Just("  ".to_owned()),
            "[a-z0-9_@./-]{1,12}",
            Just("2026-03-01T12:00:00Z".to_owned()),
            Just("yesterday".to_owned()),
            "\\PC{0,6}",
        ]
        .prop_map(|text| serde_json::to_string(&text).unwrap_or_default());
        prop_oneof![
            text,
            Just(r#""a\u00e9\n\"b""#.to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
            Just(r#""\ud800""#.to_owned()),
            number(),
            Just("18446744073709551616".to_owned()),
            Just("-0".to_owned()),
            Just("1e3".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("[1, {}]".to_owned()),
            Just("{\"a\": [1]}".to_owned()),
        ]
        .boxed()
    }

    /// A well-typed attribute value.
    fn attr_value() -> impl Strategy<Value = String> {
        prop_oneof![number(), Just("true".to_owned()), Just("false".to_owned()), "\"[a-z ]{0,8}\""]
    }

    /// Integers and decimals that serde_json's default float reading parses exactly.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            (-2_000_000_000_000i64..2_000_000_000_000).prop_map(|number| number.to_string()),
            (-99_999i64..99_999, 0u32..100).prop_map(|(whole, cents)| format!("{whole}.{cents:02}")),
        ]
    }

    /// The value of one member: mostly of the type the member takes, sometimes anything.
    fn value_of(key: &'static str) -> BoxedStrategy<String> {
        let typed: BoxedStrategy<String> = match key {
            "ts" => prop_oneof![
                (1_000_000_000_000i64..2_000_000_000_000).prop_map(|ms| ms.to_string()),
                Just("\"2026-03-01T12:00:00.250+01:00\"".to_owned()),
            ]
            .boxed(),
            "type" => {
                prop_oneof![Just("page_visit"), Just("manual_adjustment"), Just("phase_change"), Just("demo_request")]
                    .prop_map(|kind| format!("\"{kind}\""))
                    .boxed()
            }
            "points" => number().boxed(),
            "attrs" => {
                proptest::collection::vec(("[a-c]{1,2}", prop_oneof![4 => attr_value(), 1 => any_value()]), 0..4)
                    .prop_map(|members| {
                        let members: Vec<String> =
                            members.iter().map(|(name, value)| format!("\"{name}\": {value}")).collect();
                        format!("{{{}}}", members.join(","))
                    })
                    .boxed()
            }
            _ => "\"[a-z0-9_@.-]{1,12}\"".boxed(),
        };
        prop_oneof![6 => typed, 1 => any_value()].boxed()
    }

    /// An event object: the required fields, then random members (every field, an unknown one, a key
    /// written with an escape, fields given twice), sometimes cut short.
    fn event_text() -> impl Strategy<Value = String> {
        const KEYS: [&str; 12] =
            ["id", "contact", "type", "ts", "item", "attrs", "points", "reason", "group", "actor", "phase", "other"];
        let member = proptest::sample::select(&KEYS[..])
            .prop_flat_map(|key| (Just(key), value_of(key), prop_oneof![Just(""), Just(" \n")]));
        // What each type needs, so that manual adjustments and phase changes are read to the end too.
        let typed = prop_oneof![
            (value_of("attrs"), value_of("item"))
                .prop_map(|(attrs, item)| format!("\"type\":\"page_visit\",\"attrs\":{attrs},\"item\":{item}")),
            (value_of("points"), value_of("reason"), value_of("group"), value_of("actor")).prop_map(
                |(points, reason, group, actor)| {
                    let adjustment = format!("\"points\":{points},\"reason\":{reason}");
                    format!("\"type\":\"manual_adjustment\",{adjustment},\"group\":{group},\"actor\":{actor}")
                }
            ),
            value_of("phase").prop_map(|phase| format!("\"type\":\"phase_change\",\"phase\":{phase}")),
            value_of("type").prop_map(|kind| format!("\"type\":{kind}")),
        ];
        let required = (value_of("contact"), typed, value_of("ts"));
        (required, proptest::collection::vec(member, 0..7), any::<bool>(), 0usize..8).prop_map(
            |((contact, kind, ts), members, escaped, cut)| {
                let id = if escaped { "\\u0069d" } else { "id" };
                let mut body =
                    vec![format!("\"{id}\":\"e-1\""), format!("\"contact\":{contact}"), kind, format!("\"ts\":{ts}")];
                body.extend(members.iter().map(|(key, value, space)| format!("{space}\"{key}\":{value}")));
                let text = format!("{{{}}}", body.join(","));
                // One event in eight loses its last bytes.
                text[..text.len() - if cut == 0 { 2 } else { 0 }].to_owned()
            },
        )
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// The fast path decodes every event as serde does, to the same event or the same error.
        #[test]
        fn the_fast_path_agrees_with_serde(text in event_text()) {
            let limits = DecodeLimits::default();
            let (fast, serde) = (decode(text.as_bytes(), &limits), decode_with_serde(text.as_bytes(), &limits));
            proptest::prop_assert_eq!(fast, serde, "{}", text);
        }
    }

    #[test]
    fn the_fast_path_takes_a_generated_stream() {
        let mut generator = crate::generator::EventGenerator::new(5, 50, 1_772_366_400_000, 1000);
        for _ in 0..200 {
            let payload = encode(&generator.next_event());
            assert!(super::super::json_fast::read(&payload).is_some(), "{}", String::from_utf8_lossy(&payload));
        }
    }

    #[test]
    fn accepts_epoch_milliseconds() {
        let event = decode_str(r#"{"id":"e1","contact":"c1","type":"x","ts":1772366400000}"#);
        assert_eq!(event.map(|e| e.ts_ms), Ok(1_772_366_400_000));
    }

    #[test]
    fn names_the_missing_field() {
        let err = decode_str(r#"{"id":"e1","type":"x","ts":1772366400000}"#);
        assert_eq!(err, Err(DecodeError::MissingField("contact")));
    }

    #[test]
    fn names_the_mistyped_field() {
        let err = decode_str(r#"{"id":"e1","contact":5,"type":"x","ts":1772366400000}"#);
        match err {
            Err(DecodeError::InvalidField { field, reason }) => {
                assert_eq!(field, "contact");
                assert!(reason.contains("invalid type"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = decode_str(r#"{"id":"e1","contact":"c","type":"x","ts":"last tuesday"}"#);
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "ts"), "{err:?}");
        let err = decode_str(r#"{"id":"e1","contact":"c","type":"x","ts":1772366400000,"attrs":{"a":{"b":1}}}"#);
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "attrs.a"), "{err:?}");
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(decode_str(""), Err(DecodeError::Empty));
        assert!(matches!(decode_str("{\"id\":"), Err(DecodeError::Malformed { .. })));
        assert!(matches!(decode(b"\xff\xfe", &DecodeLimits::default()), Err(DecodeError::Malformed { .. })));
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep = format!(r#"{{"id":"e","contact":"c","type":"x","ts":1772366400000,"extra":{nested}}}"#);
        assert!(decode_str(&deep).is_err());
        let limits = DecodeLimits { max_bytes: 10, ..DecodeLimits::default() };
        assert!(matches!(decode(b"{\"id\":\"0123456789\"}", &limits), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn rejects_times_out_of_range() {
        let err = decode_str(r#"{"id":"e1","contact":"c","type":"x","ts":0}"#);
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "ts"));
        let err = decode_str(r#"{"id":"e1","contact":"c","type":"x","ts":"9999-12-31T00:00:00Z"}"#);
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "ts"));
    }

    #[test]
    fn checks_type_specific_fields() {
        let base = r#""id":"e1","contact":"c","ts":1772366400000"#;
        let err = decode_str(&format!(r#"{{{base},"type":"manual_adjustment","points":5}}"#));
        assert_eq!(err, Err(DecodeError::MissingField("reason")));
        let err = decode_str(&format!(r#"{{{base},"type":"manual_adjustment","points":"NaN","reason":"x"}}"#));
        assert!(matches!(err, Err(DecodeError::InvalidField { ref field, .. }) if field == "points"));
        let err = decode_str(&format!(r#"{{{base},"type":"phase_change"}}"#));
        assert_eq!(err, Err(DecodeError::MissingField("phase")));
        let ok = decode_str(&format!(
            r#"{{{base},"type":"manual_adjustment","points":-5,"reason":"call went badly","actor":"ana"}}"#
        ));
        assert_eq!(ok.map(|e| e.adjustment.map(|a| a.points)), Ok(Some(-5.0)));
    }
}
