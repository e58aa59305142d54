//! Batches that do not flush: the same records, timers, checkpoint and outputs as batches that each flush,
//! one record per contact, and nothing lost by a crash before the flush.

use std::path::Path;

use super::super::tests::{event, input};
use crate::event::Event;
use crate::rules::Rules;
use crate::runtime::task::{Destination, InputRecord, PartitionTask, TaskBatch, TaskSettings};
use crate::store::{MemoryStore, StateStore};

const T0: i64 = 1_772_366_400_000;

/// The task tests' scorecard with a decaying group and a threshold, so that contacts carry decay timers
/// that move with their events, and their task settings.
fn setup() -> (Rules, TaskSettings) {
    let decaying = super::super::tests::RULES
        .replace("name = \"engagement\"\n", "name = \"engagement\"\ndecay = \"exponential\"\nhalf_life = \"1d\"\n");
    let text =
        [&decaying, "[[thresholds]]\nname = \"warm\"\ntarget = \"engagement\"\nat = 15\nhysteresis = 5\n"].concat();
    let rules = Rules::parse(&text, Path::new("flush.toml")).unwrap_or_else(|err| panic!("{err}"));
    (rules, super::super::tests::settings())
}

/// Three batches of visits: `ana` in every one, `ben` in the first and third, `cy` in the second, an
/// erase of `cy` in the third.
fn batches() -> Vec<Vec<InputRecord>> {
    let visit = |offset: i64, contact: &str, hours: i64| {
        let kind = if contact == "cy" && hours > 2 { "erase" } else { "page_visit" };
        let event =
            Event { id: format!("e-{offset}"), ts_ms: T0 + hours * 3_600_000, ..event("", contact, kind, None) };
        input(offset, &event)
    };
    vec![
        vec![visit(0, "ana", 0), visit(1, "ben", 0), visit(2, "ana", 1)],
        vec![visit(3, "cy", 2), visit(4, "ana", 2)],
        vec![visit(5, "ben", 3), visit(6, "ana", 3), visit(7, "cy", 3)],
    ]
}

/// Scores `batches` on a task of `store`, flushing where `flush` says, and writes each batch as the
/// processor does once it is acknowledged (marking its input committed).
fn run(store: &MemoryStore, batches: &[Vec<InputRecord>], flush: impl Fn(usize) -> bool) -> Vec<TaskBatch> {
    let (rules, settings) = setup();
    let mut task = PartitionTask::open(0, store, &settings, vec![None; 3]).unwrap_or_else(|err| panic!("{err}"));
    let mut done = Vec::new();
    for (index, records) in batches.iter().enumerate() {
        let batch = task.process(&rules, store, &settings, records, flush(index)).unwrap_or_else(|err| panic!("{err}"));
        store.write(batch.write.clone()).unwrap_or_else(|err| panic!("{err}"));
        task.written(batch.sequence);
        for (topic, next) in &batch.commit {
            task.committed(*topic, *next);
        }
        done.push(batch);
    }
    done
}

fn changelog_keys(batch: &TaskBatch) -> Vec<String> {
    let records = batch.publish.iter().filter(|record| record.destination == Destination::Changelog);
    let mut keys: Vec<String> = records.map(|record| String::from_utf8_lossy(&record.key).into_owned()).collect();
    keys.sort();
    keys
}

fn output_ids(batches: &[TaskBatch]) -> Vec<String> {
    let outputs = batches.iter().flat_map(|batch| &batch.publish);
    let outputs = outputs.filter(|record| matches!(record.destination, Destination::Output(_)));
    let parsed =
        outputs.filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload.as_deref()?).ok());
    parsed.map(|output| output["id"].as_str().unwrap_or_default().to_owned()).collect()
}

/// What a store holds for the contacts of [`batches`], its timers and its checkpoint's input offsets.
type Stored = (Vec<Option<Vec<u8>>>, Vec<(i64, String)>, Option<Vec<(String, i64)>>);

fn stored(store: &MemoryStore) -> Stored {
    let contacts = ["ana", "ben", "cy"].map(|contact| store.get(0, contact).unwrap_or_else(|err| panic!("{err}")));
    let timers = store.timers(0).unwrap_or_else(|err| panic!("{err}"));
    let meta = store.meta(0).unwrap_or_else(|err| panic!("{err}")).map(|meta| meta.input_offsets);
    (contacts.to_vec(), timers, meta)
}

#[test]
fn batches_that_wait_for_a_flush_write_what_flushing_batches_write_once_per_contact() {
    let (each, once) = (MemoryStore::new(), MemoryStore::new());
    let flushed = run(&each, &batches(), |_| true);
    let deferred = run(&once, &batches(), |index| index == 2);

    for batch in &deferred[..2] {
        assert!(batch.write.is_empty(), "{:?}", batch.write);
        assert!(changelog_keys(batch).is_empty() && batch.commit.is_empty());
        assert!(!batch.publish.iter().any(|record| record.destination == Destination::Checkpoint));
    }
    assert_eq!(changelog_keys(&deferred[2]), ["ana", "ben", "cy"], "one record per contact");
    assert_eq!(deferred[2].commit, [(0, 8)]);
    let per_batch: usize = flushed.iter().map(|batch| changelog_keys(batch).len()).sum();
    assert_eq!(per_batch, 7, "ana three times, ben and cy twice");

    assert_eq!(output_ids(&deferred), output_ids(&flushed));
    assert_eq!(stored(&once), stored(&each));
    let (contacts, timers, _) = stored(&once);
    assert!(contacts[0].is_some() && contacts[1].is_some() && contacts[2].is_some(), "cy's erasure waits");
    assert_eq!(timers.iter().map(|(_, contact)| contact.as_str()).collect::<Vec<_>>(), ["ben", "ana"], "{timers:?}");
}

#[test]
fn a_crash_before_the_flush_scores_the_unflushed_input_again_with_the_same_outputs() {
    let store = MemoryStore::new();
    let all = batches();
    let first = run(&store, &all[..1], |_| true);
    let lost = run(&store, &all[1..2], |_| false);
    assert_eq!(stored(&store).2, Some(vec![("events".to_owned(), 3)]), "the checkpoint of the first batch");

    // A new task on the same store replays the second batch, then flushes with the third.
    let after = run(&store, &all[1..], |index| index == 1);
    assert_eq!(output_ids(&after[..1]), output_ids(&lost), "the same outputs, with their ids");

    let reference = MemoryStore::new();
    let flushed = run(&reference, &all, |_| true);
    assert_eq!(stored(&store), stored(&reference));
    let mut ids = output_ids(&first);
    ids.extend(output_ids(&after));
    assert_eq!(ids, output_ids(&flushed));
}
