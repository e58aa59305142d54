//! What a scored batch leaves to write, publish and commit.
//!
//! A batch that *flushes* writes every contact changed since the last flush: one RocksDB record and one
//! changelog record per contact, the partition's checkpoint, and the input offsets to commit once all of
//! it is acknowledged. A batch that does not flush publishes its outputs only; its changed records wait in
//! the record cache as *unflushed* (never evicted), with the timer each had on disk, and its offsets are
//! held. So a contact that gets events in several batches of one commit interval costs one record.
//!
//! Nothing a flush writes can run ahead of what was published: its changelog records go out after the
//! outputs of every batch before it are acknowledged (the sink's waves go in batch order), its RocksDB
//! write and offsets only once it is acknowledged. A crash before a flush loses only unflushed records,
//! whose input is not committed and is not in the checkpoint either: it is scored again, from the state
//! of the last flush, and gives the same outputs with the same ids.

use super::accounts::AccountChange;
use super::{BatchCounts, CHECKPOINT_KEY, Destination, PartitionTask, Publish, TaskBatch, TaskSettings};
use crate::insights::BatchInsight;
use crate::leaderboard::BoardEntry;
use crate::rules::Rules;
use crate::runtime::batch_store::Change;
use crate::runtime::record::StoredContact;
use crate::runtime::record_cache::{UNFLUSHED, memory_estimate};
use crate::store::{PartitionBatch, PartitionMeta};

impl PartitionTask {
    /// Builds the batch of `changes`: with `flush`, or when accounts changed (their records are written
    /// with the contacts'), every record changed since the last flush is written; otherwise the changes
    /// wait in the cache.
    #[allow(clippy::too_many_arguments)] // one call per batch kind; a struct would only rename them
    pub(super) fn finish(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        (changes, account_changes): (Vec<Change>, Vec<AccountChange>),
        publish: Vec<Publish>,
        commit: Vec<(usize, i64)>,
        counts: BatchCounts,
        mut insight: BatchInsight,
        flush: bool,
    ) -> TaskBatch {
        self.batches += 1;
        let sequence = self.batches;
        for (topic, next) in commit {
            super::advance(&mut self.held, topic, next);
        }
        // Each change adds one entry (the records are large: no regrowth copies).
        insight.contacts.reserve(changes.len());
        for change in &changes {
            let entry = change.stored.state.as_ref().and_then(|state| BoardEntry::of(rules, state));
            insight.contacts.push((change.contact.clone(), entry));
        }
        if !flush && account_changes.is_empty() {
            for change in changes {
                if !self.unflushed.contains_key(&change.contact) {
                    self.unflushed.insert(change.contact.clone(), change.old_timer);
                }
                self.cache.put(change.contact, change.stored, Some(UNFLUSHED), change.bytes);
            }
            self.cache.evict();
            let write = PartitionBatch::new(self.partition);
            return TaskBatch { write, publish, commit: Vec::new(), sequence, counts, insight };
        }
        let changes = self.with_unflushed(changes);
        self.flush_changes(rules, settings, (changes, account_changes), publish, sequence, counts, insight)
    }

    /// `changes` and every record left unflushed by earlier batches, each with the timer it has on disk.
    fn with_unflushed(&mut self, changes: Vec<Change>) -> Vec<Change> {
        let mut unflushed = std::mem::take(&mut self.unflushed);
        let mut all = Vec::with_capacity(changes.len() + unflushed.len());
        for mut change in changes {
            if let Some(on_disk) = unflushed.remove(&change.contact) {
                change.old_timer = on_disk;
            }
            all.push(change);
        }
        for (contact, old_timer) in unflushed {
            // Unflushed records are never evicted.
            if let Some(cached) = self.cache.take(&contact) {
                all.push(Change { contact, stored: cached.stored, old_timer, bytes: cached.bytes });
            }
        }
        all
    }

    #[allow(clippy::too_many_arguments)] // the parts of `finish` it did not consume
    fn flush_changes(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        (changes, account_changes): (Vec<Change>, Vec<AccountChange>),
        mut publish: Vec<Publish>,
        sequence: u64,
        counts: BatchCounts,
        insight: BatchInsight,
    ) -> TaskBatch {
        let mut write = PartitionBatch::new(self.partition);
        let keys: Vec<u32> = settings.inputs.iter().map(|topic| TaskSettings::topic_key(topic)).collect();
        // Erased contacts whose erasure is now committed, on every topic that stamped them, leave no
        // record behind.
        let (mut done, still_waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.erased_waiting)
            .into_iter()
            .partition(|(_, topic, offset)| self.committed[*topic].is_some_and(|next| *offset < next));
        done.dedup_by(|(later, ..), (earlier, ..)| later == earlier);
        for (contact, ..) in done {
            let waits = still_waiting.iter().any(|(waiting, ..)| *waiting == contact);
            if !waits && !changes.iter().any(|change| change.contact == contact) {
                write.deletes.push(contact.clone());
                publish.push(Publish {
                    destination: Destination::Changelog,
                    key: contact.clone().into_bytes(),
                    payload: None,
                    headers: Vec::new(),
                });
                self.cache.put(contact, StoredContact::fresh(None), Some(sequence), memory_estimate(0));
            }
        }
        self.erased_waiting = still_waiting;
        // Each change adds one entry to each of these (the records are large: no regrowth copies).
        publish.reserve(changes.len() + 1);
        write.puts.reserve(changes.len());
        for change in changes {
            let stored = change.stored;
            if let Some(due) = change.old_timer {
                write.timer_deletes.push((due, change.contact.clone()));
            }
            if let Some(due) = stored.state.as_ref().and_then(|state| state.next_timer_ms) {
                write.timer_puts.push((due, change.contact.clone()));
            }
            // An erased contact keeps a record without state until its erasure is committed, so that a
            // replay of the input before the erasure finds the contact's applied offsets, and until the
            // answers it awaited have arrived. An alias keeps its record for good: it says where the
            // contact's events go.
            let answers_due = !stored.awaiting.is_empty() || !stored.refused.is_empty();
            let erased = stored.state.is_none() && stored.merged_into.is_none() && !answers_due;
            // A contact that has a record again is no longer waiting to be deleted.
            self.erased_waiting.retain(|(contact, ..)| *contact != change.contact);
            let mut waits = false;
            if erased {
                for (topic_key, offset) in &stored.offsets {
                    let Some(topic) = keys.iter().position(|key| key == topic_key) else { continue };
                    if self.committed[topic].is_none_or(|next| *offset >= next) {
                        self.erased_waiting.push((change.contact.clone(), topic, *offset));
                        waits = true;
                    }
                }
            }
            let payload = if erased && !waits {
                write.deletes.push(change.contact.clone());
                None
            } else {
                let bytes = stored.encode(rules);
                write.puts.push((change.contact.clone(), bytes.clone()));
                Some(bytes)
            };
            let estimate = memory_estimate(payload.as_ref().map_or(0, Vec::len));
            publish.push(Publish {
                destination: Destination::Changelog,
                key: change.contact.clone().into_bytes(),
                payload,
                headers: Vec::new(),
            });
            self.cache.put(change.contact, stored, Some(sequence), estimate);
        }
        self.accounts.write(account_changes, sequence, &mut write, &mut publish);
        let meta = PartitionMeta {
            input_offsets: settings
                .inputs
                .iter()
                .zip(&self.next_offsets)
                .filter_map(|(topic, next)| next.map(|next| (topic.clone(), next)))
                .collect(),
            // What was acknowledged before this batch: batches in flight interleave their changelog
            // records, so a later batch that never reaches RocksDB may have records below this one's, and
            // a restore from past this batch would pass over them. The sink moves it past the batch's
            // own records once it knows no later batch sent any (`settle_checkpoints`).
            changelog_offset: self.changelog_next,
            stream_time_ms: Some(self.stream.stream_time_ms()).filter(|time| *time != i64::MIN),
        };
        let checkpoint = PartitionMeta { changelog_offset: None, ..meta.clone() };
        publish.push(Publish {
            destination: Destination::Checkpoint,
            key: CHECKPOINT_KEY.to_vec(),
            payload: Some(checkpoint.encode()),
            headers: Vec::new(),
        });
        write.meta = Some(meta);
        self.cache.evict();
        let commit = std::mem::take(&mut self.held);
        TaskBatch { write, publish, commit, sequence, counts, insight }
    }
}

#[cfg(test)]
mod tests;
