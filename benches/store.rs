//! Criterion benches of the runtime's state path on one core, with RocksDB and without Kafka:
//!
//! - `rocksdb/batch_write`: one task's atomic write of 1000 contact records with timers and meta;
//! - `engine_rocksdb/{json,protobuf}`: a partition task scoring batches of 1000 encoded events against
//!   RocksDB state (decode, read the contacts, score, encode the records and outputs, one write batch),
//!   as the processor does per poll, with each batch's offsets committed before the next.
//!
//! `cargo bench --bench store` prints events per second ("thrpt") for each.

#![allow(clippy::panic, reason = "a bench without its rules file or state directory cannot run")]

use std::cell::RefCell;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use leadscore::event::input::InputDecoder;
use leadscore::event::{DecodeLimits, json, protobuf};
use leadscore::generator::EventGenerator;
use leadscore::rules::Rules;
use leadscore::runtime::record::StoredContact;
use leadscore::runtime::record_cache::CacheBudget;
use leadscore::runtime::task::{InputRecord, PartitionTask, TaskSettings, WireFormat};
use leadscore::scoring;
use leadscore::store::{PartitionBatch, PartitionMeta, RocksOptions, RocksStore, StateStore};
use leadscore::stream::TimerClock;

const BATCH: usize = 1_000;
const CONTACTS: u64 = 100_000;
const START_MS: i64 = 1_772_366_400_000;

fn rules() -> Rules {
    Rules::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules.toml")))
        .unwrap_or_else(|err| panic!("{err}"))
}

fn open_store() -> (tempfile::TempDir, RocksStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store =
        RocksStore::open(&dir.path().join("state"), &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    (dir, store)
}

fn batch_write(c: &mut Criterion) {
    let rules = rules();
    let (_dir, store) = open_store();
    let mut generator = EventGenerator::new(3, CONTACTS, START_MS, 60_000);
    let mut group = c.benchmark_group("rocksdb");
    group.throughput(Throughput::Elements(BATCH as u64));
    let next = RefCell::new(0u64);
    group.bench_function("batch_write", |b| {
        b.iter_batched(
            || {
                let mut batch = PartitionBatch::new(0);
                for _ in 0..BATCH {
                    let event = generator.next_event();
                    let state = scoring::apply(&rules, None, &event).state;
                    let due = state.as_ref().and_then(|state| state.next_timer_ms);
                    let stored = StoredContact { state, offsets: vec![(1, 0)], ..StoredContact::default() };
                    if let Some(due) = due {
                        batch.timer_puts.push((due, event.contact.clone()));
                    }
                    batch.puts.push((event.contact, stored.encode(&rules)));
                }
                let mut next = next.borrow_mut();
                *next += BATCH as u64;
                batch.meta = Some(PartitionMeta {
                    input_offsets: vec![("events".into(), *next as i64)],
                    changelog_offset: None,
                    stream_time_ms: Some(START_MS),
                });
                batch
            },
            |batch| store.write(batch).unwrap_or_else(|err| panic!("{err}")),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn engine_rocksdb(c: &mut Criterion) {
    let rules = rules();
    let mut group = c.benchmark_group("engine_rocksdb");
    group.throughput(Throughput::Elements(BATCH as u64));
    for format in [WireFormat::Json, WireFormat::Protobuf] {
        let (_dir, store) = open_store();
        let settings = TaskSettings {
            inputs: vec!["events".into()],
            decoders: [match format {
                WireFormat::Json => InputDecoder::Json,
                WireFormat::Protobuf => InputDecoder::Protobuf,
            }]
            .into(),
            output_format: format,
            limits: DecodeLimits::default(),
            max_record_bytes: leadscore::config::LIBRDKAFKA_MESSAGE_MAX_BYTES,
            clock: TimerClock::StreamTime,
            record_cache: CacheBudget::default(),
            registry: None,
            internal: None,
            internal_account: None,
            partitions: 1,
        };
        let task =
            RefCell::new(PartitionTask::open(0, &store, &settings, vec![None]).unwrap_or_else(|err| panic!("{err}")));
        let mut generator = EventGenerator::new(5, CONTACTS, START_MS, 1_000);
        let mut offset = 0i64;
        let name = if format == WireFormat::Json { "json" } else { "protobuf" };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let records: Vec<InputRecord> = (0..BATCH)
                        .map(|_| {
                            let event = generator.next_event();
                            offset += 1;
                            let payload = match format {
                                WireFormat::Json => json::encode(&event),
                                WireFormat::Protobuf => protobuf::encode(&event),
                            };
                            InputRecord {
                                topic: 0,
                                offset,
                                key: Some(event.contact.into_bytes()),
                                payload: Some(payload),
                                headers: Vec::new(),
                            }
                        })
                        .collect();
                    // The previous batch was acknowledged and committed.
                    task.borrow_mut().committed(0, offset + 1 - BATCH as i64);
                    records
                },
                |records| {
                    let batch = task
                        .borrow_mut()
                        .process(&rules, &store, &settings, &records, true)
                        .unwrap_or_else(|err| panic!("{err}"));
                    store.write(batch.write).unwrap_or_else(|err| panic!("{err}"));
                    task.borrow_mut().written(batch.sequence);
                    batch.publish
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = batch_write, engine_rocksdb
}
criterion_main!(benches);
