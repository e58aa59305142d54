//! The web console in a real browser, against `leadscore demo` with an API token: the system Chromium,
//! driven by playwright-core (`scripts/browser.sh` installs both), runs `tests/console/console.mjs`. It
//! enters the token the page asks for once, opens the leaderboard, reaches a contact by keyboard, checks
//! that the explanation bars sum to the total shown and that the chart has a point per history entry,
//! that the rules page lists every rule, that the what-if page shows the top movers `leadscore replay`
//! reports offline for the same rules and export, and that the pages fit a phone. It prints the slowest
//! API request (`benches/api.rs` measures them). Its screenshots go to the target directory
//! (`console-screenshots/` under the test's temporary directory); with `LEADSCORE_UPDATE_SCREENSHOTS=1`
//! they replace the ones in `docs/screenshots/` that the README shows.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadscore::event::json;
use leadscore::generator::EventGenerator;

const BIN: &str = env!("CARGO_BIN_EXE_leadscore");
/// The demo's API token: the page must ask for it and send it.
const TOKEN: &str = "console-test-token";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Stops the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status code of `GET path`, if the server answers.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// `examples/rules.toml` with the `pricing_page` rule's points doubled.
fn changed_rules() -> String {
    let rules = std::fs::read_to_string(repo("examples/rules.toml")).unwrap();
    let rule = rules.find("id = \"pricing_page\"").expect("the example rules have a pricing_page rule");
    let points = rule + rules[rule..].find("points = 10\n").expect("pricing_page gives 10 points");
    format!("{}points = 20\n{}", &rules[..points], &rules[points + "points = 10\n".len()..])
}

/// The top movers `leadscore replay` prints for the changed rules on the export, as (contact, delta).
fn replay_movers(rules: &Path, events: &Path) -> Vec<serde_json::Value> {
    let output = Command::new(BIN)
        .args(["replay", "--rules"])
        .arg(rules)
        .arg("--baseline-rules")
        .arg(repo("examples/rules.toml"))
        .arg("--input")
        .arg(events)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "leadscore replay failed: {report}{}", String::from_utf8_lossy(&output.stderr));
    let movers: Vec<serde_json::Value> = report
        .lines()
        .skip_while(|line| *line != "top movers:")
        .skip(1)
        .map(|line| {
            let contact = line.split_whitespace().next().unwrap();
            let delta = line.split('(').nth(1).and_then(|rest| rest.split(')').next()).unwrap();
            serde_json::json!({ "contact": contact, "delta": delta.parse::<f64>().unwrap() })
        })
        .collect();
    assert!(!movers.is_empty(), "the changed rules move no contact: {report}");
    movers
}

#[test]
fn the_console_shows_the_demo_in_a_real_browser() {
    let modules = Command::new(repo("scripts/browser.sh")).arg("path").output().unwrap();
    let modules = PathBuf::from(String::from_utf8_lossy(&modules.stdout).trim());
    assert!(
        modules.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium and playwright-core: run scripts/browser.sh (scripts/test does)"
    );

    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("export.jsonl");
    let mut generator = EventGenerator::new(7, 500, 1_772_366_400_000, 60_000);
    let mut export = Vec::new();
    for _ in 0..5_000 {
        export.extend(json::encode(&generator.next_event()));
        export.push(b'\n');
    }
    std::fs::write(&events, export).unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, changed_rules()).unwrap();
    let whatif = dir.path().join("whatif.json");
    let expected = replay_movers(&rules, &events);
    let spec = serde_json::json!({ "rules_file": rules, "events_file": events, "expected_movers": expected });
    std::fs::write(&whatif, spec.to_string()).unwrap();

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let demo = Command::new(BIN)
        .args(["demo", "--duration", "180s", "--http", &format!("127.0.0.1:{port}"), "--http-token", TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _demo = Demo(demo);
    let started = Instant::now();
    while status(port, "/readyz") != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(60), "the demo did not get ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few seconds of events, so that contacts have histories and phases.
    std::thread::sleep(Duration::from_secs(5));

    // Artefacts of every run go under the target directory; LEADSCORE_UPDATE_SCREENSHOTS=1 writes the
    // README's instead.
    let screenshots = match std::env::var("LEADSCORE_UPDATE_SCREENSHOTS").as_deref() {
        Ok("1") => repo("docs/screenshots"),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
    };
    let run = Command::new("node")
        .arg(repo("tests/console/console.mjs"))
        .env("LEADSCORE_URL", format!("http://127.0.0.1:{port}"))
        .env("LEADSCORE_TOKEN", TOKEN)
        .env("LEADSCORE_SCREENSHOTS", &screenshots)
        .env("LEADSCORE_WHATIF", &whatif)
        .env("LEADSCORE_BROWSER_MODULES", &modules)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    println!("{report}screenshots in {}", screenshots.display());
    assert!(run.status.success(), "the browser checks failed (screenshots in {}):\n{report}", screenshots.display());
}
