//! Progress of a replay: a bar with events, events/s and ETA on a terminal, a log line every few seconds
//! otherwise (so a replay run by a job scheduler still says how far it is).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// How often progress is logged when no terminal shows the bar.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A progress display over a known (and possibly growing) number of records.
pub struct Progress {
    bar: ProgressBar,
    label: &'static str,
    drawn: bool,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// A display labelled `label` of `total` `unit`s (such as "events"); a bar when `draw`, log lines
    /// otherwise.
    pub fn new(label: &'static str, unit: &'static str, total: u64, draw: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if draw { ProgressDrawTarget::stderr_with_hz(4) } else { ProgressDrawTarget::hidden() },
        );
        let template = format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} \
             {{per_sec:0}} ETA {{eta}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label);
        Progress { bar, label, drawn: draw, started: Instant::now(), last_log: Instant::now() }
    }

    /// Raises the total when the log turned out longer than first known.
    pub fn grow_to(&self, total: u64) {
        if self.bar.length().is_none_or(|length| total > length) {
            self.bar.set_length(total);
        }
    }

    /// Counts `records` more.
    pub fn advance(&mut self, records: u64) {
        self.bar.inc(records);
        if !self.drawn && self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            self.log("replaying");
        }
    }

    /// Records counted so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Ends the display.
    pub fn finish(&self) {
        self.bar.finish();
        if !self.drawn {
            self.log("done");
        }
    }

    fn log(&self, message: &'static str) {
        let done = self.bar.position();
        let total = self.bar.length().unwrap_or(done).max(done);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let eta = if rate > 0.0 { (total - done) as f64 / rate } else { 0.0 };
        info!(progress = self.label, done, total, rate = rate.round(), eta_seconds = eta.round(), "{message}");
    }
}
