//! The restore phase: a changelog holding many scored contacts is replayed into an empty state directory
//! with the processor's own restore, partition after partition as a fresh instance does on assignment.

use std::path::Path;
use std::time::Instant;

use indicatif::ProgressBar;

use crate::generator::EventGenerator;
use crate::hashing::partition_for_key;
use crate::kafka::restore::restore_partitions;
use crate::rules::Rules;
use crate::runtime::record::StoredContact;
use crate::runtime::task::TaskSettings;
use crate::scoring;
use crate::store::{RocksOptions, RocksStore, StateStore};

/// Events scored into each contact's state before it is written to the changelog.
const EVENTS_PER_CONTACT: u64 = 3;
/// How far back the written contacts' events go.
const HISTORY_MS: i64 = 30 * 86_400_000;

/// What the restore phase measured.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Restore {
    /// Contacts in the changelog.
    pub contacts: u64,
    /// Changelog records replayed.
    pub records: u64,
    /// Wall-clock seconds from the first partition's start to the last one's end.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// State directory bytes per contact after the restore, a flush and the compactions that follow
    /// them (which the restore's time does not include).
    pub state_bytes_per_contact: f64,
}

/// Writes a changelog of `contacts` scored contacts to `changelog` (already created with `partitions`),
/// for the restore phase and for tests of a long restore.
pub fn write_changelog(
    bootstrap: &str,
    changelog: &str,
    partitions: u32,
    contacts: u64,
    rules: &Rules,
    bar: &ProgressBar,
) -> Result<(), String> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .map_err(|err| format!("changelog producer: {err}"))?;
    let topic_key = TaskSettings::topic_key("bench.events");
    // The events spread over the last 30 days whatever their number, so that no contact's clock runs
    // ahead of the wall clock.
    let step_ms = (HISTORY_MS / (contacts.max(1) * EVENTS_PER_CONTACT) as i64).max(1);
    let mut generator = EventGenerator::new(11, 1, now_start(), step_ms);
    bar.set_length(contacts);
    for index in 0..contacts {
        let contact = EventGenerator::contact_id(index);
        let mut state = None;
        for _ in 0..EVENTS_PER_CONTACT {
            let mut event = generator.next_event();
            event.contact = contact.clone();
            state = scoring::apply(rules, state, &event).state;
        }
        let stored = StoredContact { state, offsets: vec![(topic_key, index as i64)], ..StoredContact::default() };
        let payload = stored.encode(rules);
        let partition = partition_for_key(contact.as_bytes(), partitions) as i32;
        let record = BaseRecord::to(changelog).key(contact.as_bytes()).payload(&payload).partition(partition);
        crate::kafka::send_when_queued(&producer, record).map_err(|err| format!("producing the changelog: {err}"))?;
        if index % 4096 == 0 {
            bar.set_position(index);
        }
    }
    producer.flush(std::time::Duration::from_secs(120)).map_err(|err| format!("flushing the changelog: {err}"))?;
    bar.set_position(contacts);
    Ok(())
}

fn now_start() -> i64 {
    crate::runtime::now_ms() - HISTORY_MS
}

/// Restores every partition of `changelog` into an empty store at `dir`, timing it.
pub(crate) fn restore_all(
    bootstrap: &str,
    changelog: &str,
    partitions: u32,
    contacts: u64,
    rules: &Rules,
    dir: &Path,
    bar: &ProgressBar,
) -> Result<Restore, String> {
    let store = RocksStore::open(dir, &RocksOptions::default()).map_err(|err| err.to_string())?;
    let properties = vec![("bootstrap.servers".to_owned(), bootstrap.to_owned())];
    bar.set_length(contacts);
    let started = Instant::now();
    let mut progress = |step: crate::kafka::restore::RestoreProgress| bar.set_position(step.records);
    let all: Vec<i32> = (0..partitions as i32).collect();
    let restored = restore_partitions(
        &properties,
        changelog,
        &all,
        &store,
        rules,
        &std::sync::atomic::AtomicBool::new(false),
        &mut progress,
    )
    .map_err(|err| err.to_string())?;
    let records: u64 = restored.values().map(|summary| summary.records).sum();
    bar.set_position(records);
    store.flush().map_err(|err| err.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    Ok(Restore {
        contacts,
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        state_bytes_per_contact: super::child::settled_bytes_per_contact(dir, records)?,
    })
}
