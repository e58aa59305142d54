//! Group events on the processor: revocations drop tasks, assignments restore their partitions from the
//! changelog (all at once) and open tasks with the group's committed offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use super::rebalance::GroupEvent;
use super::task::{InputRecord, PartitionTask};
use super::{Processor, ProcessorError};
use crate::kafka::restore::{RestoreProgress, restore_partitions};
use crate::telemetry;

impl Processor<'_> {
    pub(super) fn handle_group_events(
        &mut self,
        records: &mut BTreeMap<i32, Vec<InputRecord>>,
    ) -> Result<(), ProcessorError> {
        for event in self.consumer.context().take() {
            match event {
                GroupEvent::Drained(mut batches) => self.write_done(&mut batches)?,
                GroupEvent::Failed(reason) => return Err(ProcessorError::Revocation(reason)),
                GroupEvent::Revoked(revoked) => {
                    counter!(telemetry::REBALANCES_TOTAL, "kind" => "revoke").increment(1);
                    for entry in revoked {
                        // The new owner reports this partition's lag from now on.
                        gauge!(telemetry::CONSUMER_LAG_RECORDS, "topic" => entry.0.clone(), "partition" => entry.1.to_string())
                            .set(0.0);
                        self.assigned.remove(&entry);
                    }
                    // Their leaderboards and rule statistics were dropped in the revocation callback.
                    let still: BTreeSet<i32> = self.assigned.iter().map(|(_, partition)| *partition).collect();
                    self.tasks.retain(|partition, _| still.contains(partition));
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
                    if !new.is_empty() {
                        self.start_tasks(&new.into_iter().collect::<Vec<_>>())?;
                    }
                }
            }
        }
        gauge!(telemetry::ASSIGNED_PARTITIONS, "thread" => self.thread_label()).set(self.tasks.len() as f64);
        Ok(())
    }

    /// Restores newly assigned partitions (all at once) and opens their tasks.
    fn start_tasks(&mut self, partitions: &[i32]) -> Result<(), ProcessorError> {
        for &partition in partitions {
            self.status.restoring(partition, true);
        }
        gauge!(telemetry::RESTORING_PARTITIONS).increment(partitions.len() as f64);
        // The counter moves as the restore goes, so that a long restore does not look stuck.
        let mut counted = 0;
        let mut report = |progress: RestoreProgress| {
            info!(records = progress.records, partitions_left = progress.partitions_left, "restoring");
            counter!(telemetry::RESTORED_RECORDS_TOTAL).increment(progress.records - counted);
            counted = progress.records;
        };
        let started = Instant::now();
        let restored = restore_partitions(
            &self.settings.client,
            &self.settings.topics.changelog,
            partitions,
            self.store,
            &self.rules,
            &mut report,
        )?;
        let records: u64 = restored.values().map(|summary| summary.records).sum();
        counter!(telemetry::RESTORED_RECORDS_TOTAL).increment(records - counted);
        let committed = self.committed_offsets(partitions)?;
        for &partition in partitions {
            let offsets = committed.get(&partition).cloned().unwrap_or_default();
            let task = PartitionTask::open(partition, self.store, &self.settings.task, offsets)?;
            self.insights.open_partition(partition, &self.rules, self.store)?;
            self.tasks.insert(partition, task);
            self.status.restoring(partition, false);
            gauge!(telemetry::RESTORING_PARTITIONS).decrement(1.0);
        }
        histogram!(telemetry::RESTORE_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(())
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
