//! Event time: RFC 3339 text to epoch milliseconds and back.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp into epoch milliseconds (sub-millisecond digits are truncated).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|err| format!("not an RFC 3339 time: {err}"))?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| "time out of range".to_owned())
}

/// Formats epoch milliseconds as RFC 3339 in UTC, with millisecond precision.
pub fn format_rfc3339(ms: i64) -> String {
    if let Some(text) = rfc3339_digits(ms) {
        return text.iter().map(|&byte| char::from(byte)).collect();
    }
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => {
            let (year, month, day) = (at.year(), u8::from(at.month()), at.day());
            let (hour, minute, second, milli) = (at.hour(), at.minute(), at.second(), at.millisecond());
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
        }
        Err(_) => format!("{ms}ms"),
    }
}

/// Appends [`format_rfc3339`]'s text to `out`.
pub fn write_rfc3339(ms: i64, out: &mut Vec<u8>) {
    match rfc3339_digits(ms) {
        Some(text) => out.extend_from_slice(&text),
        None => out.extend_from_slice(format_rfc3339(ms).as_bytes()),
    }
}

/// The text of a time in years 0 to 9999, written digit by digit: every output carries a time, and
/// `format!` cost more than the rest of the output.
fn rfc3339_digits(ms: i64) -> Option<[u8; 24]> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if !(0..=9999).contains(&at.year()) {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text[0..4], at.year() as u32);
    put_digits(&mut text[5..7], u32::from(u8::from(at.month())));
    put_digits(&mut text[8..10], u32::from(at.day()));
    put_digits(&mut text[11..13], u32::from(at.hour()));
    put_digits(&mut text[14..16], u32::from(at.minute()));
    put_digits(&mut text[17..19], u32::from(at.second()));
    put_digits(&mut text[20..23], u32::from(at.millisecond()));
    Some(text)
}

/// Writes `value` as decimal digits filling `slot`, zero-padded on the left.
fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = parse_rfc3339("2026-03-01T12:30:05.250Z").unwrap_or_default();
        assert_eq!(ms, 1_772_368_205_250);
        assert_eq!(format_rfc3339(ms), "2026-03-01T12:30:05.250Z");
        assert_eq!(parse_rfc3339("2026-03-01T13:30:05.250+01:00"), Ok(ms));
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
