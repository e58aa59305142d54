//! Event time: RFC 3339 text to epoch milliseconds and back.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp into epoch milliseconds (sub-millisecond digits are truncated).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    if let Some(ms) = parse_fixed(text.as_bytes(), true) {
        return Ok(ms);
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|err| format!("not an RFC 3339 time: {err}"))?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| "time out of range".to_owned())
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` (a `T` between date and time also does) into epoch milliseconds, in
/// UTC unless an offset follows: times as SQL databases and Snowplow write them.
pub fn parse_sql_time(text: &str) -> Option<i64> {
    parse_fixed(text.as_bytes(), false)
}

/// The shapes nearly every producer writes, read digit by digit: `YYYY-MM-DD`, `T` (or a space when no
/// offset is required), `HH:MM:SS`, up to nine fraction digits, then `Z` or `±HH:MM`. `None` for anything
/// else, which [`parse_rfc3339`] leaves to the full parser and its error message.
fn parse_fixed(text: &[u8], offset_required: bool) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let bytes = text.get(range)?;
        bytes.iter().try_fold(0i64, |value, byte| byte.is_ascii_digit().then(|| value * 10 + i64::from(byte - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, expected)| text.get(at) != Some(&expected)) {
        return None;
    }
    match text.get(10) {
        Some(b'T' | b't') => {}
        Some(b' ') if !offset_required => {}
        _ => return None,
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if text.get(at) == Some(&b'.') {
        let count = text[at + 1..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        if !(1..=9).contains(&count) {
            return None;
        }
        let shown = count.min(3);
        millis = digits(at + 1..at + 1 + shown)? * 10i64.pow(3 - shown as u32);
        at += 1 + count;
    }
    let offset_minutes = match text.get(at) {
        None if !offset_required => 0,
        Some(b'Z' | b'z') if at + 1 == text.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == text.len() && text[at + 3] == b':' => {
            let (hours, minutes) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            if sign == b'+' { hours * 60 + minutes } else { -(hours * 60 + minutes) }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
        for text in ["yesterday", "2026-02-30T00:00:00Z", "2026-03-01T12:00:00", "2026-03-01T24:00:00Z"] {
            assert!(parse_rfc3339(text).is_err(), "{text}");
        }
        assert_eq!(parse_sql_time("2026-03-01 12:30:05.25"), Some(1_772_368_205_250));
        assert_eq!(parse_sql_time("2026-13-01 12:30:05"), None);
    }

    proptest::proptest! {
        /// The digit-by-digit reading agrees with the full RFC 3339 parser on every time it reads.
        #[test]
        fn the_fast_reading_agrees_with_the_full_parser(
            ms in -62_135_596_800_000i64..253_402_300_799_999,
            fraction in proptest::option::of(0u32..1_000_000_000),
            digits in 1usize..=9,
            offset in proptest::option::of(-(23 * 60 + 59)..=(23 * 60 + 59i64)),
        ) {
            let at = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let mut text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(), u8::from(at.month()), at.day(), at.hour(), at.minute(), at.second()
            );
            if let Some(fraction) = fraction {
                text.push_str(&format!(".{:09}", fraction)[..1 + digits]);
            }
            match offset {
                None => text.push('Z'),
                Some(minutes) => text.push_str(&format!(
                    "{}{:02}:{:02}", if minutes < 0 { '-' } else { '+' }, minutes.abs() / 60, minutes.abs() % 60
                )),
            }
            let full = OffsetDateTime::parse(&text, &Rfc3339)
                .map(|parsed| i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or_default());
            proptest::prop_assert_eq!(parse_fixed(text.as_bytes(), true), full.ok(), "{}", text);
        }
    }
}
