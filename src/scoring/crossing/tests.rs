//! The crossing search against scans of the value function.

use std::path::Path;

use super::*;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000;

/// A fast-fading positive group, a slowly fading negative one and a fit that stays: the total falls
/// from 60 to about 29.8 at four days, then rises back toward 50.
pub(crate) const DIPPING: &str = r#"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "1d"
[[groups]]
name = "complaints"
min = -100
decay = "exponential"
half_life = "10d"
[[groups]]
name = "fit"
[[phases]]
name = "lead"
"#;

fn dipping() -> (Rules, ContactState) {
    let rules = Rules::parse(DIPPING, Path::new("dip.toml")).unwrap_or_else(|err| panic!("{err}"));
    let mut state = ContactState::new(&rules, "ana", T0);
    for (index, value) in [40.0, -30.0, 50.0].into_iter().enumerate() {
        state.groups[index] = GroupScore { value, since_ms: T0, contributions: Vec::new() };
    }
    (rules, state)
}

/// The least total, by a scan of every minute over twenty days.
fn least_total(rules: &Rules, state: &ContactState) -> (i64, f64) {
    (0..20 * 24 * 60)
        .map(|minute| T0 + minute * 60_000)
        .map(|at| (at, state.total(rules, at)))
        .fold((T0, f64::INFINITY), |least, (at, total)| if total < least.1 { (at, total) } else { least })
}

#[test]
fn a_dip_between_the_doubling_steps_is_found_to_the_millisecond() {
    let (rules, state) = dipping();
    let (at_least, least) = least_total(&rules, &state);
    assert!((29.0..30.0).contains(&least) && at_least > T0 + 4 * DAY, "{least} at {at_least}");
    let level = least + 0.05;
    let below = |at: i64| state.total(&rules, at) < level;
    assert_eq!(first_time(T0, below), None, "the doubling steps jump over the dip");
    let fall = fall_time(&rules, &state, Target::Total, level, T0).unwrap_or_else(|| panic!("the dip is missed"));
    assert!(below(fall) && !below(fall - 1), "{fall}");
    assert!(fall <= at_least && fall > T0 + 3 * DAY, "{fall}");
}

#[test]
fn a_level_the_total_only_touches_or_never_reaches_has_no_fall() {
    let (rules, state) = dipping();
    let (_, least) = least_total(&rules, &state);
    // Below the least total found by the scan, within what a millisecond's scan could still find.
    assert_eq!(fall_time(&rules, &state, Target::Total, least - 0.01, T0), None);
    assert_eq!(fall_time(&rules, &state, Target::Total, 10.0, T0), None);
}

#[test]
fn a_step_contribution_that_expires_inside_a_dip_is_a_cut_of_the_search() {
    let text =
        DIPPING.replace("decay = \"exponential\"\nhalf_life = \"10d\"", "decay = \"step\"\nexpire_after = \"4d\"");
    let rules = Rules::parse(&text, Path::new("step.toml")).unwrap_or_else(|err| panic!("{err}"));
    let mut state = ContactState::new(&rules, "ana", T0);
    let complaint = super::super::Contribution { source: 1, points: -30.0, expires_at_ms: Some(T0 + 4 * DAY) };
    let groups = [(40.0, Vec::new()), (-30.0, vec![complaint]), (50.0, Vec::new())];
    for (index, (value, contributions)) in groups.into_iter().enumerate() {
        state.groups[index] = GroupScore { value, since_ms: T0, contributions };
    }
    // 20 + 40·2^(−t/1d) until day 4, then 50 + …: below 23 from about day 3.74 until day 4.
    let below = |at: i64| state.total(&rules, at) < 23.0;
    assert_eq!(first_time(T0, below), None, "the doubling steps jump over the dip");
    let fall = fall_time(&rules, &state, Target::Total, 23.0, T0).unwrap_or_else(|| panic!("the dip is missed"));
    assert!(below(fall) && !below(fall - 1), "{fall}");
    assert!(fall > T0 + 3 * DAY + 17 * DAY / 24 && fall < T0 + 4 * DAY, "{fall}");
    assert_eq!(fall_time(&rules, &state, Target::Total, 20.0, T0), None, "never below 20");
}

proptest::proptest! {
    /// Started from any guess, the bracketing search finds what halving the whole interval finds.
    #[test]
    fn a_guess_changes_the_cost_of_a_search_never_its_answer(
        first in 1i64..1 << 40,
        guess in -(1i64 << 41)..1 << 42,
    ) {
        let holds = |at: i64| at >= first;
        let high = 1i64 << 41;
        proptest::prop_assert_eq!(first_time_near(0, high, guess, holds), first_time_between(0, high, holds));
    }

    /// A total that only falls (one exponential group, one at 0, one that stays): the fall found with the
    /// closed form's guess is the first millisecond below the level, as the doubling search finds it.
    #[test]
    fn a_guessed_fall_is_the_first_millisecond_below(
        engagement in 0.0f64..100.0,
        fit in 0.0f64..100.0,
        level in 0.0f64..100.0,
    ) {
        let (rules, mut state) = dipping();
        for (index, value) in [engagement, 0.0, fit].into_iter().enumerate() {
            state.groups[index].value = value;
        }
        let below = |at: i64| state.total(&rules, at) < level;
        let expected = if below(T0 + 1) { Some(T0 + 1) } else { first_time(T0, below) };
        proptest::prop_assert_eq!(fall_time(&rules, &state, Target::Total, level, T0), expected);
    }

    /// Whatever the signs and speeds of the groups, the fall found is a first millisecond below the
    /// level, and a scan every half hour finds no earlier one (nor any, when no fall is found).
    #[test]
    fn no_dip_a_scan_finds_comes_before_the_fall(
        values in proptest::array::uniform3(-60.0f64..60.0),
        level in 0.0f64..60.0,
    ) {
        let (rules, mut state) = dipping();
        for (index, value) in values.into_iter().enumerate() {
            state.groups[index].value = value;
        }
        let below = |at: i64| state.total(&rules, at) < level;
        let fall = fall_time(&rules, &state, Target::Total, level, T0);
        if let Some(fall) = fall {
            proptest::prop_assert!(below(fall) && (fall == T0 + 1 || !below(fall - 1)), "{fall}");
        }
        let scanned = (1..30 * 48).map(|step| T0 + step * 1_800_000).find(|at| below(*at));
        if let Some(at) = scanned {
            proptest::prop_assert!(fall.is_some_and(|fall| fall <= at), "{at} is below, the fall is {fall:?}");
        }
    }
}
