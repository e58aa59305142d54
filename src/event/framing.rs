//! Confluent Schema Registry framing: the bytes every Confluent serializer writes before the payload.
//!
//! A framed record starts with the magic byte 0 and a 4-byte big-endian schema id. Protobuf records then
//! carry the path of the message in its schema file as message indexes: a zigzag varint count and that
//! many zigzag varints, or a single 0 for the file's first message. Neither a JSON text nor a protobuf
//! message can start with a zero byte, so framing is recognised without configuration.

use super::DecodeError;

/// What the payload under the framing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A JSON text.
    Json,
    /// A protobuf message.
    Protobuf,
}

/// A payload with its framing taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The schema id, when the record was framed.
    pub schema_id: Option<u32>,
    /// The message indexes of a framed protobuf record (`[0]` for the first message of the schema).
    pub message_indexes: Vec<i64>,
    /// The payload itself.
    pub body: &'a [u8],
}

/// Most message indexes accepted: nesting deeper than this is no schema anyone writes.
const MAX_INDEXES: i64 = 32;

fn malformed(reason: String) -> DecodeError {
    DecodeError::Malformed { format: "Schema Registry framing", reason }
}

/// Takes the framing off `payload` if it has one.
pub fn strip(payload: &[u8], kind: Payload) -> Result<Framed<'_>, DecodeError> {
    let unframed = Framed { schema_id: None, message_indexes: Vec::new(), body: payload };
    match payload.first() {
        Some(0) => {}
        Some(&byte) if kind == Payload::Json && byte < 0x20 && !byte.is_ascii_whitespace() => {
            return Err(malformed(format!(
                "the record starts with byte {byte:#04x}: not JSON, and not framed (the magic byte is 0x00)"
            )));
        }
        _ => return Ok(unframed),
    }
    let Some(id) = payload.get(1..5) else {
        return Err(malformed(format!("{} bytes, shorter than the 5-byte header", payload.len())));
    };
    let schema_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    let mut rest = &payload[5..];
    let mut message_indexes = Vec::new();
    if kind == Payload::Protobuf {
        let count = zigzag(&mut rest)?;
        if count == 0 {
            message_indexes.push(0);
        } else if !(1..=MAX_INDEXES).contains(&count) {
            return Err(malformed(format!("{count} message indexes")));
        } else {
            for _ in 0..count {
                message_indexes.push(zigzag(&mut rest)?);
            }
        }
    }
    Ok(Framed { schema_id: Some(schema_id), message_indexes, body: rest })
}

/// Reads one zigzag-encoded varint.
fn zigzag(bytes: &mut &[u8]) -> Result<i64, DecodeError> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(malformed("a message index is cut off".to_owned()))
}

/// Frames a payload as a Confluent serializer does: for producers and tests.
pub fn frame(schema_id: u32, message_indexes: &[i64], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    let mut put = |value: i64| {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    };
    match message_indexes {
        [] => {}
        [0] => put(0),
        indexes => {
            put(indexes.len() as i64);
            indexes.iter().for_each(|&index| put(index));
        }
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_for_json_and_protobuf() {
        let json = frame(42, &[], b"{}");
        assert_eq!(
            strip(&json, Payload::Json).ok(),
            Some(Framed { schema_id: Some(42), message_indexes: vec![], body: b"{}" })
        );
        for indexes in [vec![0], vec![1], vec![2, 0, 300]] {
            let framed = frame(7, &indexes, b"\x0a\x01x");
            let stripped = strip(&framed, Payload::Protobuf).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(
                (stripped.schema_id, stripped.message_indexes, stripped.body),
                (Some(7), indexes, &b"\x0a\x01x"[..])
            );
        }
        assert_eq!(strip(b"{\"a\":1}", Payload::Json).map(|framed| framed.schema_id).ok(), Some(None));
    }

    #[test]
    fn a_wrong_magic_byte_or_a_cut_header_is_named() {
        for (payload, expected) in [
            (&b"\x01\x00\x00\x00\x2a{}"[..], "starts with byte 0x01"),
            (&b"\x00\x00\x2a"[..], "shorter than the 5-byte header"),
        ] {
            let err = strip(payload, Payload::Json).err().map(|err| err.to_string()).unwrap_or_default();
            assert!(err.contains(expected), "{err}");
        }
        let err = strip(b"\x00\x00\x00\x00\x07\x04\x82", Payload::Protobuf).err().map(|err| err.to_string());
        assert!(err.unwrap_or_default().contains("cut off"));
    }
}
