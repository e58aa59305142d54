//! Group events on the processor: revocations drop tasks; assignments pause their partitions and restore
//! them from the changelog on a thread of their own ([`super::restore_job`]), then open their tasks with
//! the group's committed offsets and resume them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics::{counter, gauge};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::rebalance::GroupEvent;
use super::restore_job::{RestoreJob, RestoreSource};
use super::task::{InputRecord, PartitionTask};
use super::{Processor, ProcessorError};
use crate::leaderboard::Board;
use crate::telemetry;

impl Processor<'_> {
    pub(super) fn handle_group_events(
        &mut self,
        records: &mut BTreeMap<i32, Vec<InputRecord>>,
    ) -> Result<(), ProcessorError> {
        for event in self.consumer.context().take() {
            match event {
                GroupEvent::Drained(mut batches) => {
                    // Their offsets went with the revocation's commit (or, exactly-once, its transaction).
                    self.write_done(&mut batches)?;
                }
                GroupEvent::Failed(reason) => return Err(ProcessorError::Revocation(reason)),
                GroupEvent::Revoked(revoked) => {
                    counter!(telemetry::REBALANCES_TOTAL, "kind" => "revoke").increment(1);
                    for entry in revoked {
                        // The new owner reports this partition's lag from now on.
                        gauge!(telemetry::CONSUMER_LAG_RECORDS, "topic" => entry.0.clone(), "partition" => entry.1.to_string())
                            .set(0.0);
                        if !self.tasks.contains_key(&entry.1) {
                            self.status.restoring(entry.1, false);
                        }
                        self.assigned.remove(&entry);
                    }
                    // Their leaderboards and rule statistics were dropped in the revocation callback, and
                    // a restore of any of them was stopped there.
                    let still: BTreeSet<i32> = self.assigned.iter().map(|(_, partition)| *partition).collect();
                    self.tasks.retain(|partition, _| still.contains(partition));
                    self.skipped.retain(|(_, partition), _| still.contains(partition));
                    records.retain(|partition, _| still.contains(partition));
                    self.status.set_owned(self.settings.thread, still);
                }
                GroupEvent::Assigned(added) => {
                    counter!(telemetry::REBALANCES_TOTAL, "kind" => "assign").increment(1);
                    let new: BTreeSet<i32> = added
                        .iter()
                        .map(|(_, partition)| *partition)
                        .filter(|partition| !self.tasks.contains_key(partition))
                        .collect();
                    self.assigned.extend(added);
                    self.status.set_owned(self.settings.thread, self.assigned.iter().map(|(_, partition)| *partition));
                    // Paused until restored: the other partitions go on scoring meanwhile.
                    self.consumer.pause(&self.input_list(&new))?;
                    for &partition in &new {
                        self.status.restoring(partition, true);
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the tasks of a finished restore, and starts one for the partitions still waiting.
    pub(super) fn advance_restore(&mut self) -> Result<(), ProcessorError> {
        let finished = {
            let mut slot = self.lock_restore()?;
            if slot.as_ref().is_some_and(RestoreJob::is_finished) { slot.take() } else { None }
        };
        if let Some(job) = finished {
            let ready: BTreeMap<i32, Board> =
                job.join()?.into_iter().filter(|(partition, _)| self.owns(*partition)).collect();
            self.open_tasks(ready)?;
        }
        let mut slot = self.lock_restore()?;
        if slot.is_some() {
            return Ok(());
        }
        let waiting: BTreeSet<i32> = self
            .assigned
            .iter()
            .map(|(_, partition)| *partition)
            .filter(|partition| !self.tasks.contains_key(partition))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        // The restore builds their leaderboards anew; a board an earlier processor of the instance left
        // (rebuilt after a fault) must not write into them meanwhile.
        for partition in &waiting {
            self.insights.leaderboard.close_partition(*partition);
        }
        let source = RestoreSource {
            client: self.settings.client.clone(),
            changelog: self.settings.topics.changelog.clone(),
            thread: self.settings.thread,
        };
        let store = self.consumer.context().store.clone();
        let job = RestoreJob::spawn(source, waiting.into_iter().collect(), store, self.rules.clone())
            .map_err(ProcessorError::RestoreThread)?;
        *slot = Some(job);
        Ok(())
    }

    /// Opens the tasks of restored partitions, with their leaderboards, and resumes them where their first
    /// dropped record was.
    fn open_tasks(&mut self, boards: BTreeMap<i32, Board>) -> Result<(), ProcessorError> {
        if boards.is_empty() {
            return Ok(());
        }
        let partitions: Vec<i32> = boards.keys().copied().collect();
        let committed = self.committed_offsets(&partitions)?;
        for (partition, board) in boards {
            let offsets = committed.get(&partition).cloned().unwrap_or_default();
            let task = PartitionTask::open(partition, self.store, &self.settings.task, offsets)?;
            self.insights.open_partition(partition, &self.rules, board);
            self.tasks.insert(partition, task);
            self.status.restoring(partition, false);
        }
        let list = self.input_list(&partitions.iter().copied().collect());
        self.consumer.resume(&list)?;
        let mut rewind = TopicPartitionList::new();
        for &partition in &partitions {
            for (index, topic) in self.settings.task.inputs.iter().enumerate() {
                if let Some(offset) = self.skipped.remove(&(index, partition)) {
                    rewind.add_partition_offset(topic, partition, Offset::Offset(offset))?;
                }
            }
        }
        if rewind.count() > 0 {
            self.consumer.seek_partitions(rewind, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Whether this processor still owns input partition `partition`.
    pub(super) fn owns(&self, partition: i32) -> bool {
        self.assigned.iter().any(|(_, assigned)| *assigned == partition)
    }

    /// Every input topic's partition of each number in `partitions`.
    fn input_list(&self, partitions: &BTreeSet<i32>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            for topic in &self.settings.task.inputs {
                list.add_partition(topic, partition);
            }
        }
        list
    }

    fn lock_restore(&self) -> Result<std::sync::MutexGuard<'_, Option<RestoreJob>>, ProcessorError> {
        self.restore.lock().map_err(|_| ProcessorError::Revocation("the restore slot is poisoned".into()))
    }

    /// The group's committed offsets of `partitions`, one per input topic (`None` where nothing is
    /// committed), in one request.
    fn committed_offsets(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Vec<Option<i64>>>, ProcessorError> {
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            for topic in &self.settings.task.inputs {
                list.add_partition(topic, partition);
            }
        }
        let committed = self.consumer.committed_offsets(list, Duration::from_secs(10))?;
        let offsets = |partition: i32| -> Vec<Option<i64>> {
            self.settings
                .task
                .inputs
                .iter()
                .map(|topic| {
                    committed.find_partition(topic, partition).and_then(|element| match element.offset() {
                        Offset::Offset(next) => Some(next),
                        _ => None,
                    })
                })
                .collect()
        };
        Ok(partitions.iter().map(|&partition| (partition, offsets(partition))).collect())
    }
}
