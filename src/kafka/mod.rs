//! The Kafka side of the runtime: publishing with delivery tracking ([`sink`]), changelog restore
//! ([`restore`]) and topic provisioning ([`topics`]).

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

pub mod restore;
pub mod sink;
pub mod topics;

/// Context of the consumers that read to the end of a partition (restore, replay): they ask for
/// end-of-partition events, which librdkafka also reports as client errors; those stay out of the error log.
pub struct EndIsNotAnError;

impl ClientContext for EndIsNotAnError {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(error = %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for EndIsNotAnError {}

/// Context of the short-lived clients that read cluster metadata. librdkafka reports why it cannot
/// reach a broker (a failed SASL authentication or TLS handshake, a refused connection) as an event of
/// its own, while the request itself fails with a generic transport error; this keeps the first such
/// reason so that the failure can name it.
#[derive(Default)]
pub struct FirstConnectionError {
    reason: Mutex<Option<String>>,
}

impl FirstConnectionError {
    /// The first reason reported, if any.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|reason| reason.clone())
    }
}

impl ClientContext for FirstConnectionError {
    fn error(&self, error: KafkaError, reason: &str) {
        // "All brokers are down" follows the reason that matters and says nothing of its own.
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            return;
        }
        if let Ok(mut first) = self.reason.lock() {
            first.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl ConsumerContext for FirstConnectionError {}

/// Sends `record`, waiting while the producer's local queue is full (its poll thread drains it as
/// acknowledgements arrive). For producers of generated load; the processor's sink takes its
/// acknowledgements in while it waits.
pub fn send_when_queued<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((err, _)) => return Err(err),
        }
    }
}
