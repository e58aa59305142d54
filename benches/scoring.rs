//! Criterion benches of the hot path on one core: decode + score for JSON and protobuf input, and the
//! parts on their own (decode, rule matching, engine apply, state encode/decode).
//!
//! `cargo bench --bench scoring` prints events per second ("thrpt") for each.

#![allow(clippy::panic, reason = "a bench without its rules file cannot run")]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadscore::event::{DecodeLimits, Event, json, protobuf};
use leadscore::generator::EventGenerator;
use leadscore::offline::MemoryStore;
use leadscore::rules::Rules;
use leadscore::scoring::{self, codec};
use leadscore::stream::{ContactStore, PartitionStream, TimerClock};

const EVENTS: usize = 20_000;
const CONTACTS: u64 = 5_000;
const START_MS: i64 = 1_772_366_400_000;

fn setup() -> (Rules, Vec<Event>) {
    let rules = Rules::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules.toml")))
        .unwrap_or_else(|err| panic!("{err}"));
    let mut generator = EventGenerator::new(42, CONTACTS, START_MS, 60_000);
    let events = (0..EVENTS).map(|_| generator.next_event()).collect();
    (rules, events)
}

fn decode_and_score(c: &mut Criterion) {
    let (rules, events) = setup();
    let limits = DecodeLimits::default();
    let json_payloads: Vec<Vec<u8>> = events.iter().map(json::encode).collect();
    let proto_payloads: Vec<Vec<u8>> = events.iter().map(protobuf::encode).collect();

    let mut group = c.benchmark_group("decode_and_score");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("json", |b| {
        b.iter(|| {
            let mut store = MemoryStore::default();
            let mut partition = PartitionStream::new(TimerClock::StreamTime);
            for payload in &json_payloads {
                if let Ok(event) = json::decode(payload, &limits) {
                    black_box(partition.process(&rules, &mut store, &event));
                }
            }
        })
    });
    group.bench_function("protobuf", |b| {
        b.iter(|| {
            let mut store = MemoryStore::default();
            let mut partition = PartitionStream::new(TimerClock::StreamTime);
            for payload in &proto_payloads {
                if let Ok(event) = protobuf::decode(payload, &limits) {
                    black_box(partition.process(&rules, &mut store, &event));
                }
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("parts");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("decode_json", |b| {
        b.iter(|| json_payloads.iter().for_each(|payload| drop(black_box(json::decode(payload, &limits)))))
    });
    group.bench_function("decode_protobuf", |b| {
        b.iter(|| proto_payloads.iter().for_each(|payload| drop(black_box(protobuf::decode(payload, &limits)))))
    });
    group.bench_function("match_rules", |b| {
        b.iter(|| {
            let mut fired = 0usize;
            for event in &events {
                for index in rules.rules_for(&event.kind) {
                    fired += usize::from(rules.rules[*index].matches(event));
                }
            }
            black_box(fired)
        })
    });
    group.bench_function("engine_apply", |b| {
        b.iter(|| {
            let mut store = MemoryStore::default();
            for event in &events {
                let before = store.take(&event.contact);
                let applied = scoring::apply(&rules, before, event);
                if let Some(state) = applied.state {
                    store.save(state);
                } else {
                    store.remove(&event.contact);
                }
                black_box(applied.outputs);
            }
        })
    });
    let mut store = MemoryStore::default();
    let mut partition = PartitionStream::new(TimerClock::StreamTime);
    for event in &events {
        partition.process(&rules, &mut store, event);
    }
    let states: Vec<_> = store.contacts().values().cloned().collect();
    let encoded: Vec<(String, Vec<u8>)> =
        states.iter().map(|state| (state.contact.clone(), codec::encode(&rules, state))).collect();
    group.throughput(Throughput::Elements(states.len() as u64));
    group.bench_function("state_encode", |b| {
        b.iter(|| states.iter().for_each(|state| drop(black_box(codec::encode(&rules, state)))))
    });
    group.bench_function("state_decode", |b| {
        b.iter(|| encoded.iter().for_each(|(contact, bytes)| drop(black_box(codec::decode(&rules, contact, bytes)))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = decode_and_score
}
criterion_main!(benches);
