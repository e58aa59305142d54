//! Criterion benches of the input formats on one core: the same generated events written as leadscore
//! JSON and protobuf, Segment, CloudEvents, Snowplow (TSV and JSON) and Debezium records, each decoded by
//! its topic decoder (framing check, mapping, validation) into events.
//!
//! `cargo bench --bench formats` prints records per second ("thrpt") per format; the mean record size of
//! each format goes to standard error first, since the formats carry different amounts of text.

#![allow(clippy::panic, reason = "a bench without its events cannot run")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadscore::event::mapping::render;
use leadscore::event::mapping::{Position, SourceRecord};
use leadscore::event::{DecodeLimits, Event};
use leadscore::generator::EventGenerator;

/// The allocator of the `leadscore` binary, so that the figures are those of what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 20_000;

fn decode_formats(c: &mut Criterion) {
    let mut generator = EventGenerator::new(42, 5_000, 1_772_366_400_000, 60_000);
    let events: Vec<Event> = (0..EVENTS).map(|_| generator.next_event()).collect();
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("decode_formats");
    group.throughput(Throughput::Elements(EVENTS as u64));
    let samples = render::samples(&events).unwrap_or_else(|err| panic!("{err}"));
    for render::FormatSample { name, decoder, records } in samples {
        let mean = records.iter().map(Vec::len).sum::<usize>() / records.len();
        let mut checked = false;
        group.bench_function(name, |b| {
            for payload in records.iter().filter(|_| !checked) {
                let position = Position::Line { file: name, line: 0 };
                let record = SourceRecord { payload, key: None, headers: &[], position };
                if let Err(err) = decoder.decode_value(&record, &limits) {
                    panic!("{name}: {err}: {}", String::from_utf8_lossy(payload));
                }
            }
            if !checked {
                eprintln!("{name}: {mean} bytes per record");
                checked = true;
            }
            b.iter(|| {
                for (line, payload) in records.iter().enumerate() {
                    let position = Position::Line { file: name, line };
                    let record = SourceRecord { payload, key: None, headers: &[], position };
                    drop(black_box(decoder.decode_value(&record, &limits)));
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = decode_formats
}
criterion_main!(benches);
