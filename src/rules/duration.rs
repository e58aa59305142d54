//! Durations in the rules file: a positive number and a unit, such as "30d", "12h", "90m", "45s" or "2w".

/// Parses a duration into milliseconds. Fractions are allowed ("1.5d"); zero and negatives are not.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| {
        format!("duration {text:?} has no unit; write it like \"30d\", \"12h\", \"15m\", \"30s\" or \"2w\"")
    })?;
    let (number, unit) = text.split_at(split);
    let amount: f64 = number.trim().parse().map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let unit_ms = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "w" => 604_800_000.0,
        other => return Err(format!("duration {text:?} has unknown unit {other:?}; use ms, s, m, h, d or w")),
    };
    if !amount.is_finite() || amount <= 0.0 {
        return Err(format!("duration {text:?} must be positive"));
    }
    let ms = (amount * unit_ms).round();
    if !(1.0..=1e15).contains(&ms) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration_ms("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_duration_ms("1.5d"), Ok(129_600_000));
        assert_eq!(parse_duration_ms("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["-30d", "0d", "30", "d", "30y", "abc"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
