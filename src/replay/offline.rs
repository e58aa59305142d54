//! The offline replay: one pass over a JSON-lines export, scored by two offline models side by side (the
//! baseline rules and the new rules), then the same diff report as the Kafka replay. Memory grows with
//! the number of contacts (two in-memory states each), not with the number of events.

use std::io::{BufRead, Write};

use crate::offline::{OfflineScorer, Summary};
use crate::rules::Rules;

use super::diff::{DiffBuilder, DiffReport};

/// What an offline replay did.
#[derive(Debug, Clone)]
pub struct OfflineReplay {
    /// Counts under the new rules.
    pub summary: Summary,
    /// New rules against baseline rules.
    pub report: DiffReport,
}

/// Scores `input` with both rules; the new rules' outputs go to `outputs` as JSON lines.
pub fn replay_lines(
    input: impl BufRead,
    new_rules: &Rules,
    baseline_rules: &Rules,
    partitions: u32,
    outputs: &mut impl Write,
    top: usize,
) -> std::io::Result<OfflineReplay> {
    let mut new = OfflineScorer::new(new_rules, partitions);
    let mut baseline = OfflineScorer::new(baseline_rules, partitions);
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Bad lines are counted in the summary; `leadscore score` lists them one by one.
        let _ = baseline.score_line(&line);
        if let Ok(produced) = new.score_line(&line) {
            for output in produced {
                outputs.write_all(&output.to_json())?;
                outputs.write_all(b"\n")?;
            }
        }
    }
    Ok(OfflineReplay { summary: new.summary(), report: diff(&baseline, &new, top) })
}

/// Compares two offline models contact by contact.
pub fn diff(baseline: &OfflineScorer<'_>, new: &OfflineScorer<'_>, top: usize) -> DiffReport {
    let mut builder = DiffBuilder::new(baseline.rules(), new.rules(), top);
    let (old_states, new_states) = (baseline.store().contacts(), new.store().contacts());
    for (contact, state) in new_states {
        builder.add(contact, old_states.get(contact), Some(state));
    }
    for (contact, state) in old_states.iter().filter(|(contact, _)| !new_states.contains_key(*contact)) {
        builder.add(contact, Some(state), None);
    }
    builder.finish()
}
