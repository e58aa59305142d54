//! The live scores a replay is compared with.
//!
//! They come from the live group's changelog topic, not from its state directory: the changelog can be
//! read while the live instances run, from any machine, and holds the latest state of every contact
//! (it is compacted, and a replay of it keeps the last record per key). It is read into a second
//! throw-away RocksDB with the runtime's own restore, so memory stays bounded however many contacts there
//! are, and nothing is committed for the live group.

use crate::kafka::restore::{RestoreProgress, restore_partitions};
use crate::rules::Rules;
use crate::runtime::record::StoredContact;
use crate::scoring::ContactState;
use crate::store::StateStore;

use super::ReplayError;
use super::diff::{DiffBuilder, DiffReport};
use super::progress::Progress;

/// Reads every partition of the live `changelog` into `store` (empty), decoding with the live rules.
pub fn load_changelog(
    client: &[(String, String)],
    changelog: &str,
    partitions: i32,
    live_rules: &Rules,
    store: &dyn StateStore,
    progress_bar: bool,
) -> Result<u64, ReplayError> {
    // The total is what the broker reports up front (low on brokers whose ListOffsets lags); it grows as
    // the restore goes.
    let total = watermark_total(client, changelog, partitions);
    let mut progress = Progress::new("live scores", "changelog records", total, progress_bar);
    let mut last = 0;
    let mut report = |step: RestoreProgress| {
        progress.grow_to(step.records);
        progress.advance(step.records - last);
        last = step.records;
    };
    let all: Vec<i32> = (0..partitions).collect();
    let restored = restore_partitions(
        client,
        changelog,
        &all,
        store,
        live_rules,
        &std::sync::atomic::AtomicBool::new(false),
        &mut report,
    )?;
    let records: u64 = restored.values().map(|summary| summary.records).sum();
    progress.grow_to(records);
    progress.advance(records - last);
    progress.finish();
    Ok(records)
}

fn watermark_total(client: &[(String, String)], changelog: &str, partitions: i32) -> u64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    for (key, value) in client {
        config.set(key, value);
    }
    let Ok(consumer) = config.create::<BaseConsumer>() else {
        return 0;
    };
    (0..partitions)
        .filter_map(|partition| {
            consumer.fetch_watermarks(changelog, partition, std::time::Duration::from_secs(10)).ok()
        })
        .map(|(low, high)| (high - low).max(0) as u64)
        .sum()
}

/// Compares every contact of the replayed store (new rules) with the live store (live rules).
pub fn diff_stores(
    live: &dyn StateStore,
    live_rules: &Rules,
    replayed: &dyn StateStore,
    new_rules: &Rules,
    partitions: i32,
    top: usize,
) -> Result<DiffReport, ReplayError> {
    let mut builder = DiffBuilder::new(live_rules, new_rules, top);
    let mut failure: Option<ReplayError> = None;
    for partition in 0..partitions {
        replayed.for_each_contact(partition, &mut |contact, bytes| {
            let result = decode(new_rules, contact, bytes).and_then(|new| {
                let old = match live.get(partition, contact)? {
                    Some(bytes) => decode(live_rules, contact, &bytes)?,
                    None => None,
                };
                builder.add(contact, old.as_ref(), new.as_ref());
                Ok(())
            });
            result.map_err(|err| failure.get_or_insert(err)).is_ok()
        })?;
        live.for_each_contact(partition, &mut |contact, bytes| {
            let result = replayed.get(partition, contact).map_err(ReplayError::from).and_then(|found| {
                if found.is_none() {
                    builder.add(contact, decode(live_rules, contact, bytes)?.as_ref(), None);
                }
                Ok(())
            });
            result.map_err(|err| failure.get_or_insert(err)).is_ok()
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
    }
    Ok(builder.finish())
}

/// The contact's state, `None` for an erased contact whose record waits for its commit.
fn decode(rules: &Rules, contact: &str, bytes: &[u8]) -> Result<Option<ContactState>, ReplayError> {
    StoredContact::decode(rules, contact, bytes)
        .map(|stored| stored.state)
        .map_err(|err| ReplayError::Corrupt(format!("contact {contact}: {err}")))
}
