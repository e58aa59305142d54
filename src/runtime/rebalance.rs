//! Consumer-group callbacks. A revocation drains the publishing pipeline and commits synchronously before
//! the partitions go, so the next owner starts exactly where this one stopped; everything else is handed
//! to the processor as events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::kafka::sink::{PendingBatch, SharedSink, Sink, SinkError};
use crate::store::{PartitionBatch, StateStore, StoreError};

/// What the processor must act on after a poll.
#[derive(Debug)]
pub enum GroupEvent {
    /// Topic-partitions added to this instance.
    Assigned(Vec<(String, i32)>),
    /// Topic-partitions taken away, after the pipeline was drained and committed.
    Revoked(Vec<(String, i32)>),
    /// Batches acknowledged during a drain (their offsets are committed).
    Drained(Vec<PendingBatch>),
    /// A drain or commit failed during a revocation: stop without committing more.
    Failed(String),
}

/// The consumer context: rebalance hooks and client errors.
pub struct GroupHooks {
    pub(super) sink: SharedSink,
    pub(super) inputs: Vec<String>,
    pub(super) drain_timeout: Duration,
    pub(super) events: Mutex<Vec<GroupEvent>>,
    /// The state store, for the RocksDB writes of the batches a revocation drains.
    pub(super) store: std::sync::Arc<dyn StateStore>,
    /// Readiness: an error that finds every broker down clears it (served on the poll thread; the sink's
    /// producer reports one too, from its own thread).
    pub(super) status: std::sync::Arc<super::Status>,
    /// The leaderboards and rule statistics, which forget a revoked partition before it can be assigned
    /// to another processing thread of the instance.
    pub(super) insights: std::sync::Arc<crate::insights::Insights>,
    /// The processor's running restore, stopped here when a partition it restores is revoked.
    pub(super) restore: super::restore_job::RestoreSlot,
    /// The input offsets of at-least-once mode, committed by the processor and by a revocation.
    pub(super) committer: Mutex<Committer>,
    /// Whether the group rebalances incrementally ([`incremental`]).
    pub(super) cooperative: bool,
}

/// Whether a consumer configured by `config` rebalances incrementally: with the cooperative-sticky
/// assignor, or with the consumer group protocol of KIP-848. librdkafka refuses to mix eager and
/// cooperative assignors, so the first one named decides.
pub(super) fn incremental(config: &ClientConfig) -> bool {
    let assignor = config.get("partition.assignment.strategy").unwrap_or("range,roundrobin");
    let first = assignor.split(',').next().unwrap_or_default().trim();
    first == "cooperative-sticky" || config.get("group.protocol").is_some_and(|protocol| protocol.trim() == "consumer")
}

impl GroupHooks {
    fn push(&self, event: GroupEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Takes the events gathered since the last call.
    pub fn take(&self) -> Vec<GroupEvent> {
        self.events.lock().map(|mut events| std::mem::take(&mut *events)).unwrap_or_default()
    }

    fn drain_and_commit(&self, consumer: &BaseConsumer<Self>) -> Result<(), String> {
        // In exactly-once mode only batches of committed transactions come out of a drain, and their
        // transactions committed their offsets.
        let (mut drained, transactional) = {
            let mut sink = self.sink.lock().map_err(|_| "the publishing pipeline is poisoned".to_owned())?;
            // The open transaction holds input of the partitions going away: it commits while this member
            // still owns them.
            let open = sink.transaction_age();
            commit_transaction(&mut sink, &self.inputs, consumer.group_metadata().as_ref())
                .map_err(|err| err.to_string())?;
            if let Some(age) = open {
                info!(open_ms = age.as_millis() as u64, "committed the open transaction before the partitions go");
            }
            (sink.drain(self.drain_timeout).map_err(|err| err.to_string())?, sink.is_transactional())
        };
        apply_writes(self.store.as_ref(), &mut drained).map_err(|err| format!("state store: {err}"))?;
        // Asynchronous: a synchronous commit can wait forever on a coordinator that is mid-rebalance.
        // Should it be lost, the next owner replays from an older offset, which changes no state and only
        // re-sends outputs with their ids.
        if !transactional && let Ok(mut committer) = self.committer.lock() {
            let _ = committer.commit_now(consumer, &self.inputs, &drained);
        }
        info!(batches = drained.len(), "revocation drained and committed");
        self.push(GroupEvent::Drained(drained));
        Ok(())
    }
}

/// Commits the open transaction, if there is one (exactly-once mode), with the input offsets of all its
/// batches: outputs, changelog records and offsets become visible together.
pub fn commit_transaction(
    sink: &mut Sink,
    inputs: &[String],
    group: Option<&ConsumerGroupMetadata>,
) -> Result<(), SinkError> {
    if sink.transaction_age().is_none() {
        return Ok(());
    }
    sink.close();
    let offsets = commit_list(inputs, &sink.pending_commits());
    sink.commit_transaction(&offsets, group)
}

/// Applies the RocksDB writes of acknowledged batches, oldest first. Each write is left empty in its
/// batch, with its task's sequence number, so that the task learns it is written.
pub fn apply_writes(store: &dyn StateStore, batches: &mut [PendingBatch]) -> Result<(), StoreError> {
    for (_, write) in batches.iter_mut().flat_map(|batch| batch.writes.iter_mut()) {
        if !write.is_empty() {
            let partition = write.partition;
            store.write(std::mem::replace(write, PartitionBatch::new(partition)))?;
        }
    }
    Ok(())
}

/// Commits offsets asynchronously or synchronously; a failed asynchronous commit is covered by the next.
fn commit_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
    mode: CommitMode,
) -> Result<(), KafkaError> {
    if offsets.count() == 0 {
        return Ok(());
    }
    match consumer.commit(offsets, mode) {
        Ok(()) => {
            metrics::counter!(crate::telemetry::COMMITS_TOTAL).increment(1);
            Ok(())
        }
        // A lost asynchronous commit only re-sends: the state skips what it applied.
        Err(err) if matches!(mode, CommitMode::Async) => {
            warn!(error = %err, "offset commit failed; the next commit covers it");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// How long the offsets committed last stand without a new commit before they are checked.
const RECOMMIT_AFTER: Duration = Duration::from_secs(5);
/// How long reading the group's committed offsets for that check may take.
const COMMITTED_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Commits the input offsets of at-least-once mode: the one rule for all of them. It takes the offsets of
/// acknowledged batches from [`crate::kafka::sink::Sink::collect`] or `drain`, which return a batch only
/// once every record of it and of every older batch is acknowledged, so no offset passes an undelivered
/// record.
///
/// It sends them to the group at most once per `interval` (`processing.commit_interval_ms`), holding the
/// ones in between: the group coordinator appends every commit to `__consumer_offsets`, and an instance
/// tuned for latency, whose poll cycles take a millisecond, would otherwise commit a thousand times a
/// second. A shutdown commits what it holds at once and waits; a revocation commits it at once.
///
/// After [`RECOMMIT_AFTER`] without a new commit, it commits again the latest offsets of the partitions
/// still assigned that the group holds behind. An asynchronous commit that the group refuses while it
/// rebalances is otherwise covered only by the next one, which a partition with no new records never
/// makes: its committed offset, which lag monitors and the next owner read, would stay behind what was
/// processed.
#[derive(Debug)]
pub struct Committer {
    interval: Duration,
    /// Offsets of acknowledged batches not sent to the group yet.
    held: BTreeMap<(usize, i32), i64>,
    /// When offsets were last sent.
    sent: Option<Instant>,
    latest: BTreeMap<(usize, i32), i64>,
    since: Option<Instant>,
}

impl Committer {
    /// A committer that sends offsets at most once per `interval`; zero sends each batch's at once.
    pub fn new(interval: Duration) -> Committer {
        Committer { interval, held: BTreeMap::new(), sent: None, latest: BTreeMap::new(), since: None }
    }

    /// Takes the input offsets of acknowledged batches, and commits every offset held if `interval` has
    /// passed since the last commit; `CommitMode::Sync` commits them at once and waits.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        inputs: &[String],
        batches: &[PendingBatch],
        mode: CommitMode,
    ) -> Result<(), KafkaError> {
        match self.take(batches, matches!(mode, CommitMode::Sync)) {
            Some(offsets) => commit_offsets(consumer, &commit_list(inputs, &offsets), mode),
            None => Ok(()),
        }
    }

    /// Takes the offsets of batches a revocation drained and commits every offset held at once, so that
    /// the next owners start where this member stopped.
    pub fn commit_now<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        inputs: &[String],
        batches: &[PendingBatch],
    ) -> Result<(), KafkaError> {
        match self.take(batches, true) {
            Some(offsets) => commit_offsets(consumer, &commit_list(inputs, &offsets), CommitMode::Async),
            None => Ok(()),
        }
    }

    /// Holds the batches' offsets, the highest per partition; returns every offset held, to be committed
    /// now, if `now` or `interval` has passed since the last commit.
    fn take(&mut self, batches: &[PendingBatch], now: bool) -> Option<Vec<(usize, i32, i64)>> {
        for &(topic, partition, next) in batches.iter().flat_map(|batch| &batch.commits) {
            for offsets in [&mut self.held, &mut self.latest] {
                let offset = offsets.entry((topic, partition)).or_insert(next);
                *offset = (*offset).max(next);
            }
            self.since = Some(Instant::now());
        }
        let due = now || self.sent.is_none_or(|sent| sent.elapsed() >= self.interval);
        if !due || self.held.is_empty() {
            return None;
        }
        self.sent = Some(Instant::now());
        let held = std::mem::take(&mut self.held);
        Some(held.into_iter().map(|((topic, partition), next)| (topic, partition, next)).collect())
    }

    /// Commits the remembered offsets of the partitions still assigned again, asynchronously, if none was
    /// committed for [`RECOMMIT_AFTER`] and the group holds an older offset for them (a partition that
    /// came back from another member may already be further, and is left alone); forgets the partitions no
    /// longer assigned. Once the group holds every remembered offset, it waits for the next commit.
    pub fn recommit_when_quiet<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, inputs: &[String]) {
        if self.since.is_none_or(|since| since.elapsed() < RECOMMIT_AFTER) {
            return;
        }
        self.since = Some(Instant::now());
        let Ok(assigned) = consumer.assignment() else { return };
        let elements = assigned.elements();
        let owned: BTreeSet<(&str, i32)> =
            elements.iter().map(|element| (element.topic(), element.partition())).collect();
        self.latest.retain(|(topic, partition), _| {
            inputs.get(*topic).is_some_and(|name| owned.contains(&(name.as_str(), *partition)))
        });
        if self.latest.is_empty() {
            self.since = None;
            return;
        }
        let latest: Vec<(usize, i32, i64)> =
            self.latest.iter().map(|(&(topic, partition), &next)| (topic, partition, next)).collect();
        let Ok(held) = consumer.committed_offsets(commit_list(inputs, &latest), COMMITTED_READ_TIMEOUT) else {
            return;
        };
        let behind: Vec<(usize, i32, i64)> = latest
            .into_iter()
            .filter(|(topic, partition, next)| {
                match held.find_partition(&inputs[*topic], *partition).map(|element| element.offset()) {
                    Some(Offset::Offset(held)) => held < *next,
                    _ => true,
                }
            })
            .collect();
        if behind.is_empty() {
            self.since = None;
            return;
        }
        info!(partitions = behind.len(), "committing offsets the group refused again");
        if let Err(err) = consumer.commit(&commit_list(inputs, &behind), CommitMode::Async) {
            warn!(error = %err, "committing the latest offsets again failed; trying again later");
        }
    }
}

/// The offsets to commit: the highest next offset per topic-partition of (topic index, partition, next).
pub fn commit_list<'a>(
    inputs: &[String],
    commits: impl IntoIterator<Item = &'a (usize, i32, i64)>,
) -> TopicPartitionList {
    let mut highest: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    for (topic, partition, next) in commits {
        let entry = highest.entry((*topic, *partition)).or_insert(*next);
        *entry = (*entry).max(*next);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in highest {
        if let Some(name) = inputs.get(topic) {
            let _ = list.add_partition_offset(name, partition, rdkafka::Offset::Offset(next));
        }
    }
    list
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements().iter().map(|element| (element.topic().to_owned(), element.partition())).collect()
}

impl ClientContext for GroupHooks {
    /// Consumer lag per input partition, every `statistics.interval.ms`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, details) in &statistics.topics {
            if !self.inputs.contains(topic) {
                continue;
            }
            for (partition, stats) in &details.partitions {
                // -1 is librdkafka's internal partition; a negative lag means not fetching it.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!(
                        crate::telemetry::CONSUMER_LAG_RECORDS,
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(stats.consumer_lag as f64);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.status.set_brokers_up(false);
        }
        warn!(error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for GroupHooks {
    /// As rust-rdkafka's own, but without asking librdkafka for the rebalance protocol: that request waits
    /// on the group's queue, which may no longer answer once the consumer is closing (librdkafka issue
    /// 4041), so the revocation that ends a shutdown could wait for ever. The configuration says it.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, partitions: &mut TopicPartitionList) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            _ => Rebalance::Error(KafkaError::Rebalance(RDKafkaErrorCode::from(err))),
        };
        self.pre_rebalance(consumer, &rebalance);
        let applied = match (&rebalance, self.cooperative) {
            (Rebalance::Assign(list), true) => consumer.incremental_assign(list),
            (Rebalance::Assign(list), false) => consumer.assign(list),
            (Rebalance::Revoke(list), true) => consumer.incremental_unassign(list),
            (Rebalance::Error(_), true) => consumer.incremental_unassign(partitions),
            (Rebalance::Revoke(_) | Rebalance::Error(_), false) => consumer.unassign(),
        };
        if let Err(err) = applied {
            warn!(error = %err, "could not apply the rebalance");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            info!(partitions = ?revoked, "partitions revoked; draining and committing");
            let numbers: Vec<i32> = revoked.iter().map(|(_, partition)| *partition).collect();
            super::restore_job::stop_if_revoked(&self.restore, &numbers);
            if consumer.assignment_lost() {
                // The group moved on without this member (its session timed out, say, during a broker
                // outage): the partitions may be scored by their next owner already, whose newer records
                // a late write here would overwrite. That owner restores what this member published.
                warn!("the assignment was lost; its batches in flight are abandoned, nothing is written or committed");
                if let Ok(mut sink) = self.sink.lock() {
                    sink.abandon();
                }
            } else if let Err(reason) = self.drain_and_commit(consumer) {
                error!(%reason, "could not finish the revoked partitions");
                // Before the partitions go: nothing this member still holds may reach them afterwards.
                if let Ok(mut sink) = self.sink.lock() {
                    sink.abandon();
                }
                self.push(GroupEvent::Failed(reason));
            }
            // The range assignor of several inputs moves a partition number with all its topics, so a
            // revoked number is gone from this member.
            for partition in revoked.iter().map(|(_, partition)| *partition).collect::<BTreeSet<i32>>() {
                self.insights.drop_partition(partition);
            }
            self.push(GroupEvent::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                info!(partitions = ?assigned, "partitions assigned");
                self.push(GroupEvent::Assigned(assigned));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => warn!(error = %err, "rebalance error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(commits: &[(usize, i32, i64)]) -> PendingBatch {
        let mut batch = PendingBatch::default();
        batch.commits = commits.to_vec();
        batch
    }

    #[test]
    fn the_configuration_says_whether_the_group_rebalances_incrementally() {
        let config = |pairs: &[(&str, &str)]| {
            let mut config = ClientConfig::new();
            for (key, value) in pairs {
                config.set(*key, *value);
            }
            incremental(&config)
        };
        assert!(!config(&[]), "librdkafka's default assignors are eager");
        assert!(!config(&[("partition.assignment.strategy", "range")]));
        assert!(config(&[("partition.assignment.strategy", "cooperative-sticky")]));
        assert!(config(&[("partition.assignment.strategy", " cooperative-sticky ")]));
        assert!(config(&[("group.protocol", "consumer")]));
        assert!(!config(&[("group.protocol", "classic"), ("partition.assignment.strategy", "roundrobin")]));
    }

    #[test]
    fn offsets_are_held_between_commits_and_the_highest_per_partition_goes() {
        let interval = Duration::from_millis(40);
        let mut committer = Committer::new(interval);
        // The first acknowledged batch is committed at once.
        assert_eq!(committer.take(&[batch(&[(0, 1, 10)])], false), Some(vec![(0, 1, 10)]));
        // Those within the interval are held, the highest offset per partition kept.
        assert_eq!(committer.take(&[batch(&[(0, 1, 20), (0, 2, 5)])], false), None);
        assert_eq!(committer.take(&[batch(&[(0, 1, 15)]), batch(&[(1, 1, 7)])], false), None);
        std::thread::sleep(interval);
        // Once the interval has passed, a cycle with no new batch commits what is held.
        assert_eq!(committer.take(&[], false), Some(vec![(0, 1, 20), (0, 2, 5), (1, 1, 7)]));
        assert_eq!(committer.take(&[], false), None, "nothing is held any more");
    }

    #[test]
    fn a_shutdown_or_a_revocation_commits_what_is_held_at_once() {
        let mut committer = Committer::new(Duration::from_secs(3600));
        assert!(committer.take(&[batch(&[(0, 0, 1)])], false).is_some());
        assert_eq!(committer.take(&[batch(&[(0, 0, 2)])], false), None);
        assert_eq!(committer.take(&[batch(&[(0, 3, 9)])], true), Some(vec![(0, 0, 2), (0, 3, 9)]));
    }

    #[test]
    fn a_zero_interval_commits_every_batch() {
        let mut committer = Committer::new(Duration::ZERO);
        for next in 1..5 {
            assert_eq!(committer.take(&[batch(&[(0, 0, next)])], false), Some(vec![(0, 0, next)]));
        }
    }
}
