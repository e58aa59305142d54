//! The bare pipe: consume → produce passthrough with the processor's own client settings, consumer
//! group and delivery tracking, and no decoding, scoring or state. It is the I/O ceiling `leadscore bench`
//! compares the processor with, and `leadscore pipe` runs it on its own.
//!
//! It does what the processor does around its scoring: poll up to a batch, copy each record out of the
//! client, send it through the same [`Sink`] (idempotent, acks=all, same linger and compression), and
//! commit input offsets only once their batch is acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use tracing::{info, warn};

use crate::app::processor_settings;
use crate::config::Config;
use crate::kafka::sink::{Sink, SinkError, SinkTopics, set_default};
use crate::runtime::record::Route;
use crate::runtime::task::{Destination, Publish};
use crate::runtime::{Committer, ProcessorSettings};

/// Why the pipe stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The consumer failed.
    #[error("Kafka consumer: {0}")]
    Consumer(#[from] KafkaError),
    /// Publishing failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The config gives no processor settings.
    #[error(transparent)]
    Settings(#[from] crate::app::AppError),
}

/// Copies the config's input topics to `to` until `shutdown` is set, on as many threads (each a member of
/// the consumer group) as the processor would run; returns the records copied. A thread that fails stops
/// the others.
pub fn run(config: &Config, to: &str, shutdown: &AtomicBool) -> Result<u64, PipeError> {
    let settings = processor_settings(config)?;
    let threads = config.processing.thread_count();
    info!(threads, "starting the pipe's threads");
    std::thread::scope(|scope| {
        let copiers: Vec<_> = (0..threads)
            .map(|thread| {
                let settings = settings.for_thread(thread);
                scope.spawn(move || {
                    let copied = copy(&settings, to, shutdown);
                    if copied.is_err() {
                        shutdown.store(true, Ordering::Relaxed);
                    }
                    copied
                })
            })
            .collect();
        let mut total = 0;
        for copier in copiers {
            total += copier.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        Ok(total)
    })
}

/// One member of the pipe: copies its partitions until `shutdown` is set.
fn copy(settings: &ProcessorSettings, to: &str, shutdown: &AtomicBool) -> Result<u64, PipeError> {
    let mut client = ClientConfig::new();
    for (key, value) in &settings.consumer {
        client.set(key, value);
    }
    client
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    set_default(&mut client, "auto.offset.reset", "earliest");
    set_default(&mut client, "partition.assignment.strategy", "cooperative-sticky");
    let consumer: BaseConsumer = client.create()?;
    let inputs: Vec<&str> = settings.task.event_topics().iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;
    let topics = SinkTopics {
        score_changed: to.to_owned(),
        threshold_crossed: to.to_owned(),
        phase_changed: to.to_owned(),
        accounts: to.to_owned(),
        dlq: to.to_owned(),
        changelog: to.to_owned(),
        internal: to.to_owned(),
        internal_account: to.to_owned(),
    };
    let mut sink = Sink::new(&settings.producer, topics, None, None)?;
    let mut copied = 0u64;
    let mut committer = Committer::new(settings.commit_interval);
    while !shutdown.load(Ordering::Relaxed) {
        let mut records: BTreeMap<i32, Vec<Publish>> = BTreeMap::new();
        let mut next: BTreeMap<(usize, i32), i64> = BTreeMap::new();
        let mut count = 0;
        let mut wait = Duration::from_millis(50);
        while count < settings.batch_size {
            let message = match consumer.poll(wait) {
                None => break,
                Some(Err(err)) => {
                    warn!(error = %err, "poll error");
                    if matches!(err, KafkaError::MessageConsumptionFatal(_)) {
                        return Err(err.into());
                    }
                    break;
                }
                Some(Ok(message)) => message,
            };
            wait = Duration::ZERO;
            let topic = settings.task.inputs.iter().position(|topic| topic == message.topic()).unwrap_or(0);
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| (header.key.to_owned(), header.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.entry(message.partition()).or_default().push(Publish {
                destination: Destination::Output(Route::ScoreChanged),
                key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
                payload: message.payload().map(<[u8]>::to_vec),
                headers,
            });
            let slot = next.entry((topic, message.partition())).or_insert(0);
            *slot = (*slot).max(message.offset() + 1);
            count += 1;
        }
        if count > 0 {
            sink.open();
            for (partition, publish) in records {
                sink.send(partition, publish)?;
            }
            sink.commit_after(next.into_iter().map(|((topic, partition), offset)| (topic, partition, offset)));
            copied += count as u64;
        }
        sink.close();
        let wait =
            if sink.batches_in_flight() > settings.max_in_flight { Duration::from_millis(50) } else { Duration::ZERO };
        let done = sink.collect(wait)?;
        committer.commit(&consumer, &settings.task.inputs, &done, CommitMode::Async)?;
        committer.recommit_when_quiet(&consumer, &settings.task.inputs);
    }
    let done = sink.drain(settings.drain_timeout)?;
    // Another thread of the pipe leaving the group may be rebalancing it; the copies are delivered, and a
    // lost commit only copies them again on a next run, as it would re-score them in the processor.
    if let Err(err) = committer.commit(&consumer, &settings.task.inputs, &done, CommitMode::Sync) {
        warn!(error = %err, "the last commit failed");
    }
    info!(copied, "pipe stopped");
    Ok(copied)
}
