//! An output's JSON, written straight into a byte buffer: the common fields, then `type` and the body's
//! fields, in one flat object. Every scored event writes one or more of these, so no field goes through
//! a serializer's generic machinery or an intermediate string.
//!
//! Numbers are written as serde_json writes them (shortest round-trip form, `null` for a non-finite
//! value), and strings escaped as JSON requires.

use super::output::{Direction, GroupValue, Output, OutputBody};
use crate::event::write_rfc3339;

/// A field name (a plain ASCII literal) and its colon, after a comma: one constant
/// slice, copied with a single capacity check.
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// Appends `output` as one JSON object to `out`.
pub fn write(output: &Output, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    string(out, &output.id);
    key!(out, "contact");
    string(out, &output.contact);
    key!(out, "rules_version");
    string(out, &output.rules_version);
    key!(out, "ts");
    time(out, output.ts_ms);
    key!(out, "type");
    string(out, output.body.kind());
    match &output.body {
        OutputBody::ScoreChanged(change) => {
            key!(out, "old_total");
            number(out, change.old_total);
            key!(out, "new_total");
            number(out, change.new_total);
            key!(out, "delta");
            number(out, change.delta);
            key!(out, "groups");
            groups(out, &change.groups);
            key!(out, "rules_fired");
            strings(out, &change.rules_fired);
            key!(out, "phase");
            string(out, &change.phase);
            if let Some(grade) = change.grade {
                key!(out, "grade");
                string(out, grade);
            }
            key!(out, "cause");
            string(out, &change.cause);
            if let Some(reason) = &change.disqualified {
                key!(out, "disqualified");
                string(out, reason);
            }
        }
        OutputBody::ThresholdCrossed(crossing) => {
            key!(out, "threshold");
            string(out, &crossing.threshold);
            key!(out, "direction");
            string(
                out,
                match crossing.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                },
            );
            key!(out, "value");
            number(out, crossing.value);
            key!(out, "crossed_at");
            time(out, crossing.crossed_at);
            key!(out, "phase");
            string(out, &crossing.phase);
        }
        OutputBody::PhaseChanged(change) => {
            key!(out, "from");
            string(out, &change.from);
            key!(out, "to");
            string(out, &change.to);
            key!(out, "cause");
            string(out, &change.cause);
        }
        OutputBody::ContactMerged(merge) => {
            key!(out, "merged");
            string(out, &merge.merged);
            key!(out, "old_total");
            number(out, merge.old_total);
            key!(out, "merged_total");
            number(out, merge.merged_total);
            key!(out, "new_total");
            number(out, merge.new_total);
            key!(out, "old_groups");
            groups(out, &merge.old_groups);
            key!(out, "merged_groups");
            groups(out, &merge.merged_groups);
            key!(out, "groups");
            groups(out, &merge.groups);
            key!(out, "old_phase");
            string(out, &merge.old_phase);
            key!(out, "merged_phase");
            string(out, &merge.merged_phase);
            key!(out, "phase");
            string(out, &merge.phase);
        }
        OutputBody::ContactErased(erased) => {
            key!(out, "cause");
            string(out, erased.cause);
            key!(out, "aliases");
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
        out.extend_from_slice(b"{\"group\":");
        string(out, &group.group);
        key!(out, "value");
        number(out, group.value);
        out.push(b'}');
    }
    out.push(b']');
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
