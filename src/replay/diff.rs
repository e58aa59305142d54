//! The diff report of a replay: how the contacts' scores under the new rules compare with the live ones.
//!
//! Pure and bounded: contacts are added one at a time, and the report keeps counters, a fixed histogram
//! and a heap of the top movers, never the contacts themselves. Each contact is compared at one instant,
//! the later of its two clocks, so decay since the last event counts the same on both sides.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

use crate::rules::Rules;
use crate::scoring::ContactState;

/// Upper edges of the histogram of total-score changes (new − live); the last bucket is open. Changes
/// within ±[`UNCHANGED`] count as unchanged.
pub const BUCKET_EDGES: [f64; 10] = [-50.0, -20.0, -10.0, -5.0, -1.0, 1.0, 5.0, 10.0, 20.0, 50.0];

/// Score changes smaller than this are float noise, not a difference.
pub const UNCHANGED: f64 = 1e-9;

/// How a contact's threshold status changed for one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThresholdDiff {
    /// Fired under the new rules, not live.
    pub gained: u64,
    /// Fired live, not under the new rules.
    pub lost: u64,
}

/// A contact whose total moves a lot.
#[derive(Debug, Clone, PartialEq)]
pub struct Mover {
    /// Contact id.
    pub contact: String,
    /// Live weighted total.
    pub live: f64,
    /// Weighted total under the new rules.
    pub replayed: f64,
    /// Live phase.
    pub live_phase: String,
    /// Phase under the new rules.
    pub replayed_phase: String,
}

impl Mover {
    /// New total minus live total.
    pub fn delta(&self) -> f64 {
        self.replayed - self.live
    }

    fn magnitude(&self) -> f64 {
        self.delta().abs()
    }
}

/// Movers ordered by the size of their change, then by contact id, so the top list is deterministic.
#[derive(Debug, Clone, PartialEq)]
struct ByMagnitude(Mover);

impl Eq for ByMagnitude {}

impl PartialOrd for ByMagnitude {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByMagnitude {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.magnitude().total_cmp(&other.0.magnitude()).then_with(|| other.0.contact.cmp(&self.0.contact))
    }
}

/// What a replay would change.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffReport {
    /// Version of the live (baseline) rules.
    pub live_version: String,
    /// Version of the new rules.
    pub new_version: String,
    /// Contacts with a state on both sides.
    pub compared: u64,
    /// Contacts only live (outside the replayed range, or erased by it).
    pub only_live: u64,
    /// Contacts only in the replay (not live yet, or erased live).
    pub only_replayed: u64,
    /// Compared contacts with the same total, phase and threshold status.
    pub unchanged: u64,
    /// Compared contacts whose phase differs, by (live phase, new phase).
    pub phase_moves: BTreeMap<(String, String), u64>,
    /// Compared contacts with at least one threshold status that differs.
    pub threshold_differs: u64,
    /// Per threshold name, how many contacts gained or lost it.
    pub thresholds: BTreeMap<String, ThresholdDiff>,
    /// Counts of total-score changes per bucket of [`BUCKET_EDGES`] (one more than the edges).
    pub histogram: Vec<u64>,
    /// Sum of the total-score changes, for the mean.
    pub delta_sum: f64,
    /// The largest changes, largest first.
    pub top_movers: Vec<Mover>,
}

impl DiffReport {
    /// Compared contacts whose phase differs.
    pub fn phase_differs(&self) -> u64 {
        self.phase_moves.values().sum()
    }

    /// Mean change of the total over compared contacts.
    pub fn mean_delta(&self) -> f64 {
        if self.compared == 0 { 0.0 } else { self.delta_sum / self.compared as f64 }
    }

    /// The label of histogram bucket `index`.
    pub fn bucket_label(index: usize) -> String {
        let edge = |i: usize| BUCKET_EDGES[i];
        match index {
            0 => format!("< {}", edge(0)),
            i if i == BUCKET_EDGES.len() => format!(">= {}", edge(i - 1)),
            i if edge(i - 1) == -1.0 => "-1 .. 1 (≠ 0)".to_owned(),
            i => format!("{} .. {}", edge(i - 1), edge(i)),
        }
    }
}

/// Builds a [`DiffReport`] one contact at a time.
pub struct DiffBuilder<'r> {
    live_rules: &'r Rules,
    new_rules: &'r Rules,
    top: usize,
    report: DiffReport,
    /// Min-heap of the `top` largest movers so far.
    movers: BinaryHeap<Reverse<ByMagnitude>>,
}

impl<'r> DiffBuilder<'r> {
    /// A report comparing states under `live_rules` with states under `new_rules`, keeping `top` movers.
    pub fn new(live_rules: &'r Rules, new_rules: &'r Rules, top: usize) -> Self {
        DiffBuilder {
            live_rules,
            new_rules,
            top,
            report: DiffReport {
                live_version: live_rules.version.clone(),
                new_version: new_rules.version.clone(),
                compared: 0,
                only_live: 0,
                only_replayed: 0,
                unchanged: 0,
                phase_moves: BTreeMap::new(),
                threshold_differs: 0,
                thresholds: BTreeMap::new(),
                histogram: vec![0; BUCKET_EDGES.len() + 1],
                delta_sum: 0.0,
                top_movers: Vec::new(),
            },
            movers: BinaryHeap::new(),
        }
    }

    /// Adds one contact: its live state (read with the live rules) and its replayed state (read with the
    /// new rules); either may be missing.
    pub fn add(&mut self, contact: &str, live: Option<&ContactState>, replayed: Option<&ContactState>) {
        let (live, replayed) = match (live, replayed) {
            (Some(live), Some(replayed)) => (live, replayed),
            (Some(_), None) => {
                self.report.only_live += 1;
                return;
            }
            (None, Some(_)) => {
                self.report.only_replayed += 1;
                return;
            }
            (None, None) => return,
        };
        let report = &mut self.report;
        report.compared += 1;
        let at_ms = live.clock_ms.max(replayed.clock_ms);
        let mover = Mover {
            contact: contact.to_owned(),
            live: live.total(self.live_rules, at_ms),
            replayed: replayed.total(self.new_rules, at_ms),
            live_phase: phase_name(self.live_rules, live),
            replayed_phase: phase_name(self.new_rules, replayed),
        };
        let delta = mover.delta();
        let phase_differs = mover.live_phase != mover.replayed_phase;
        if phase_differs {
            *report.phase_moves.entry((mover.live_phase.clone(), mover.replayed_phase.clone())).or_default() += 1;
        }
        let live_fired = fired(self.live_rules, live);
        let new_fired = fired(self.new_rules, replayed);
        let mut threshold_differs = false;
        for name in live_fired.iter().filter(|name| !new_fired.contains(name)) {
            report.thresholds.entry((*name).to_owned()).or_default().lost += 1;
            threshold_differs = true;
        }
        for name in new_fired.iter().filter(|name| !live_fired.contains(name)) {
            report.thresholds.entry((*name).to_owned()).or_default().gained += 1;
            threshold_differs = true;
        }
        report.threshold_differs += u64::from(threshold_differs);
        if delta.abs() < UNCHANGED {
            if !phase_differs && !threshold_differs {
                report.unchanged += 1;
            }
            return;
        }
        report.delta_sum += delta;
        let bucket = BUCKET_EDGES.iter().position(|edge| delta < *edge).unwrap_or(BUCKET_EDGES.len());
        report.histogram[bucket] += 1;
        if self.top > 0 {
            self.movers.push(Reverse(ByMagnitude(mover)));
            if self.movers.len() > self.top {
                self.movers.pop();
            }
        }
    }

    /// The finished report.
    pub fn finish(mut self) -> DiffReport {
        let mut movers: Vec<ByMagnitude> = self.movers.into_iter().map(|Reverse(mover)| mover).collect();
        movers.sort_by(|a, b| b.cmp(a));
        self.report.top_movers = movers.into_iter().map(|ByMagnitude(mover)| mover).collect();
        self.report
    }
}

fn phase_name(rules: &Rules, state: &ContactState) -> String {
    rules.phases.get(state.phase).map_or_else(String::new, |phase| phase.name.clone())
}

fn fired<'a>(rules: &'a Rules, state: &ContactState) -> Vec<&'a str> {
    rules
        .thresholds
        .iter()
        .zip(&state.fired)
        .filter(|(_, fired)| **fired)
        .map(|(threshold, _)| threshold.name.as_str())
        .collect()
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "diff: live rules {} → new rules {}", self.live_version, self.new_version)?;
        writeln!(
            f,
            "contacts: {} compared, {} unchanged; {} only live, {} only in the replay",
            self.compared, self.unchanged, self.only_live, self.only_replayed
        )?;
        writeln!(f, "phase would differ for {} contacts", self.phase_differs())?;
        for ((from, to), count) in &self.phase_moves {
            writeln!(f, "  {from:>14} → {to:<14} {count}")?;
        }
        writeln!(f, "threshold status would differ for {} contacts", self.threshold_differs)?;
        for (name, diff) in &self.thresholds {
            writeln!(f, "  {name:<16} +{} gained  -{} lost", diff.gained, diff.lost)?;
        }
        let changed: u64 = self.histogram.iter().sum();
        writeln!(f, "total score changes ({changed} contacts, mean {:+.2}):", self.mean_delta())?;
        let widest = self.histogram.iter().copied().max().unwrap_or(0).max(1);
        for (index, count) in self.histogram.iter().enumerate() {
            let bar = "█".repeat(((*count * 40).div_ceil(widest)) as usize);
            writeln!(f, "  {:>16} {count:>9} {bar}", DiffReport::bucket_label(index))?;
        }
        if !self.top_movers.is_empty() {
            writeln!(f, "top movers:")?;
            for mover in &self.top_movers {
                writeln!(
                    f,
                    "  {:<24} {:>8.2} → {:>8.2} ({:+.2})  {} → {}",
                    mover.contact,
                    mover.live,
                    mover.replayed,
                    mover.delta(),
                    mover.live_phase,
                    mover.replayed_phase
                )?;
            }
        }
        Ok(())
    }
}
