//! What the query API reads besides the store: the [`Leaderboard`] index and the [`RuleStats`], kept by
//! the runtime per partition. A task gathers a [`BatchInsight`] per batch (changed contacts, rule
//! firings, phase entries, crossings, event classes); the processor applies it here and turns it into
//! metrics, once per batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{counter, histogram};

use crate::event::{ERASE, MANUAL_ADJUSTMENT, PHASE_CHANGE, REQUALIFY};
use crate::leaderboard::{Board, BoardEntry, Leaderboard, LeaderboardError};
use crate::rule_stats::RuleStats;
use crate::rules::Rules;
use crate::scoring::{Attribution, Conversion, Direction, Output, OutputBody, RuleFire};
use crate::store::StateStore;
use crate::telemetry;

/// The read models of one instance.
pub struct Insights {
    /// Top contacts per group or total.
    pub leaderboard: Leaderboard,
    /// Per-rule firings and conversion attribution.
    pub rule_stats: RuleStats,
}

impl Insights {
    /// The read models of the partitions whose state `store` holds.
    pub fn new(store: Arc<dyn StateStore>) -> Insights {
        Insights { leaderboard: Leaderboard::new(store), rule_stats: RuleStats::default() }
    }

    /// Starts a newly assigned partition, after its restore, with the board built from the store.
    pub fn open_partition(&self, partition: i32, rules: &Rules, board: Board) {
        self.rule_stats.open_partition(partition, rules);
        self.leaderboard.open_partition(partition, board);
    }

    /// Forgets a partition that moved away.
    pub fn drop_partition(&self, partition: i32) {
        self.leaderboard.drop_partition(partition);
        self.rule_stats.drop_partition(partition);
    }

    /// Applies a batch and emits its metrics.
    pub fn apply(
        &self,
        partition: i32,
        rules: &Arc<Rules>,
        insight: BatchInsight,
        now_ms: i64,
    ) -> Result<(), LeaderboardError> {
        insight.emit_metrics(rules, now_ms);
        self.rule_stats.record(partition, rules, &insight.fired, &insight.conversions);
        self.leaderboard.apply(partition, rules, insight.contacts)
    }
}

/// Event classes, the `class` label of `leadscore_events_total`: a small fixed set.
pub const EVENT_CLASSES: [&str; 7] =
    ["interaction", "phase_change", "manual_adjustment", "erase", "requalify", "unknown", "internal"];
/// Index of `unknown` in [`EVENT_CLASSES`]: records that were not decoded (replays, dead letters).
pub const UNKNOWN_CLASS: usize = 5;
/// Index of `internal` in [`EVENT_CLASSES`]: the internal topics' work that is not an event of its own
/// (merge requests and answers, forgotten aliases, account updates), kept apart from the events.
pub const INTERNAL_CLASS: usize = 6;
/// Event outcomes, the `outcome` label of `leadscore_events_total`.
pub const OUTCOMES: [&str; 6] = ["scored", "ignored", "duplicate", "replayed", "dlq", "forwarded"];

/// Output kinds, the `kind` label of `leadscore_outputs_total`.
pub const OUTPUT_KINDS: [&str; 7] = [
    "score_changed",
    "threshold_crossed",
    "phase_changed",
    "contact_merged",
    "contact_erased",
    "account_score_changed",
    "account_threshold_crossed",
];

/// Dead-letter reasons, the `reason` label of `leadscore_dlq_records_total`: the decoder's error kinds,
/// a key that is not the contact id, and events the rules reject.
pub const DLQ_REASONS: [&str; 10] = [
    "too_large",
    "empty",
    "malformed",
    "missing_field",
    "invalid_field",
    "key",
    "schema",
    "rejected",
    "merge",
    "account",
];

/// The class of an event type.
pub fn event_class(kind: &str) -> usize {
    match kind {
        PHASE_CHANGE => 1,
        MANUAL_ADJUSTMENT => 2,
        ERASE => 3,
        REQUALIFY => 4,
        _ => 0,
    }
}

/// What one batch of a partition did, for the read models and metrics.
#[derive(Debug, Default)]
pub struct BatchInsight {
    /// Contacts the batch changed, with their new leaderboard entry (`None`: not ranked any more).
    pub contacts: Vec<(String, Option<BoardEntry>)>,
    /// Rules fired.
    pub fired: Vec<RuleFire>,
    /// Phases entered.
    pub conversions: Vec<Conversion>,
    /// Events per outcome and class.
    pub events: [[u64; EVENT_CLASSES.len()]; OUTCOMES.len()],
    /// Threshold crossings per (threshold, direction).
    pub crossings: BTreeMap<(String, &'static str), u64>,
    /// Phase changes per (from, to).
    pub phase_changes: BTreeMap<(String, String), u64>,
    /// Event times of the events whose outputs this batch publishes.
    pub event_times_ms: Vec<i64>,
    /// Outputs per kind, as in [`OUTPUT_KINDS`].
    pub outputs: [u64; OUTPUT_KINDS.len()],
    /// Dead letters per reason, as in [`DLQ_REASONS`].
    pub dead_letters: [u64; DLQ_REASONS.len()],
}

impl BatchInsight {
    /// Counts an event by outcome (an index in [`OUTCOMES`]) and class (in [`EVENT_CLASSES`]).
    pub fn count_event(&mut self, outcome: usize, class: usize) {
        if let Some(slot) = self.events.get_mut(outcome).and_then(|row| row.get_mut(class)) {
            *slot += 1;
        }
    }

    /// Counts a dead letter by reason (one of [`DLQ_REASONS`]).
    pub fn count_dead_letter(&mut self, reason: &str) {
        if let Some(index) = DLQ_REASONS.iter().position(|known| *known == reason) {
            self.dead_letters[index] += 1;
        }
    }

    /// Counts account outputs by kind.
    pub fn add_account_outputs(&mut self, outputs: &[crate::accounts::AccountOutput]) {
        for output in outputs {
            let kind = match output.body {
                crate::accounts::AccountBody::AccountScoreChanged(_) => "account_score_changed",
                crate::accounts::AccountBody::AccountThresholdCrossed(_) => "account_threshold_crossed",
            };
            if let Some(index) = OUTPUT_KINDS.iter().position(|known| *known == kind) {
                self.outputs[index] += 1;
            }
        }
    }

    /// Takes in what scoring one event did.
    pub fn add_attribution(&mut self, attribution: Attribution) {
        self.fired.extend(attribution.fired);
        self.conversions.extend(attribution.conversions);
    }

    /// Counts the crossings and phase changes among `outputs`, caused by an event at `event_ms` (or by
    /// timers when `None`).
    pub fn add_outputs(&mut self, outputs: &[Output], event_ms: Option<i64>) {
        if outputs.is_empty() {
            return;
        }
        if let Some(at) = event_ms {
            self.event_times_ms.push(at);
        }
        for output in outputs {
            let kind = OUTPUT_KINDS.iter().position(|kind| *kind == output.body.kind()).unwrap_or(0);
            self.outputs[kind] += 1;
            match &output.body {
                OutputBody::ThresholdCrossed(crossed) => {
                    let direction = match crossed.direction {
                        Direction::Up => "up",
                        Direction::Down => "down",
                    };
                    *self.crossings.entry((crossed.threshold.clone(), direction)).or_default() += 1;
                }
                OutputBody::PhaseChanged(changed) => {
                    *self.phase_changes.entry((changed.from.clone(), changed.to.clone())).or_default() += 1;
                }
                OutputBody::ScoreChanged(_) | OutputBody::ContactMerged(_) | OutputBody::ContactErased(_) => {}
            }
        }
    }

    /// Emits the batch's metrics; label values come from the rules file and fixed sets only.
    fn emit_metrics(&self, rules: &Rules, now_ms: i64) {
        for (outcome, row) in OUTCOMES.iter().zip(&self.events) {
            for (class, count) in EVENT_CLASSES.iter().zip(row) {
                if *count > 0 {
                    counter!(telemetry::EVENTS_TOTAL, "outcome" => *outcome, "class" => *class).increment(*count);
                }
            }
        }
        for (kind, count) in OUTPUT_KINDS.iter().zip(&self.outputs) {
            if *count > 0 {
                counter!(telemetry::OUTPUTS_TOTAL, "kind" => *kind).increment(*count);
            }
        }
        for (reason, count) in DLQ_REASONS.iter().zip(&self.dead_letters) {
            if *count > 0 {
                counter!(telemetry::DLQ_TOTAL, "reason" => *reason).increment(*count);
            }
        }
        let mut per_rule: BTreeMap<usize, (u64, f64)> = BTreeMap::new();
        for fire in &self.fired {
            let entry = per_rule.entry(fire.rule).or_default();
            entry.0 += 1;
            entry.1 += fire.points;
        }
        for (rule, (fires, points)) in per_rule {
            if let Some(rule) = rules.rules.get(rule) {
                counter!(telemetry::RULE_FIRES_TOTAL, "rule" => rule.id.clone()).increment(fires);
                // Counters only go up; malus points are counted by their size.
                counter!(telemetry::RULE_POINTS_TOTAL, "rule" => rule.id.clone())
                    .increment(points.abs().round() as u64);
            }
        }
        for ((threshold, direction), count) in &self.crossings {
            counter!(telemetry::THRESHOLD_CROSSINGS_TOTAL, "threshold" => threshold.clone(), "direction" => *direction)
                .increment(*count);
        }
        for ((from, to), count) in &self.phase_changes {
            counter!(telemetry::PHASE_CHANGES_TOTAL, "from" => from.clone(), "to" => to.clone()).increment(*count);
        }
        let latency = histogram!(telemetry::EVENT_LATENCY_SECONDS);
        for at in &self.event_times_ms {
            latency.record((now_ms - at).max(0) as f64 / 1000.0);
        }
    }
}
