//! Criterion benches of the input formats on one core: the same generated events written as leadscore
//! JSON and protobuf, Segment, CloudEvents, Snowplow (TSV and JSON) and Debezium records, each decoded by
//! its topic decoder (framing check, mapping, validation) into events.
//!
//! `cargo bench --bench formats` prints records per second ("thrpt") per format; the mean record size of
//! each format goes to standard error first, since the formats carry different amounts of text.

#![allow(clippy::panic, reason = "a bench without its events cannot run")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadscore::event::input::InputDecoder;
use leadscore::event::mapping::render::{self, ChangeLog};
use leadscore::event::mapping::{InputFormat, Position, SourceRecord, TopicInput};
use leadscore::event::{DecodeLimits, Event, json, protobuf};
use leadscore::generator::EventGenerator;

const EVENTS: usize = 20_000;

/// Snowplow's structured events carry a phase change's phase, or an adjustment's points and reason, in
/// their property, value and label.
const SNOWPLOW: &str = r#"phase = "/se_property"
                          points = "/se_value"
                          reason = "/se_label""#;

fn decoder(format: InputFormat, toml_text: &str) -> InputDecoder {
    let mut input: TopicInput = toml::from_str(toml_text).unwrap_or_else(|err| panic!("{err}"));
    input.format = format;
    InputDecoder::for_topic(&input).unwrap_or_else(|err| panic!("{err}"))
}

fn formats(events: &[Event]) -> Vec<(&'static str, InputDecoder, Vec<Vec<u8>>)> {
    let mut table = ChangeLog::default();
    let text = |records: Vec<String>| records.into_iter().map(String::into_bytes).collect::<Vec<_>>();
    vec![
        ("json", decoder(InputFormat::Json, ""), events.iter().map(json::encode).collect()),
        ("protobuf", decoder(InputFormat::Protobuf, ""), events.iter().map(protobuf::encode).collect()),
        (
            "segment",
            decoder(
                InputFormat::Segment,
                r#"item = ["/properties/item", "/properties/url"]
                   phase = "/properties/phase"
                   points = "/properties/points"
                   reason = "/properties/reason""#,
            ),
            text(events.iter().map(render::segment).collect()),
        ),
        (
            "cloudevents",
            decoder(
                InputFormat::Cloudevents,
                r#"phase = "/data/phase"
                                                 points = "/data/points"
                                                 reason = "/data/reason""#,
            ),
            text(events.iter().map(render::cloudevent).collect()),
        ),
        (
            "snowplow_tsv",
            decoder(InputFormat::Snowplow, SNOWPLOW),
            text(events.iter().map(render::snowplow_tsv).collect()),
        ),
        (
            "snowplow_json",
            decoder(InputFormat::Snowplow, SNOWPLOW),
            text(events.iter().map(render::snowplow_json).collect()),
        ),
        (
            "debezium",
            decoder(InputFormat::Debezium, r#"contact = ["/after/email", "/before/email"]"#),
            text(events.iter().map(|event| table.change(event)).collect()),
        ),
    ]
}

fn decode_formats(c: &mut Criterion) {
    let mut generator = EventGenerator::new(42, 5_000, 1_772_366_400_000, 60_000);
    let events: Vec<Event> = (0..EVENTS).map(|_| generator.next_event()).collect();
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("decode_formats");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, decoder, records) in formats(&events) {
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
