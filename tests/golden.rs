//! Golden test of `leadscore score` on the shipped example: a decay-driven fall with its exact t*, a
//! phase reset, a disqualification, a manual adjustment, a duplicate, an erasure and a malformed line.
//!
//! After an intended change of behaviour, regenerate with
//! `cargo run --release -- score --rules examples/rules.toml --input examples/events.jsonl > examples/expected-outputs.jsonl`.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use std::process::Command;

#[test]
fn score_reproduces_the_golden_output() {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["score", "--rules", "examples/rules.toml", "--input", "examples/events.jsonl"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore: {err}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let actual = String::from_utf8_lossy(&output.stdout);
    let expected = std::fs::read_to_string("examples/expected-outputs.jsonl").unwrap_or_default();
    assert!(actual == expected, "output differs from examples/expected-outputs.jsonl:\n{actual}");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 19: payload is not valid JSON"), "{stderr}");
    assert!(stderr.contains("1 duplicates, 1 malformed"), "{stderr}");
    for needle in [
        r#""id":"ben:warm:down:1773790283095""#,
        r#""crossed_at":"2026-03-17T23:31:23.095Z""#,
        r#""cause":"phase_reset:mql""#,
        r#""disqualified":"competitor mail domain""#,
        r#""reason":"met at trade fair, budget approved","actor":"sales:jonas""#,
        r#""type":"contact_erased""#,
    ] {
        assert!(actual.contains(needle), "golden output lacks {needle}");
    }
}
