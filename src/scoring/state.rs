//! A contact's score state and the exact, lazy decay of its groups.
//!
//! Each group stores its value and contributions as of `since_ms`; reading at a later time applies the
//! group's decay law in one step from there. Reading never rebases, so the result does not depend on how
//! often or when it was read: only applying points or a reset moves `since_ms`.

use std::collections::VecDeque;

use crate::rules::{CLAMP_KEY, DecayLaw, Group, Rules};

/// Everything the engine knows about one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    /// The contact id (the Kafka key).
    pub contact: String,
    /// The latest event time seen, epoch ms; decay never runs backward past it.
    pub clock_ms: i64,
    /// Index of the current phase in [`Rules::phases`].
    pub phase: usize,
    /// One entry per group of the rules, in the same order.
    pub groups: Vec<GroupScore>,
    /// Per threshold of the rules, whether it fired up and has not fallen back.
    pub fired: Vec<bool>,
    /// Firing counts of limited rules in the current phase.
    pub rule_counts: Vec<RuleCount>,
    /// Why the contact is disqualified, if it is.
    pub disqualified: Option<String>,
    /// Fingerprints of the most recent event ids, oldest first.
    pub recent_ids: VecDeque<u64>,
    /// The most recent score changes, oldest first.
    pub history: VecDeque<HistoryEntry>,
    /// The earliest decay-driven threshold fall, or an anonymous contact's expiry, epoch ms: the
    /// contact's entry in the timer index.
    pub next_timer_ms: Option<i64>,
    /// Contacts merged into this one, directly or through others: aliases of it.
    pub merged_ids: Vec<String>,
    /// Whether every event scored on it was an anonymous visitor's (see [`crate::rules::Anonymous`]).
    pub anonymous: bool,
    /// The account its latest event naming one named (see [`crate::rules::AccountRules`]).
    pub account: Option<String>,
}

impl ContactState {
    /// What its aliases take of [`super::MAX_ALIAS_BYTES`].
    pub fn alias_bytes(&self) -> usize {
        self.merged_ids.iter().map(|id| super::merge::alias_bytes(id)).sum()
    }

    /// Adds `id` to the contact's aliases, if it is not one already and fits [`super::MAX_ALIAS_BYTES`]
    /// (merges are checked against it one by one, so only merges in flight together can bring more):
    /// whether it was added.
    pub fn adopt_alias(&mut self, id: &str) -> bool {
        let fits = self.alias_bytes() + super::merge::alias_bytes(id) <= super::MAX_ALIAS_BYTES;
        let adds = fits && !self.merged_ids.iter().any(|known| known == id);
        if adds {
            self.merged_ids.push(id.to_owned());
        }
        adds
    }

    /// A contact seen for the first time at `clock_ms`: first phase, every group at 0.
    pub fn new(rules: &Rules, contact: &str, clock_ms: i64) -> Self {
        ContactState {
            contact: contact.to_owned(),
            clock_ms,
            phase: 0,
            groups: rules.groups.iter().map(|_| GroupScore::empty(clock_ms)).collect(),
            fired: vec![false; rules.thresholds.len()],
            rule_counts: Vec::new(),
            disqualified: None,
            recent_ids: VecDeque::new(),
            history: VecDeque::new(),
            next_timer_ms: None,
            merged_ids: Vec::new(),
            anonymous: rules.anonymous.is_some(),
            account: None,
        }
    }

    /// The value of group `index` at time `at_ms` (not before its last rebase).
    pub fn group_value(&self, rules: &Rules, index: usize, at_ms: i64) -> f64 {
        match (rules.groups.get(index), self.groups.get(index)) {
            (Some(group), Some(score)) => score.value_at(group, at_ms),
            _ => 0.0,
        }
    }

    /// Its groups with only what their values need: a step group's live contributions, which expire one
    /// by one, and the others' value and time alone. Read models keep these to decay values later.
    pub fn value_groups(&self, rules: &Rules) -> Vec<GroupScore> {
        rules
            .groups
            .iter()
            .zip(&self.groups)
            .map(|(group, score)| match group.decay {
                DecayLaw::Step { .. } => score.clone(),
                _ => GroupScore { value: score.value, since_ms: score.since_ms, contributions: Vec::new() },
            })
            .collect()
    }

    /// The weighted total at `at_ms`.
    pub fn total(&self, rules: &Rules, at_ms: i64) -> f64 {
        weighted_total(rules, rules.groups.iter().zip(&self.groups).map(|(group, score)| score.value_at(group, at_ms)))
    }
}

/// The weighted total of group values given in rules-file order, summed in that order, so that every
/// reader of the total gets the same bits.
pub fn weighted_total(rules: &Rules, values: impl Iterator<Item = f64>) -> f64 {
    rules.groups.iter().zip(values).fold(0.0, |total, (group, value)| total + group.weight * value)
}

/// One group's score: value and per-source contributions as of `since_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupScore {
    /// Value at `since_ms`. For step-expiry groups it is recomputed from the live contributions.
    pub value: f64,
    /// When the value was last rebased.
    pub since_ms: i64,
    /// Where the value came from, summing to it (step groups: up to the clamp, which is derived).
    pub contributions: Vec<Contribution>,
}

/// Points a source (a rule, `manual` or `clamp`) holds in a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// Stored key of the source.
    pub source: u32,
    /// Points as of the group's `since_ms`.
    pub points: f64,
    /// Step-expiry groups: when these points vanish.
    pub expires_at_ms: Option<i64>,
}

/// What one event's points did to a group: the value before and after, and what the clamp changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupChange {
    /// Value just before the event (decayed to it).
    pub before: f64,
    /// Value after the event's points and the one clamp.
    pub after: f64,
    /// What the clamp changed in this event: negative where the range cut points above `max`, positive
    /// below `min` (for step groups, also points the cap gives back as the live sum moves away from it).
    pub cut: f64,
    /// The sum of the credits that pushed toward the bound the clamp hit (those whose sign is opposite
    /// to `cut`).
    pushing: f64,
}

impl GroupChange {
    /// What a credit of `points` in this change gave, after the clamp: its points, less its share of the
    /// cut. The cut is shared by the credits that pushed toward the bound it hit, in proportion to their
    /// points; the others keep theirs. So each share lies between 0 and the points, has their sign, and
    /// the shares sum to the change, up to rounding (unless the value started outside the range, after
    /// the rules file narrowed it; then the pushing credits give 0 and the rest is the narrowing's).
    pub fn share(&self, points: f64) -> f64 {
        if points * self.cut >= 0.0 {
            return points;
        }
        // `points` is one of the pushing credits, so `pushing` is not 0.
        let share = points + self.cut * (points / self.pushing);
        if points > 0.0 { share.clamp(0.0, points) } else { share.clamp(points, 0.0) }
    }
}

/// How often a limited rule fired in the current phase and window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleCount {
    /// Stored key of the rule.
    pub rule: u32,
    /// Firings in the window.
    pub count: u32,
    /// Start of the window (the first firing in it).
    pub window_start_ms: i64,
}

/// One line of a contact's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Stored key of the source: a rule, `manual`, or the phase entered.
    pub source: u32,
    /// The event that caused it.
    pub event_id: String,
    /// Contact time of the change.
    pub ts_ms: i64,
    /// What the source gave the group (after clamping): with several rules on one event, its points
    /// less its share of what the one clamp cut ([`GroupChange::share`]), so an event's entries sum to the
    /// group's change. For phase entries, the change of the total.
    pub delta: f64,
    /// Group value after the event (the total, for phase entries and disqualifications).
    pub value_after: f64,
    /// Stored key of the group changed (0 if none).
    pub group: u32,
    /// Reason given (manual adjustments, disqualifications, phase entries).
    pub reason: Option<String>,
    /// Who gave manual points.
    pub actor: Option<String>,
}

impl GroupScore {
    /// A group at 0 since `since_ms`.
    pub fn empty(since_ms: i64) -> Self {
        GroupScore { value: 0.0, since_ms, contributions: Vec::new() }
    }

    /// Whether it holds nothing: no value and no contributions (its stored form leaves it out).
    pub fn is_empty(&self) -> bool {
        self.value == 0.0 && self.contributions.is_empty()
    }

    /// The decayed value at `at_ms`.
    pub fn value_at(&self, group: &Group, at_ms: i64) -> f64 {
        match group.decay {
            DecayLaw::Step { .. } => clamp(group, self.live_sum(at_ms)),
            law => law.decay(self.value, (at_ms - self.since_ms).max(0) as f64),
        }
    }

    /// Sum of the contributions still alive at `at_ms` (every one, for groups without expiry).
    fn live_sum(&self, at_ms: i64) -> f64 {
        self.contributions
            .iter()
            .filter(|c| c.expires_at_ms.is_none_or(|end| end > at_ms))
            .fold(0.0, |sum, c| sum + c.points)
    }

    /// The contributions at `at_ms`, decayed like the value, with expired ones left out. For step groups a
    /// clamp contribution is derived; for the others it is stored.
    pub fn contributions_at(&self, group: &Group, at_ms: i64) -> Vec<Contribution> {
        let elapsed = (at_ms - self.since_ms).max(0) as f64;
        let factor = match group.decay {
            DecayLaw::None | DecayLaw::Step { .. } => 1.0,
            DecayLaw::Exponential { half_life_ms } => (-elapsed / half_life_ms).exp2(),
            law @ DecayLaw::Linear { .. } if self.value != 0.0 => law.decay(self.value, elapsed) / self.value,
            DecayLaw::Linear { .. } => 1.0,
        };
        let mut live: Vec<Contribution> = Vec::with_capacity(self.contributions.len() + 1);
        for contribution in &self.contributions {
            if contribution.expires_at_ms.is_some_and(|end| end <= at_ms) {
                continue;
            }
            let points = contribution.points * factor;
            match live.iter_mut().find(|c| c.source == contribution.source) {
                Some(existing) => existing.points += points,
                None => live.push(Contribution { points, expires_at_ms: None, ..*contribution }),
            }
        }
        if let DecayLaw::Step { .. } = group.decay {
            let sum = self.live_sum(at_ms);
            let cut = clamp(group, sum) - sum;
            if cut != 0.0 {
                live.push(Contribution { source: CLAMP_KEY, points: cut, expires_at_ms: None });
            }
        }
        live
    }

    /// Decays the group to `at_ms`, adds every credit of one event (points per source), and clamps once,
    /// so the result does not depend on the order of the credits. Sums run in the order given; callers
    /// pass a canonical one so that float rounding is the same whatever the rules file's order.
    pub fn add(&mut self, group: &Group, credits: &[(u32, f64)], at_ms: i64) -> GroupChange {
        let before = self.value_at(group, at_ms);
        let cut = if let DecayLaw::Step { expire_after_ms } = group.decay {
            self.contributions.retain(|c| c.expires_at_ms.is_none_or(|end| end > at_ms));
            let old_cut = before - self.live_sum(at_ms);
            let expires = Some(at_ms.saturating_add(expire_after_ms));
            for &(source, points) in credits {
                match self.contributions.iter_mut().find(|c| c.source == source && c.expires_at_ms == expires) {
                    Some(existing) => existing.points += points,
                    None => self.contributions.push(Contribution { source, points, expires_at_ms: expires }),
                }
            }
            self.since_ms = at_ms;
            let live = self.live_sum(at_ms);
            self.value = clamp(group, live);
            // The clamp of a step group is derived from the live sum: what this event changed is the
            // difference between the cut after and the cut before.
            (self.value - live) - old_cut
        } else {
            self.rebase(group, at_ms);
            // The event's points first, so that points summing to 0 leave the value as it was, bit for bit.
            let points = credits.iter().fold(0.0, |sum, (_, points)| sum + points);
            let wanted = self.value + points;
            let after = clamp(group, wanted);
            for &(source, points) in credits {
                credit(&mut self.contributions, source, points);
            }
            if after != wanted {
                credit(&mut self.contributions, CLAMP_KEY, after - wanted);
            }
            self.value = after;
            after - wanted
        };
        let pushing =
            credits.iter().filter(|(_, points)| points * cut < 0.0).fold(0.0, |sum, (_, points)| sum + points);
        GroupChange { before, after: self.value, cut, pushing }
    }

    /// Adds `other`, the same group of a contact merged into this one, at `at_ms` (not before either's
    /// last rebase): both decayed to `at_ms`, their contributions added source by source, then clamped
    /// once. A step group keeps every live contribution with its own expiry, so each still vanishes when
    /// it would have.
    pub fn absorb(&mut self, group: &Group, other: &GroupScore, at_ms: i64) {
        if let DecayLaw::Step { .. } = group.decay {
            self.contributions.retain(|c| c.expires_at_ms.is_none_or(|end| end > at_ms));
            for theirs in other.contributions.iter().filter(|c| c.expires_at_ms.is_none_or(|end| end > at_ms)) {
                let same = |c: &&mut Contribution| c.source == theirs.source && c.expires_at_ms == theirs.expires_at_ms;
                match self.contributions.iter_mut().find(same) {
                    Some(existing) => existing.points += theirs.points,
                    None => self.contributions.push(*theirs),
                }
            }
            // In order of expiry, as firings add them.
            self.contributions.sort_by_key(|c| c.expires_at_ms);
            self.since_ms = at_ms;
            self.value = clamp(group, self.live_sum(at_ms));
            return;
        }
        self.rebase(group, at_ms);
        let wanted = self.value + other.value_at(group, at_ms);
        for theirs in other.contributions_at(group, at_ms) {
            credit(&mut self.contributions, theirs.source, theirs.points);
        }
        let after = clamp(group, wanted);
        if after != wanted {
            credit(&mut self.contributions, CLAMP_KEY, after - wanted);
        }
        self.value = after;
    }

    /// Takes back `firings` of the `held` firings of `points` each that `source` holds in the group at
    /// `at_ms`: for a step group the latest ones, exactly (`held` is not needed there); for the others
    /// that share of the source's decayed points (exact when the source fired once, as a rule with
    /// `max_times = 1` does), without clamping again: [`GroupScore::absorb`] clamps once, after.
    pub fn withdraw(&mut self, group: &Group, source: u32, points: f64, firings: u32, held: u32, at_ms: i64) {
        if firings == 0 || held == 0 || points == 0.0 {
            return;
        }
        if let DecayLaw::Step { .. } = group.decay {
            self.contributions.retain(|c| c.expires_at_ms.is_none_or(|end| end > at_ms));
            // Contributions are in order of expiry: the last firings, the ones a single contact's limit
            // would have refused, come first from the back.
            let mut left = f64::from(firings);
            for contribution in self.contributions.iter_mut().rev().filter(|c| c.source == source) {
                let taken = (contribution.points / points).round().min(left);
                contribution.points -= taken * points;
                left -= taken;
                if left <= 0.0 {
                    break;
                }
            }
            self.contributions.retain(|c| c.points != 0.0);
            self.since_ms = at_ms;
            self.value = clamp(group, self.live_sum(at_ms));
            return;
        }
        self.rebase(group, at_ms);
        let share = f64::from(firings.min(held)) / f64::from(held);
        if let Some(contribution) = self.contributions.iter_mut().find(|c| c.source == source) {
            let taken = contribution.points * share;
            contribution.points -= taken;
            self.value -= taken;
        }
    }

    /// Sets the group to 0 at `at_ms` (a phase reset).
    pub fn reset(&mut self, at_ms: i64) {
        *self = GroupScore::empty(at_ms);
    }

    /// Moves `since_ms` to `at_ms`, decaying the value and the contributions alike.
    fn rebase(&mut self, group: &Group, at_ms: i64) {
        if at_ms <= self.since_ms {
            return;
        }
        let contributions = self.contributions_at(group, at_ms);
        self.value = self.value_at(group, at_ms);
        self.contributions = contributions;
        self.since_ms = at_ms;
    }
}

fn credit(contributions: &mut Vec<Contribution>, source: u32, points: f64) {
    match contributions.iter_mut().find(|c| c.source == source) {
        Some(existing) => existing.points += points,
        None => contributions.push(Contribution { source, points, expires_at_ms: None }),
    }
}

fn clamp(group: &Group, value: f64) -> f64 {
    value.clamp(group.min, group.max)
}
