//! When a fired threshold falls back by decay alone: the exact crossing time t*.
//!
//! t* is the first whole millisecond at which the target is below the threshold's down level. For one
//! exponential or linear group it is solved in closed form. Otherwise (step expiry, the weighted total,
//! an account's conditions) a score may fall and rise again, as a negative group decays back toward 0
//! while a positive one fades, so t* is searched for ([`first_failure`]): time is cut where step
//! contributions expire, and each piece is ruled out where bounds show the condition holds throughout,
//! bisected where every score only falls, and halved otherwise. Either way the answer is checked against
//! the value function itself, so t* and the engine's own reading of the value can never disagree.

use std::cell::Cell;

use super::state::{ContactState, GroupScore};
use crate::rules::{DecayLaw, Group, Rules, Target};

/// Longest look-ahead: about 1,100 years.
const HORIZON_MS: i64 = 1 << 45;

/// The target's value at `at_ms`.
pub fn target_value(rules: &Rules, state: &ContactState, target: Target, at_ms: i64) -> f64 {
    match target {
        Target::Group(index) => state.group_value(rules, index, at_ms),
        Target::Total => state.total(rules, at_ms),
    }
}

/// The first millisecond after `from_ms` at which the target is below `level`, if decay ever takes it
/// there without further events.
pub fn fall_time(rules: &Rules, state: &ContactState, target: Target, level: f64, from_ms: i64) -> Option<i64> {
    let below = |at: i64| target_value(rules, state, target, at) < level;
    if let Some(guess) = closed_form(rules, state, target, level) {
        return Some(settle(guess.max(from_ms + 1), from_ms, &below));
    }
    let score = [Decaying::of(rules, &state.groups, target, 1.0)];
    let margin = level.abs().max(1.0) * BOUND_MARGIN;
    let guess = |from: i64| score[0].crossing_guess(level, from);
    first_failure(from_ms, &score, |at| !below(at), |floors| floors[0] >= level + margin, guess)
}

/// How far above a condition's level a bound must be to rule an interval out: the bounds sum the same
/// values in another order than the engine, which may round differently.
pub const BOUND_MARGIN: f64 = 1e-9;

/// A score that decay alone moves: a weighted sum of groups' values, with what the search needs to know
/// about it over an interval.
#[derive(Debug, Clone, Default)]
pub struct Decaying<'a> {
    terms: Vec<(f64, &'a Group, &'a GroupScore)>,
}

impl<'a> Decaying<'a> {
    /// `factor` times a target of these groups (a group, or the weighted total).
    pub fn of(rules: &'a Rules, groups: &'a [GroupScore], target: Target, factor: f64) -> Decaying<'a> {
        let mut score = Decaying::default();
        match target {
            Target::Group(index) => score.add(rules, groups, index, factor),
            Target::Total => {
                for (index, group) in rules.groups.iter().enumerate() {
                    score.add(rules, groups, index, factor * group.weight);
                }
            }
        }
        score
    }

    /// Adds `factor` times the group at `index`.
    pub fn add(&mut self, rules: &'a Rules, groups: &'a [GroupScore], index: usize, factor: f64) {
        if let (Some(group), Some(score)) = (rules.groups.get(index), groups.get(index))
            && factor != 0.0
        {
            self.terms.push((factor, group, score));
        }
    }

    fn term(&(factor, group, score): &(f64, &Group, &GroupScore), at_ms: i64) -> f64 {
        factor * score.value_at(group, at_ms)
    }

    /// Its least value on `[a, b]`, an interval in which no step contribution expires: each term only
    /// moves toward 0 there, so it is least at one end.
    fn floor(&self, a: i64, b: i64) -> f64 {
        self.terms.iter().map(|term| Self::term(term, a).min(Self::term(term, b))).sum()
    }

    /// Bounds of its slope on `[a, b]` (no step contribution expires there): an exponential term's slope
    /// is proportional to its value and a linear one's is constant until it reaches 0, so each is
    /// bounded by its slopes at the ends.
    fn slope(&self, a: i64, b: i64) -> (f64, f64) {
        let mut bounds = (0.0, 0.0);
        for term @ (factor, group, score) in &self.terms {
            let at = |at_ms: i64| match group.decay {
                _ if at_ms < score.since_ms => 0.0,
                DecayLaw::Exponential { half_life_ms } => {
                    -std::f64::consts::LN_2 / half_life_ms * Self::term(term, at_ms)
                }
                DecayLaw::Linear { per_ms } => {
                    let value = score.value_at(group, at_ms);
                    if value == 0.0 { 0.0 } else { -factor * per_ms * value.signum() }
                }
                DecayLaw::None | DecayLaw::Step { .. } => 0.0,
            };
            let (left, right) = (at(a), at(b));
            bounds.0 += left.min(right);
            bounds.1 += left.max(right);
        }
        bounds
    }

    /// The times in `(after, until]` at which a step contribution expires: its value changes there.
    fn expiries(&self, after: i64, until: i64, out: &mut Vec<i64>) {
        for (_, group, score) in &self.terms {
            if let DecayLaw::Step { .. } = group.decay {
                let ends = score.contributions.iter().filter_map(|contribution| contribution.expires_at_ms);
                out.extend(ends.filter(|end| *end > after && *end <= until));
            }
        }
    }

    /// Where the score, falling from `from_ms` with no step contribution expiring, reaches `level`, if
    /// only one of its terms moves and that one decays exponentially (the others hold still or sit at 0):
    /// a first guess for the search, which the value function then settles to the millisecond.
    pub fn crossing_guess(&self, level: f64, from_ms: i64) -> Option<i64> {
        let mut moving = None;
        let mut still = 0.0;
        for term @ (_, group, _) in &self.terms {
            let value = Self::term(term, from_ms);
            match group.decay {
                DecayLaw::Exponential { half_life_ms } if value != 0.0 => {
                    if moving.replace((value, half_life_ms)).is_some() {
                        return None;
                    }
                }
                DecayLaw::Linear { .. } if value != 0.0 => return None,
                _ => still += value,
            }
        }
        let (value, half_life_ms) = moving?;
        let gap = level - still;
        if !(gap > 0.0 && value > gap) {
            return None;
        }
        let after = half_life_ms * (value / gap).log2();
        (after.is_finite() && after < HORIZON_MS as f64).then(|| from_ms.saturating_add(after.ceil() as i64))
    }
}

/// Evaluations of a condition [`first_failure`] makes at most before it settles for [`first_time`]. The
/// searches that need more are nearly all those the bounds can never help (a score exactly at the level),
/// which would halve down to single milliseconds; on a stream of accounts with about 100 members, searches
/// took under 200 evaluations or ran into the cap, and the cap is what an account update costs then.
const MAX_EVALUATIONS: u32 = 1_000;

/// The first millisecond after `from_ms` at which `holds` (a condition that the higher `scores` are, the
/// more it holds) is false, if decay ever gets there. `holds_over(floors)` says
/// whether it holds for scores at least `floors`, with a margin for rounding. `guess(from)` may say about
/// where it fails if the scores only fall from `from`: the search then brackets that time instead of
/// halving the whole interval, and finds the same millisecond.
///
/// Time is cut where a step contribution expires; in each piece an interval is ruled out when the
/// condition holds at the scores' floors, bisected when every score only falls (the condition then
/// fails from one millisecond on), passed over when every score only rises, and halved otherwise. A
/// condition that stays within rounding of failing for long could take many halvings; past
/// [`MAX_EVALUATIONS`] the doubling search of [`first_time`] answers instead.
pub fn first_failure(
    from_ms: i64,
    scores: &[Decaying],
    holds: impl Fn(i64) -> bool,
    holds_over: impl Fn(&[f64]) -> bool,
    guess: impl Fn(i64) -> Option<i64>,
) -> Option<i64> {
    let until = from_ms.saturating_add(HORIZON_MS);
    let mut cuts = Vec::new();
    for score in scores {
        score.expiries(from_ms, until, &mut cuts);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let search = Search { scores, holds: &holds, holds_over: &holds_over, guess: &guess, evaluations: Cell::new(0) };
    let first = from_ms + 1;
    if !search.holds_at(first) {
        return Some(first);
    }
    let mut start = first;
    for end in cuts.iter().map(|cut| cut - 1).chain([until]) {
        if end < start {
            continue;
        }
        if start > first && !search.holds_at(start) {
            return Some(start);
        }
        match search.within(start, end) {
            Ok(Some(at)) => return Some(at),
            Ok(None) => {}
            Err(Exhausted) => return first_time(from_ms, |at| !holds(at)),
        }
        start = end + 1;
    }
    None
}

struct Search<'s, 'a, H, O, G> {
    scores: &'s [Decaying<'a>],
    holds: &'s H,
    holds_over: &'s O,
    guess: &'s G,
    evaluations: Cell<u32>,
}

/// The search used up [`MAX_EVALUATIONS`].
struct Exhausted;

impl<H: Fn(i64) -> bool, O: Fn(&[f64]) -> bool, G: Fn(i64) -> Option<i64>> Search<'_, '_, H, O, G> {
    fn holds_at(&self, at_ms: i64) -> bool {
        self.evaluations.set(self.evaluations.get() + 1);
        (self.holds)(at_ms)
    }

    /// The first failure in `(a, b]`, where the condition holds at `a` and no contribution expires.
    fn within(&self, a: i64, b: i64) -> Result<Option<i64>, Exhausted> {
        if b <= a {
            return Ok(None);
        }
        if self.evaluations.get() > MAX_EVALUATIONS {
            return Err(Exhausted);
        }
        self.evaluations.set(self.evaluations.get() + 1);
        let floors: Vec<f64> = self.scores.iter().map(|score| score.floor(a, b)).collect();
        if (self.holds_over)(&floors) {
            return Ok(None);
        }
        let slopes: Vec<(f64, f64)> = self.scores.iter().map(|score| score.slope(a, b)).collect();
        if slopes.iter().all(|(low, _)| *low >= 0.0) {
            return Ok(None);
        }
        if slopes.iter().all(|(_, high)| *high <= 0.0) {
            let fails = |at| !(self.holds)(at);
            return Ok((!self.holds_at(b)).then(|| match (self.guess)(a) {
                Some(guess) => first_time_near(a, b, guess, fails),
                None => first_time_between(a, b, fails),
            }));
        }
        if b - a == 1 {
            return Ok((!self.holds_at(b)).then_some(b));
        }
        let middle = a + (b - a) / 2;
        if !self.holds_at(middle) {
            return Ok(Some(self.within(a, middle)?.unwrap_or(middle)));
        }
        match self.within(a, middle)? {
            Some(at) => Ok(Some(at)),
            None => self.within(middle, b),
        }
    }
}

/// The first millisecond after `from_ms` at which `holds` is true, found by doubling the step until it
/// holds (up to about a thousand years) and then halving the bracket: exact for a condition that, once
/// true, stays true, as a decaying value stays below a level.
pub fn first_time(from_ms: i64, holds: impl Fn(i64) -> bool) -> Option<i64> {
    let mut low = from_ms;
    let mut step: i64 = 1;
    let high = loop {
        let probe = from_ms.saturating_add(step);
        if holds(probe) {
            break probe;
        }
        low = probe;
        if step >= HORIZON_MS {
            return None;
        }
        step *= 2;
    };
    Some(first_time_between(low, high, holds))
}

/// The first millisecond in `(low, high]` at which `holds` is true, where it is false at `low` and true
/// at `high`, by halving: exact for a condition that, once true, stays true.
fn first_time_between(low: i64, high: i64, holds: impl Fn(i64) -> bool) -> i64 {
    let (mut low, mut high) = (low, high);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if holds(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

/// What [`first_time_between`] finds, starting from `guess`: steps of 1, 2, 4… ms from it bracket the
/// first millisecond, which halving the bracket then finds. A close guess costs a few evaluations where
/// halving all of `(low, high]` costs up to 45.
fn first_time_near(low: i64, high: i64, guess: i64, holds: impl Fn(i64) -> bool) -> i64 {
    let guess = guess.clamp(low + 1, high);
    let (mut low, mut high) = (low, high);
    let mut step = 1;
    if holds(guess) {
        high = guess;
        while guess - step > low && holds(guess - step) {
            high = guess - step;
            step *= 2;
        }
        low = low.max(guess - step);
    } else {
        low = guess;
        while guess + step < high && !holds(guess + step) {
            low = guess + step;
            step *= 2;
        }
        high = high.min(guess + step);
    }
    first_time_between(low, high, holds)
}

/// Closed-form t* for a single exponential or linear group falling toward 0 from above a positive level.
fn closed_form(rules: &Rules, state: &ContactState, target: Target, level: f64) -> Option<i64> {
    let Target::Group(index) = target else {
        return None;
    };
    let group = rules.groups.get(index)?;
    let score = state.groups.get(index)?;
    let (value, since) = (score.value, score.since_ms as f64);
    if !(level > 0.0 && value >= level) {
        return None;
    }
    let exact = match group.decay {
        DecayLaw::Exponential { half_life_ms } => since + half_life_ms * (value / level).log2(),
        DecayLaw::Linear { per_ms } => since + (value - level) / per_ms,
        DecayLaw::None | DecayLaw::Step { .. } => return None,
    };
    (exact.is_finite() && exact < (i64::MAX / 2) as f64).then(|| exact.ceil() as i64)
}

/// Nudges a closed-form guess to the exact first millisecond that is below, as the value function says.
fn settle(mut guess: i64, from_ms: i64, below: &impl Fn(i64) -> bool) -> i64 {
    while !below(guess) {
        guess += 1;
    }
    while guess - 1 > from_ms && below(guess - 1) {
        guess -= 1;
    }
    guess
}

#[cfg(test)]
pub(crate) mod tests;
