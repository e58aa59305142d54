//! `leadscore check --config FILE --sample FILE`: what each record of a sample becomes under a topic's
//! format and mapping, so that a mapping can be written without a broker.

use std::io::{self, Write};

use super::input::InputDecoder;
use super::mapping::{Mapped, Position, SourceRecord};
use super::{DecodeLimits, json};

/// What the records of a sample became.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleSummary {
    /// Records mapped to events.
    pub events: usize,
    /// Records the mapping skips.
    pub skipped: usize,
    /// Records that would go to the dead-letter topic.
    pub dead_letters: usize,
}

/// Maps each non-blank line of `sample` (one record value per line: JSON, or Snowplow TSV) and writes one
/// line per record: the event as leadscore JSON, the reason it is skipped, or why it would be dead-lettered.
/// Keys are not checked: a sample line has none.
pub fn report(
    decoder: &InputDecoder,
    file: &str,
    sample: &[u8],
    limits: &DecodeLimits,
    out: &mut impl Write,
) -> io::Result<SampleSummary> {
    let mut summary = SampleSummary::default();
    for (index, line) in sample.split(|&byte| byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record =
            SourceRecord { payload: line, key: None, headers: &[], position: Position::Line { file, line: index + 1 } };
        match decoder.decode_value(&record, limits) {
            Ok(Mapped::Event(event)) => {
                summary.events += 1;
                writeln!(out, "line {}: {}", index + 1, String::from_utf8_lossy(&json::encode(&event)))?;
            }
            Ok(Mapped::Skipped(reason)) => {
                summary.skipped += 1;
                writeln!(out, "line {}: skipped: {reason}", index + 1)?;
            }
            Err(err) => {
                summary.dead_letters += 1;
                writeln!(out, "line {}: dead letter ({}): {err}", index + 1, err.kind())?;
            }
        }
    }
    Ok(summary)
}
