//! `leadscore bench` end to end on the embedded mock cluster, small: the JSON report has its shape and
//! every mode processed every event. A functional test: it asserts nothing about speed.

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_reports_every_mode_over_all_events() {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["bench", "--events", "20000", "--contacts", "2000", "--partitions", "3", "--rate", "1000"])
        .args(["--latency-seconds", "2", "--restore-contacts", "5000", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore bench: {err}"));
    assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("not JSON: {err}"));

    assert_eq!(report["events"], 20_000);
    assert_eq!(report["partitions"], 3);
    let modes = report["modes"].as_array().unwrap_or_else(|| panic!("no modes in {report}"));
    let names: Vec<&str> = modes.iter().filter_map(|mode| mode["mode"].as_str()).collect();
    assert_eq!(names, ["bare_pipe", "at_least_once", "exactly_once"]);
    for mode in modes {
        assert!(mode["error"].is_null(), "{} failed: {}", mode["mode"], mode["error"]);
        assert_eq!(mode["processed"], 20_000, "{} processed every event", mode["mode"]);
        // The window starts at the first commit seen, so it may leave out what came before it.
        let events = mode["events"].as_u64().unwrap_or(0);
        assert!(events > 0 && events <= 20_000, "{}: {events} events", mode["mode"]);
        for figure in ["events_per_second", "peak_rss_mib"] {
            assert!(mode[figure].as_f64().is_some_and(|value| value > 0.0), "{}: {figure} missing", mode["mode"]);
        }
        // CPU time is read in clock ticks (10 ms): a fast pipe over a short window can measure 0.
        let cpu = mode["cpu_seconds_per_million"].as_f64();
        assert!(cpu.is_some_and(|value| value >= 0.0), "{}: cpu_seconds_per_million missing", mode["mode"]);
    }
    assert!(modes[0]["state_bytes_per_contact"].is_null(), "the pipe keeps no state");
    assert!(modes[1]["state_bytes_per_contact"].as_f64().is_some_and(|bytes| bytes > 0.0));
    assert!(modes[1]["ratio_to_pipe"].as_f64().is_some_and(|ratio| ratio > 0.0));

    let latency = &report["latency"];
    assert!(latency["matched"].as_u64().is_some_and(|matched| matched > 0), "latency: {latency}");
    assert!(latency["p50_ms"].as_f64() <= latency["p99_ms"].as_f64());
    assert!(latency["p99_ms"].as_f64() <= latency["max_ms"].as_f64());

    let restore = &report["restore"];
    assert_eq!(restore["contacts"], 5_000);
    assert_eq!(restore["records"], 5_000, "every changelog record is restored");
}
