//! A task's batches end to end on an in-memory store: internal merge records applied once, aliases
//! forgotten with their survivor, idle anonymous contacts leaving without a trace, and contacts' changes
//! reaching their accounts once, as the offline model has them.

use std::path::Path;

use super::*;
use crate::event::input::InputDecoder;
use crate::event::{AttrValue, DecodeLimits, json};
use crate::runtime::record::{Route, StoredContact};
use crate::runtime::record_cache::CacheBudget;
use crate::store::MemoryStore;
use crate::stream::TimerClock;

pub(super) const RULES: &str = r#"
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

pub(super) fn settings() -> TaskSettings {
    TaskSettings {
        inputs: vec!["events".into(), "merges".into(), "accounts".into()],
        decoders: [InputDecoder::Json].into(),
        output_format: WireFormat::Json,
        limits: DecodeLimits::default(),
        max_record_bytes: 1 << 20,
        clock: TimerClock::StreamTime,
        record_cache: CacheBudget::default(),
        registry: None,
        internal: Some(1),
        internal_account: Some(2),
        partitions: 1,
    }
}

pub(super) fn event(id: &str, contact: &str, kind: &str, merged: Option<&str>) -> Event {
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

pub(super) fn input(offset: i64, event: &Event) -> InputRecord {
    let key = Some(event.contact.clone().into_bytes());
    InputRecord { topic: 0, offset, key, payload: Some(json::encode(event)), headers: Vec::new() }
}

/// The internal merge records of a batch, as their topic hands them back from `first_offset` on.
fn internal(published: &[Publish], first_offset: i64) -> Vec<InputRecord> {
    internal_of(InternalTopic::Merge, published, first_offset)
}

/// The records of a batch for one internal topic, as it hands them back from `first_offset` on.
fn internal_of(topic: InternalTopic, published: &[Publish], first_offset: i64) -> Vec<InputRecord> {
    let index = match topic {
        InternalTopic::Merge => 1,
        InternalTopic::Account => 2,
    };
    published
        .iter()
        .filter(|record| matches!(record.destination, Destination::Internal(to, _) if to == topic))
        .zip(first_offset..)
        .map(|(record, offset)| InputRecord {
            topic: index,
            offset,
            key: Some(record.key.clone()),
            payload: record.payload.clone(),
            headers: Vec::new(),
        })
        .collect()
}

/// The merge tests' scorecard, task settings and an empty store.
fn merge_rules_and_store() -> (Rules, TaskSettings, MemoryStore) {
    let rules = Rules::parse(RULES, Path::new("merge.toml")).unwrap_or_else(|err| panic!("{err}"));
    (rules, settings(), MemoryStore::new())
}

/// Partition 0's task, opened on `store`.
fn open(store: &MemoryStore, settings: &TaskSettings) -> PartitionTask {
    PartitionTask::open(0, store, settings, vec![None; 3]).unwrap_or_else(|err| panic!("{err}"))
}

/// The opening of the merge tests: a visit of each of two contacts, then `anonymous` merged into `known`.
fn visits_and_merge() -> [InputRecord; 3] {
    [
        input(0, &event("a-1", "anonymous", "page_visit", None)),
        input(1, &event("k-1", "known", "page_visit", None)),
        input(2, &event("m-1", "known", "merge", Some("anonymous"))),
    ]
}

/// A replay of uncommitted input sends its internal records again, at new offsets of the internal
/// topic but with their origin: each is applied once, so a state is never merged in twice.
#[test]
fn a_copy_of_an_internal_record_is_applied_once() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    let mut process = |records: &[InputRecord]| {
        task.process(&rules, &store, &settings, records, true).unwrap_or_else(|err| panic!("{err}"))
    };
    let scored = process(&visits_and_merge());
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
    // It waits until every topic that stamped it is committed: the merges, then the events.
    task.committed(1, 6);
    assert!(task.flush(&rules, &settings).write.deletes.is_empty(), "its visit is not committed");
    task.committed(0, 4);
    let settled = task.flush(&rules, &settings);
    assert_eq!(settled.write.deletes, ["known", "anonymous"]);
    let visit = task
        .process(&rules, &store, &settings, &[input(4, &event("a-2", "anonymous", "page_visit", None))], true)
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
    let mut task = PartitionTask::open(0, &store, &settings, vec![None; 3]).unwrap_or_else(|err| panic!("{err}"));
    let visitor = Event {
        attrs: vec![("anonymous_id".into(), AttrValue::Text("cookie-1".into()))],
        ..event("a-1", "cookie-1", "page_visit", None)
    };
    let later = Event { ts_ms: visitor.ts_ms + 31 * 86_400_000, ..event("k-1", "known", "page_visit", None) };
    let batch = task
        .process(&rules, &store, &settings, &[input(0, &visitor), input(1, &later)], true)
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
    let settled = task.flush(&rules, &settings);
    assert_eq!(settled.write.deletes, ["cookie-1"]);
    let tombstone = settled.publish.iter().find(|record| record.key == b"cookie-1");
    assert!(
        tombstone.is_some_and(|record| record.destination == Destination::Changelog && record.payload.is_none()),
        "{tombstone:?}"
    );
}

/// Contacts report their changes through the internal account topic; the account applies each once,
/// also when a replay sends copies, and publishes what the offline model publishes, id for id.
#[test]
fn contacts_changes_reach_their_account_once_as_the_model_has_them() {
    let text = [RULES, "[accounts]\nattribute = \"account_id\"\n[[accounts.thresholds]]\nname = \"busy\"\nsum = 25\n"]
        .concat();
    let rules = Rules::parse(&text, Path::new("accounts.toml")).unwrap_or_else(|err| panic!("{err}"));
    let (settings, store) = (settings(), MemoryStore::new());
    let mut task =
        PartitionTask::open(0, &store, &settings, vec![None, None, None]).unwrap_or_else(|err| panic!("{err}"));
    let at = |id: &str, contact: &str, account: &str, hours: i64| Event {
        ts_ms: 1_772_366_400_000 + hours * 3_600_000,
        attrs: vec![("account_id".into(), AttrValue::Text(account.into()))],
        ..event(id, contact, "page_visit", None)
    };
    let events = [
        at("e-1", "ana", "acme", 0),
        at("e-2", "ben", "acme", 1),
        at("e-3", "ana", "acme", 2),
        at("e-4", "ben", "globex", 3),
        event("e-5", "ana", "erase", None),
    ];
    let inputs: Vec<InputRecord> = events.iter().zip(0..).map(|(event, offset)| input(offset, event)).collect();
    let scored = task.process(&rules, &store, &settings, &inputs, true).unwrap_or_else(|err| panic!("{err}"));
    let updates = internal_of(InternalTopic::Account, &scored.publish, 0);
    assert_eq!(updates.len(), 6, "ana 2 upserts and a leave, ben 2 upserts and a leave");

    // The updates, then a replay's copies of them: the copies change nothing.
    let copies: Vec<InputRecord> =
        updates.iter().zip(6..).map(|(update, offset)| InputRecord { offset, ..update.clone() }).collect();
    let applied = task.process(&rules, &store, &settings, &updates, true).unwrap_or_else(|err| panic!("{err}"));
    let again = task.process(&rules, &store, &settings, &copies, true).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!((applied.counts.scored, again.counts.replayed, again.counts.outputs), (6, 6, 0));

    let mut model = crate::offline::OfflineScorer::new(&rules, 1);
    for event in &events {
        model.score_line(&json::encode(event)).unwrap_or_else(|err| panic!("{err}"));
    }
    let expected: Vec<String> = model.take_account_outputs().iter().map(|output| output.id.clone()).collect();
    let published: Vec<String> = applied
        .publish
        .iter()
        .filter(|record| record.destination == Destination::Output(Route::Account))
        .filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload.as_deref()?).ok())
        .map(|output| output["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(published, expected);

    // The accounts' records went to RocksDB's batch and the changelog under their own keys; acme has no
    // members left but keeps what it applied.
    let acme = applied.write.puts.iter().find(|(key, _)| key == "\0account:acme");
    let (state, origins) = acme
        .and_then(|(_, bytes)| crate::accounts::codec::decode(&rules, "acme", bytes).ok())
        .unwrap_or_else(|| panic!("no record of acme"));
    assert!(state.members.is_empty() && !origins.is_empty(), "{state:?} {origins:?}");
    let globex = model.accounts().accounts().get("globex").map(|account| account.members.len());
    assert_eq!(globex, Some(1));
}

/// On the wall clock (the default), an account's decay-driven fall fires on the task's tick, at its exact
/// millisecond, and its record goes to the write and the changelog.
#[test]
fn on_the_wall_clock_an_account_falls_on_a_tick_at_its_millisecond() {
    let decaying = RULES
        .replace("name = \"engagement\"\n", "name = \"engagement\"\ndecay = \"exponential\"\nhalf_life = \"1d\"\n");
    let text =
        [&decaying, "[accounts]\nattribute = \"account_id\"\n[[accounts.thresholds]]\nname = \"busy\"\nsum = 15\n"]
            .concat();
    let rules = Rules::parse(&text, Path::new("decaying.toml")).unwrap_or_else(|err| panic!("{err}"));
    let settings = TaskSettings { clock: TimerClock::WallClock, ..settings() };
    let store = MemoryStore::new();
    let mut task = PartitionTask::open(0, &store, &settings, vec![None; 3]).unwrap_or_else(|err| panic!("{err}"));
    let t0 = 1_772_366_400_000;
    let visit = |id: &str, contact: &str| Event {
        attrs: vec![("account_id".into(), AttrValue::Text("acme".into()))],
        ts_ms: t0,
        ..event(id, contact, "page_visit", None)
    };
    let scored = task
        .process(&rules, &store, &settings, &[input(0, &visit("e-1", "ana")), input(1, &visit("e-2", "ben"))], true)
        .unwrap_or_else(|err| panic!("{err}"));
    let updates = internal_of(InternalTopic::Account, &scored.publish, 0);
    let applied = task.process(&rules, &store, &settings, &updates, true).unwrap_or_else(|err| panic!("{err}"));
    let account_outputs = |batch: &TaskBatch| -> Vec<serde_json::Value> {
        batch
            .publish
            .iter()
            .filter(|record| record.destination == Destination::Output(Route::Account))
            .filter_map(|record| serde_json::from_slice(record.payload.as_deref()?).ok())
            .collect()
    };
    let up: Vec<serde_json::Value> =
        account_outputs(&applied).into_iter().filter(|output| output["type"] == "account_threshold_crossed").collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["direction"], "up");
    assert_eq!(task.pending_timers(), 1, "the account's fall is due");

    // 20 points halve in a day: they are below 15 from t0 + log2(4/3) days on.
    let falls = t0 + (86_400_000.0 * (4.0_f64 / 3.0).log2()).ceil() as i64;
    let early = task.tick(&rules, &store, &settings, falls - 1, true).unwrap_or_else(|err| panic!("{err}"));
    assert!(account_outputs(&early).is_empty(), "not due yet");
    let fallen = task.tick(&rules, &store, &settings, t0 + 2 * 86_400_000, true).unwrap_or_else(|err| panic!("{err}"));
    let down = account_outputs(&fallen);
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!((&down[0]["direction"], &down[0]["id"]), (&"down".into(), &format!("acme:busy:down:{falls}").into()));
    assert!(fallen.write.puts.iter().any(|(key, _)| key == "\0account:acme"), "{:?}", fallen.write.puts);
    assert!(
        fallen
            .publish
            .iter()
            .any(|record| record.destination == Destination::Changelog && record.key == b"\0account:acme")
    );
    assert_eq!(task.pending_timers(), 0);
    let later = task.tick(&rules, &store, &settings, t0 + 3 * 86_400_000, true).unwrap_or_else(|err| panic!("{err}"));
    assert!(account_outputs(&later).is_empty());
}

/// The outputs of a batch, as JSON.
fn outputs(batch: &TaskBatch) -> Vec<serde_json::Value> {
    batch
        .publish
        .iter()
        .filter(|record| matches!(record.destination, Destination::Output(_)))
        .filter_map(|record| serde_json::from_slice(record.payload.as_deref()?).ok())
        .collect()
}

/// The record a batch wrote for `contact`, if it wrote one.
fn written(rules: &Rules, batch: &TaskBatch, contact: &str) -> Option<StoredContact> {
    let (_, bytes) = batch.write.puts.iter().find(|(key, _)| key == contact)?;
    StoredContact::decode(rules, contact, bytes).ok()
}

/// A survivor erased while the merged contact's state is on its way drops that state when it arrives
/// (and a copy of it), forgets the merged contact's id, and is deleted once it has had every answer.
#[test]
fn a_state_that_arrives_after_its_survivor_was_erased_is_dropped_and_its_id_forgotten() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    let mut process = |records: &[InputRecord]| {
        task.process(&rules, &store, &settings, records, true).unwrap_or_else(|err| panic!("{err}"))
    };
    let scored = process(&visits_and_merge());
    let request = internal(&scored.publish, 0);
    let awaiting = written(&rules, &scored, "known").map(|stored| stored.awaiting);
    assert_eq!(awaiting, Some(vec!["anonymous".to_owned()]));

    // The erasure names the contact it awaits among its aliases, and forgets it after the request.
    let erased = process(&[input(3, &event("x-1", "known", "erase", None))]);
    let listed: Vec<serde_json::Value> =
        outputs(&erased).into_iter().filter(|output| output["type"] == "contact_erased").collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["aliases"], serde_json::json!(["anonymous"]));
    let forget = internal(&erased.publish, 1);
    assert_eq!(forget.len(), 1);
    let kept = written(&rules, &erased, "known").unwrap_or_else(|| panic!("the record waits for the answer"));
    assert_eq!((kept.state, kept.refused), (None, vec!["anonymous".to_owned()]));

    let released = process(&[request[0].clone(), forget[0].clone()]);
    assert_eq!(released.counts.scored, 2, "released, then forgotten");
    let answer = internal(&released.publish, 2);
    assert_eq!(answer.len(), 1);
    let copy = InputRecord { offset: 3, ..answer[0].clone() };
    let dropped = process(&[answer[0].clone(), copy]);
    assert_eq!((dropped.counts.ignored, dropped.counts.replayed, dropped.counts.scored), (1, 1, 0));
    assert!(outputs(&dropped).is_empty(), "{:?}", outputs(&dropped));
    let settled = written(&rules, &dropped, "known").unwrap_or_else(|| panic!("no record of known"));
    assert!(settled.state.is_none() && settled.refused.is_empty(), "{settled:?}");
    // The drop forgets the merged id again: already forgotten, it changes nothing.
    let again = process(&internal(&dropped.publish, 4));
    assert_eq!((again.counts.scored, again.counts.ignored), (0, 1));

    task.committed(0, 4);
    task.committed(1, 5);
    let mut deletes = task.flush(&rules, &settings).write.deletes;
    deletes.sort();
    assert_eq!(deletes, ["anonymous", "known"]);
    let visits = task
        .process(
            &rules,
            &store,
            &settings,
            &[
                input(4, &event("a-2", "anonymous", "page_visit", None)),
                input(5, &event("k-2", "known", "page_visit", None)),
            ],
            true,
        )
        .unwrap_or_else(|err| panic!("{err}"));
    let totals: Vec<(String, f64)> = outputs(&visits)
        .iter()
        .filter(|output| output["type"] == "score_changed")
        .map(|output| {
            (output["contact"].as_str().unwrap_or_default().to_owned(), output["new_total"].as_f64().unwrap_or(0.0))
        })
        .collect();
    assert_eq!(totals, [("anonymous".to_owned(), 10.0), ("known".to_owned(), 10.0)], "each starts afresh");
}

/// A merged contact without state answers all the same: it becomes an alias of the survivor, and goes
/// with it when the survivor is erased.
#[test]
fn a_merged_contact_without_state_becomes_an_alias_that_goes_with_its_survivor() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    let mut process = |records: &[InputRecord]| {
        task.process(&rules, &store, &settings, records, true).unwrap_or_else(|err| panic!("{err}"))
    };
    let scored = process(&[
        input(0, &event("k-1", "known", "page_visit", None)),
        input(1, &event("m-1", "known", "merge", Some("ghost"))),
    ]);
    let answer = internal(&process(&internal(&scored.publish, 0)).publish, 1);
    let adopted = process(&answer);
    let known = written(&rules, &adopted, "known").and_then(|stored| stored.state);
    assert_eq!(known.map(|state| state.merged_ids), Some(vec!["ghost".to_owned()]));
    assert!(outputs(&adopted).is_empty());

    let erased = process(&[input(2, &event("x-1", "known", "erase", None))]);
    let forget = internal(&erased.publish, 2);
    assert_eq!(forget.iter().map(|record| record.key.clone()).collect::<Vec<_>>(), [Some(b"ghost".to_vec())]);
}

/// A contact erased and then seen again before its erasure is committed keeps its new record when the
/// commit comes.
#[test]
fn a_contact_seen_again_after_its_erasure_keeps_its_new_record() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    let first = [input(0, &event("v-1", "ana", "page_visit", None)), input(1, &event("x-1", "ana", "erase", None))];
    task.process(&rules, &store, &settings, &first, true).unwrap_or_else(|err| panic!("{err}"));
    let again = [input(2, &event("v-2", "ana", "page_visit", None))];
    let revived = task.process(&rules, &store, &settings, &again, true).unwrap_or_else(|err| panic!("{err}"));
    assert!(written(&rules, &revived, "ana").is_some_and(|stored| stored.state.is_some()));
    task.committed(0, 3);
    assert!(!task.erasure_due());
    assert!(task.flush(&rules, &settings).write.deletes.is_empty());
}

/// A contact keeps at most `MAX_ALIAS_BYTES` of merged ids: a merge that would bring more is declined
/// where it is found out (by the merged contact, which knows its own aliases, or by a survivor already
/// full), with a dead letter that says why, and both contacts stay apart.
#[test]
fn a_merge_past_the_aliases_a_contact_keeps_is_declined_with_a_dead_letter() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    let visits =
        [input(0, &event("v-0", "known", "page_visit", None)), input(1, &event("v-1", "other", "page_visit", None))];
    task.process(&rules, &store, &settings, &visits, true).unwrap_or_else(|err| panic!("{err}"));
    let (mut next_input, mut next_internal) = (2, 0);
    // Runs a merge event and the internal records it leads to; returns every batch's output.
    let mut merge = |survivor: &str, merged: &str| {
        let id = format!("m-{next_input}");
        let mut batches = vec![
            task.process(
                &rules,
                &store,
                &settings,
                &[input(next_input, &event(&id, survivor, "merge", Some(merged)))],
                true,
            )
            .unwrap_or_else(|err| panic!("{err}")),
        ];
        next_input += 1;
        loop {
            let records = internal(&batches[batches.len() - 1].publish, next_internal);
            if records.is_empty() {
                return batches;
            }
            next_internal += records.len() as i64;
            batches.push(task.process(&rules, &store, &settings, &records, true).unwrap_or_else(|err| panic!("{err}")));
        }
    };
    let long = |n: usize| format!("{}{n:04}", "x".repeat(3996));
    let dead_letters = |batches: &[TaskBatch]| -> Vec<String> {
        let headers = batches
            .iter()
            .flat_map(|batch| &batch.publish)
            .filter(|record| record.destination == Destination::DeadLetter);
        headers
            .flat_map(|record| &record.headers)
            .filter(|(name, _)| name == "leadscore.error")
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect()
    };
    for n in 0..15 {
        assert!(dead_letters(&merge("known", &long(n))).is_empty(), "alias {n} fits");
    }
    // 15 ids of 4,000 bytes take 60,045 bytes: a contact bringing two more is declined by itself.
    assert!(dead_letters(&merge("other", &long(100))).is_empty());
    assert!(dead_letters(&merge("other", &long(101))).is_empty());
    let declined = dead_letters(&merge("known", "other"));
    assert!(declined.len() == 1 && declined[0].starts_with("merge declined: its survivor would keep"), "{declined:?}");
    // One more without aliases fits; then the survivor is full and asks for no more.
    assert!(dead_letters(&merge("known", &long(200))).is_empty());
    let full = dead_letters(&merge("known", &long(201)));
    assert!(full.len() == 1 && full[0].starts_with("merge declined: its survivor would keep"), "{full:?}");
    let visit = task
        .process(&rules, &store, &settings, &[input(100, &event("v-2", "other", "page_visit", None))], true)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(internal(&visit.publish, 0).is_empty(), "the declined contact is scored on its own");
}

/// The record of `key` among internal records.
fn keyed(records: &[InputRecord], key: &str) -> InputRecord {
    let found = records.iter().find(|record| record.key.as_deref() == Some(key.as_bytes()));
    found.cloned().unwrap_or_else(|| panic!("no internal record for {key}"))
}

/// `anonymous` is asked to merge into `known`, and `known` into `target`, which takes over the wait for
/// `anonymous`'s answer; `target` is erased and `known` forgotten before that answer arrives. `known`
/// drops the answer when it comes and declines it to `target` at once, so that every record goes.
#[test]
fn an_answer_awaited_through_a_forgotten_alias_is_declined_to_its_erased_survivor() {
    let (rules, settings, store) = merge_rules_and_store();
    let mut task = open(&store, &settings);
    // Internal records are handed to the task in the order of the scenario, as partitions of their own
    // would deliver them, at the internal topic's next offsets.
    let mut next = 0;
    let mut process = |records: &[InputRecord]| {
        let records: Vec<InputRecord> = records
            .iter()
            .map(|record| match record.topic {
                0 => record.clone(),
                _ => {
                    next += 1;
                    InputRecord { offset: next, ..record.clone() }
                }
            })
            .collect();
        task.process(&rules, &store, &settings, &records, true).unwrap_or_else(|err| panic!("{err}"))
    };
    let opened = process(&[
        input(0, &event("a-1", "anonymous", "page_visit", None)),
        input(1, &event("k-1", "known", "page_visit", None)),
        input(2, &event("t-1", "target", "page_visit", None)),
        input(3, &event("m-1", "known", "merge", Some("anonymous"))),
        input(4, &event("m-2", "target", "merge", Some("known"))),
    ]);
    let requests = internal(&opened.publish, 0);
    let released = process(&[keyed(&requests, "known")]);
    let taken = process(&internal(&released.publish, 0));
    let awaiting = written(&rules, &taken, "target").map(|stored| stored.awaiting);
    assert_eq!(awaiting, Some(vec!["anonymous".to_owned()]), "target took over the wait");
    // anonymous answers known; the answer is on its way while target is erased.
    let answer = internal(&process(&[keyed(&requests, "anonymous")]).publish, 0);

    let erased = process(&[input(5, &event("x-1", "target", "erase", None))]);
    let forgets = internal(&erased.publish, 0);
    let forgotten = process(&[keyed(&forgets, "known"), keyed(&forgets, "anonymous")]);
    assert_eq!(forgotten.counts.scored, 2, "both aliases are forgotten");
    let declined = internal(&forgotten.publish, 0);
    assert_eq!(declined.len(), 1, "known declines anonymous's answer to target");
    let cleared = process(&declined);
    let target = written(&rules, &cleared, "target").unwrap_or_else(|| panic!("no record of target"));
    assert!(target.state.is_none() && target.refused.is_empty() && target.awaiting.is_empty(), "{target:?}");

    // The answer reaches known, which drops it: nothing comes back.
    let dropped = process(&answer);
    assert_eq!(dropped.counts.ignored, 1);
    assert!(outputs(&dropped).is_empty(), "{:?}", outputs(&dropped));
    let again = process(&internal(&dropped.publish, 0));
    assert_eq!(again.counts.ignored, 1, "anonymous was forgotten already");

    task.committed(0, 6);
    task.committed(1, 100);
    let mut deletes = task.flush(&rules, &settings).write.deletes;
    deletes.sort();
    assert_eq!(deletes, ["anonymous", "known", "target"]);
}

/// An account's record stays decoded in the task's cache once its batch is written: the next update
/// reads nothing from the store (here a store that never received the write, so that a read would lose
/// the first member).
#[test]
fn a_written_account_is_read_from_the_cache() {
    let text = [RULES, "[accounts]\nattribute = \"account_id\"\n"].concat();
    let rules = Rules::parse(&text, Path::new("accounts.toml")).unwrap_or_else(|err| panic!("{err}"));
    let settings = settings();
    let store = MemoryStore::new();
    let mut task = open(&store, &settings);
    let visit = |offset: i64, contact: &str| {
        let event = Event {
            attrs: vec![("account_id".into(), AttrValue::Text("acme".into()))],
            ..event(&format!("e-{offset}"), contact, "page_visit", None)
        };
        input(offset, &event)
    };
    let mut members_after = |offset: i64, contact: &str| {
        let scored = task
            .process(&rules, &store, &settings, &[visit(offset, contact)], true)
            .unwrap_or_else(|err| panic!("{err}"));
        let update = internal_of(InternalTopic::Account, &scored.publish, offset);
        let applied = task.process(&rules, &store, &settings, &update, true).unwrap_or_else(|err| panic!("{err}"));
        task.written(applied.sequence);
        let (_, bytes) =
            applied.write.puts.iter().find(|(key, _)| key == "\0account:acme").cloned().unwrap_or_default();
        let (state, _) = crate::accounts::codec::decode(&rules, "acme", &bytes).unwrap_or_else(|err| panic!("{err}"));
        state.members.into_iter().map(|member| member.contact).collect::<Vec<_>>()
    };
    assert_eq!(members_after(0, "ana"), ["ana"]);
    assert_eq!(members_after(1, "ben"), ["ana", "ben"]);
}
