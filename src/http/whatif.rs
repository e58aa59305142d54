//! `POST /v1/whatif`: the offline replay (`leadscore replay --input`) of a rules file on a bounded sample,
//! run in the server for the console's what-if page. The rules in force are the baseline; nothing the
//! instance keeps is read or changed.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::error;
use crate::app::Instance;
use crate::event::json;
use crate::generator::EventGenerator;
use crate::replay::DiffReport;
use crate::replay::offline::{OfflineReplay, replay_lines};
use crate::rules::Rules;
use crate::runtime::now_ms;

/// Most events a what-if replays.
pub const MAX_EVENTS: usize = 50_000;
/// Largest request body: the rules file and the events.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Events of the demo's stream replayed when a request brings none.
pub const DEMO_EVENTS: usize = 10_000;
/// Contacts in the demo's population, as `leadscore demo` generates them by default.
const DEMO_CONTACTS: u64 = 5_000;
/// Contacts listed as top movers, as `leadscore replay` lists them by default.
const TOP_MOVERS: usize = 10;

/// The what-if running now, if any.
static RUNNING: Semaphore = Semaphore::const_new(1);

/// The body of `POST /v1/whatif`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    /// The new rules file, TOML.
    rules: String,
    /// A JSON-lines export; the demo's stream when absent.
    #[serde(default)]
    events: Option<String>,
}

/// `POST /v1/whatif`.
pub async fn whatif(State(instance): State<Arc<Instance>>, body: Result<Json<WhatIf>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    // A replay takes a core for up to a few hundred milliseconds: one at a time, so that what-ifs never
    // crowd out the scoring.
    let Ok(_running) = RUNNING.try_acquire() else {
        return error(StatusCode::TOO_MANY_REQUESTS, "a what-if is already running; retry when it is done");
    };
    let baseline = instance.rules.get();
    let answer = tokio::task::spawn_blocking(move || replay(&baseline, request)).await;
    match answer {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(reason)) => error(StatusCode::BAD_REQUEST, reason),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the replay failed"),
    }
}

fn replay(baseline: &Rules, request: WhatIf) -> Result<Value, String> {
    let new_rules = Rules::parse(&request.rules, Path::new("rules.toml")).map_err(|err| err.to_string())?;
    let events = match request.events {
        Some(events) => events,
        None => demo_stream(DEMO_EVENTS),
    };
    let count = events.lines().filter(|line| !line.trim().is_empty()).count();
    if count > MAX_EVENTS {
        return Err(format!("{count} events: a what-if replays at most {MAX_EVENTS}"));
    }
    let replay = replay_lines(events.as_bytes(), &new_rules, baseline, 1, &mut std::io::sink(), TOP_MOVERS)
        .map_err(|err| err.to_string())?;
    Ok(report_json(&replay))
}

/// A sample stream of `count` generated events ending now: the demo's contacts, without its anonymous
/// visitors, duplicates and companies.
fn demo_stream(count: usize) -> String {
    let step_ms = 500;
    let start = now_ms() - step_ms * count as i64;
    let mut generator = EventGenerator::new(start as u64, DEMO_CONTACTS, start, step_ms);
    let mut text = String::with_capacity(count * 160);
    for _ in 0..count {
        text.push_str(&String::from_utf8_lossy(&json::encode(&generator.next_event())));
        text.push('\n');
    }
    text
}

/// The report as the console draws it.
fn report_json(replay: &OfflineReplay) -> Value {
    let report = &replay.report;
    json!({
        "live_version": report.live_version,
        "new_version": report.new_version,
        "events": replay.summary.lines,
        "rejected": replay.summary.malformed,
        "compared": report.compared,
        "only_live": report.only_live,
        "only_replayed": report.only_replayed,
        "unchanged": report.unchanged,
        "threshold_differs": report.threshold_differs,
        "phase_differs": report.phase_differs(),
        "mean_delta": report.mean_delta(),
        "phase_moves": report.phase_moves.iter().map(|((from, to), contacts)| {
            json!({"from": from, "to": to, "contacts": contacts})
        }).collect::<Vec<_>>(),
        "thresholds": report.thresholds.iter().map(|(name, diff)| {
            json!({"name": name, "gained": diff.gained, "lost": diff.lost})
        }).collect::<Vec<_>>(),
        "histogram": report.histogram.iter().enumerate().map(|(index, contacts)| {
            json!({"bucket": DiffReport::bucket_label(index), "contacts": contacts})
        }).collect::<Vec<_>>(),
        "top_movers": report.top_movers.iter().map(|mover| json!({
            "contact": mover.contact,
            "live": mover.live,
            "replayed": mover.replayed,
            "delta": mover.delta(),
            "live_phase": mover.live_phase,
            "replayed_phase": mover.replayed_phase,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = include_str!("../../examples/rules.toml");

    fn rules() -> Rules {
        Rules::parse(RULES, Path::new("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn changed_points_move_contacts_and_the_same_rules_move_none() {
        let baseline = rules();
        let same =
            replay(&baseline, WhatIf { rules: RULES.to_owned(), events: None }).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(same["events"], json!(DEMO_EVENTS));
        assert_eq!(same["compared"], same["unchanged"]);
        assert_eq!(same["top_movers"], json!([]));
        let doubled = RULES.replace("points = 10\n", "points = 20\n");
        assert_ne!(doubled, RULES, "the example rules give some rule 10 points");
        let changed = replay(&baseline, WhatIf { rules: doubled, events: None }).unwrap_or_else(|err| panic!("{err}"));
        let movers = changed["top_movers"].as_array().map_or(0, Vec::len);
        assert_eq!(movers, TOP_MOVERS);
        let buckets = changed["histogram"].as_array().cloned().unwrap_or_default();
        assert_eq!(buckets.len(), 11);
        let moved: u64 = buckets.iter().filter_map(|bucket| bucket["contacts"].as_u64()).sum();
        assert!(moved >= TOP_MOVERS as u64, "{moved} contacts in the histogram");
    }

    #[tokio::test]
    async fn one_what_if_runs_at_a_time() {
        let store = Arc::new(crate::store::MemoryStore::new());
        let status = Arc::new(crate::runtime::status::Status::default());
        let instance = Arc::new(Instance::new(Arc::new(rules()), store, status, 1, crate::config::Config::default()));
        let request = || Ok(Json(WhatIf { rules: RULES.to_owned(), events: Some(String::new()) }));
        let running = RUNNING.try_acquire();
        assert!(running.is_ok());
        assert_eq!(whatif(State(instance.clone()), request()).await.status(), StatusCode::TOO_MANY_REQUESTS);
        drop(running);
        assert_eq!(whatif(State(instance), request()).await.status(), StatusCode::OK);
    }

    #[test]
    fn a_bad_rules_file_or_too_many_events_is_refused_with_where() {
        let baseline = rules();
        let bad = replay(&baseline, WhatIf { rules: "name = 3\n".to_owned(), events: Some(String::new()) });
        assert!(bad.is_err_and(|err| err.contains("rules.toml:1:")), "file, line and column");
        let events = "{}\n".repeat(MAX_EVENTS + 1);
        let many = replay(&baseline, WhatIf { rules: RULES.to_owned(), events: Some(events) });
        assert!(many.is_err_and(|err| err.contains("at most")));
    }
}
