//! A task's batches end to end on an in-memory store: internal merge records applied once, aliases
//! forgotten with their survivor, and idle anonymous contacts leaving without a trace.

use std::path::Path;

use super::*;
use crate::event::input::InputDecoder;
use crate::event::{AttrValue, DecodeLimits, json};
use crate::runtime::record::StoredContact;
use crate::runtime::record_cache::CacheBudget;
use crate::store::MemoryStore;
use crate::stream::TimerClock;

const RULES: &str = r#"
[[groups]]
name = "engagement"
[[phases]]
name = "lead"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 10
"#;

fn settings() -> TaskSettings {
    TaskSettings {
        inputs: vec!["events".into(), "merges".into()],
        decoders: [InputDecoder::Json].into(),
        output_format: WireFormat::Json,
        limits: DecodeLimits::default(),
        max_record_bytes: 1 << 20,
        clock: TimerClock::StreamTime,
        record_cache: CacheBudget::default(),
        registry: None,
        internal: Some(1),
        partitions: 1,
    }
}

fn event(id: &str, contact: &str, kind: &str, merged: Option<&str>) -> Event {
    Event {
        id: id.into(),
        contact: contact.into(),
        kind: kind.into(),
        ts_ms: 1_772_366_400_000,
        item: None,
        attrs: merged.map(|merged| ("merged".to_owned(), AttrValue::Text(merged.into()))).into_iter().collect(),
        adjustment: None,
        phase: None,
    }
}

fn input(offset: i64, event: &Event) -> InputRecord {
    let key = Some(event.contact.clone().into_bytes());
    InputRecord { topic: 0, offset, key, payload: Some(json::encode(event)), headers: Vec::new() }
}

/// The internal records of a batch, as the internal topic hands them back from `first_offset` on.
fn internal(published: &[Publish], first_offset: i64) -> Vec<InputRecord> {
    published
        .iter()
        .filter(|record| matches!(record.destination, Destination::Internal(_)))
        .zip(first_offset..)
        .map(|(record, offset)| InputRecord {
            topic: 1,
            offset,
            key: Some(record.key.clone()),
            payload: record.payload.clone(),
            headers: Vec::new(),
        })
        .collect()
}

/// A replay of uncommitted input sends its internal records again, at new offsets of the internal
/// topic but with their origin: each is applied once, so a state is never merged in twice.
#[test]
fn a_copy_of_an_internal_record_is_applied_once() {
    let rules = Rules::parse(RULES, Path::new("merge.toml")).unwrap_or_else(|err| panic!("{err}"));
    let (settings, store) = (settings(), MemoryStore::new());
    let mut task = PartitionTask::open(0, &store, &settings, vec![None, None]).unwrap_or_else(|err| panic!("{err}"));
    let mut process = |records: &[InputRecord]| {
        task.process(&rules, &store, &settings, records).unwrap_or_else(|err| panic!("{err}"))
    };
    let scored = process(&[
        input(0, &event("a-1", "anonymous", "page_visit", None)),
        input(1, &event("k-1", "known", "page_visit", None)),
        input(2, &event("m-1", "known", "merge", Some("anonymous"))),
    ]);
    let request = internal(&scored.publish, 0);
    assert_eq!(request.len(), 1);

    // The request, and its copy.
    let copy = InputRecord { offset: 1, ..request[0].clone() };
    let released = process(&[request[0].clone(), copy]);
    assert_eq!(released.counts.replayed, 1);
    let transfer = internal(&released.publish, 2);
    assert_eq!(transfer.len(), 1, "one transfer for two copies of the request");

    // The transfer, and its copy.
    let copy = InputRecord { offset: 3, ..transfer[0].clone() };
    let merged = process(&[transfer[0].clone(), copy]);
    assert_eq!((merged.counts.scored, merged.counts.replayed), (1, 1));
    let totals: Vec<Option<f64>> = merged
        .publish
        .iter()
        .filter(|record| matches!(record.destination, Destination::Output(_)))
        .filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload.as_deref()?).ok())
        .filter(|output| output["type"] == "score_changed")
        .map(|output| output["new_total"].as_f64())
        .collect();
    assert_eq!(totals, [Some(20.0)], "the visits of both, counted once");

    // Erasing the survivor forgets its alias once its record is committed; a copy changes nothing.
    let erased = process(&[input(3, &event("x-1", "known", "erase", None))]);
    let forget = internal(&erased.publish, 4);
    assert_eq!(forget.len(), 1, "one alias to forget");
    let copy = InputRecord { offset: 5, ..forget[0].clone() };
    let forgotten = process(&[forget[0].clone(), copy]);
    assert_eq!((forgotten.counts.scored, forgotten.counts.ignored), (1, 1));
    let alias_record = forgotten.write.puts.iter().find(|(contact, _)| contact == "anonymous");
    let alias = alias_record.map(|(_, bytes)| StoredContact::decode(&rules, "anonymous", bytes));
    assert!(matches!(&alias, Some(Ok(stored)) if stored.state.is_none() && stored.merged_into.is_none()), "{alias:?}");
    task.committed(1, 6);
    let settled = task.settle_erasures(&rules, &settings);
    assert_eq!(settled.write.deletes, ["anonymous"]);
    let visit = task
        .process(&rules, &store, &settings, &[input(4, &event("a-2", "anonymous", "page_visit", None))])
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!((visit.counts.scored, internal(&visit.publish, 6).len()), (1, 0), "scored on a contact of its own");
}

/// An anonymous visitor idle for `expire_after` leaves on stream time: `contact_erased` with cause `idle`,
/// then, once its input is committed, a delete and a changelog tombstone.
#[test]
fn an_idle_anonymous_contact_leaves_with_a_tombstone_once_its_input_is_committed() {
    let text = [RULES, "[anonymous]\nattribute = \"anonymous_id\"\nexpire_after = \"30d\"\n"].concat();
    let rules = Rules::parse(&text, Path::new("anonymous.toml")).unwrap_or_else(|err| panic!("{err}"));
    let (settings, store) = (settings(), MemoryStore::new());
    let mut task = PartitionTask::open(0, &store, &settings, vec![None, None]).unwrap_or_else(|err| panic!("{err}"));
    let visitor = Event {
        attrs: vec![("anonymous_id".into(), AttrValue::Text("cookie-1".into()))],
        ..event("a-1", "cookie-1", "page_visit", None)
    };
    let later = Event { ts_ms: visitor.ts_ms + 31 * 86_400_000, ..event("k-1", "known", "page_visit", None) };
    let batch = task
        .process(&rules, &store, &settings, &[input(0, &visitor), input(1, &later)])
        .unwrap_or_else(|err| panic!("{err}"));
    let erased: Vec<serde_json::Value> = batch
        .publish
        .iter()
        .filter(|record| matches!(record.destination, Destination::Output(_)))
        .filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload.as_deref()?).ok())
        .filter(|output| output["type"] == "contact_erased")
        .collect();
    assert_eq!(erased.len(), 1);
    assert_eq!((&erased[0]["contact"], &erased[0]["cause"]), (&"cookie-1".into(), &"idle".into()));
    assert!(batch.write.deletes.is_empty(), "its input is not committed yet");

    task.committed(0, 2);
    let settled = task.settle_erasures(&rules, &settings);
    assert_eq!(settled.write.deletes, ["cookie-1"]);
    let tombstone = settled.publish.iter().find(|record| record.key == b"cookie-1");
    assert!(
        tombstone.is_some_and(|record| record.destination == Destination::Changelog && record.payload.is_none()),
        "{tombstone:?}"
    );
}
