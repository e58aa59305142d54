//! The parts of a poll cycle around scoring: decay timers on the wall clock, flushes, and finishing the
//! batches the brokers acknowledged (their RocksDB writes, then their offsets).

use std::time::Instant;

use metrics::counter;
use rdkafka::consumer::{CommitMode, Consumer};
use tracing::warn;

use super::rebalance::apply_writes;
use super::{PendingBatch, Processor, ProcessorError, now_ms};
use crate::telemetry;

impl Processor<'_> {
    /// Whether this cycle's batches flush (see [`super::task`]): in exactly-once mode every batch does, since a
    /// transaction must hold the records of its input when it commits; in at-least-once mode the batches
    /// flush once the input is caught up or `commit_interval` after the last flush, so that a contact
    /// changed in several batches of an interval is written once.
    pub(super) fn flush_due(&self, caught_up: bool) -> bool {
        self.settings.transactional_id.is_some()
            || caught_up
            || self.last_flush.elapsed() >= self.settings.commit_interval
    }

    pub(super) fn tick(&mut self, flush: bool) -> Result<(), ProcessorError> {
        let now = now_ms();
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        let mut pending = 0;
        for partition in partitions {
            let Some(task) = self.tasks.get_mut(&partition) else {
                continue;
            };
            let batch = task.tick(&self.rules, self.store, &self.settings.task, now, flush)?;
            pending += task.pending_timers();
            // Timers that changed a record without an output (a contact reporting itself to its
            // account) are published too.
            let writes = !batch.write.puts.is_empty() || !batch.write.deletes.is_empty() || !batch.commit.is_empty();
            if batch.counts.outputs > 0 || writes {
                counter!(telemetry::TIMERS_FIRED_TOTAL).increment(batch.counts.outputs);
                self.publish(partition, batch)?;
            }
        }
        self.gauges.pending_timers.set(pending as f64);
        Ok(())
    }

    /// With `flush`, flushes the tasks whose records or offsets wait for it, also those no record came to
    /// this cycle. Either way deletes erased contacts and writes their tombstones once their erasure is
    /// committed, also when no later record comes to their partition.
    pub(super) fn flush_tasks(&mut self, flush: bool) -> Result<(), ProcessorError> {
        if flush {
            self.last_flush = Instant::now();
        }
        let due: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.erasure_due() || (flush && task.unflushed()))
            .map(|(partition, _)| *partition)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.begin()?;
        for partition in due {
            if let Some(task) = self.tasks.get_mut(&partition) {
                let batch = task.flush(&self.rules, &self.settings.task);
                self.publish(partition, batch)?;
            }
        }
        Ok(())
    }

    /// Finishes acknowledged batches, oldest first: applies their RocksDB writes, then commits their input
    /// offsets (in exactly-once mode their transaction did). Every commit of the processor goes through
    /// here, and the revocation drain commits through the same [`Committer`].
    pub(super) fn complete(&mut self, mut batches: Vec<PendingBatch>, mode: CommitMode) -> Result<(), ProcessorError> {
        if self.consumer.assignment_lost() {
            // Another member may own these partitions now, and the revocation that comes with the next
            // poll drops their tasks (see `GroupHooks::pre_rebalance`).
            warn!(
                batches = batches.len(),
                "the assignment was lost; acknowledged batches are not written or committed"
            );
            return Ok(());
        }
        self.write_done(&mut batches)?;
        if self.settings.transactional_id.is_some() {
            return Ok(());
        }
        let mut committer = self.lock_committer()?;
        Ok(committer.commit(&self.consumer, &self.settings.task.inputs, &batches, mode)?)
    }

    /// Applies the RocksDB writes of acknowledged batches in order, and tells the tasks what is written,
    /// committed and in the changelog.
    pub(super) fn write_done(&mut self, batches: &mut [PendingBatch]) -> Result<(), ProcessorError> {
        apply_writes(self.store, batches)?;
        for (sequence, write) in batches.iter().flat_map(|batch| &batch.writes) {
            if let Some(task) = self.tasks.get_mut(&write.partition) {
                task.written(*sequence);
            }
        }
        self.note_committed(batches);
        Ok(())
    }

    /// Tells tasks which offsets are acknowledged (and so need no re-send) and how far their changelog is.
    fn note_committed(&mut self, batches: &[PendingBatch]) {
        for batch in batches {
            for (topic, partition, next) in &batch.commits {
                if let Some(task) = self.tasks.get_mut(partition) {
                    task.committed(*topic, *next);
                }
            }
            for (partition, offset) in &batch.changelog {
                if let Some(task) = self.tasks.get_mut(partition) {
                    task.changelog_delivered(offset + 1);
                }
            }
        }
    }
}
