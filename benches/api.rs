//! Criterion benches of the HTTP requests the web console makes, answered in process by the router over an
//! in-memory store that holds the demo's population: 5,000 contacts scored from 100,000 generated events
//! with `examples/rules.toml`, in 4 partitions. One contact, its series, the leaderboard (total, and
//! filtered by grade), the rules, and the what-if replay of 10,000 events of the demo's stream. The
//! console's target is every request under 100 ms.
//!
//! `cargo bench --bench api` prints the time per request.

#![allow(clippy::panic, clippy::unwrap_used, reason = "a bench without its data cannot run")]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use leadscore::app::Instance;
use leadscore::config::Config;
use leadscore::generator::EventGenerator;
use leadscore::hashing::partition_for_key;
use leadscore::http::router;
use leadscore::leaderboard::BoardEntry;
use leadscore::rules::Rules;
use leadscore::runtime::record::StoredContact;
use leadscore::runtime::status::Status;
use leadscore::scoring::{ContactState, apply};
use leadscore::store::{MemoryStore, PartitionBatch, StateStore};
use tower::ServiceExt;

const PARTITIONS: u32 = 4;
const CONTACTS: u64 = 5_000;
const EVENTS: usize = 100_000;

/// Builds one request of a case, anew for every iteration.
type MakeRequest = Box<dyn Fn() -> Request<Body>>;

/// The router of an instance that owns every partition of the scored population; and the top contact.
fn demo_instance() -> (Router, String) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules.toml")).unwrap();
    let rules = Arc::new(Rules::parse(&text, Path::new("examples/rules.toml")).unwrap());
    let now = leadscore::runtime::now_ms();
    let mut generator = EventGenerator::new(42, CONTACTS, now - EVENTS as i64 * 50, 50);
    let mut states: HashMap<String, ContactState> = HashMap::new();
    for _ in 0..EVENTS {
        let event = generator.next_event();
        let state = states.remove(&event.contact);
        if let Some(state) = apply(&rules, state, &event).state {
            states.insert(event.contact.clone(), state);
        }
    }
    let store = Arc::new(MemoryStore::new());
    let mut batches: Vec<PartitionBatch> = (0..PARTITIONS as i32).map(PartitionBatch::new).collect();
    for (contact, state) in &states {
        let partition = partition_for_key(contact.as_bytes(), PARTITIONS) as usize;
        batches[partition].puts.push((contact.clone(), StoredContact::fresh(Some(state.clone())).encode(&rules)));
    }
    for batch in batches {
        store.write(batch).unwrap();
    }
    let status = Arc::new(Status::default());
    status.set_owned(0, 0..PARTITIONS as i32);
    let instance = Arc::new(Instance::new(rules.clone(), store.clone(), status, PARTITIONS, Config::default()));
    for partition in 0..PARTITIONS as i32 {
        let never = std::sync::atomic::AtomicBool::new(false);
        let board = leadscore::leaderboard::build(&rules, store.as_ref(), partition, &never).unwrap().unwrap();
        instance.insights.leaderboard.open_partition(partition, board);
    }
    let top = states
        .values()
        .filter(|state| BoardEntry::of(&rules, state).is_some())
        .max_by(|a, b| a.total(&rules, now).total_cmp(&b.total(&rules, now)))
        .map(|state| state.contact.clone())
        .unwrap();
    (router(instance), top)
}

fn requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (app, top) = demo_instance();
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules.toml")).unwrap();
    let whatif = serde_json::json!({ "rules": rules.replace("points = 10\n", "points = 20\n") }).to_string();
    let get = |path: String| Request::builder().uri(path).body(Body::empty()).unwrap();
    let cases: Vec<(&str, MakeRequest)> = vec![
        (
            "contact",
            Box::new({
                let top = top.clone();
                move || get(format!("/v1/contacts/{top}"))
            }),
        ),
        (
            "series",
            Box::new({
                let top = top.clone();
                move || get(format!("/v1/contacts/{top}/series"))
            }),
        ),
        ("leaderboard", Box::new(move || get("/v1/leaderboard?limit=50".to_owned()))),
        ("leaderboard_grade", Box::new(move || get("/v1/leaderboard?limit=50&grade=B".to_owned()))),
        ("rules", Box::new(move || get("/v1/rules".to_owned()))),
        (
            "whatif_demo_stream",
            Box::new(move || {
                Request::builder()
                    .method("POST")
                    .uri("/v1/whatif")
                    .header("content-type", "application/json")
                    .body(Body::from(whatif.clone()))
                    .unwrap()
            }),
        ),
    ];
    let mut group = c.benchmark_group("console_requests");
    for (name, request) in &cases {
        let status = runtime.block_on(app.clone().oneshot(request())).unwrap().status();
        assert!(status.is_success(), "{name} answered {status}");
        group.bench_function(*name, |b| b.iter(|| runtime.block_on(app.clone().oneshot(request()))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = requests
}
criterion_main!(benches);
