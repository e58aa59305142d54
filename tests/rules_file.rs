//! The rules file as users meet it: the shipped example passes `leadscore check`, and every kind of
//! mistake stops with exit status 2 and names the file, line and column.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use std::path::Path;
use std::process::Command;

use leadscore::rules::Rules;

fn check(path: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["check", path])
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore: {err}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_example_scorecard_passes_check() {
    let (code, stdout, stderr) = check("examples/rules.toml");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("rules version b2b-saas@"), "{stdout}");
    assert!(stdout.contains("subscriber → lead → mql → sql → opportunity → customer"), "{stdout}");
    let rules = Rules::load(Path::new("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    for event_type in ["page_visit", "form_submit", "profile_update", "unsubscribe", "hard_bounce", "spam_complaint"] {
        assert!(!rules.rules_for(event_type).is_empty(), "no rule for {event_type}");
    }
}

#[test]
fn each_invalid_file_names_its_location_and_reason() {
    // (fixture, line, column, part of the reason)
    let cases = [
        ("bad_toml", 3, 21, "invalid basic string"),
        ("unknown_key", 3, 1, "unknown field `colour`"),
        ("rule_missing_group", 10, 9, "unknown group \"engagment\""),
        ("threshold_missing_group", 9, 10, "unknown group \"interest\""),
        ("empty_phases", 1, 10, "phase list is empty"),
        ("negative_half_life", 4, 13, "must be positive"),
        ("unknown_decay", 3, 9, "unknown decay law \"logarithmic\""),
        ("duplicate_rule", 14, 6, "declared twice"),
        ("points_and_disqualify", 11, 10, "not both"),
        ("unknown_advance_phase", 11, 14, "unknown phase \"marketing-qualified\""),
        ("bad_predicate", 12, 9, "exactly one of"),
    ];
    for (name, line, column, reason) in cases {
        let path = format!("tests/fixtures/rules/{name}.toml");
        let (code, _, stderr) = check(&path);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        let location = format!("{path}:{line}:{column}: ");
        assert!(stderr.contains(&location), "{name}: expected {location:?} in {stderr:?}");
        assert!(stderr.contains(reason), "{name}: expected {reason:?} in {stderr:?}");
    }
}

#[test]
fn a_missing_file_is_reported_not_panicked() {
    let (code, _, stderr) = check("tests/fixtures/rules/does-not-exist.toml");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read the rules file"), "{stderr}");
}
