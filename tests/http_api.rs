//! The HTTP API: the served routes match `openapi.yaml`; the bearer token guards `/v1/*` only; unknown,
//! foreign and restoring contacts give 404, 421 and 503; and, on the mock cluster, the leaderboard equals
//! a brute-force ranking of the model's final states, `/v1/rules` equals a brute-force sum over the
//! model's rule firings and phase entries, every explanation sums to its total, and every metric the
//! Grafana dashboard and the Prometheus alerts use is exported.

#![allow(clippy::panic, clippy::unwrap_used, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use leadscore::app::Instance;
use leadscore::config::{Config, Secret};
use leadscore::event::{DecodeLimits, json, parse_rfc3339};
use leadscore::hashing::partition_for_key;
use leadscore::http::{ROUTES, router};
use leadscore::leaderboard::BoardEntry;
use leadscore::offline::MemoryStore as ModelStore;
use leadscore::rules::Rules;
use leadscore::runtime::status::Status;
use leadscore::scoring::ContactState;
use leadscore::store::MemoryStore;
use leadscore::stream::{PartitionStream, TimerClock};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";
const PARTITIONS: u32 = 3;

async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, Value, String) {
    let mut request = Request::builder().uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn offline_instance(partitions: u32, status: Arc<Status>) -> Arc<Instance> {
    let mut config = Config::default();
    config.http.token = Some(Secret::new(TOKEN));
    Arc::new(Instance::new(Arc::new(rules()), Arc::new(MemoryStore::default()), status, partitions, config))
}

/// A contact id of input partition `partition`.
fn contact_in(partition: u32, partitions: u32) -> String {
    (0..).map(|n| format!("someone-{n}")).find(|id| partition_for_key(id.as_bytes(), partitions) == partition).unwrap()
}

#[tokio::test]
async fn served_routes_match_the_openapi_file() {
    let spec: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(manifest("openapi.yaml")).unwrap()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, operations) in spec["paths"].as_mapping().unwrap() {
        for (method, _) in operations.as_mapping().unwrap() {
            documented.insert((method.as_str().unwrap().to_uppercase(), path.as_str().unwrap().to_owned()));
        }
    }
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();
    assert_eq!(documented, served, "openapi.yaml and http::ROUTES differ");

    let status = Arc::new(Status::default());
    status.set_owned(0, 0..PARTITIONS as i32);
    let app = router(offline_instance(PARTITIONS, status));
    for (method, path) in &served {
        if method == "POST" {
            let request = Request::builder()
                .method("POST")
                .uri(path.as_str())
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let code = app.clone().oneshot(request).await.unwrap().status();
            let documented_codes = &spec["paths"][path.as_str()]["post"]["responses"];
            assert!(!documented_codes[code.as_str()].is_null(), "POST {path} answered {code}, not documented");
            continue;
        }
        assert_eq!(method, "GET");
        let (code, body, text) = get(&app, &path.replace("{id}", "someone"), Some(TOKEN)).await;
        assert_ne!(code, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_ne!(body["error"], "no such endpoint", "{path} is documented but not served");
        let documented_codes = &spec["paths"][path.as_str()]["get"]["responses"];
        assert!(
            !documented_codes[code.as_str()].is_null(),
            "{path} answered {code}, which openapi.yaml does not document: {text}"
        );
    }
    let (code, body, _) = get(&app, "/v2/nothing", Some(TOKEN)).await;
    assert_eq!((code, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("no such endpoint")));
    let response = app
        .clone()
        .oneshot(Request::builder().method("POST").uri("/v1/rules").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn token_ownership_and_restore_errors() {
    let partitions = 4;
    let status = Arc::new(Status::default());
    status.set_owned(0, [0, 1]);
    status.restoring(1, true);
    let app = router(offline_instance(partitions, status));

    for path in ["/v1/rules", "/v1/leaderboard", "/v1/contacts/anyone"] {
        assert_eq!(get(&app, path, None).await.0, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_eq!(get(&app, path, Some("wrong")).await.0, StatusCode::UNAUTHORIZED, "{path} with a wrong token");
    }
    assert_eq!(get(&app, "/v1/rules", Some(TOKEN)).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/v1/leaderboard?limit=5", Some(TOKEN)).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/metrics", None).await.0, StatusCode::OK);
    let (code, body, _) = get(&app, "/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "not subscribed, and partition 1 restores: {body}");

    let (code, body, _) = get(&app, &format!("/v1/contacts/{}", contact_in(0, partitions)), Some(TOKEN)).await;
    assert_eq!((code, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("unknown contact")));
    let (code, body, _) = get(&app, &format!("/v1/contacts/{}", contact_in(1, partitions)), Some(TOKEN)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("restoring"), "{body}");
    let (code, body, _) = get(&app, &format!("/v1/contacts/{}", contact_in(3, partitions)), Some(TOKEN)).await;
    assert_eq!(code, StatusCode::MISDIRECTED_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("not owned"), "{body}");

    for bad in ["group=nope", "phase=nope", "limit=0", "limit=abc", "limit=100000", "colour=red"] {
        let (code, body, _) = get(&app, &format!("/v1/leaderboard?{bad}"), Some(TOKEN)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}

/// The brute-force reference: the engine over the events, per partition, as the runtime orders them,
/// with every rule firing and phase entry summed.
struct Reference {
    states: BTreeMap<String, ContactState>,
    fires: Vec<u64>,
    points: Vec<f64>,
    entered: Vec<u64>,
    attributed: Vec<BTreeMap<String, f64>>,
}

fn reference(rules: &Rules, lines: &[Vec<u8>]) -> Reference {
    let mut streams: Vec<PartitionStream> =
        (0..PARTITIONS).map(|_| PartitionStream::new(TimerClock::StreamTime)).collect();
    let mut store = ModelStore::default();
    let mut reference = Reference {
        states: BTreeMap::new(),
        fires: vec![0; rules.rules.len()],
        points: vec![0.0; rules.rules.len()],
        entered: vec![0; rules.phases.len()],
        attributed: vec![BTreeMap::new(); rules.phases.len()],
    };
    for line in lines {
        let Ok(event) = json::decode(line, &DecodeLimits::default()) else {
            continue;
        };
        let partition = partition_for_key(event.contact.as_bytes(), PARTITIONS) as usize;
        let processed = streams[partition].process(rules, &mut store, &event);
        for fire in processed.attribution.fired {
            reference.fires[fire.rule] += 1;
            reference.points[fire.rule] += fire.points;
        }
        for conversion in processed.attribution.conversions {
            reference.entered[conversion.to] += 1;
            for (source, points) in conversion.contributions {
                *reference.attributed[conversion.to].entry(rules.source_name(source).to_owned()).or_default() += points;
            }
        }
    }
    reference.states = store.contacts().clone();
    reference
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_the_mock_cluster_equals_brute_force() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let (_cluster, bootstrap, names) = mock_broker("http-api", PARTITIONS);
    let rules = rules();
    let events = stream(23, 3_000, 250);
    let mut records: Vec<(Vec<u8>, Vec<u8>)> =
        events.iter().map(|event| (event.contact.as_bytes().to_vec(), json::encode(event))).collect();
    records.push((b"contact-0000001".to_vec(), b"{\"id\":\"broken\",\"contact\":".to_vec()));
    records.push((b"contact-0000002".to_vec(), br#"{"id":"no-type","contact":"contact-0000002","ts":1}"#.to_vec()));
    let lines: Vec<Vec<u8>> = records.iter().map(|(_, value)| value.clone()).collect();

    let state = tempfile::tempdir().unwrap();
    let config_path = state.path().join("leadscore.toml");
    let toml = names.config_toml(&bootstrap, &state.path().join("db"), PARTITIONS);
    std::fs::write(&config_path, format!("{toml}\n").replace("[http]\n", &format!("[http]\ntoken = \"{TOKEN}\"\n")))
        .unwrap();
    let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
    let store = leadscore::app::open_store(&config).unwrap();
    let status = Arc::new(Status::default());
    let instance = Arc::new(Instance::new(Arc::new(rules.clone()), store, status.clone(), PARTITIONS, config.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(leadscore::app::run_instance(instance.clone(), async {
        let _ = stopped.await;
    }));
    // The stream arrives once every processing thread holds its share of the partitions: a thread that
    // joined the group mid-stream would rebalance it, and rule statistics start from zero on a rebalance.
    let threads = config.processing.thread_count();
    let waiting = Instant::now();
    while !(status.ready()
        && status.owned().len() == PARTITIONS as usize
        && (0..threads).all(|thread| !status.owned_by(thread).is_empty()))
    {
        assert!(waiting.elapsed() < Duration::from_secs(60), "the processing threads never shared the partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (committed_bootstrap, group, input) = (bootstrap.clone(), names.group.clone(), names.input.clone());
    tokio::task::spawn_blocking(move || {
        let expected = produce_raw(&committed_bootstrap, &input, PARTITIONS, &records);
        wait_committed(&committed_bootstrap, &group, &input, &expected, Duration::from_secs(120))
    })
    .await
    .unwrap();
    let app = router(instance.clone());
    assert_eq!(get(&app, "/readyz", None).await.0, StatusCode::OK);
    let reference = reference(&rules, &lines);

    // The leaderboard equals the brute-force ranking at the time it was read, for every target and phase.
    let targets: Vec<Option<usize>> = (0..rules.groups.len()).map(Some).chain([None]).collect();
    let phases: Vec<Option<usize>> = [None].into_iter().chain((0..rules.phases.len()).map(Some)).collect();
    for target in &targets {
        for phase in &phases {
            let mut query = "limit=25".to_owned();
            if let Some(group) = target {
                query.push_str(&format!("&group={}", rules.groups[*group].name));
            }
            if let Some(phase) = phase {
                query.push_str(&format!("&phase={}", rules.phases[*phase].name));
            }
            let (code, body, text) = get(&app, &format!("/v1/leaderboard?{query}"), Some(TOKEN)).await;
            assert_eq!(code, StatusCode::OK, "{text}");
            let at = parse_rfc3339(body["at"].as_str().unwrap()).unwrap();
            let value = |state: &ContactState| {
                let at = at.max(state.clock_ms);
                match target {
                    Some(group) => state.group_value(&rules, *group, at),
                    None => state.total(&rules, at),
                }
            };
            // A group's ranking lists the contacts with points in it.
            let listed = |state: &ContactState| match target {
                Some(group) => BoardEntry::of(&rules, state).is_some_and(|entry| entry.ranks_in(*group)),
                None => state.disqualified.is_none(),
            };
            let mut brute: Vec<f64> = reference
                .states
                .values()
                .filter(|state| listed(state) && phase.is_none_or(|phase| state.phase == phase))
                .map(value)
                .collect();
            brute.sort_by(|a, b| b.total_cmp(a));
            let rows = body["contacts"].as_array().unwrap();
            assert_eq!(rows.len(), brute.len().min(25), "{query}");
            for (position, (row, expected)) in rows.iter().zip(&brute).enumerate() {
                let score = row["score"].as_f64().unwrap();
                assert!(close(score, *expected), "{query}: #{position} scores {score}, brute force {expected}");
                let state = &reference.states[row["contact"].as_str().unwrap()];
                assert!(close(score, value(state)), "{query}: {row} is not the contact's own value");
                assert_eq!(row["rank"].as_u64(), Some(position as u64 + 1));
            }
        }
    }

    // The grade filter keeps the total ranking's rows of that grade, each graded as the contact view does.
    let grades = rules.grades.unwrap();
    for letter in ["A", "B", "C", "D"] {
        let (code, body, text) = get(&app, &format!("/v1/leaderboard?limit=25&grade={letter}"), Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{text}");
        let at = parse_rfc3339(body["at"].as_str().unwrap()).unwrap();
        let mut brute: Vec<f64> = reference
            .states
            .values()
            .filter(|state| state.disqualified.is_none())
            .filter(|state| {
                grades.grade(state.group_value(&rules, grades.group, at.max(state.clock_ms))).letter() == letter
            })
            .map(|state| state.total(&rules, at.max(state.clock_ms)))
            .collect();
        brute.sort_by(|a, b| b.total_cmp(a));
        let rows = body["contacts"].as_array().unwrap();
        assert_eq!(rows.len(), brute.len().min(25), "grade {letter}");
        for (row, expected) in rows.iter().zip(&brute) {
            assert_eq!(row["grade"].as_str(), Some(letter), "{row}");
            assert!(close(row["score"].as_f64().unwrap(), *expected), "grade {letter}: {row} vs {expected}");
        }
    }

    // Rule statistics and conversion attribution equal the brute-force sums.
    let (code, body, text) = get(&app, "/v1/rules", Some(TOKEN)).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert_eq!(body["version"].as_str(), Some(rules.version.as_str()));
    for (index, rule) in rules.rules.iter().enumerate() {
        let report = &body["rules"][index];
        assert_eq!(report["id"].as_str(), Some(rule.id.as_str()));
        assert_eq!(report["fires"].as_u64(), Some(reference.fires[index]), "{}", rule.id);
        assert!(close(report["points"].as_f64().unwrap(), reference.points[index]), "{}: {report}", rule.id);
    }
    assert!(reference.entered.iter().sum::<u64>() > 0, "the stream should convert some contacts");
    for (index, phase) in rules.phases.iter().enumerate() {
        let report = &body["conversions"][index];
        assert_eq!(report["phase"].as_str(), Some(phase.name.as_str()));
        assert_eq!(report["entered"].as_u64(), Some(reference.entered[index]), "{}", phase.name);
        let served: BTreeMap<String, f64> = report["attribution"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| (line["source"].as_str().unwrap().to_owned(), line["points"].as_f64().unwrap()))
            .collect();
        let expected = &reference.attributed[index];
        assert_eq!(served.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{}", phase.name);
        for (source, points) in expected {
            assert!(close(served[source], *points), "{} {source}: {} vs {points}", phase.name, served[source]);
        }
    }

    // Explanations sum to their group values, and weighted to the total.
    for contact in reference.states.keys().take(40) {
        let (code, body, text) = get(&app, &format!("/v1/contacts/{contact}"), Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{text}");
        let mut weighted = 0.0;
        for (group, view) in rules.groups.iter().zip(body["groups"].as_array().unwrap()) {
            let value = view["value"].as_f64().unwrap();
            let sum: f64 =
                view["explanation"].as_array().unwrap().iter().map(|line| line["points"].as_f64().unwrap()).sum();
            assert!((sum - value).abs() < 1e-9, "{contact} {}: explanation {sum} vs value {value}", group.name);
            weighted += group.weight * value;
        }
        assert!((weighted - body["total"].as_f64().unwrap()).abs() < 1e-9, "{contact}: {text}");
        // The chart's series passes through every history entry's value and ends at the view.
        let (code, series, text) = get(&app, &format!("/v1/contacts/{contact}/series"), Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{text}");
        let points = series["points"].as_array().unwrap();
        let history = body["history"].as_array().unwrap();
        assert_eq!(series["events"].as_array().unwrap().len(), history.len(), "{contact}");
        let last = points.last().unwrap();
        let state = &reference.states[contact];
        let end = parse_rfc3339(series["at"].as_str().unwrap()).unwrap();
        assert_eq!(last["t"].as_i64(), Some(end), "{contact}");
        assert!(close(last["total"].as_f64().unwrap(), state.total(&rules, end)), "{contact}: {last}");
        assert!(points.windows(2).all(|pair| pair[0]["t"].as_i64() <= pair[1]["t"].as_i64()), "{contact}");
    }

    // Every metric the dashboard and the alerts use is exported (lag comes with the statistics interval).
    let used = dashboard_and_alert_metrics();
    let started = Instant::now();
    let missing = loop {
        leadscore::http::metrics::refresh(&instance).await;
        let (code, _, text) = get(&app, "/metrics", None).await;
        assert_eq!(code, StatusCode::OK);
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect();
        let missing: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
        if missing.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(missing.is_empty(), "the dashboard or the alerts use metrics the process does not export: {missing:?}");

    let _ = stop.send(());
    running.await.unwrap().unwrap_or_else(|err| panic!("leadscore run failed: {err}"));
}

/// Every `leadscore_*` name in the Grafana dashboard and the alert rules.
fn dashboard_and_alert_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["deploy/grafana/leadscore.json", "deploy/prometheus/alerts.yaml"] {
        let text = std::fs::read_to_string(manifest(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("leadscore_") {
            let tail = &rest[start..];
            let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 15, "found only {names:?}");
    names
}
