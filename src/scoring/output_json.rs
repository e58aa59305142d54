//! An output's JSON, written straight into a byte buffer: the common fields, then `type` and the body's
//! fields, in one flat object. Every scored event writes one or more of these, so no field goes through
//! a serializer's generic machinery or an intermediate string.
//!
//! Numbers are written as serde_json writes them (shortest round-trip form, `null` for a non-finite
//! value), and strings escaped as JSON requires.

use super::output::{Direction, GroupValue, Output, OutputBody};
use crate::event::write_rfc3339;

/// Appends `output` as one JSON object to `out`.
pub fn write(output: &Output, out: &mut Vec<u8>) {
    out.push(b'{');
    field(out, "id", true);
    string(out, &output.id);
    field(out, "contact", false);
    string(out, &output.contact);
    field(out, "rules_version", false);
    string(out, &output.rules_version);
    field(out, "ts", false);
    time(out, output.ts_ms);
    field(out, "type", false);
    string(out, output.body.kind());
    match &output.body {
        OutputBody::ScoreChanged(change) => {
            field(out, "old_total", false);
            number(out, change.old_total);
            field(out, "new_total", false);
            number(out, change.new_total);
            field(out, "delta", false);
            number(out, change.delta);
            field(out, "groups", false);
            groups(out, &change.groups);
            field(out, "rules_fired", false);
            strings(out, &change.rules_fired);
            field(out, "phase", false);
            string(out, &change.phase);
            if let Some(grade) = change.grade {
                field(out, "grade", false);
                string(out, grade);
            }
            field(out, "cause", false);
            string(out, &change.cause);
            if let Some(reason) = &change.disqualified {
                field(out, "disqualified", false);
                string(out, reason);
            }
        }
        OutputBody::ThresholdCrossed(crossing) => {
            field(out, "threshold", false);
            string(out, &crossing.threshold);
            field(out, "direction", false);
            string(
                out,
                match crossing.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                },
            );
            field(out, "value", false);
            number(out, crossing.value);
            field(out, "crossed_at", false);
            time(out, crossing.crossed_at);
            field(out, "phase", false);
            string(out, &crossing.phase);
        }
        OutputBody::PhaseChanged(change) => {
            field(out, "from", false);
            string(out, &change.from);
            field(out, "to", false);
            string(out, &change.to);
            field(out, "cause", false);
            string(out, &change.cause);
        }
        OutputBody::ContactMerged(merge) => {
            field(out, "merged", false);
            string(out, &merge.merged);
            field(out, "old_total", false);
            number(out, merge.old_total);
            field(out, "merged_total", false);
            number(out, merge.merged_total);
            field(out, "new_total", false);
            number(out, merge.new_total);
            field(out, "old_groups", false);
            groups(out, &merge.old_groups);
            field(out, "merged_groups", false);
            groups(out, &merge.merged_groups);
            field(out, "groups", false);
            groups(out, &merge.groups);
            field(out, "old_phase", false);
            string(out, &merge.old_phase);
            field(out, "merged_phase", false);
            string(out, &merge.merged_phase);
            field(out, "phase", false);
            string(out, &merge.phase);
        }
        OutputBody::ContactErased(erased) => {
            field(out, "cause", false);
            string(out, erased.cause);
            field(out, "aliases", false);
            strings(out, &erased.aliases);
        }
    }
    out.push(b'}');
}

fn strings(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, value);
    }
    out.push(b']');
}

fn groups(out: &mut Vec<u8>, groups: &[GroupValue]) {
    out.push(b'[');
    for (index, group) in groups.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'{');
        field(out, "group", true);
        string(out, &group.group);
        field(out, "value", false);
        number(out, group.value);
        out.push(b'}');
    }
    out.push(b']');
}

/// A field name (a plain ASCII literal) and its colon, after a comma unless it is the first.
fn field(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn time(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    write_rfc3339(ms, out);
    out.push(b'"');
}

fn number(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A JSON string: quotes, backslashes and control characters escaped, everything else as it is.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Almost no text needs escaping; this check has no early exit, so it runs on whole vector words.
    let plain = bytes.iter().fold(true, |plain, &byte| plain & (byte >= 0x20) & (byte != b'"') & (byte != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::format_rfc3339;
    use crate::scoring::output::{ContactErased, ContactMerged, PhaseChanged, ScoreChanged, ThresholdCrossed};

    /// The same object built through serde_json, the reference the writer must match byte for byte.
    fn reference(output: &Output) -> Vec<u8> {
        use serde_json::{Map, Value, json};
        let mut object = Map::new();
        object.insert("id".into(), json!(output.id));
        object.insert("contact".into(), json!(output.contact));
        object.insert("rules_version".into(), json!(output.rules_version));
        object.insert("ts".into(), json!(format_rfc3339(output.ts_ms)));
        object.insert("type".into(), json!(output.body.kind()));
        let body = serde_json::to_value(&output.body).unwrap_or_default();
        if let Value::Object(fields) = body {
            for (name, value) in fields {
                if name != "type" {
                    object.insert(name, value);
                }
            }
        }
        serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
    }

    fn parsed(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(bytes)))
    }

    fn outputs(text: String, number: f64) -> Vec<Output> {
        let common = |body| Output {
            id: text.clone(),
            contact: text.clone(),
            rules_version: "v1".into(),
            ts_ms: 1_772_366_400_123,
            body,
        };
        vec![
            common(OutputBody::ScoreChanged(ScoreChanged {
                old_total: number,
                new_total: -number,
                delta: f64::NAN,
                groups: vec![GroupValue { group: text.clone(), value: number }],
                rules_fired: vec![text.clone(), "b".into()],
                phase: text.clone(),
                grade: Some("A"),
                cause: text.clone(),
                disqualified: Some(text.clone()),
            })),
            common(OutputBody::ThresholdCrossed(ThresholdCrossed {
                threshold: text.clone(),
                direction: Direction::Down,
                value: number,
                crossed_at: 5,
                phase: text.clone(),
            })),
            common(OutputBody::PhaseChanged(PhaseChanged { from: text.clone(), to: "b".into(), cause: text.clone() })),
            common(OutputBody::ContactMerged(Box::new(ContactMerged {
                merged: text.clone(),
                old_total: number,
                merged_total: -number,
                new_total: f64::INFINITY,
                old_groups: vec![GroupValue { group: text.clone(), value: number }],
                merged_groups: Vec::new(),
                groups: vec![
                    GroupValue { group: "a".into(), value: 0.5 },
                    GroupValue { group: text.clone(), value: -0.0 },
                ],
                old_phase: text.clone(),
                merged_phase: "b".into(),
                phase: text.clone(),
            }))),
            common(OutputBody::ContactErased(ContactErased { cause: "idle", aliases: Vec::new() })),
            common(OutputBody::ContactErased(ContactErased {
                cause: "erase",
                aliases: vec![text.clone(), "b".into()],
            })),
        ]
    }

    proptest! {
        #[test]
        fn the_writer_writes_what_serde_json_writes(text in "\\PC*|[\\x00-\\x1f\"\\\\]{0,8}", number in any::<f64>()) {
            for output in outputs(text.clone(), number) {
                let written = output.to_json();
                prop_assert_eq!(parsed(&written), parsed(&reference(&output)));
                // The same text for every string and number (serde_json's map orders fields by name).
                prop_assert_eq!(written.len(), reference(&output).len());
            }
        }
    }

    #[test]
    fn fields_come_in_their_documented_order() {
        let output = &outputs("c-1".into(), 1.5)[1];
        let text = String::from_utf8(output.to_json()).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"id":"c-1","contact":"c-1","rules_version":"v1","ts":"2026-03-01T12:00:00.123Z","type":"threshold_crossed","threshold":"c-1","direction":"down","value":1.5,"crossed_at":"1970-01-01T00:00:00.005Z","phase":"c-1"}"#
        );
    }
}
