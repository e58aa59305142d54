//! The fast path of [`super::json::decode`]: one pass of the mapping's JSON reader over an event that
//! builds its fields as it goes. It accepts only what serde's decoding would turn into the same fields; on
//! anything else (malformed text, a field of the wrong type, a field given twice) it gives up, and serde
//! decodes the event again to name the fault.

use std::borrow::Cow;

use super::mapping::Scalar;
use super::mapping::lexer::Lexer;
use super::{AttrValue, EventFields, parse_rfc3339};

/// The fields of a well-formed, well-typed event; `None` leaves the event to serde.
pub(super) fn read(payload: &[u8]) -> Option<EventFields<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut lexer = Lexer::new(text);
    let mut fields = EventFields::default();
    if lexer.peek() != Some(b'{') {
        return None;
    }
    let mut empty = lexer.open(b'}', 0).ok()?;
    let mut seen = 0u16;
    while !empty {
        let key = lexer.key().ok()?;
        let Some(field) = FIELDS.iter().position(|name| *name == key) else {
            lexer.skip(1).ok()?;
            empty = !lexer.next(b'}').ok()?;
            continue;
        };
        if seen & 1 << field != 0 {
            return None;
        }
        seen |= 1 << field;
        match FIELDS[field] {
            "ts" => fields.ts_ms = time(&mut lexer)?,
            "attrs" => fields.attrs = attrs(&mut lexer)?,
            "points" => {
                fields.points = match lexer.scalar().ok()? {
                    None => None,
                    Some(Scalar::Int(number)) => Some(number as f64),
                    Some(Scalar::Float(number)) => Some(number),
                    Some(_) => return None,
                }
            }
            name => {
                let text = match lexer.scalar().ok()? {
                    None => None,
                    Some(Scalar::Text(text)) => Some(text),
                    Some(_) => return None,
                };
                *text_field(&mut fields, name)? = text;
            }
        }
        empty = !lexer.next(b'}').ok()?;
    }
    lexer.end().ok()?;
    Some(fields)
}

/// The members an event may have; any other is skipped (and checked).
const FIELDS: [&str; 11] =
    ["id", "contact", "type", "ts", "item", "attrs", "points", "reason", "group", "actor", "phase"];

fn text_field<'f, 'a>(fields: &'f mut EventFields<'a>, name: &str) -> Option<&'f mut Option<Cow<'a, str>>> {
    Some(match name {
        "id" => &mut fields.id,
        "contact" => &mut fields.contact,
        "type" => &mut fields.kind,
        "item" => &mut fields.item,
        "reason" => &mut fields.reason,
        "group" => &mut fields.group,
        "actor" => &mut fields.actor,
        "phase" => &mut fields.phase,
        _ => return None,
    })
}

/// `ts`: RFC 3339 text or integer epoch milliseconds, or null. A zero is left to serde, which reads `-0`
/// as a float and refuses it.
fn time(lexer: &mut Lexer<'_>) -> Option<Option<i64>> {
    match lexer.scalar().ok()? {
        None => Some(None),
        Some(Scalar::Int(ms)) if ms != 0 => Some(Some(ms)),
        Some(Scalar::Text(text)) => parse_rfc3339(&text).ok().map(Some),
        Some(_) => None,
    }
}

/// `attrs`: an object of string, number or bool values, or null.
fn attrs(lexer: &mut Lexer<'_>) -> Option<Vec<(String, AttrValue)>> {
    let mut attrs = Vec::new();
    match lexer.peek()? {
        b'n' => return lexer.scalar().ok()?.is_none().then_some(attrs),
        b'{' => {}
        _ => return None,
    }
    let mut empty = lexer.open(b'}', 1).ok()?;
    while !empty {
        let name = lexer.key().ok()?;
        let value = match lexer.scalar().ok()?? {
            Scalar::Text(text) => AttrValue::Text(text.into_owned()),
            Scalar::Int(number) => AttrValue::Number(number as f64),
            Scalar::Float(number) => AttrValue::Number(number),
            Scalar::Flag(flag) => AttrValue::Flag(flag),
        };
        attrs.push((name.into_owned(), value));
        empty = !lexer.next(b'}').ok()?;
    }
    Some(attrs)
}
