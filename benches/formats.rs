//! Criterion benches of the input formats on one core: the same generated events written as leadscore
//! JSON and protobuf, Segment, CloudEvents, Snowplow (TSV and JSON) and Debezium records, each decoded by
//! its topic decoder (framing check, mapping, validation) into events.
//!
//! `cargo bench --bench formats` prints records per second ("thrpt") per format; the mean record size of
//! each format goes to standard error first, since the formats carry different amounts of text. Each mapped
//! format is followed by `<format>_as_json`: what its records map to, written as leadscore JSON and decoded
//! as such, so that the two differ by what the mapping costs.

#![allow(clippy::panic, reason = "a bench without its events cannot run")]

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use leadscore::event::input::InputDecoder;
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
    for sample in samples {
        bench_decoder(&mut group, sample.name, &sample.decoder, &sample.records, &limits);
        if matches!(sample.decoder, InputDecoder::Mapped(_)) {
            let native = sample.as_leadscore_json().unwrap_or_else(|err| panic!("{err}"));
            bench_decoder(&mut group, &format!("{}_as_json", sample.name), &InputDecoder::Json, &native, &limits);
        }
    }
    group.finish();
}

/// Decodes every record per iteration; first checks that each decodes, and prints their mean size.
fn bench_decoder(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    decoder: &InputDecoder,
    records: &[Vec<u8>],
    limits: &DecodeLimits,
) {
    for (line, payload) in records.iter().enumerate() {
        let record = SourceRecord { payload, key: None, headers: &[], position: Position::Line { file: name, line } };
        if let Err(err) = decoder.decode_value(&record, limits) {
            panic!("{name}: {err}: {}", String::from_utf8_lossy(payload));
        }
    }
    eprintln!("{name}: {} bytes per record", records.iter().map(Vec::len).sum::<usize>() / records.len());
    group.bench_function(name, |b| {
        b.iter(|| {
            for (line, payload) in records.iter().enumerate() {
                let position = Position::Line { file: name, line };
                let record = SourceRecord { payload, key: None, headers: &[], position };
                drop(black_box(decoder.decode_value(&record, limits)));
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = decode_formats
}
criterion_main!(benches);
