//! The figures of a run, as a table for people and as JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use super::child::Window;
use super::load::Latency;
use super::restore::Restore;

/// One measured mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    /// `bare_pipe`, `at_least_once` or `exactly_once`.
    pub mode: String,
    /// Input events committed (or counted, in exactly-once mode) when the mode finished.
    pub processed: u64,
    /// Events inside the measured window, which starts at the first commit seen.
    pub events: u64,
    /// Seconds of the measured window.
    pub seconds: Option<f64>,
    /// Events per second.
    pub events_per_second: Option<f64>,
    /// Events per second relative to the bare pipe of the same run.
    pub ratio_to_pipe: Option<f64>,
    /// CPU seconds (user + system) of the measured process per million events.
    pub cpu_seconds_per_million: Option<f64>,
    /// Peak resident set size of the measured process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// State directory bytes per distinct contact after a clean stop and the compactions it leaves
    /// pending (processor modes only).
    pub state_bytes_per_contact: Option<f64>,
    /// Why the mode did not finish (for example, a broker without transactions).
    pub error: Option<String>,
}

impl ModeResult {
    pub(crate) fn new(mode: &str, measured: Result<Window, String>, per_contact: Option<f64>) -> Self {
        match measured {
            Ok(window) => ModeResult {
                mode: mode.to_owned(),
                processed: window.committed,
                events: window.events,
                seconds: Some(window.seconds),
                events_per_second: Some(window.events as f64 / window.seconds.max(1e-9)),
                ratio_to_pipe: None,
                cpu_seconds_per_million: Some(window.cpu_seconds * 1e6 / window.events.max(1) as f64),
                peak_rss_mib: Some(window.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
                state_bytes_per_contact: per_contact,
                error: None,
            },
            Err(reason) => ModeResult {
                mode: mode.to_owned(),
                processed: 0,
                events: 0,
                seconds: None,
                events_per_second: None,
                ratio_to_pipe: None,
                cpu_seconds_per_million: None,
                peak_rss_mib: None,
                state_bytes_per_contact: None,
                error: Some(reason),
            },
        }
    }
}

/// Everything one `leadscore bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The broker.
    pub broker: String,
    /// Events pre-loaded.
    pub events: u64,
    /// Contact population of the generator.
    pub contacts: u64,
    /// Distinct contacts in the pre-loaded events.
    pub distinct_contacts: u64,
    /// Input partitions.
    pub partitions: u32,
    /// Processing threads of each measured process.
    pub threads: u32,
    /// Wire format of events and outputs.
    pub format: &'static str,
    /// How fast the pre-load was produced.
    pub preload_events_per_second: f64,
    /// Throughput phases, the bare pipe first.
    pub modes: Vec<ModeResult>,
    /// The latency phase, if it ran and succeeded.
    pub latency: Option<Latency>,
    /// Why the latency phase failed, if it did.
    pub latency_error: Option<String>,
    /// The same latency phase run through the bare pipe (event to its copy): the floor that the broker and
    /// the clients set.
    pub pipe_latency: Option<Latency>,
    /// Why the pipe's latency phase failed, if it did.
    pub pipe_latency_error: Option<String>,
    /// The restore phase, if it ran.
    pub restore: Option<Restore>,
}

/// The last line of a mode's error, cut to fit a table row (the JSON keeps all of it).
fn short(error: &str) -> String {
    let last = error.rsplit(" | ").next().unwrap_or(error);
    let mut note: String = last.chars().take(110).collect();
    if note.len() < last.len() {
        note.push('…');
    }
    note
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.decimals$}"),
        _ => "-".to_owned(),
    }
}

impl BenchReport {
    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "leadscore bench: {} events ({}), {} contacts ({} distinct), {} partitions, {} processing threads, broker {}",
            self.events, self.format, self.contacts, self.distinct_contacts, self.partitions, self.threads, self.broker
        );
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>8} {:>12} {:>9} {:>9}  note",
            "mode", "events/s", "vs pipe", "CPU s/M ev", "peak RSS", "B/contact"
        );
        for mode in &self.modes {
            let _ = writeln!(
                out,
                "{:<14} {:>10} {:>8} {:>12} {:>9} {:>9}  {}",
                mode.mode,
                figure(mode.events_per_second, 0),
                figure(mode.ratio_to_pipe.map(|ratio| ratio * 100.0), 0) + "%",
                figure(mode.cpu_seconds_per_million, 2),
                figure(mode.peak_rss_mib, 0) + " MiB",
                figure(mode.state_bytes_per_contact, 0),
                mode.error.as_deref().map(short).unwrap_or_default(),
            );
        }
        let phases = [
            ("event → score_changed", &self.latency, &self.latency_error),
            ("the bare pipe, event → its copy", &self.pipe_latency, &self.pipe_latency_error),
        ];
        for (what, latency, error) in phases {
            match (latency, error) {
                (Some(latency), _) => {
                    let _ = writeln!(
                        out,
                        "latency at {} events/s ({what}, {} of {} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                        latency.rate, latency.matched, latency.events, latency.p50_ms, latency.p99_ms, latency.max_ms
                    );
                }
                (None, Some(reason)) => {
                    let _ = writeln!(out, "latency ({what}): failed: {reason}");
                }
                (None, None) => {}
            }
        }
        if let Some(restore) = &self.restore {
            let _ = write!(
                out,
                "restore of {} contacts: {:.1} s, {:.0} records/s, {:.0} bytes per contact on disk",
                restore.records, restore.seconds, restore.records_per_second, restore.state_bytes_per_contact
            );
            // The mock cluster keeps 5 MB per partition and drops the oldest records beyond it.
            let _ = if restore.records < restore.contacts {
                writeln!(
                    out,
                    " (the broker kept only these of the {} written; use more partitions or a real broker)",
                    restore.contacts
                )
            } else {
                writeln!(out)
            };
        }
        out
    }
}
