//! When a fired threshold falls back by decay alone: the exact crossing time t*.
//!
//! t* is the first whole millisecond at which the target is below the threshold's down level. For one
//! exponential or linear group it is solved in closed form; otherwise (step expiry, the weighted total)
//! it is bracketed by doubling steps and bisected. Either way the answer is checked against the value
//! function itself, so t* and the engine's own reading of the value can never disagree.

use super::state::ContactState;
use crate::rules::{DecayLaw, Rules, Target};

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
    first_time(from_ms, below)
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
    // Invariant: not true at `low`, true at `high`.
    let (mut low, mut high) = (low, high);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if holds(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
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
