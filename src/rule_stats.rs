//! Per-rule statistics for `GET /v1/rules`: how often each rule fired and how many points it gave, and
//! conversion attribution: for contacts that entered each phase, how many points each rule held in their
//! explanation at that moment. Marketers read it to see which actions lead to conversions.
//!
//! Counters are updated incrementally from each batch's [`crate::scoring::Attribution`], never by a
//! scan. They live in memory, per partition, so the share of a partition that moves to another instance
//! is dropped with it; they count what this instance scored since it took the partition, and start from
//! zero after a restart or a rebalance (records replayed after a restart are not scored again, so they
//! are not counted twice either).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::rules::Rules;
use crate::scoring::{Conversion, RuleFire};

/// Counters of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
struct PartitionCounts {
    /// Per rule index: firings.
    fires: Vec<u64>,
    /// Per rule index: points given (value changes after clamping).
    points: Vec<f64>,
    /// Per phase index: contacts that entered it.
    conversions: Vec<u64>,
    /// Per phase index, per source key: points held when entering it.
    attributed: Vec<BTreeMap<u32, f64>>,
}

impl PartitionCounts {
    fn new(rules: &Rules) -> Self {
        PartitionCounts {
            fires: vec![0; rules.rules.len()],
            points: vec![0.0; rules.rules.len()],
            conversions: vec![0; rules.phases.len()],
            attributed: vec![BTreeMap::new(); rules.phases.len()],
        }
    }
}

/// The counters of every partition this instance owns.
#[derive(Debug, Default)]
pub struct RuleStats {
    partitions: Mutex<BTreeMap<i32, PartitionCounts>>,
}

/// `GET /v1/rules`, per rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    /// Rule id.
    pub id: String,
    /// Event type it listens to.
    pub on: String,
    /// Group it credits, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Firings.
    pub fires: u64,
    /// Points given (after clamping).
    pub points: f64,
    /// Per phase entered: points this rule held in the explanations of the contacts that entered it.
    pub conversions: BTreeMap<String, f64>,
}

/// `GET /v1/rules`, per phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Phase name.
    pub phase: String,
    /// Contacts that entered it.
    pub entered: u64,
    /// Points per source (rule id, `manual`, `clamp`) held when they entered, largest first.
    pub attribution: Vec<SourcePoints>,
}

/// Points of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcePoints {
    /// Rule id, `manual` or `clamp`.
    pub source: String,
    /// Points.
    pub points: f64,
}

impl RuleStats {
    /// Starts counting a newly assigned partition.
    pub fn open_partition(&self, partition: i32, rules: &Rules) {
        if let Ok(mut partitions) = self.partitions.lock() {
            partitions.insert(partition, PartitionCounts::new(rules));
        }
    }

    /// Drops the counts of a partition that moved to another instance.
    pub fn drop_partition(&self, partition: i32) {
        if let Ok(mut partitions) = self.partitions.lock() {
            partitions.remove(&partition);
        }
    }

    /// Adds a batch's rule firings and phase entries.
    pub fn record(&self, partition: i32, rules: &Rules, fired: &[RuleFire], conversions: &[Conversion]) {
        if fired.is_empty() && conversions.is_empty() {
            return;
        }
        let Ok(mut partitions) = self.partitions.lock() else {
            return;
        };
        let counts = partitions.entry(partition).or_insert_with(|| PartitionCounts::new(rules));
        for fire in fired {
            if let (Some(fires), Some(points)) = (counts.fires.get_mut(fire.rule), counts.points.get_mut(fire.rule)) {
                *fires += 1;
                *points += fire.points;
            }
        }
        for conversion in conversions {
            if let (Some(entered), Some(attributed)) =
                (counts.conversions.get_mut(conversion.to), counts.attributed.get_mut(conversion.to))
            {
                *entered += 1;
                for (source, points) in &conversion.contributions {
                    *attributed.entry(*source).or_insert(0.0) += points;
                }
            }
        }
    }

    /// The sums over every owned partition.
    pub fn report(&self, rules: &Rules) -> (Vec<RuleReport>, Vec<PhaseReport>) {
        let mut total = PartitionCounts::new(rules);
        if let Ok(partitions) = self.partitions.lock() {
            for counts in partitions.values() {
                for (sum, add) in total.fires.iter_mut().zip(&counts.fires) {
                    *sum += add;
                }
                for (sum, add) in total.points.iter_mut().zip(&counts.points) {
                    *sum += add;
                }
                for (sum, add) in total.conversions.iter_mut().zip(&counts.conversions) {
                    *sum += add;
                }
                for (sum, add) in total.attributed.iter_mut().zip(&counts.attributed) {
                    for (source, points) in add {
                        *sum.entry(*source).or_insert(0.0) += points;
                    }
                }
            }
        }
        let rule_reports = rules
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| RuleReport {
                id: rule.id.clone(),
                on: rule.event_type.clone(),
                group: rule.group.map(|group| rules.groups[group].name.clone()),
                fires: total.fires[index],
                points: total.points[index],
                conversions: rules
                    .phases
                    .iter()
                    .zip(&total.attributed)
                    .filter_map(|(phase, attributed)| {
                        attributed.get(&rule.key).map(|points| (phase.name.clone(), *points))
                    })
                    .collect(),
            })
            .collect();
        let phase_reports = rules
            .phases
            .iter()
            .zip(total.conversions.iter().zip(&total.attributed))
            .map(|(phase, (entered, attributed))| {
                let mut attribution: Vec<SourcePoints> = attributed
                    .iter()
                    .map(|(source, points)| SourcePoints {
                        source: rules.source_name(*source).to_owned(),
                        points: *points,
                    })
                    .collect();
                attribution.sort_by(|a, b| b.points.total_cmp(&a.points).then_with(|| a.source.cmp(&b.source)));
                PhaseReport { phase: phase.name.clone(), entered: *entered, attribution }
            })
            .collect();
        (rule_reports, phase_reports)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::RuleStats;
    use crate::rules::Rules;
    use crate::scoring::{Conversion, RuleFire};

    #[test]
    fn sums_partitions_and_drops_a_revoked_one() {
        let rules = Rules::parse(include_str!("../examples/rules.toml"), Path::new("examples/rules.toml"))
            .unwrap_or_else(|err| panic!("{err}"));
        let stats = RuleStats::default();
        let rule = rules.rules[0].key;
        let conversion = Conversion { from: 0, to: 2, contributions: vec![(rule, 12.5)] };
        for partition in [0, 1] {
            stats.open_partition(partition, &rules);
            stats.record(partition, &rules, &[RuleFire { rule: 0, points: 10.0 }], std::slice::from_ref(&conversion));
        }
        let (by_rule, by_phase) = stats.report(&rules);
        assert_eq!(by_rule[0].fires, 2);
        assert_eq!(by_rule[0].points, 20.0);
        assert_eq!(by_rule[0].conversions.get(&rules.phases[2].name), Some(&25.0));
        assert_eq!(by_phase[2].entered, 2);
        stats.drop_partition(1);
        let (by_rule, by_phase) = stats.report(&rules);
        assert_eq!((by_rule[0].fires, by_phase[2].entered), (1, 1));
    }
}
