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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = parse_rfc3339("2026-03-01T12:30:05.250Z").unwrap_or_default();
        assert_eq!(ms, 1_772_368_205_250);
        assert_eq!(format_rfc3339(ms), "2026-03-01T12:30:05.250Z");
        assert_eq!(parse_rfc3339("2026-03-01T13:30:05.250+01:00"), Ok(ms));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
