//! Decodes a generated stream written in one input format, for instruction counts per record:
//!
//! ```sh
//! cargo build --release --example profile_formats
//! valgrind --tool=callgrind --toggle-collect='profile_formats::decode_all' \
//!     target/release/examples/profile_formats segment 20000
//! ```
//!
//! Formats: json, protobuf, segment, cloudevents, snowplow_tsv, snowplow_json, debezium. With a third
//! argument `native`, it decodes instead what that format's records map to, written as leadscore JSON:
//! the same events with the same attributes, so that the difference is what the mapping costs.

#![allow(clippy::panic, reason = "a profile run without its format cannot run")]

use std::hint::black_box;

use leadscore::event::input::InputDecoder;
use leadscore::event::mapping::render::samples;
use leadscore::event::mapping::{Mapped, Position, SourceRecord};
use leadscore::event::{DecodeLimits, Event};
use leadscore::generator::EventGenerator;

/// The allocator of the `leadscore` binary, so that the figures are those of what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Decodes every record once; returns how many became events.
#[inline(never)]
fn decode_all(decoder: &InputDecoder, records: &[Vec<u8>]) -> usize {
    let limits = DecodeLimits::default();
    let mut events = 0;
    for (line, payload) in records.iter().enumerate() {
        let record =
            SourceRecord { payload, key: None, headers: &[], position: Position::Line { file: "profile", line } };
        if let Ok(Mapped::Event(event)) = black_box(decoder.decode_value(&record, &limits)) {
            events += usize::from(!event.id.is_empty());
        }
    }
    events
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_else(|| "json".to_owned());
    let count: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(20_000);
    let mut generator = EventGenerator::new(42, 5_000, 1_772_366_400_000, 60_000);
    let events: Vec<Event> = (0..count).map(|_| generator.next_event()).collect();
    let native = args.next().is_some_and(|mode| mode == "native");
    let Some(sample) =
        samples(&events).unwrap_or_else(|err| panic!("{err}")).into_iter().find(|sample| sample.name == format)
    else {
        panic!("unknown format {format}");
    };
    let (decoder, records) = match native {
        true => (InputDecoder::Json, sample.as_leadscore_json().unwrap_or_else(|err| panic!("{err}"))),
        false => (sample.decoder, sample.records),
    };
    let bytes: usize = records.iter().map(Vec::len).sum();
    let decoded = decode_all(&decoder, &records);
    assert_eq!(decoded, count, "every record decodes");
    println!("{format}: {count} records, {} bytes per record", bytes / count);
}
